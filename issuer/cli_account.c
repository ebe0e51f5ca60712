/* cli_account: `account show` and `account rollover` (RFC 8555 keyChange, then the new key is
 * stored sealed in the same transaction that was open while the CA switched). */
#include <stdio.h>
#include <stdlib.h>

#include "issuer.h"

/* What both commands work with: the database, the key ring and a client logged in as the account. */
struct account_cmd {
	PGconn *db;
	struct tt_keyring *kr;
	struct ca_account s;
	struct acme_client *c;
	struct jws_key *k;
	struct acme_problem prob;
};

static int account_cmd_open(struct issuer_ctx *ctx, struct account_cmd *a, struct tt_err *err)
{
	if (issuer_db_open(ctx, &a->db, err) < 0 || issuer_keyring_open(ctx, &a->kr, err) < 0)
		return -1;
	return account_open_client(ctx, a->db, a->kr, NULL, &a->s, &a->c, &a->k, err);
}

static void account_cmd_close(struct account_cmd *a)
{
	acme_problem_clear(&a->prob);
	acme_client_free(a->c);
	jws_key_free(a->k);
	account_close(&a->s);
	tt_keyring_free(a->kr);
	PQfinish(a->db);
}

int cli_account_show(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	struct account_cmd a = {0};
	json_t *acct = NULL;
	int rc = 2;
	if (account_cmd_open(ctx, &a, &err) < 0 || acme_post(a.c, a.s.kid, NULL, &acct, &a.prob, &err) != ACME_OK)
		goto out;
	const char *status = json_string_value(json_object_get(acct, "status"));
	printf("directory   %s\naccount     %s\nstatus      %s\nthumbprint  %s\n", a.s.cfg.directory, a.s.kid,
	       status ? status : "?", jws_key_thumbprint(a.k));
	json_t *contact = json_object_get(acct, "contact"), *v;
	size_t i;
	for (i = 0; i < json_array_size(contact) && (v = json_array_get(contact, i)); i++)
		printf("contact     %s\n", json_string_value(v));
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "issuer account show: %s\n", err.msg);
	json_decref(acct);
	account_cmd_close(&a);
	return rc;
}

int cli_account_rollover(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	struct account_cmd a = {0};
	struct jws_key *nk = NULL;
	uint8_t *pem = NULL, *blob = NULL;
	size_t pem_len = 0, blob_len = 0;
	char *b = NULL;
	int rc = 2;
	if (account_cmd_open(ctx, &a, &err) < 0 || keygen_account(&pem, &pem_len, &err) < 0 ||
	    jws_key_load(pem, pem_len, &nk, &err) < 0 ||
	    keystore_seal_account(a.kr, a.s.cfg.directory, pem, pem_len, &blob, &blob_len, &err) < 0)
		goto out;
	b = tt_db_bytea_param(blob, blob_len);
	char id[TT_DB_ID_TEXT], mk[16];
	tt_db_id_text(id, a.s.account_id);
	snprintf(mk, sizeof(mk), "%u", keystore_newest_id(a.kr));
	const char *p[] = {id, b, mk};
	/* The row stays locked while the CA switches keys, so no run uses a half-rolled account. */
	if (!b) {
		tt_fail(&err, "out of memory");
		goto out;
	}
	if (tt_db_begin(a.db, &err) < 0)
		goto out;
	if (tt_db_run(a.db, &err, "SELECT id FROM acme_accounts WHERE id = $1 FOR UPDATE", 1, p) < 0 ||
	    tt_db_run(a.db, &err,
		      "UPDATE acme_accounts SET sealed_key = $2, master_key_id = $3, rolled_at = now() WHERE id = $1",
		      3, p) < 0 ||
	    acme_key_change(a.c, nk, &a.prob, &err) != ACME_OK) {
		tt_db_rollback(a.db);
		goto out;
	}
	if (tt_db_commit(a.db, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX], qa[TT_LOG_QUOTED_MAX];
		tt_log(TT_ERROR, "account_rollover_lost", "account=%s error=%s", tt_log_quote(qa, sizeof(qa), a.s.kid),
		       tt_log_quote(q, sizeof(q), err.msg));
		goto out;
	}
	printf("account %s now uses key %s\n", a.s.kid, jws_key_thumbprint(nk));
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "issuer account rollover: %s\n", err.msg);
	jws_key_free(nk);
	if (pem)
		tt_secret_free(pem, pem_len);
	free(blob);
	free(b);
	account_cmd_close(&a);
	return rc;
}
