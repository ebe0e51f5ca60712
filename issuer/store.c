/* store: the domain and certificate rows that several commands and the run share: add, find,
 * remove, list, and storing a certificate with its sealed key. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

#define UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

int store_domain_add(PGconn *db, const char *name, const char *owner, const char *profile, int64_t *id,
		     enum domain_added *outcome, struct tt_err *err)
{
	const char *p[] = {name, owner, profile};
	PGresult *res;
	/* Adding a removed or paused domain again is how its owner brings it back: it starts over
	 * (due now, no failures), its history kept. */
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
		       " removed_at = NULL "
		       "RETURNING id, (xmax = 0), COALESCE((SELECT state FROM old), '')",
		       3, p) < 0)
		return -1;
	*id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	const char *old = PQgetvalue(res, 0, 2);
	*outcome = PQgetvalue(res, 0, 1)[0] == 't'			       ? DOMAIN_ADDED
		   : strcmp(old, "removed") == 0 || strcmp(old, "paused") == 0 ? DOMAIN_RESUMED
									       : DOMAIN_EXISTS;
	PQclear(res);
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
	char id[24];
	snprintf(id, sizeof(id), "%" PRId64, domain_id);
	const char *p[] = {id};
	if (tt_db_begin(db, err) < 0)
		return -1;
	if (tt_db_run(db, err, "UPDATE certificates SET sealed_key = NULL WHERE domain_id = $1", 1, p) < 0 ||
	    tt_db_run(db, err, "DELETE FROM challenges WHERE domain_id = $1", 1, p) < 0 ||
	    tt_db_run(db, err,
		      "UPDATE domains SET state = 'removed', removed_at = now(), current_cert_id = NULL WHERE id = $1",
		      1, p) < 0 ||
	    tt_db_commit(db, err) < 0) {
		tt_db_rollback(db);
		return -1;
	}
	return 0;
}

int store_domain_json(PGconn *db, const char *name, const char *state, json_t **out, struct tt_err *err)
{
	const char *p[] = {name, state};
	PGresult *res;
	/* reason/detail: the code of the last failure (a preflight code, or the CA's problem type) and
	 * its fix, the names the platform shows. (clang-format cannot lay out the UTC() pieces.) */
	// clang-format off
	if (tt_db_exec(db, &res, err,
		       "SELECT COALESCE(json_agg(json_build_object("
		       " 'name', d.name, 'owner', d.owner, 'state', d.state, 'profile', d.profile,"
		       " 'cert_id', d.current_cert_id, 'serial', c.serial, 'source', c.source, 'key_type', c.key_type,"
		       " 'directory', c.directory_url,"
		       " 'not_before', " UTC("c.not_before") ", 'not_after', " UTC("c.not_after") ","
		       " 'next_attempt_at', " UTC("d.next_attempt_at") ", 'failures', d.failures,"
		       " 'last_error_type', d.last_error_type, 'last_error_detail', d.last_error_detail,"
		       " 'last_error_at', " UTC("d.last_error_at") ","
		       " 'reason', d.last_error_type, 'detail', d.last_error_detail,"
		       " 'preflight_failing_since', " UTC("d.preflight_failing_since") ","
		       " 'last_problem', (SELECT a.problem FROM issuance_attempts a"
		       "   WHERE a.domain_id = d.id AND a.state = 'failed' ORDER BY a.id DESC LIMIT 1),"
		       " 'added_at', " UTC("d.added_at") ") ORDER BY d.name), '[]')"
		       " FROM domains d LEFT JOIN certificates c ON c.id = d.current_cert_id"
		       " WHERE CASE WHEN $1::text IS NULL THEN d.state <> 'removed' ELSE d.name = $1 END"
		       "  AND ($2::text IS NULL OR d.state = $2)",
		       2, p) < 0)
		return -1;
	// clang-format on
	json_error_t jerr;
	*out = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
	PQclear(res);
	return *out ? 0 : tt_fail(err, "bad JSON from the database: %s", jerr.text);
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
	char id[24], did[24], mk[16], nb[24], na[24], ra[24], aid[24];
	snprintf(id, sizeof(id), "%" PRId64, c->id);
	snprintf(did, sizeof(did), "%" PRId64, c->domain_id);
	snprintf(mk, sizeof(mk), "%u", c->master_key_id);
	snprintf(nb, sizeof(nb), "%lld", (long long)c->info->not_before);
	snprintf(na, sizeof(na), "%lld", (long long)c->info->not_after);
	snprintf(ra, sizeof(ra), "%lld", (long long)c->renew_at);
	snprintf(aid, sizeof(aid), "%" PRId64, c->attempt_id);
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
	return tt_db_run(db, err, "DELETE FROM challenges WHERE domain_id = $1", 1, q + 1);
}
