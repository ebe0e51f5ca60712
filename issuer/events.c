/* events: `issuer events` prints domain_events in id order and, with --follow, keeps printing
 * them as they are committed. Exactly once for a consumer that keeps the last id it handled:
 * event ids become visible in id order (tracktls_domain_event draws them under a lock held to
 * commit), so reading "id > last" after LISTEN, again on every notification, and again after
 * every reconnect neither skips nor repeats one, whatever happened to the connection meanwhile. */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

#define EVENTS_BATCH "1000"
/* A notification can be lost with the connection; the periodic read covers it anyway. */
#define FOLLOW_POLL_MS 5000
#define RECONNECT_FIRST_MS 200
#define RECONNECT_MAX_MS 5000

/* Prints the events after *last; 1 when a full batch came (read again), 0 done, -1 error. */
static int print_batch(PGconn *db, bool json, int64_t *last, struct tt_err *err)
{
	char after[24];
	snprintf(after, sizeof(after), "%" PRId64, *last);
	const char *p[] = {after};
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "SELECT id, json_build_object('id', id, 'name', name, 'owner', owner, 'kind', kind,"
		       " 'reason', reason, 'detail', detail,"
		       " 'at', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text,"
		       " to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), kind, name,"
		       " COALESCE(reason, ''), COALESCE(detail, '')"
		       " FROM domain_events WHERE id > $1::bigint ORDER BY id LIMIT " EVENTS_BATCH,
		       1, p) < 0)
		return -1;
	int n = PQntuples(res);
	for (int i = 0; i < n; i++) {
		if (json) {
			printf("%s\n", PQgetvalue(res, i, 1));
		} else {
			printf("%s %s %-11s %s", PQgetvalue(res, i, 0), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
			       PQgetvalue(res, i, 4));
			if (*PQgetvalue(res, i, 5))
				printf(" reason=%s", PQgetvalue(res, i, 5));
			if (*PQgetvalue(res, i, 6)) {
				char q[2048];
				printf(" detail=%s", tt_log_quote(q, sizeof(q), PQgetvalue(res, i, 6)));
			}
			printf("\n");
		}
		*last = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	}
	PQclear(res);
	if (fflush(stdout) != 0 || ferror(stdout))
		return tt_fail(err, "cannot write the events to stdout");
	return n == atoi(EVENTS_BATCH);
}

/* Connects and LISTENs (before the first read, so nothing committed in between is missed). */
static int follow_connect(const struct issuer_ctx *ctx, PGconn **db, struct tt_err *err)
{
	if (issuer_db_open(ctx, db, err) < 0)
		return -1;
	if (tt_db_run(*db, err, "LISTEN tracktls_domain_event", 0, NULL) < 0) {
		PQfinish(*db);
		*db = NULL;
		return -1;
	}
	return 0;
}

/* Waits for a notification or the poll interval. -1 when the connection is gone. */
static int follow_wait(PGconn *db)
{
	struct pollfd pfd = {.fd = PQsocket(db), .events = POLLIN};
	if (pfd.fd < 0)
		return -1;
	if (poll(&pfd, 1, FOLLOW_POLL_MS) < 0)
		return 0;
	if (!PQconsumeInput(db) || PQstatus(db) != CONNECTION_OK)
		return -1;
	PGnotify *n;
	while ((n = PQnotifies(db)))
		PQfreemem(n);
	return 0;
}

int cli_events(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	long since;
	if (issuer_opt_int(ctx, "since", &since, &err) < 0) {
		fprintf(stderr, "issuer events: %s\n", err.msg);
		return 2;
	}
	bool follow = issuer_flag(ctx, "follow"), json = issuer_flag(ctx, "json");
	int64_t last = since;
	PGconn *db = NULL;
	if ((follow ? follow_connect(ctx, &db, &err) : issuer_db_open(ctx, &db, &err)) < 0) {
		fprintf(stderr, "issuer events: cannot use the database: %s\n", err.msg);
		return 2;
	}
	int64_t backoff = RECONNECT_FIRST_MS;
	for (;;) {
		int rc;
		while ((rc = print_batch(db, json, &last, &err)) == 1)
			;
		if (rc == 0 && !follow)
			break;
		if (rc < 0 && (!follow || PQstatus(db) == CONNECTION_OK)) {
			fprintf(stderr, "issuer events: %s\n", err.msg);
			PQfinish(db);
			return 2;
		}
		if (rc == 0 && follow_wait(db) == 0)
			continue;
		/* The connection is gone: reconnect until it is back, then read from the last id. */
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "events_reconnect", "last_id=%" PRId64 " error=%s", last,
		       tt_log_quote(q, sizeof(q), PQerrorMessage(db)));
		PQfinish(db);
		db = NULL;
		while (follow_connect(ctx, &db, &err) < 0) {
			tt_sleep_ms(backoff);
			backoff = backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : backoff * 2;
		}
		backoff = RECONNECT_FIRST_MS;
		tt_log(TT_INFO, "events_reconnected", "last_id=%" PRId64, last);
	}
	PQfinish(db);
	return 0;
}

int events_prune(const struct issuer_ctx *ctx, PGconn *db, struct tt_err *err)
{
	int64_t ms;
	if (issuer_opt_duration_ms(ctx, "events-retention", &ms, err) < 0)
		return -1;
	char secs[24];
	snprintf(secs, sizeof(secs), "%" PRId64, ms / 1000);
	const char *p[] = {secs};
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "WITH gone AS (DELETE FROM domain_events WHERE at < now() - make_interval(secs => $1::bigint)"
		       " RETURNING 1) SELECT count(*) FROM gone",
		       1, p) < 0)
		return -1;
	long n = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (n)
		tt_log(TT_INFO, "events_pruned", "count=%ld", n);
	return 0;
}
