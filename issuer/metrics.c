/* metrics: the run's Prometheus textfile for node_exporter's textfile collector, written to a
 * temporary file and renamed so the collector never reads half a file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "issuer.h"

int metrics_write(const struct issuer_ctx *ctx, PGconn *db, long issued, long renewed, long failed, struct tt_err *err)
{
	const char *path = issuer_opt(ctx, "metrics-file");
	if (!path)
		return 0;
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "SELECT (SELECT count(*) FROM domains WHERE state IN ('pending', 'active', 'failing')"
		       "   AND next_attempt_at <= now()),"
		       " (SELECT COALESCE(extract(epoch FROM min(c.not_after))::bigint, 0) FROM domains d"
		       "   JOIN certificates c ON c.id = d.current_cert_id WHERE d.state <> 'removed'),"
		       " (SELECT count(*) FROM domains WHERE state = 'paused'),"
		       " (SELECT count(*) FROM domains d JOIN certificates c ON c.id = d.current_cert_id"
		       "   WHERE d.state <> 'removed' AND c.not_after > now()"
		       "   AND d.served_cert_id IS DISTINCT FROM d.current_cert_id)",
		       0, NULL) < 0) {
		tt_log(TT_WARN, "metrics_failed", "error=\"%s\"", err->msg);
		return -1;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f) {
		PQclear(res);
		tt_log(TT_WARN, "metrics_failed", "path=%s error=\"%s\"", tmp, strerror(errno));
		return tt_fail(err, "cannot write %s: %s", tmp, strerror(errno));
	}
	fprintf(f,
		"# HELP tracktls_issuer_issued Certificates issued for new domains by the last run.\n"
		"# TYPE tracktls_issuer_issued gauge\ntracktls_issuer_issued %ld\n"
		"# HELP tracktls_issuer_renewed Certificates renewed by the last run.\n"
		"# TYPE tracktls_issuer_renewed gauge\ntracktls_issuer_renewed %ld\n"
		"# HELP tracktls_issuer_failed Domains whose order failed in the last run.\n"
		"# TYPE tracktls_issuer_failed gauge\ntracktls_issuer_failed %ld\n"
		"# HELP tracktls_issuer_pending Domains due for an order after the last run.\n"
		"# TYPE tracktls_issuer_pending gauge\ntracktls_issuer_pending %s\n"
		"# HELP tracktls_issuer_paused Domains paused after repeated failures.\n"
		"# TYPE tracktls_issuer_paused gauge\ntracktls_issuer_paused %s\n"
		"# HELP tracktls_issuer_domains_not_served Domains stored but not yet served by the edge.\n"
		"# TYPE tracktls_issuer_domains_not_served gauge\ntracktls_issuer_domains_not_served %s\n"
		"# HELP tracktls_issuer_soonest_expiry_seconds Unix time of the soonest current certificate expiry.\n"
		"# TYPE tracktls_issuer_soonest_expiry_seconds gauge\ntracktls_issuer_soonest_expiry_seconds %s\n"
		"# HELP tracktls_issuer_last_run_seconds Unix time the last run ended.\n"
		"# TYPE tracktls_issuer_last_run_seconds gauge\ntracktls_issuer_last_run_seconds %lld\n",
		issued, renewed, failed, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		PQgetvalue(res, 0, 1), (long long)time(NULL));
	PQclear(res);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		tt_log(TT_WARN, "metrics_failed", "path=%s error=\"%s\"", path, strerror(errno));
		return tt_fail(err, "cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}
