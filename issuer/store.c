/* store: the domain and certificate rows that several commands and the run share: add, find,
 * remove, list, storing a certificate with its sealed key, and the run's view of them: claiming a
 * due domain (the due_domains view), rescheduling it, the preflight's streak, failure events. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

#define ZULU "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"

int store_domain_add(PGconn *db, const char *name, const char *owner, const char *profile, int64_t *id,
		     enum domain_added *outcome, struct tt_err *err)
{
	const char *p[] = {name, owner, profile};
	PGresult *res;
	/* Inside a caller's transaction (cert import) the event rides on it; alone, it gets its own. */
	bool own = PQtransactionStatus(db) == PQTRANS_IDLE;
	if (own && tt_db_begin(db, err) < 0)
		return -1;
	/* Adding a removed or paused domain again is how its owner brings it back: it starts over
	 * (due now, no failures, no reason), its history kept. */
	if (tt_db_exec(db, &res, err,
		       "WITH old AS (SELECT state FROM domains WHERE name = $1) "
		       "INSERT INTO domains (name, owner, profile) VALUES ($1, $2, $3) "
		       "ON CONFLICT (name) DO UPDATE SET "
		       " owner = COALESCE(EXCLUDED.owner, domains.owner),"
		       " profile = COALESCE(EXCLUDED.profile, domains.profile),"
		       " state = CASE WHEN domains.state NOT IN ('removed', 'paused') THEN domains.state"
		       "  WHEN domains.current_cert_id IS NULL THEN 'pending' ELSE 'active' END,"
		       " failures = CASE WHEN domains.state IN ('removed', 'paused') THEN 0 ELSE domains.failures END,"
		       " next_attempt_at = CASE WHEN domains.state IN ('removed', 'paused') THEN now()"
		       "  ELSE domains.next_attempt_at END,"
		       " last_error_type = CASE WHEN domains.state IN ('removed', 'paused') THEN NULL"
		       "  ELSE domains.last_error_type END,"
		       " last_error_detail = CASE WHEN domains.state IN ('removed', 'paused') THEN NULL"
		       "  ELSE domains.last_error_detail END,"
		       " removed_at = NULL "
		       "RETURNING id, (xmax = 0), COALESCE((SELECT state FROM old), '')",
		       3, p) < 0) {
		if (own)
			tt_db_rollback(db);
		return -1;
	}
	*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	const char *old = PQgetvalue(res, 0, 2);
	*outcome = PQgetvalue(res, 0, 1)[0] == 't'			       ? DOMAIN_ADDED
		   : strcmp(old, "removed") == 0 || strcmp(old, "paused") == 0 ? DOMAIN_RESUMED
									       : DOMAIN_EXISTS;
	PQclear(res);
	if ((*outcome != DOMAIN_EXISTS &&
	     store_event(db, *id, *outcome == DOMAIN_ADDED ? "added" : "resumed", NULL, err) < 0) ||
	    (own && tt_db_commit(db, err) < 0)) {
		if (own)
			tt_db_rollback(db);
		return -1;
	}
	return 0;
}

int store_domain_find(PGconn *db, const char *name, struct domain_row *out, struct tt_err *err)
{
	const char *p[] = {name};
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "SELECT id, name, state, COALESCE(current_cert_id, 0) FROM domains WHERE name = $1", 1, p) < 0)
		return -1;
	int found = PQntuples(res) > 0;
	if (found) {
		memset(out, 0, sizeof(*out));
		out->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(res, 0, 1));
		snprintf(out->state, sizeof(out->state), "%s", PQgetvalue(res, 0, 2));
		out->current_cert_id = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	}
	PQclear(res);
	return found;
}

int store_domain_remove(PGconn *db, int64_t domain_id, struct tt_err *err)
{
	char id[TT_DB_ID_TEXT];
	tt_db_id_text(id, domain_id);
	const char *p[] = {id};
	if (tt_db_begin(db, err) < 0)
		return -1;
	if (tt_db_run(db, err, "UPDATE certificates SET sealed_key = NULL WHERE domain_id = $1", 1, p) < 0 ||
	    tt_db_run(db, err, "DELETE FROM challenges WHERE domain_id = $1", 1, p) < 0 ||
	    tt_db_run(db, err,
		      "UPDATE domains SET state = 'removed', removed_at = now(), current_cert_id = NULL, "
		      "served_cert_id = NULL"
		      " WHERE id = $1",
		      1, p) < 0 ||
	    store_event(db, domain_id, "removed", NULL, err) < 0 || tt_db_commit(db, err) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	return 0;
}

int store_domain_json(PGconn *db, const char *name, const char *state, json_t **out, struct tt_err *err)
{
	const char *p[] = {name, state};
	PGresult *res;
	/* Exactly the view's columns: what the platform reads is what the operator sees. */
	if (tt_db_exec(
		db, &res, err,
		"SELECT COALESCE(json_agg(s ORDER BY s.name), '[]') FROM (SELECT name, owner, state, https_ready,"
		" reason, detail, serial, to_char(not_after AT TIME ZONE 'UTC', " ZULU ") AS not_after,"
		" to_char(renew_at AT TIME ZONE 'UTC', " ZULU ") AS renew_at,"
		" to_char(since AT TIME ZONE 'UTC', " ZULU ") AS since FROM domain_status"
		" WHERE CASE WHEN $1::text IS NULL THEN state <> 'removed' ELSE name = $1 END"
		"  AND ($2::text IS NULL OR state = $2)) s",
		2, p) < 0)
		return -1;
	json_error_t jerr;
	*out = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	PQclear(res);
	return *out ? 0 : tt_fail(err, "bad JSON from the database: %s", jerr.text);
}

int store_event(PGconn *db, int64_t domain_id, const char *kind, const char *detail, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	const char *p[] = {did, kind, detail};
	return tt_db_run(db, err, "SELECT tracktls_domain_event($1, $2, $3)", 3, p);
}

int store_note_error(PGconn *db, int64_t domain_id, const char *type, const char *detail, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	const char *p[] = {did, type, detail};
	return tt_db_run(db, err,
			 "UPDATE domains SET last_error_type = $2, last_error_detail = $3, last_error_at = now()"
			 " WHERE id = $1 AND state <> 'removed'",
			 3, p);
}

int store_served(PGconn *db, int64_t domain_id, int64_t cert_id, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT], cid[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	tt_db_id_text(cid, cert_id);
	const char *p[] = {did, cid};
	PGresult *res;
	if (tt_db_begin(db, err) < 0)
		return -1;
	/* SKIP LOCKED: a run holding the row is ordering for it; the next check will see the outcome. */
	if (tt_db_exec(db, &res, err,
		       "SELECT served_cert_id IS NOT NULL FROM domains WHERE id = $1 AND current_cert_id = $2"
		       " AND served_cert_id IS DISTINCT FROM $2 AND state <> 'removed' FOR NO KEY UPDATE SKIP LOCKED",
		       2, p) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	int n = PQntuples(res);
	bool renewed = n && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	if (n == 0) {
		tt_db_rollback(db);
		return 0;
	}
	if (tt_db_run(db, err, "UPDATE domains SET served_cert_id = $2, served_checked_at = now() WHERE id = $1", 2,
		      p) < 0 ||
	    store_event(db, domain_id, renewed ? "renewed" : "https_ready", NULL, err) < 0 ||
	    tt_db_commit(db, err) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	return 1;
}

int64_t store_cert_next_id(PGconn *db, struct tt_err *err)
{
	PGresult *res;
	if (tt_db_exec(db, &res, err, "SELECT nextval('certificates_id_seq')", 0, NULL) < 0)
		return -1;
	int64_t id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return id;
}

int store_cert_insert(PGconn *db, const struct cert_new *c, struct tt_err *err)
{
	char id[TT_DB_ID_TEXT], did[TT_DB_ID_TEXT], mk[16], nb[24], na[24], ra[24], aid[TT_DB_ID_TEXT];
	tt_db_id_text(id, c->id);
	tt_db_id_text(did, c->domain_id);
	snprintf(mk, sizeof(mk), "%u", c->master_key_id);
	snprintf(nb, sizeof(nb), "%lld", (long long)c->info->not_before);
	snprintf(na, sizeof(na), "%lld", (long long)c->info->not_after);
	snprintf(ra, sizeof(ra), "%lld", (long long)c->renew_at);
	tt_db_id_text(aid, c->attempt_id);
	char *sealed = tt_db_bytea_param(c->sealed_key, c->sealed_len);
	if (!sealed)
		return tt_fail(err, "out of memory");
	const char *p[] = {id,
			   did,
			   c->chain_pem,
			   sealed,
			   mk,
			   c->key_type,
			   c->info->serial,
			   nb,
			   na,
			   c->info->ari_id[0] ? c->info->ari_id : NULL,
			   c->source,
			   c->directory};
	int rc = tt_db_run(db, err,
			   "INSERT INTO certificates (id, domain_id, chain_pem, sealed_key, master_key_id, key_type,"
			   " serial, not_before, not_after, ari_cert_id, source, replaces_id, directory_url)"
			   " VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8), to_timestamp($9), $10, $11,"
			   " (SELECT current_cert_id FROM domains WHERE id = $2), $12)",
			   12, p);
	free(sealed);
	if (rc < 0)
		return -1;
	const char *q[] = {id, did, ra};
	if (tt_db_run(db, err,
		      "UPDATE domains SET current_cert_id = $1, state = 'active', failures = 0,"
		      " last_error_type = NULL, last_error_detail = NULL, last_error_at = NULL,"
		      " preflight_failing_since = NULL,"
		      " next_attempt_at = to_timestamp($3) WHERE id = $2",
		      3, q) < 0)
		return -1;
	if (c->attempt_id) {
		const char *a[] = {aid};
		if (tt_db_run(db, err,
			      "UPDATE issuance_attempts SET state = 'valid', finished_at = now() WHERE id = $1", 1,
			      a) < 0)
			return -1;
	}
	if (tt_db_run(db, err, "DELETE FROM challenges WHERE domain_id = $1", 1, q + 1) < 0)
		return -1;
	/* A first certificate is news at once; a renewal only once the edge serves it (renewed). */
	PGresult *res;
	if (tt_db_exec(db, &res, err, "SELECT replaces_id IS NULL FROM certificates WHERE id = $1", 1, q) < 0)
		return -1;
	bool first = PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return first ? store_event(db, c->domain_id, "issued", NULL, err) : 0;
}

int store_due_claim(PGconn *db, const char *due_by, struct due_claim *out, struct tt_err *err)
{
	const char *p[] = {due_by};
	PGresult *res;
	/* Due as of due_by (the pass's start): a domain this run put off (CA trouble) is not taken twice. */
	if (tt_db_exec(db, &res, err,
		       "SELECT d.id, d.name, COALESCE(d.current_cert_id, 0), COALESCE(d.profile, ''),"
		       " COALESCE(c.ari_cert_id, ''), COALESCE(c.directory_url, ''), d.state = 'dormant'"
		       " FROM due_domains d LEFT JOIN certificates c ON c.id = d.current_cert_id"
		       " WHERE d.next_attempt_at <= $1::timestamptz"
		       " ORDER BY d.next_attempt_at LIMIT 1 FOR NO KEY UPDATE OF d SKIP LOCKED",
		       1, p) < 0)
		return -1;
	int n = PQntuples(res);
	if (n) {
		out->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(res, 0, 1));
		out->current_cert_id = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		snprintf(out->profile, sizeof(out->profile), "%s", PQgetvalue(res, 0, 3));
		snprintf(out->ari_id, sizeof(out->ari_id), "%s", PQgetvalue(res, 0, 4));
		snprintf(out->directory, sizeof(out->directory), "%s", PQgetvalue(res, 0, 5));
		out->dormant = PQgetvalue(res, 0, 6)[0] == 't';
	}
	PQclear(res);
	return n > 0;
}

int store_domain_relock(PGconn *db, int64_t domain_id, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	const char *p[] = {did};
	PGresult *res;
	if (tt_db_exec(db, &res, err, "SELECT id FROM domains WHERE id = $1 FOR NO KEY UPDATE SKIP LOCKED", 1, p) < 0)
		return -1;
	int n = PQntuples(res);
	PQclear(res);
	return n > 0;
}

int store_due_now(PGconn *db, char *now, size_t size, bool *any, struct tt_err *err)
{
	PGresult *res;
	if (tt_db_exec(db, &res, err, "SELECT now()::text, EXISTS (SELECT 1 FROM due_domains)", 0, NULL) < 0)
		return -1;
	snprintf(now, size, "%s", PQgetvalue(res, 0, 0));
	if (any)
		*any = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	return 0;
}

int store_due_each(PGconn *db, void (*each)(const char *name, const char *kind, void *arg), void *arg,
		   struct tt_err *err)
{
	PGresult *res;
	if (tt_db_exec(db, &res, err, "SELECT name, kind FROM due_domains ORDER BY next_attempt_at", 0, NULL) < 0)
		return -1;
	int n = PQntuples(res);
	for (int i = 0; i < n; i++)
		each(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), arg);
	PQclear(res);
	return n;
}

int store_domain_retry_at(PGconn *db, int64_t domain_id, time_t at, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT], ts[24];
	tt_db_id_text(did, domain_id);
	snprintf(ts, sizeof(ts), "%lld", (long long)at);
	const char *p[] = {did, ts};
	return tt_db_run(db, err,
			 "UPDATE domains SET next_attempt_at = CASE WHEN $2::bigint = 0 THEN now()"
			 " ELSE to_timestamp($2::bigint) END WHERE id = $1",
			 2, p);
}

int store_domain_set_profile(PGconn *db, int64_t domain_id, const char *profile, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	const char *p[] = {did, profile};
	return tt_db_run(db, err, "UPDATE domains SET profile = $2 WHERE id = $1", 2, p);
}

int store_preflight_passed(PGconn *db, int64_t domain_id, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	const char *p[] = {did};
	return tt_db_run(db, err,
			 "UPDATE domains SET preflight_failing_since = NULL, state = CASE WHEN state <> 'dormant'"
			 " THEN state WHEN current_cert_id IS NULL THEN 'pending' ELSE 'active' END"
			 " WHERE id = $1 AND (preflight_failing_since IS NOT NULL OR state = 'dormant')",
			 1, p);
}

int store_failure_events(PGconn *db, int64_t domain_id, struct tt_err *err)
{
	char did[TT_DB_ID_TEXT];
	tt_db_id_text(did, domain_id);
	const char *p[] = {did};
	PGresult *res;
	if (tt_db_exec(db, &res, err,
		       "SELECT s.state, s.state = 'expiring' AND NOT EXISTS (SELECT 1 FROM domain_events e"
		       "  WHERE e.name = d.name AND e.kind = 'expiring' AND e.at >= c.created_at)"
		       " FROM domains d JOIN domain_status s ON s.name = d.name"
		       " LEFT JOIN certificates c ON c.id = d.current_cert_id WHERE d.id = $1",
		       1, p) < 0)
		return -1;
	bool paused = strcmp(PQgetvalue(res, 0, 0), "paused") == 0, expiring = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	if (store_event(db, domain_id, "failed", NULL, err) < 0 ||
	    (paused && store_event(db, domain_id, "paused", NULL, err) < 0) ||
	    (expiring && store_event(db, domain_id, "expiring", NULL, err) < 0))
		return -1;
	return 0;
}
