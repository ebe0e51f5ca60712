/* Tests common/db_migrate.c against a real PostgreSQL: fresh database, rerun, failure, newer schema. */
#include "check.h"
#include "common.h"

static int count_rows(PGconn *c, const char *sql)
{
	PGresult *r;
	struct tt_err err;
	if (tt_db_exec(c, &r, &err, sql, 0, NULL) != 0)
		return -1;
	int n = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

int main(void)
{
	struct tt_err err = {{0}};
	PGconn *c = NULL;
	CHECK(tt_db_connect(check_test_db(), &c, &err) == 0, "connect to the test database");
	if (!c)
		CHECK_DONE();

	int version = -1, applied = -1;
	CHECK(tt_db_check_schema(c, &version, &err) != 0 && version == 0 && strstr(err.msg, "db migrate"),
	      "empty database is reported as needing migration");
	CHECK(tt_db_migrate(c, &applied, &err) == 0 && applied == tt_migrations_count, "fresh database gets every migration");
	CHECK(tt_db_check_schema(c, &version, &err) == 0 && version == tt_schema_version_latest(), "schema is current");
	CHECK(count_rows(c, "SELECT count(*) FROM pg_tables WHERE tablename IN "
			    "('domains','certificates','acme_accounts','challenges','issuance_attempts','ticket_keys')") == 6,
	      "the contract's tables exist");

	CHECK(tt_db_migrate(c, &applied, &err) == 0 && applied == 0, "second run applies nothing");
	CHECK(count_rows(c, "SELECT count(*) FROM tracktls_migrations") == tt_migrations_count,
	      "second run records nothing new");

	/* A failing migration must leave no trace: run one by hand the way tt_db_migrate does. */
	struct migration broken = {tt_schema_version_latest() + 1, "broken",
				   "CREATE TABLE half_done (x int); SELECT no_such_function();"};
	tt_db_run(c, &err, "BEGIN", 0, NULL);
	PGresult *r = PQexec(c, broken.sql);
	CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR, "broken migration fails");
	PQclear(r);
	tt_db_run(c, NULL, "ROLLBACK", 0, NULL);
	CHECK(count_rows(c, "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'") == 0,
	      "a failing migration leaves no table behind");

	tt_db_run(c, &err, "INSERT INTO tracktls_migrations (version, name) VALUES (9999, 'from_the_future')", 0, NULL);
	CHECK(tt_db_migrate(c, &applied, &err) != 0 && strstr(err.msg, "newer"), "a newer database is refused by migrate");
	CHECK(tt_db_check_schema(c, &version, &err) != 0 && version == 9999 && strstr(err.msg, "upgrade"),
	      "a newer database is refused by the schema check");

	/* NOTIFY contract: a certificate change reaches listeners with the domain name. */
	tt_db_run(c, &err, "DELETE FROM tracktls_migrations WHERE version = 9999", 0, NULL);
	CHECK(tt_db_run(c, &err, "LISTEN " TT_CHANNEL_CERT, 0, NULL) == 0, "listen on the certificate channel");
	tt_db_run(c, &err, "INSERT INTO domains (name) VALUES ('click.shop.example')", 0, NULL);
	tt_db_run(c, &err, "UPDATE domains SET state = 'active' WHERE name = 'click.shop.example'", 0, NULL);
	PQconsumeInput(c);
	PGnotify *n = PQnotifies(c);
	CHECK(n && strcmp(n->relname, TT_CHANNEL_CERT) == 0 && strcmp(n->extra, "click.shop.example") == 0,
	      "a domain change notifies with its name");
	PQfreemem(n);
	CHECK(tt_db_run(c, &err, "INSERT INTO domains (name) VALUES ('Click.Shop.Example')", 0, NULL) != 0,
	      "the schema refuses a name that is not normalized");
	PQfinish(c);
	CHECK_DONE();
}
