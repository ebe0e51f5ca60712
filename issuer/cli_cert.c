/* cli_cert: the commands about one certificate: `cert import` and `cert import-batch` (bring your own
 * certificate and key), and `revoke`. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "issuer.h"

/* A whole file; a key file into locked memory (free with tt_secret_free). */
static int read_file(const char *path, bool secret, uint8_t **out, size_t *len, struct tt_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return tt_fail(err, "cannot open %s: %s", path, strerror(errno));
	int rc = tt_read_fd(fd, path, TT_PEM_FILE_MAX, secret, (char **)out, len, err);
	close(fd);
	return rc;
}

struct importer {
	struct tt_keyring *kr;
	PGconn *db;
	long failed;
};

/* Checks one certificate and key and stores them inside a savepoint, so a bad one leaves no trace
 * (not even its domain row) and the rest of its transaction stands. */
static int import_one(struct importer *im, const char *raw_name, const char *cert_path, const char *key_path, bool say,
		      struct tt_err *err)
{
	char name[TT_NAME_MAX];
	uint8_t *chain = NULL, *key = NULL, *sealed = NULL;
	size_t chain_len = 0, key_len = 0, sealed_len = 0;
	struct certinfo ci = {0};
	char key_type[32];
	char *certs = NULL;
	size_t certs_len = 0;
	int rc = -1;
	bool in_savepoint = false;

	if (name_to_ascii(raw_name, name, err) < 0 || read_file(cert_path, false, &chain, &chain_len, err) < 0 ||
	    read_file(key_path, true, &key, &key_len, err) < 0)
		goto out;
	if (certinfo_certs_only((const char *)chain, chain_len, &certs, &certs_len, err) < 0) {
		tt_wrap(err, "%s", cert_path);
		goto out;
	}
	/* The file may be a combined cert+key PEM (HAProxy's format): keep its certificates only, and
	 * wipe the rest, which may hold a clear key. */
	sodium_memzero(chain, chain_len);
	free(chain);
	chain = (uint8_t *)certs;
	chain_len = certs_len;
	if (certinfo_parse((const char *)chain, chain_len, &ci, err) < 0) {
		tt_wrap(err, "%s", cert_path);
		goto out;
	}
	if (!certinfo_covers(&ci, name)) {
		tt_fail(err, "%s does not cover %s (no matching subjectAltName)", cert_path, name);
		goto out;
	}
	if (ci.not_after <= time(NULL)) {
		tt_fail(err, "%s has expired", cert_path);
		goto out;
	}
	if (certinfo_key_matches((const char *)chain, chain_len, key, key_len, err) < 0 ||
	    certinfo_key_type(key, key_len, key_type, sizeof(key_type), err) < 0)
		goto out;
	if (tt_db_run(im->db, err, "SAVEPOINT import_one", 0, NULL) < 0)
		goto out;
	in_savepoint = true;
	int64_t domain_id;
	enum domain_added added;
	if (store_domain_add(im->db, name, NULL, NULL, &domain_id, &added, err) < 0)
		goto out;
	int64_t cert_id = store_cert_next_id(im->db, err);
	if (cert_id < 0 || keystore_seal_cert(im->kr, name, cert_id, key, key_len, &sealed, &sealed_len, err) < 0)
		goto out;
	struct cert_new c = {
	    .id = cert_id,
	    .domain_id = domain_id,
	    .chain_pem = (const char *)chain,
	    .sealed_key = sealed,
	    .sealed_len = sealed_len,
	    .master_key_id = keystore_newest_id(im->kr),
	    .key_type = key_type,
	    .info = &ci,
	    .source = "import",
	    .renew_at = certinfo_renew_at(ci.not_before, ci.not_after),
	};
	if (store_cert_insert(im->db, &c, err) < 0 ||
	    tt_db_run(im->db, err, "RELEASE SAVEPOINT import_one", 0, NULL) < 0)
		goto out;
	in_savepoint = false;
	if (say)
		printf("imported %s cert_id=%" PRId64 " serial=%s%s\n", name, cert_id, ci.serial,
		       added == DOMAIN_ADDED ? " (domain added)" : "");
	rc = 0;
out:
	if (in_savepoint) {
		struct tt_err ignored;
		tt_db_run(im->db, &ignored, "ROLLBACK TO SAVEPOINT import_one", 0, NULL);
	}
	if (rc < 0)
		im->failed++;
	free(sealed);
	free(chain);
	if (key)
		tt_secret_free(key, key_len + 1);
	certinfo_free(&ci);
	return rc;
}

static int importer_open(struct issuer_ctx *ctx, struct importer *im, struct tt_err *err)
{
	/* The key ring first: opening it initialises libsodium, which read_file's locked memory needs. */
	if (issuer_keyring_open(ctx, &im->kr, err) < 0 || issuer_db_open(ctx, &im->db, err) < 0)
		return -1;
	return tt_db_begin(im->db, err);
}

static void importer_close(struct importer *im)
{
	tt_keyring_free(im->kr);
	if (im->db)
		PQfinish(im->db);
}

int cli_cert_import(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	const char *cert_path = issuer_opt(ctx, "cert"), *key_path = issuer_opt(ctx, "key");
	if (!cert_path || !key_path) {
		fprintf(stderr, "usage: issuer cert import NAME --cert CHAIN.pem --key KEY.pem\n");
		return 2;
	}
	struct importer im = {0};
	int rc = 2;
	if (importer_open(ctx, &im, &err) == 0 && import_one(&im, ctx->argv[0], cert_path, key_path, true, &err) == 0 &&
	    tt_db_commit(im.db, &err) == 0)
		rc = 0;
	if (rc)
		fprintf(stderr, "issuer: cert import %s: %s\n", ctx->argv[0], err.msg);
	importer_close(&im);
	return rc;
}

/* One `NAME CHAIN.pem KEY.pem` per line; blank lines and # comments are skipped. */
static int split_line(char *line, char *field[3])
{
	int n = 0;
	for (char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == 0 && tok[0] == '#')
			return 0;
		if (n == 3)
			return -1;
		field[n++] = tok;
	}
	return n == 0 ? 0 : n == 3 ? 3 : -1;
}

int cli_cert_import_batch(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	const char *list = ctx->argv[0];
	long batch;
	if (issuer_opt_int(ctx, "batch", &batch, &err) < 0 || batch < 1) {
		fprintf(stderr, "issuer cert import-batch: %s\n", batch < 1 ? "--batch must be at least 1" : err.msg);
		return 2;
	}
	FILE *in = strcmp(list, "-") == 0 ? stdin : fopen(list, "r");
	if (!in) {
		fprintf(stderr, "issuer cert import-batch: cannot open %s: %s\n", list, strerror(errno));
		return 2;
	}
	struct importer im = {0};
	if (importer_open(ctx, &im, &err) < 0) {
		fprintf(stderr, "issuer cert import-batch: %s\n", err.msg);
		goto fatal;
	}
	char *line = NULL;
	size_t cap = 0;
	long lineno = 0, pending = 0, committed = 0;
	bool db_ok = true;
	while (db_ok && getline(&line, &cap, in) >= 0) {
		lineno++;
		char *f[3];
		int n = split_line(line, f);
		if (n == 0)
			continue;
		if (n < 0) {
			im.failed++;
			fprintf(stderr, "issuer cert import-batch: %s:%ld: want NAME CHAIN.pem KEY.pem\n", list,
				lineno);
			continue;
		}
		if (import_one(&im, f[0], f[1], f[2], false, &err) < 0) {
			fprintf(stderr, "issuer cert import-batch: %s:%ld: %s: %s\n", list, lineno, f[0], err.msg);
			db_ok = PQstatus(im.db) == CONNECTION_OK; /* a lost connection fails every later line */
			continue;
		}
		if (++pending == batch) {
			db_ok = tt_db_commit(im.db, &err) == 0 && tt_db_begin(im.db, &err) == 0;
			if (db_ok) {
				committed += pending;
				pending = 0;
				tt_log(TT_INFO, "import_progress", "imported=%ld failed=%ld", committed, im.failed);
			}
		}
	}
	free(line);
	if (!db_ok || tt_db_commit(im.db, &err) < 0) {
		fprintf(stderr,
			"issuer cert import-batch: the database failed at %s:%ld: %s; %ld imported, the %ld since the "
			"last commit are not\n",
			list, lineno, err.msg, committed, pending);
		goto fatal;
	}
	committed += pending;
	printf("imported %ld, failed %ld\n", committed, im.failed);
	importer_close(&im);
	if (in != stdin)
		fclose(in);
	return im.failed ? 1 : 0;
fatal:
	importer_close(&im);
	if (in != stdin)
		fclose(in);
	return 2;
}

int revoke_current(const struct issuer_ctx *ctx, PGconn *db, const struct domain_row *d, int reason, struct tt_err *err)
{
	char cid[TT_DB_ID_TEXT], rs[16];
	tt_db_id_text(cid, d->current_cert_id);
	snprintf(rs, sizeof(rs), "%d", reason);
	const char *p[] = {cid, rs};
	PGresult *res;
	if (tt_db_exec(db, &res, err, "SELECT chain_pem, directory_url FROM certificates WHERE id = $1", 1, p) < 0)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return tt_fail(err, "%s has no current certificate", d->name);
	}
	struct tt_keyring *kr = NULL;
	struct ca_account s = {0};
	struct acme_client *c = NULL;
	struct jws_key *k = NULL;
	struct acme_problem prob = {0};
	int rc = -1;
	if (issuer_keyring_open(ctx, &kr, err) < 0 ||
	    account_open_client(ctx, db, kr, PQgetvalue(res, 0, 1), &s, &c, &k, err) < 0 ||
	    acme_revoke(c, PQgetvalue(res, 0, 0), reason, &prob, err) != ACME_OK)
		goto out;
	/* A revoked certificate is replaced at once, not inside a renewal window: no ARI id to ask about. */
	rc = tt_db_run(
	    db, err, "UPDATE certificates SET revoked_at = now(), revoke_reason = $2, ari_cert_id = NULL WHERE id = $1",
	    2, p);
	if (rc == 0)
		tt_log(TT_INFO, "cert_revoked", "name=%s cert_id=%s reason=%d", d->name, cid, reason);
out:
	acme_problem_clear(&prob);
	acme_client_free(c);
	jws_key_free(k);
	account_close(&s);
	tt_keyring_free(kr);
	PQclear(res);
	return rc;
}

/* RFC 5280 CRLReason keyCompromise. */
#define REASON_KEY_COMPROMISE 1

/* After `issuer revoke`: the domain is due at once, so the next run replaces the certificate. With
 * keyCompromise the certificate is withdrawn now: its sealed key destroyed and the domain left
 * without a current certificate, which raises the tracktls_cert notification on which every
 * terminator drops it from its cache (and its load query needs a sealed key). */
static int replace_revoked(PGconn *db, const struct domain_row *d, int reason, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT], cid[TT_DB_ID_TEXT];
	tt_db_id_text(did, d->id);
	tt_db_id_text(cid, d->current_cert_id);
	const char *p[] = {did, cid};
	int rc;
	if (reason != REASON_KEY_COMPROMISE)
		return tt_db_run(
		    db, err, "UPDATE domains SET next_attempt_at = now() WHERE id = $1 AND current_cert_id = $2", 2, p);
	if (tt_db_begin(db, err) < 0)
		return -1;
	rc = tt_db_run(db, err, "UPDATE certificates SET sealed_key = NULL WHERE id = $2 AND domain_id = $1", 2, p);
	if (rc == 0)
		rc = tt_db_run(db, err,
			       "UPDATE domains SET current_cert_id = NULL, next_attempt_at = now(),"
			       " state = CASE WHEN state = 'active' THEN 'pending' ELSE state END"
			       " WHERE id = $1 AND current_cert_id = $2",
			       2, p);
	if (rc == 0)
		rc = tt_db_commit(db, err);
	if (rc < 0)
		tt_db_rollback(db);
	else
		tt_log(TT_WARN, "cert_withdrawn", "name=%s cert_id=%s reason=keyCompromise", d->name, cid);
	return rc;
}

int cli_revoke(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	char name[TT_NAME_MAX];
	long reason;
	if (name_to_ascii(ctx->argv[0], name, &err) < 0 || issuer_opt_int(ctx, "reason", &reason, &err) < 0) {
		fprintf(stderr, "issuer revoke: %s\n", err.msg);
		return 2;
	}
	if (reason > 10 || reason == 7) {
		fprintf(stderr, "issuer revoke: --reason must be an RFC 5280 reason code (0-6, 8-10)\n");
		return 2;
	}
	PGconn *db;
	if (issuer_db_open(ctx, &db, &err) < 0) {
		fprintf(stderr, "issuer revoke: cannot use the database: %s\n", err.msg);
		return 2;
	}
	struct domain_row d;
	int found = store_domain_find(db, name, &d, &err), rc = 1;
	if (found < 0)
		fprintf(stderr, "issuer revoke: %s\n", err.msg);
	else if (!found || !d.current_cert_id)
		fprintf(stderr, "issuer revoke: %s has no current certificate\n", name);
	else if (revoke_current(ctx, db, &d, (int)reason, &err) < 0)
		fprintf(stderr, "issuer revoke: %s: %s\n", name, err.msg);
	else if (replace_revoked(db, &d, (int)reason, &err) < 0)
		fprintf(stderr, "issuer revoke: %s: revoked at the CA, but not marked for replacement: %s\n", name,
			err.msg);
	else {
		printf("revoked %s cert_id=%" PRId64 "%s; the next run replaces it\n", name, d.current_cert_id,
		       reason == REASON_KEY_COMPROMISE ? ", withdrawn from the terminators" : "");
		rc = 0;
	}
	PQfinish(db);
	return rc;
}
