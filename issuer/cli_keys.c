/* cli_keys: the master key ring: `keys generate` adds a key, `keys rotate` re-seals every stored
 * private key under the newest one, in small transactions so an interrupted rotation resumes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

int cli_keys_generate(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	const char *path = issuer_opt(ctx, "master-key-file");
	uint32_t id;
	if (tt_keyring_generate(path, &id, &err) < 0) {
		fprintf(stderr, "issuer: %s\n", err.msg);
		return 2;
	}
	printf("master key %u added to %s\n", id, path);
	return 0;
}

static const char *const kind_names[] = {
    [KEYSTORE_CERT] = "cert", [KEYSTORE_ACCOUNT] = "account", [KEYSTORE_TICKET] = "ticket"};

/* One batch of one table's re-sealing. Returns rows done or -1. */
static long reseal_batch(PGconn *db, const struct tt_keyring *kr, enum keystore_kind kind, long batch,
			 struct tt_err *err)
{
	static const char *const select_sql[] = {
	    [KEYSTORE_CERT] =
		"SELECT c.id, d.name, c.sealed_key FROM certificates c JOIN domains d ON d.id = c.domain_id"
		" WHERE c.sealed_key IS NOT NULL AND c.master_key_id <> $1::int ORDER BY c.id LIMIT $2"
		" FOR UPDATE OF c SKIP LOCKED",
	    [KEYSTORE_ACCOUNT] =
		"SELECT id, directory_url, sealed_key FROM acme_accounts WHERE master_key_id <> $1::int"
		" ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
	    [KEYSTORE_TICKET] = "SELECT id, '', sealed_key FROM ticket_keys WHERE master_key_id <> $1::int"
				" ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
	};
	static const char *const update_sql[] = {
	    [KEYSTORE_CERT] = "UPDATE certificates SET sealed_key = $2, master_key_id = $3 WHERE id = $1",
	    [KEYSTORE_ACCOUNT] = "UPDATE acme_accounts SET sealed_key = $2, master_key_id = $3 WHERE id = $1",
	    [KEYSTORE_TICKET] = "UPDATE ticket_keys SET sealed_key = $2, master_key_id = $3 WHERE id = $1",
	};
	char newest[16], lim[24];
	snprintf(newest, sizeof(newest), "%u", keystore_newest_id(kr));
	snprintf(lim, sizeof(lim), "%ld", batch);
	const char *p[] = {newest, lim};
	PGresult *res;
	if (tt_db_begin(db, err) < 0)
		return -1;
	if (tt_db_exec(db, &res, err, select_sql[kind], 2, p) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	long n = PQntuples(res), done = 0;
	for (long i = 0; i < n; i++) {
		int64_t id = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
		const char *label = PQgetvalue(res, (int)i, 1);
		uint8_t *blob = NULL, *sealed = NULL;
		size_t blob_len, sealed_len;
		int rc = tt_db_bytea(res, (int)i, 2, &blob, &blob_len, err);
		if (rc == 0)
			rc = keystore_reseal(kr, kind, label, id, blob, blob_len, &sealed, &sealed_len, err);
		free(blob);
		char *b = rc == 0 ? tt_db_bytea_param(sealed, sealed_len) : NULL;
		free(sealed);
		char ids[TT_DB_ID_TEXT];
		tt_db_id_text(ids, id);
		const char *u[] = {ids, b, newest};
		if (rc == 0)
			rc = b ? tt_db_run(db, err, update_sql[kind], 3, u) : tt_fail(err, "out of memory");
		free(b);
		if (rc < 0) {
			PQclear(res);
			tt_db_rollback(db);
			return tt_wrap(err, "%s %" PRId64, kind_names[kind], id);
		}
		done++;
	}
	PQclear(res);
	return tt_db_commit(db, err) < 0 ? -1 : done;
}

int cli_keys_rotate(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	long batch;
	if (issuer_opt_int(ctx, "batch", &batch, &err) < 0 || batch < 1) {
		fprintf(stderr, "issuer keys rotate: %s\n", batch < 1 ? "--batch must be at least 1" : err.msg);
		return 2;
	}
	PGconn *db = NULL;
	struct tt_keyring *kr = NULL;
	if (issuer_keyring_open(ctx, &kr, &err) < 0 || issuer_db_open(ctx, &db, &err) < 0) {
		fprintf(stderr, "issuer keys rotate: %s\n", err.msg);
		tt_keyring_free(kr);
		return 2;
	}
	long total[3] = {0};
	int rc = 0;
	for (enum keystore_kind k = KEYSTORE_CERT; k <= KEYSTORE_TICKET && rc == 0; k++) {
		for (;;) {
			long n = reseal_batch(db, kr, k, batch, &err);
			if (n < 0) {
				fprintf(stderr, "issuer keys rotate: %s (rerun to resume)\n", err.msg);
				rc = 2;
				break;
			}
			if (n == 0)
				break;
			total[k] += n;
			tt_log(TT_INFO, "keys_resealed", "kind=%s rows=%ld total=%ld", kind_names[k], n, total[k]);
		}
	}
	if (rc == 0)
		printf("re-sealed under master key %u: %ld certificate keys, %ld account keys, %ld ticket keys\n",
		       keystore_newest_id(kr), total[KEYSTORE_CERT], total[KEYSTORE_ACCOUNT], total[KEYSTORE_TICKET]);
	tt_keyring_free(kr);
	PQfinish(db);
	return rc;
}
