/* cli_domain: `domain add|remove|list|show`: the operator's view of the domains table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

static int open_db(struct issuer_ctx *ctx, PGconn **db)
{
	struct tt_err err = {{0}};
	if (issuer_db_open(ctx, db, &err) < 0) {
		fprintf(stderr, "issuer: cannot use the database: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* The command's NAME argument, normalized, and the database: what add, show and remove start with. */
static int open_named(struct issuer_ctx *ctx, char name[TT_NAME_MAX], PGconn **db)
{
	struct tt_err err = {{0}};
	if (name_to_ascii(ctx->argv[0], name, &err) < 0) {
		fprintf(stderr, "issuer: %s\n", err.msg);
		return -1;
	}
	return open_db(ctx, db);
}

int cli_domain_add(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	char name[TT_NAME_MAX];
	PGconn *db;
	if (open_named(ctx, name, &db) < 0)
		return 2;
	int64_t id;
	enum domain_added added;
	int rc = store_domain_add(db, name, issuer_opt(ctx, "owner"), issuer_opt(ctx, "profile"), &id, &added, &err);
	PQfinish(db);
	if (rc < 0) {
		fprintf(stderr, "issuer: cannot add %s: %s\n", name, err.msg);
		return 2;
	}
	printf("%s %s\n", added == DOMAIN_ADDED ? "added" : added == DOMAIN_RESUMED ? "resumed" : "exists", name);
	return 0;
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static void print_text(json_t *d)
{
	printf("%-40s %-10s https_ready=%s expires=%s renew=%s", str(d, "name"), str(d, "state"),
	       json_is_true(json_object_get(d, "https_ready")) ? "yes" : "no", str(d, "not_after"), str(d, "renew_at"));
	if (json_is_string(json_object_get(d, "reason")))
		printf(" reason=%s", str(d, "reason"));
	printf("\n");
}

static const char *const domain_states[] = {"pending", "active", "failing", "paused", "dormant"};

int cli_domain_list(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	PGconn *db;
	const char *state = issuer_opt(ctx, "state");
	bool known = !state;
	for (size_t i = 0; state && i < sizeof(domain_states) / sizeof(domain_states[0]); i++)
		known |= strcmp(state, domain_states[i]) == 0;
	if (!known) {
		fprintf(stderr, "issuer domain list: unknown --state '%s'\n", state);
		return 2;
	}
	if (open_db(ctx, &db) < 0)
		return 2;
	json_t *all;
	int rc = store_domain_json(db, NULL, issuer_opt(ctx, "state"), &all, &err);
	PQfinish(db);
	if (rc < 0) {
		fprintf(stderr, "issuer: %s\n", err.msg);
		return 2;
	}
	if (issuer_flag(ctx, "json")) {
		json_dumpf(all, stdout, JSON_INDENT(2));
		printf("\n");
	} else {
		size_t i;
		json_t *d;
		for (i = 0; i < json_array_size(all) && (d = json_array_get(all, i)); i++)
			print_text(d);
	}
	json_decref(all);
	return 0;
}

int cli_domain_show(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	char name[TT_NAME_MAX];
	PGconn *db;
	if (open_named(ctx, name, &db) < 0)
		return 2;
	json_t *all;
	int rc = store_domain_json(db, name, NULL, &all, &err);
	PQfinish(db);
	if (rc < 0) {
		fprintf(stderr, "issuer: %s\n", err.msg);
		return 2;
	}
	json_t *d = json_array_get(all, 0);
	if (!d) {
		fprintf(stderr, "issuer: no domain %s\n", name);
		json_decref(all);
		return 1;
	}
	if (issuer_flag(ctx, "json")) {
		json_dumpf(d, stdout, JSON_INDENT(2));
		printf("\n");
	} else {
		static const char *keys[] = {"name",   "owner",	 "state",     "https_ready", "reason",
					     "detail", "serial", "not_after", "renew_at",    "since"};
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			json_t *v = json_object_get(d, keys[i]);
			if (json_is_string(v))
				printf("%-12s %s\n", keys[i], json_string_value(v));
			else if (json_is_boolean(v))
				printf("%-12s %s\n", keys[i], json_is_true(v) ? "true" : "false");
		}
	}
	json_decref(all);
	return 0;
}

/* Only certificates we ordered are ours to revoke, and only once. */
static bool needs_revoke(PGconn *db, int64_t cert_id)
{
	char id[TT_DB_ID_TEXT];
	tt_db_id_text(id, cert_id);
	const char *p[] = {id};
	PGresult *res;
	struct tt_err err;
	if (tt_db_exec(db, &res, &err,
		       "SELECT 1 FROM certificates WHERE id = $1 AND source = 'acme' AND revoked_at IS NULL"
		       " AND not_after > now()",
		       1, p) < 0)
		return true;
	bool yes = PQntuples(res) > 0;
	PQclear(res);
	return yes;
}

int cli_domain_remove(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	char name[TT_NAME_MAX];
	PGconn *db;
	if (open_named(ctx, name, &db) < 0)
		return 2;
	struct domain_row d;
	int found = store_domain_find(db, name, &d, &err);
	int rc = 2;
	if (found < 0)
		fprintf(stderr, "issuer: %s\n", err.msg);
	else if (!found || strcmp(d.state, "removed") == 0) {
		fprintf(stderr, "issuer: no domain %s\n", name);
		rc = 1;
	} else if (d.current_cert_id && !issuer_flag(ctx, "no-revoke") && needs_revoke(db, d.current_cert_id) &&
		   revoke_current(ctx, db, &d, 5 /* cessationOfOperation */, &err) < 0) {
		fprintf(stderr, "issuer: cannot revoke the certificate of %s: %s (--no-revoke removes it anyway)\n",
			name, err.msg);
		rc = 1;
	} else if (store_domain_remove(db, d.id, &err) < 0)
		fprintf(stderr, "issuer: cannot remove %s: %s\n", name, err.msg);
	else {
		printf("removed %s\n", name);
		rc = 0;
	}
	PQfinish(db);
	return rc;
}
