/* db_migrate: applies the schema migrations compiled in from schema/, once each, in order. */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

/* Any 64-bit constant works; it only has to be the same for every binary and host. */
#define MIGRATE_LOCK_KEY "7283530184420191"

int tt_schema_version_latest(void)
{
	int v = 0;
	for (int i = 0; i < tt_migrations_count; i++)
		if (tt_migrations[i].version > v)
			v = tt_migrations[i].version;
	return v;
}

static int current_version(PGconn *conn, int *version, struct tt_err *err)
{
	PGresult *r;
	if (tt_db_exec(conn, &r, err, "SELECT to_regclass('tracktls_migrations') IS NOT NULL", 0, NULL) != 0)
		return -1;
	bool exists = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (!exists) {
		*version = 0;
		return 0;
	}
	if (tt_db_exec(conn, &r, err, "SELECT COALESCE(max(version), 0) FROM tracktls_migrations", 0, NULL) != 0)
		return -1;
	*version = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}

int tt_db_check_schema(PGconn *conn, int *version, struct tt_err *err)
{
	if (current_version(conn, version, err) != 0)
		return -1;
	int latest = tt_schema_version_latest();
	if (*version > latest)
		return tt_fail(err, "database schema is version %d, newer than this binary's %d: upgrade tracktls",
			       *version, latest);
	if (*version < latest)
		return tt_fail(err, "database schema is version %d, this binary needs %d: run 'issuer db migrate'",
			       *version, latest);
	return 0;
}

static int apply_one(PGconn *conn, const struct migration *m, struct tt_err *err)
{
	char ver[16];
	snprintf(ver, sizeof(ver), "%d", m->version);
	const char *params[] = {ver, m->name};
	if (tt_db_begin(conn, err) != 0)
		return -1;
	/* A multi-statement script must go through the simple query protocol. */
	PGresult *r = PQexec(conn, m->sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		tt_fail(err, "migration %03d_%s failed: %s", m->version, m->name, PQresultErrorMessage(r));
		PQclear(r);
		tt_db_rollback(conn);
		return -1;
	}
	PQclear(r);
	if (tt_db_run(conn, err, "INSERT INTO tracktls_migrations (version, name) VALUES ($1, $2)", 2, params) != 0 ||
	    tt_db_commit(conn, err) != 0) {
		tt_db_rollback(conn);
		return -1;
	}
	return 0;
}

int tt_db_migrate(PGconn *conn, int *applied, struct tt_err *err)
{
	*applied = 0;
	/* Several issuer hosts may run migrate at once: one does the work, the others wait and see it done. */
	if (tt_db_run(conn, err, "SET client_min_messages = warning", 0, NULL) != 0 ||
	    tt_db_run(conn, err, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL) != 0)
		return -1;
	int rc = -1, version = 0;
	if (tt_db_run(
		conn, err,
		"CREATE TABLE IF NOT EXISTS tracktls_migrations (version integer PRIMARY KEY, name text NOT NULL, "
		"applied_at timestamptz NOT NULL DEFAULT now())",
		0, NULL) != 0 ||
	    current_version(conn, &version, err) != 0)
		goto out;
	if (version > tt_schema_version_latest()) {
		tt_fail(err, "database schema is version %d, newer than this binary's %d: refusing to touch it",
			version, tt_schema_version_latest());
		goto out;
	}
	for (int i = 0; i < tt_migrations_count; i++) {
		if (tt_migrations[i].version <= version)
			continue;
		if (apply_one(conn, &tt_migrations[i], err) != 0)
			goto out;
		tt_log(TT_INFO, "migration_applied", "version=%d name=%s", tt_migrations[i].version,
		       tt_migrations[i].name);
		(*applied)++;
	}
	rc = 0;
out:
	tt_db_run(conn, NULL, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL);
	return rc;
}
