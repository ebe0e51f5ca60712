/* cli_check: `domain check NAME`: the run's DNS and CAA preflight on demand, for support staff and
 * the customer-facing page: the verdict, the record to fix, and which of our CAs CAA permits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

/* Our account URL at a directory, when the database is at hand and has one (CAA accounturi). */
static void account_url(PGconn *db, const char *directory, char *out, size_t size)
{
	out[0] = '\0';
	if (!db)
		return;
	const char *p[] = {directory};
	PGresult *res;
	struct tt_err err;
	if (tt_db_exec(db, &res, &err, "SELECT account_url FROM acme_accounts WHERE directory_url = $1", 1, p) < 0)
		return;
	if (PQntuples(res) > 0)
		snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
}

static void print_verdict(const char *name, const struct preflight_verdict *v, const struct ca_account *cas,
			  const struct caa_issuer *who, size_t ncas, bool json)
{
	bool ok = v->reason == PREFLIGHT_OK;
	if (!json) {
		printf("%s %s\n", name, preflight_reason_code(v->reason));
		if (!ok)
			printf("fix: %s\n", v->detail);
		for (size_t i = 0; i < ncas && v->reason != PREFLIGHT_DNS_NOT_POINTED &&
				   v->reason != PREFLIGHT_DNS_STRAY_AAAA && v->reason != PREFLIGHT_DNS_SERVFAIL;
		     i++)
			printf("ca %s (%s): %s%s%s\n", cas[i].directory, who[i].identity,
			       v->permits[i] ? "permitted" : "forbidden", v->caa_owner[0] ? " by CAA at " : "",
			       v->caa_owner);
		return;
	}
	json_t *cal = json_array();
	for (size_t i = 0; i < ncas; i++)
		json_array_append_new(cal, json_pack("{s:s, s:s, s:o}", "directory", cas[i].directory, "caa_identity",
						     who[i].identity, "permitted", json_boolean(v->permits[i])));
	json_t *o = json_pack("{s:s, s:b, s:o, s:o, s:o, s:o}", "name", name, "ok", ok, "reason",
			      ok ? json_null() : json_string(preflight_reason_code(v->reason)), "detail",
			      ok ? json_null() : json_string(v->detail), "caa_owner",
			      v->caa_owner[0] ? json_string(v->caa_owner) : json_null(), "cas", cal);
	json_dumpf(o, stdout, JSON_INDENT(2));
	printf("\n");
	json_decref(o);
}

int cli_domain_check(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	char name[TT_NAME_MAX];
	struct preflight_config pc;
	if (issuer_check_per_directory(ctx, &err) < 0)
		return tt_prog_fail(ISSUER_PROG, &err, TT_EXIT_USAGE);
	if (name_to_ascii(ctx->argv[0], name, &err) < 0 || preflight_config_load(ctx, &pc, &err) < 0) {
		fprintf(stderr, "issuer domain check: %s\n", err.msg);
		return 2;
	}
	if (!pc.enabled) {
		fprintf(stderr, "issuer domain check: give the edge (--edge-cname and/or --edge-addrs)\n");
		return 2;
	}
	size_t ncas = issuer_opt_count(ctx, "directory");
	ncas = ncas < 1 ? 1 : ncas > ISSUER_MAX_CAS ? ISSUER_MAX_CAS : ncas;
	struct ca_account *cas = calloc(ncas, sizeof(*cas));
	char(*accounts)[1024] = calloc(ncas, sizeof(*accounts));
	struct caa_issuer who[ISSUER_MAX_CAS];
	struct dns_resolver *r = NULL;
	PGconn *db = NULL;
	int rc = 2;
	if (!cas || !accounts) {
		fprintf(stderr, "issuer domain check: out of memory\n");
		goto out;
	}
	/* Without a database the check still runs: only accounturi parameters cannot match then. */
	if (issuer_db_open(ctx, &db, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_DEBUG, "check_without_database", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
		db = NULL;
	}
	for (size_t i = 0; i < ncas; i++) {
		account_settings(ctx, i, &cas[i]);
		account_url(db, cas[i].directory, accounts[i], sizeof(accounts[i]));
		who[i] = (struct caa_issuer){.identity = cas[i].caa_identity,
					     .account_uri = accounts[i][0] ? accounts[i] : NULL};
	}
	if (dns_library_init(&err) < 0 || dns_open(pc.dns_server, pc.timeout_ms, &r, &err) < 0) {
		fprintf(stderr, "issuer domain check: %s\n", err.msg);
		goto out;
	}
	struct preflight_verdict v;
	preflight_check(r, &pc, name, who, ncas, &v);
	print_verdict(name, &v, cas, who, ncas, issuer_flag(ctx, "json"));
	rc = v.reason == PREFLIGHT_OK ? 0 : 1;
out:
	dns_close(r);
	if (db)
		PQfinish(db);
	free(cas);
	free(accounts);
	return rc;
}
