/* cli_db: `issuer db migrate`. */
#include <stdio.h>

#include "issuer.h"

int cli_db_migrate(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	PGconn *db;
	if (tt_db_connect(issuer_opt(ctx, "db"), &db, &err) < 0) {
		fprintf(stderr, "issuer: cannot connect to the database: %s\n", err.msg);
		return 2;
	}
	int applied = 0, version = 0;
	int rc = tt_db_migrate(db, &applied, &err);
	if (rc == 0)
		rc = tt_db_check_schema(db, &version, &err);
	PQfinish(db);
	if (rc < 0) {
		fprintf(stderr, "issuer: migration failed: %s\n", err.msg);
		return 2;
	}
	printf("applied %d migration%s, schema version %d\n", applied, applied == 1 ? "" : "s", version);
	return 0;
}
