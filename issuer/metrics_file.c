/* metrics_file: the run's Prometheus textfile for node_exporter's textfile collector, written to a
 * temporary file and renamed so the collector never reads half a file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "issuer.h"

/* What the issuer refused to act on, by kind: domains whose last attempt ended there (failing or
 * paused), so an alert sees a hostile or broken CA, or names pointed inside our network. */
static void write_refusals(FILE *f, PGconn *db)
{
	static const struct {
		const char *label, *type;
	} kinds[] = {{"ca_token", ACME_PROBLEM_BAD_TOKEN},
		     {"ca_url", ACME_PROBLEM_BAD_URL},
		     {"chain", ACME_PROBLEM_BAD_CHAIN},
		     {"self_check_target", ACME_PROBLEM_SELF_CHECK_REFUSED}};
	fprintf(f, "# HELP tracktls_issuer_refused Domains whose last order was refused by the issuer's own checks.\n"
		   "# TYPE tracktls_issuer_refused gauge\n");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *p[] = {kinds[i].type};
		PGresult *res;
		struct tt_err err;
		if (tt_db_exec(
			db, &res, &err,
			"SELECT count(*) FROM domains WHERE state IN ('failing', 'paused') AND last_error_type = $1", 1,
			p) < 0) {
			char q[TT_LOG_QUOTED_MAX];
			tt_log(TT_WARN, "metrics_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
			continue;
		}
		fprintf(f, "tracktls_issuer_refused{what=\"%s\"} %s\n", kinds[i].label, PQgetvalue(res, 0, 0));
		PQclear(res);
	}
}

int metrics_write(const struct issuer_ctx *ctx, PGconn *db, long issued, long renewed, long failed, int status,
		  struct tt_err *err)
{
	const char *path = issuer_opt(ctx, "metrics-file");
	if (!path)
		return 0;
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "SELECT (SELECT count(*) FROM due_domains),"
		       " (SELECT COALESCE(extract(epoch FROM min(c.not_after))::bigint, 0) FROM domains d"
		       "   JOIN certificates c ON c.id = d.current_cert_id WHERE d.state <> 'removed'),"
		       " (SELECT count(*) FROM domains WHERE state = 'paused'),"
		       " (SELECT count(*) FROM domains d JOIN certificates c ON c.id = d.current_cert_id"
		       "   WHERE d.state <> 'removed' AND c.not_after > now()"
		       "   AND d.served_cert_id IS DISTINCT FROM d.current_cert_id),"
		       " (SELECT count(*) FROM domains WHERE state = 'dormant')",
		       0, NULL) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "metrics_failed", "error=%s", tt_log_quote(q, sizeof(q), err->msg));
		return -1;
	}
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f) {
		PQclear(res);
		char q[TT_LOG_QUOTED_MAX], qp[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "metrics_failed", "path=%s error=%s", tt_log_quote(qp, sizeof(qp), tmp),
		       tt_log_quote(q, sizeof(q), strerror(errno)));
		return tt_fail(err, "cannot write %s: %s", tmp, strerror(errno));
	}
	fprintf(f,
		"# HELP tracktls_issuer_issued Certificates issued for new domains by the last run.\n"
		"# TYPE tracktls_issuer_issued gauge\ntracktls_issuer_issued %ld\n"
		"# HELP tracktls_issuer_renewed Certificates renewed by the last run.\n"
		"# TYPE tracktls_issuer_renewed gauge\ntracktls_issuer_renewed %ld\n"
		"# HELP tracktls_issuer_failed Domains whose order failed in the last run.\n"
		"# TYPE tracktls_issuer_failed gauge\ntracktls_issuer_failed %ld\n"
		"# HELP tracktls_issuer_pending Domains due after the last run (view due_domains: an order,"
		" or a dormant domain's daily preflight).\n"
		"# TYPE tracktls_issuer_pending gauge\ntracktls_issuer_pending %s\n"
		"# HELP tracktls_issuer_paused Domains paused after repeated failures.\n"
		"# TYPE tracktls_issuer_paused gauge\ntracktls_issuer_paused %s\n"
		"# HELP tracktls_issuer_domains_not_served Domains stored but not yet served by the edge.\n"
		"# TYPE tracktls_issuer_domains_not_served gauge\ntracktls_issuer_domains_not_served %s\n"
		"# HELP tracktls_issuer_dormant Domains dormant: their DNS preflight kept failing.\n"
		"# TYPE tracktls_issuer_dormant gauge\ntracktls_issuer_dormant %s\n"
		"# HELP tracktls_issuer_soonest_expiry_seconds Unix time of the soonest current certificate expiry.\n"
		"# TYPE tracktls_issuer_soonest_expiry_seconds gauge\ntracktls_issuer_soonest_expiry_seconds %s\n"
		"# HELP tracktls_issuer_last_run_seconds Unix time the last run ended.\n"
		"# TYPE tracktls_issuer_last_run_seconds gauge\ntracktls_issuer_last_run_seconds %lld\n"
		"# HELP tracktls_issuer_exit_status Exit status of the last run (0 all done, 1 some domains failed, 2 "
		"the run could not do its job).\n"
		"# TYPE tracktls_issuer_exit_status gauge\ntracktls_issuer_exit_status %d\n",
		issued, renewed, failed, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 1), (long long)time(NULL), status);
	PQclear(res);
	write_refusals(f, db);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		char q[TT_LOG_QUOTED_MAX], qp[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "metrics_failed", "path=%s error=%s", tt_log_quote(qp, sizeof(qp), path),
		       tt_log_quote(q, sizeof(q), strerror(errno)));
		return tt_fail(err, "cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}
