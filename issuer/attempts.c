/* attempts: the issuance_attempts rows and what hangs on them: the shared order budget, the HTTP-01
 * challenge rows an order publishes, and a failure's backoff on the domain. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

/* A published token stays answerable this long; a killed run's tokens expire after it. */
#define CHALLENGE_TTL_S 3600

int attempt_start(PGconn *db, int64_t domain_id, const char *kind, bool counts, long budget, const char *event,
		  int64_t *attempt_id, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT], lim[24], window[24];
	tt_db_id_text(did, domain_id);
	snprintf(lim, sizeof(lim), "%ld", budget);
	snprintf(window, sizeof(window), "%d", ORDER_BUDGET_WINDOW_S);
	const char *p[] = {did, kind, counts ? "t" : "f", lim, window};
	/* Orders left behind by a killed run: the domain is locked by the caller now, so they are dead. */
	if (tt_db_run(db, err,
		      "UPDATE issuance_attempts SET state = 'abandoned', finished_at = now()"
		      " WHERE domain_id = $1 AND state = 'started'",
		      1, p) < 0 ||
	    tt_db_begin(db, err) < 0)
		return -1;
	PGresult *res;
	/* Serialized across all runs so that parallel runs share one budget. */
	if (tt_db_run(db, err, "SELECT pg_advisory_xact_lock(hashtext('tracktls_order_budget'))", 0, NULL) < 0 ||
	    tt_db_exec(db, &res, err,
		       "INSERT INTO issuance_attempts (domain_id, kind, counts_against_limit)"
		       " SELECT $1, $2, $3::boolean WHERE NOT $3::boolean OR (SELECT count(*) FROM issuance_attempts"
		       "  WHERE counts_against_limit AND started_at > now() - make_interval(secs => $5::int))"
		       "  < $4::bigint"
		       " RETURNING id",
		       5, p) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	int ok = PQntuples(res) > 0;
	if (ok)
		*attempt_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if ((ok && store_event(db, domain_id, event, NULL, err) < 0) || tt_db_commit(db, err) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	return ok;
}

int attempt_set_order_url(PGconn *db, int64_t attempt_id, const char *url, struct tt_err *err)
{
	char aid[TT_DB_ID_TEXT];
	tt_db_id_text(aid, attempt_id);
	const char *p[] = {url, aid};
	return tt_db_run(db, err, "UPDATE issuance_attempts SET order_url = $1 WHERE id = $2", 2, p);
}

int attempt_abandon(PGconn *db, int64_t attempt_id, int64_t domain_id, struct tt_err *err)
{
	char aid[TT_DB_ID_TEXT], did[TT_DB_ID_TEXT];
	tt_db_id_text(aid, attempt_id);
	tt_db_id_text(did, domain_id);
	const char *a[] = {aid}, *d[] = {did};
	if (tt_db_run(db, err, "UPDATE issuance_attempts SET state = 'abandoned', finished_at = now() WHERE id = $1", 1,
		      a) < 0)
		return -1;
	return tt_db_run(db, err, "DELETE FROM challenges WHERE domain_id = $1", 1, d);
}

int attempt_challenge_publish(PGconn *db, int64_t domain_id, const char *token, const char *key_auth,
			      struct tt_err *err)
{
	char did[TT_DB_ID_TEXT], ttl[24];
	tt_db_id_text(did, domain_id);
	snprintf(ttl, sizeof(ttl), "%d", CHALLENGE_TTL_S);
	const char *p[] = {token, key_auth, did, ttl};
	return tt_db_run(db, err,
			 "INSERT INTO challenges (token, key_authorization, domain_id, expires_at)"
			 " VALUES ($1, $2, $3, now() + make_interval(secs => $4::int)) ON CONFLICT (token) DO UPDATE"
			 " SET key_authorization = EXCLUDED.key_authorization, domain_id = EXCLUDED.domain_id,"
			 " expires_at = EXCLUDED.expires_at",
			 4, p);
}

int attempt_challenges_expire(PGconn *db, struct tt_err *err)
{
	return tt_db_run(db, err, "DELETE FROM challenges WHERE expires_at < now()", 0, NULL);
}

int64_t attempt_backoff_s(int failures)
{
	static const int64_t steps[] = {60, 600, 6000};
	return failures >= 1 && failures <= 3 ? steps[failures - 1] : DAY_S;
}

int attempt_fail(PGconn *db, int64_t domain_id, int64_t attempt_id, const struct attempt_failure *f,
		 struct attempt_failed *out, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT], aid[TT_DB_ID_TEXT], max[24], dormant_after[24];
	tt_db_id_text(did, domain_id);
	tt_db_id_text(aid, attempt_id);
	snprintf(max, sizeof(max), "%ld", f->max_failures);
	tt_db_id_text(dormant_after, f->dormant_after_s);
	PGresult *res;
	const char *p[] = {did, f->type, f->detail, max, f->preflight ? "t" : "f", dormant_after};
	if (tt_db_exec(
		db, &res, err,
		"UPDATE domains SET failures = failures + 1, last_error_type = $2, last_error_detail = $3,"
		" last_error_at = now(),"
		" preflight_failing_since = CASE WHEN $5::boolean THEN COALESCE(preflight_failing_since, now()) END,"
		" state = CASE WHEN $5::boolean AND COALESCE(preflight_failing_since, now())"
		"   <= now() - make_interval(secs => $6::bigint) THEN 'dormant'"
		"  WHEN $5::boolean THEN 'failing' WHEN failures + 1 >= $4::int THEN 'paused' ELSE 'failing' END"
		" WHERE id = $1 RETURNING failures, state",
		6, p) < 0)
		return -1;
	out->failures = atoi(PQgetvalue(res, 0, 0));
	out->paused = strcmp(PQgetvalue(res, 0, 1), "paused") == 0;
	out->dormant = strcmp(PQgetvalue(res, 0, 1), "dormant") == 0;
	PQclear(res);
	/* A dormant domain's preflight is repeated once a day. */
	out->retry_in_s = out->dormant ? DAY_S : attempt_backoff_s(out->failures);
	char secs[24];
	tt_db_id_text(secs, out->retry_in_s);
	const char *q[] = {did, secs};
	if (tt_db_run(db, err,
		      "UPDATE domains SET next_attempt_at = now() + make_interval(secs => $2::bigint) WHERE id = $1", 2,
		      q) < 0)
		return -1;
	if (attempt_id) {
		const char *a[] = {aid, f->type, f->detail, f->doc_json};
		if (tt_db_run(db, err,
			      "UPDATE issuance_attempts SET state = 'failed', finished_at = now(), problem_type = $2,"
			      " problem_detail = $3, problem = $4::jsonb WHERE id = $1",
			      4, a) < 0)
			return -1;
	}
	if (tt_db_run(db, err, "DELETE FROM challenges WHERE domain_id = $1", 1, p) < 0)
		return -1;
	return store_failure_events(db, domain_id, err);
}
