/* cli_account: `account show` and `account rollover` (RFC 8555 keyChange, then the new key is
 * stored sealed in the same transaction that was open while the CA switched). */
#include <stdio.h>
#include <stdlib.h>

#include "issuer.h"

static int open_all(struct issuer_ctx *ctx, PGconn **db, struct tt_keyring **kr, struct acme_session *s,
		    struct tt_err *err)
{
	if (issuer_db_open(ctx, db, err) < 0 || issuer_keyring_open(ctx, kr, err) < 0)
		return -1;
	int rc = session_open(ctx, *db, *kr, false, s, err);
	if (rc == 1)
		return tt_fail(err, "no ACME account for %s yet (the first `issuer run` creates it)", s->cfg.directory);
	return rc;
}

int cli_account_show(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	PGconn *db = NULL;
	struct tt_keyring *kr = NULL;
	struct acme_session s = {0};
	struct acme_client *c = NULL;
	struct jws_key *k = NULL;
	struct acme_problem prob = {0};
	json_t *acct = NULL;
	int rc = 2;
	if (open_all(ctx, &db, &kr, &s, &err) < 0 || session_client(&s, &c, &k, &err) < 0)
		goto out;
	if (acme_post(c, s.kid, NULL, &acct, &prob, &err) != ACME_OK)
		goto out;
	printf("directory   %s\naccount     %s\nstatus      %s\nthumbprint  %s\n", s.cfg.directory, s.kid,
	       json_string_value(json_object_get(acct, "status")) ? json_string_value(json_object_get(acct, "status"))
								  : "?",
	       jws_key_thumbprint(k));
	json_t *contact = json_object_get(acct, "contact"), *v;
	size_t i;
	for (i = 0; i < json_array_size(contact) && (v = json_array_get(contact, i)); i++)
		printf("contact     %s\n", json_string_value(v));
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "issuer account show: %s\n", err.msg);
	json_decref(acct);
	acme_problem_clear(&prob);
	acme_client_free(c);
	jws_key_free(k);
	session_close(&s);
	tt_keyring_free(kr);
	if (db)
		PQfinish(db);
	return rc;
}

int cli_account_rollover(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	PGconn *db = NULL;
	struct tt_keyring *kr = NULL;
	struct acme_session s = {0};
	struct acme_client *c = NULL;
	struct jws_key *k = NULL, *nk = NULL;
	struct acme_problem prob = {0};
	uint8_t *pem = NULL, *blob = NULL;
	size_t pem_len = 0, blob_len = 0;
	char *b = NULL;
	int rc = 2;
	if (open_all(ctx, &db, &kr, &s, &err) < 0 || session_client(&s, &c, &k, &err) < 0 ||
	    keygen_account(&pem, &pem_len, &err) < 0 || jws_key_load(pem, pem_len, &nk, &err) < 0 ||
	    keystore_seal_account(kr, s.cfg.directory, pem, pem_len, &blob, &blob_len, &err) < 0)
		goto out;
	b = tt_db_bytea_param(blob, blob_len);
	char id[24], mk[16];
	snprintf(id, sizeof(id), "%lld", (long long)s.account_id);
	snprintf(mk, sizeof(mk), "%u", keystore_newest_id(kr));
	const char *p[] = {id, b, mk};
	/* The row stays locked while the CA switches keys, so no run uses a half-rolled account. */
	if (!b || store_begin(db, &err) < 0)
		goto out;
	if (tt_db_run(db, &err, "SELECT id FROM acme_accounts WHERE id = $1 FOR UPDATE", 1, p) < 0 ||
	    tt_db_run(db, &err,
		      "UPDATE acme_accounts SET sealed_key = $2, master_key_id = $3, rolled_at = now() WHERE id = $1",
		      3, p) < 0 ||
	    acme_key_change(c, nk, &prob, &err) != ACME_OK) {
		store_rollback(db);
		goto out;
	}
	if (store_commit(db, &err) < 0) {
		tt_log(TT_ERROR, "account_rollover_lost", "account=%s error=\"%s\"", s.kid, err.msg);
		goto out;
	}
	printf("account %s now uses key %s\n", s.kid, jws_key_thumbprint(nk));
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "issuer account rollover: %s\n", err.msg);
	acme_problem_clear(&prob);
	acme_client_free(c);
	jws_key_free(k);
	jws_key_free(nk);
	if (pem)
		tt_secret_free(pem, pem_len);
	free(blob);
	free(b);
	session_close(&s);
	tt_keyring_free(kr);
	if (db)
		PQfinish(db);
	return rc;
}
