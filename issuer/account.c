/* account: our ACME account per directory: read the directory, load the sealed account key,
 * or register a new account once and store its key sealed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "issuer.h"

static int load(PGconn *db, const struct tt_keyring *kr, struct ca_account *s, struct tt_err *err)
{
	const char *p[] = {s->cfg.directory};
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "SELECT id, COALESCE(account_url, ''), sealed_key FROM acme_accounts WHERE directory_url = $1",
		       1, p) < 0)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return 1;
	}
	s->account_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	snprintf(s->kid, sizeof(s->kid), "%s", PQgetvalue(res, 0, 1));
	uint8_t *blob;
	size_t blob_len;
	int rc = tt_db_bytea(res, 0, 2, &blob, &blob_len, err);
	PQclear(res);
	if (rc < 0)
		return -1;
	rc = keystore_open_account(kr, s->cfg.directory, blob, blob_len, &s->key_pem, &s->key_len, err);
	free(blob);
	if (rc < 0)
		return tt_wrap(err, "cannot open the account key");
	return 0;
}

static int create(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct ca_account *s,
		  struct tt_err *err)
{
	if (keygen_account(&s->key_pem, &s->key_len, err) < 0)
		return -1;
	struct acme_client *c;
	struct jws_key *k;
	if (account_client(s, &c, &k, err) < 0)
		return -1;
	struct acme_problem prob = {0};
	int rc = acme_account_register(c, issuer_opt(ctx, "contact"), s->eab_kid[0] ? s->eab_kid : NULL,
				       s->eab_hmac[0] ? s->eab_hmac : NULL, s->kid, sizeof(s->kid), &prob, err);
	acme_problem_clear(&prob);
	acme_client_free(c);
	jws_key_free(k);
	if (rc < 0)
		return tt_wrap(err, "cannot create the ACME account");
	uint8_t *blob;
	size_t blob_len;
	if (keystore_seal_account(kr, s->cfg.directory, s->key_pem, s->key_len, &blob, &blob_len, err) < 0)
		return -1;
	char *b = tt_db_bytea_param(blob, blob_len);
	free(blob);
	char mk[16];
	snprintf(mk, sizeof(mk), "%u", keystore_newest_id(kr));
	const char *p[] = {
	    s->cfg.directory, s->kid, b, mk, issuer_opt(ctx, "contact"), s->eab_kid[0] ? s->eab_kid : NULL};
	PGresult *res;
	rc = b ? tt_db_exec(db, &res, err,
			    "INSERT INTO acme_accounts (directory_url, account_url, sealed_key, master_key_id, "
			    "contact, eab_kid)"
			    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
			    6, p)
	       : tt_fail(err, "out of memory");
	free(b);
	if (rc < 0)
		return -1;
	s->account_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	tt_log(TT_INFO, "account_created", "url=%s", s->kid);
	return 0;
}

/* 0 when the CA still knows the account, 1 when it says it does not exist (a CA that lost its
 * state, or a deactivated account), -1 when it cannot be asked. */
static int account_alive(const struct ca_account *s, struct tt_err *err)
{
	struct acme_client *c;
	struct jws_key *k;
	if (account_client(s, &c, &k, err) < 0)
		return -1;
	struct acme_problem prob = {0};
	json_t *acct = NULL;
	int rc = acme_post(c, s->kid, NULL, &acct, &prob, err);
	const char *status = json_string_value(json_object_get(acct, "status"));
	if (rc == ACME_OK)
		rc = status && strcmp(status, "valid") != 0 ? 1 : 0;
	else if (acme_error_is(prob.type, "accountDoesNotExist") || acme_error_is(prob.type, "unauthorized"))
		rc = 1;
	else
		rc = tt_wrap(err, "cannot check the ACME account");
	json_decref(acct);
	acme_problem_clear(&prob);
	acme_client_free(c);
	jws_key_free(k);
	return rc;
}

/* Drops the row of an account the CA no longer has (unless another run already replaced it). */
static int forget(PGconn *db, struct ca_account *s, struct tt_err *err)
{
	char id[TT_DB_ID_TEXT];
	tt_db_id_text(id, s->account_id);
	const char *p[] = {id, s->kid};
	tt_secret_free(s->key_pem, s->key_len);
	s->key_pem = NULL;
	return tt_db_run(db, err, "DELETE FROM acme_accounts WHERE id = $1 AND account_url = $2", 2, p) < 0 ? -1 : 1;
}

void account_settings(const struct issuer_ctx *ctx, size_t index, struct ca_account *s)
{
	memset(s, 0, sizeof(*s));
	s->index = index;
	/* The defaults are the option table's; a "-" leaves the value empty (a CAA identity: none). */
	issuer_opt_item(ctx, "directory", index, s->directory, sizeof(s->directory));
	s->cfg.directory = s->directory;
	s->cfg.ca_file = issuer_opt_item(ctx, "ca-file", index, s->ca_file, sizeof(s->ca_file));
	s->cfg.chain_ca_file = issuer_opt_item(ctx, "chain-ca-file", index, s->chain_ca_file, sizeof(s->chain_ca_file));
	issuer_opt_item(ctx, "eab-kid", index, s->eab_kid, sizeof(s->eab_kid));
	issuer_opt_item(ctx, "eab-hmac-key", index, s->eab_hmac, sizeof(s->eab_hmac));
	issuer_opt_item(ctx, "caa-identity", index, s->caa_identity, sizeof(s->caa_identity));
}

int account_open(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, bool create_missing,
		 size_t index, struct ca_account *s, struct tt_err *err)
{
	account_settings(ctx, index, s);
	int64_t ms;
	if (issuer_opt_duration_ms(ctx, "timeout", &ms, err) < 0)
		return -1;
	s->cfg.timeout_ms = (long)ms;
	s->cfg.poll_limit_ms = ms * POLL_LIMIT_TIMEOUTS;
	struct acme_client *c;
	if (acme_client_new(&s->cfg, &c, err) < 0)
		return -1;
	int rc = acme_directory_fetch(c, &s->dir, err);
	acme_client_free(c);
	if (rc < 0)
		return -1;
	rc = load(db, kr, s, err);
	if (rc < 0 || !create_missing)
		return rc;
	if (rc == 0) {
		rc = account_alive(s, err);
		if (rc <= 0)
			return rc;
		tt_log(TT_WARN, "account_gone", "url=%s", s->kid);
	}
	/* Parallel runs must not each register an account. */
	if (tt_db_run(db, err, "SELECT pg_advisory_lock(hashtext('tracktls_acme_account'))", 0, NULL) < 0)
		return -1;
	if (rc == 1 && s->key_pem)
		rc = forget(db, s, err);
	if (rc >= 0)
		rc = load(db, kr, s, err);
	if (rc == 1)
		rc = create(ctx, db, kr, s, err);
	struct tt_err ignored;
	tt_db_run(db, &ignored, "SELECT pg_advisory_unlock(hashtext('tracktls_acme_account'))", 0, NULL);
	return rc;
}

int account_open_client(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, const char *directory,
			struct ca_account *s, struct acme_client **c, struct jws_key **k, struct tt_err *err)
{
	size_t index = 0;
	char buf[sizeof(s->directory)];
	for (size_t i = 0; directory && i < issuer_opt_count(ctx, "directory"); i++)
		if (issuer_opt_item(ctx, "directory", i, buf, sizeof(buf)) && strcmp(buf, directory) == 0)
			index = i;
	int rc = account_open(ctx, db, kr, false, index, s, err);
	if (rc == 1)
		return tt_fail(err, "no ACME account for %s yet (the first `issuer run` creates it)", s->cfg.directory);
	return rc < 0 ? -1 : account_client(s, c, k, err);
}

void account_close(struct ca_account *s)
{
	if (s->key_pem)
		tt_secret_free(s->key_pem, s->key_len);
	s->key_pem = NULL;
	acme_directory_free(&s->dir);
}

int account_client(const struct ca_account *s, struct acme_client **c, struct jws_key **k, struct tt_err *err)
{
	if (jws_key_load(s->key_pem, s->key_len, k, err) < 0)
		return -1;
	if (acme_client_new(&s->cfg, c, err) < 0) {
		jws_key_free(*k);
		return -1;
	}
	acme_client_set_account(*c, &s->dir, *k, s->kid);
	return 0;
}
