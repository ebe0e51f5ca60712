/* ticket_keys: creation, retirement and loading of the fleet's sealed session-ticket keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common.h"

#define ROTATE_LOCK_KEY "7283530184420192"

static int seal_and_insert(PGconn *conn, const struct tt_keyring *kr, const char *start_expr,
			   const struct tt_ticket_policy *p, struct tt_err *err)
{
	PGresult *r;
	if (tt_db_exec(conn, &r, err, "SELECT nextval('ticket_keys_id_seq')", 0, NULL) != 0)
		return -1;
	int64_t id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	uint8_t *material = sodium_malloc(TT_TICKET_NAME_BYTES + TT_TICKET_SECRET_BYTES);
	if (!material)
		return tt_fail(err, "out of locked memory");
	randombytes_buf(material, TT_TICKET_NAME_BYTES + TT_TICKET_SECRET_BYTES);
	char aad[64];
	size_t al = tt_envelope_aad_ticket(aad, sizeof(aad), id);
	uint8_t *blob = NULL;
	size_t bloblen = 0;
	int rc = tt_envelope_seal(kr, aad, al, material, TT_TICKET_NAME_BYTES + TT_TICKET_SECRET_BYTES, &blob, &bloblen,
				  err);
	sodium_free(material);
	if (rc != 0)
		return -1;
	char ids[24], kid[16], rot[24], life[24];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	snprintf(kid, sizeof(kid), "%u", tt_keyring_newest_id(kr));
	snprintf(rot, sizeof(rot), "%lld", (long long)p->rotate_s);
	snprintf(life, sizeof(life), "%lld", (long long)p->lifetime_s);
	char *hex = tt_db_bytea_param(blob, bloblen);
	free(blob);
	if (!hex)
		return tt_fail(err, "out of memory");
	char sql[512];
	snprintf(sql, sizeof(sql),
		 "WITH s AS (SELECT %s AS start) "
		 "INSERT INTO ticket_keys (id, sealed_key, master_key_id, created_at, encrypt_until, decrypt_until) "
		 "SELECT $1, $2::bytea, $3, s.start, s.start + make_interval(secs => $4), "
		 "s.start + make_interval(secs => $4) + make_interval(secs => $5) FROM s",
		 start_expr);
	const char *params[] = {ids, hex, kid, rot, life};
	rc = tt_db_run(conn, err, sql, 5, params);
	free(hex);
	return rc;
}

int tt_ticket_keys_rotate(PGconn *conn, const struct tt_keyring *kr, const struct tt_ticket_policy *policy,
			  int *created, int *retired, struct tt_err *err)
{
	*created = *retired = 0;
	if (tt_db_begin(conn, err) != 0)
		return -1;
	/* Several issuer hosts run at once: one of them rotates, the others see its result. */
	PGresult *r = NULL;
	if (tt_db_run(conn, err, "SELECT pg_advisory_xact_lock(" ROTATE_LOCK_KEY ")", 0, NULL) != 0 ||
	    tt_db_exec(
		conn, &r, err,
		"WITH d AS (DELETE FROM ticket_keys WHERE decrypt_until < now() RETURNING 1) SELECT count(*) FROM d", 0,
		NULL) != 0)
		goto fail;
	*retired = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	char lead[24];
	snprintf(lead, sizeof(lead), "%lld", (long long)policy->lead_s);
	const char *lp[] = {lead};
	if (tt_db_exec(conn, &r, err,
		       "SELECT max(encrypt_until) IS NULL OR max(encrypt_until) < now() + make_interval(secs => $1), "
		       "max(encrypt_until) IS NULL OR max(encrypt_until) < now() FROM ticket_keys",
		       1, lp) != 0)
		goto fail;
	bool need = PQgetvalue(r, 0, 0)[0] == 't';
	bool none_current = PQgetvalue(r, 0, 1)[0] == 't';
	PQclear(r);
	if (need) {
		/* The next key starts where the newest one stops encrypting, so hosts hold it before use;
		 * with no usable key at all, start now. */
		const char *start = none_current ? "now()" : "(SELECT max(encrypt_until) FROM ticket_keys)";
		if (seal_and_insert(conn, kr, start, policy, err) != 0)
			goto fail;
		*created = 1;
	}
	if (tt_db_commit(conn, err) != 0)
		goto fail;
	return 0;
fail:
	tt_db_rollback(conn);
	return -1;
}

void tt_ticket_keys_free(struct tt_ticket_key *keys, size_t count)
{
	(void)count;
	sodium_free(keys);
}

int tt_ticket_keys_load(PGconn *conn, const struct tt_keyring *kr, struct tt_ticket_key **keys, size_t *count,
			struct tt_err *err)
{
	PGresult *r;
	/* Whole seconds rounded down: a key created during this second must encrypt now, not in a moment. */
	if (tt_db_exec(conn, &r, err,
		       "SELECT id, sealed_key, floor(extract(epoch FROM created_at))::bigint, floor(extract(epoch FROM "
		       "encrypt_until))::bigint, "
		       "floor(extract(epoch FROM decrypt_until))::bigint FROM ticket_keys WHERE decrypt_until > now() "
		       "ORDER BY created_at, id",
		       0, NULL) != 0)
		return -1;
	int n = PQntuples(r);
	struct tt_ticket_key *out = sodium_malloc((size_t)(n ? n : 1) * sizeof(*out));
	if (!out) {
		PQclear(r);
		return tt_fail(err, "out of locked memory");
	}
	size_t got = 0;
	for (int i = 0; i < n; i++) {
		struct tt_ticket_key *k = &out[got];
		k->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		k->start = strtoll(PQgetvalue(r, i, 2), NULL, 10);
		k->encrypt_until = strtoll(PQgetvalue(r, i, 3), NULL, 10);
		k->decrypt_until = strtoll(PQgetvalue(r, i, 4), NULL, 10);
		uint8_t *blob = NULL, *plain = NULL;
		size_t bloblen = 0, plainlen = 0;
		char aad[64];
		size_t al = tt_envelope_aad_ticket(aad, sizeof(aad), k->id);
		struct tt_err e;
		if (tt_db_bytea(r, i, 1, &blob, &bloblen, &e) != 0 ||
		    tt_envelope_open(kr, aad, al, blob, bloblen, &plain, &plainlen, &e) != 0 ||
		    plainlen != TT_TICKET_NAME_BYTES + TT_TICKET_SECRET_BYTES) {
			/* One bad row must not take resumption down: skip it, loudly. */
			char q[TT_LOG_QUOTED_MAX];
			tt_log(TT_ERROR, "ticket_key_unusable", "id=%lld error=%s", (long long)k->id,
			       tt_log_quote(q, sizeof(q), plain ? "wrong length" : e.msg));
			free(blob);
			if (plain)
				tt_secret_free(plain, plainlen);
			continue;
		}
		memcpy(k->name, plain, TT_TICKET_NAME_BYTES);
		memcpy(k->secret, plain + TT_TICKET_NAME_BYTES, TT_TICKET_SECRET_BYTES);
		tt_secret_free(plain, plainlen);
		free(blob);
		got++;
	}
	PQclear(r);
	*keys = out;
	*count = got;
	return 0;
}
