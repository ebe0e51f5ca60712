/* db: blocking PostgreSQL helpers for the issuer and for start-up work; the terminator's hot path
 * uses its own non-blocking connection (terminator/certdb.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common.h"

static void trim_newline(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

int tt_db_connect(const char *conninfo, PGconn **out, struct tt_err *err)
{
	PGconn *conn = PQconnectdb(conninfo ? conninfo : "");
	if (!conn)
		return tt_fail(err, "out of memory connecting to PostgreSQL");
	if (PQstatus(conn) != CONNECTION_OK) {
		tt_fail(err, "cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
		if (err)
			trim_newline(err->msg);
		PQfinish(conn);
		return -1;
	}
	*out = conn;
	return 0;
}

PGconn *tt_db_connect_bounded(const char *conninfo, struct tt_err *err)
{
	const char *keys[] = {"dbname",
			      "connect_timeout",
			      "tcp_user_timeout",
			      "keepalives_idle",
			      "keepalives_interval",
			      "keepalives_count",
			      NULL};
	const char *values[] = {conninfo ? conninfo : "", "10", "30000", "10", "5", "3", NULL};
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (!conn || PQstatus(conn) != CONNECTION_OK) {
		tt_fail(err, "connect: %s", conn ? PQerrorMessage(conn) : "out of memory");
		if (err)
			trim_newline(err->msg);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

int tt_db_exec(PGconn *conn, PGresult **res, struct tt_err *err, const char *sql, int nparams,
	       const char *const *params)
{
	PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(conn);
		tt_fail(err, "database: %s", m && *m ? m : "no connection");
		if (err)
			trim_newline(err->msg);
		PQclear(r);
		return -1;
	}
	if (res)
		*res = r;
	else
		PQclear(r);
	return 0;
}

int tt_db_run(PGconn *conn, struct tt_err *err, const char *sql, int nparams, const char *const *params)
{
	return tt_db_exec(conn, NULL, err, sql, nparams, params);
}

int tt_db_begin(PGconn *conn, struct tt_err *err)
{
	return tt_db_run(conn, err, "BEGIN", 0, NULL);
}

int tt_db_commit(PGconn *conn, struct tt_err *err)
{
	return tt_db_run(conn, err, "COMMIT", 0, NULL);
}

void tt_db_rollback(PGconn *conn)
{
	tt_db_run(conn, NULL, "ROLLBACK", 0, NULL);
}

int tt_db_bytea(const PGresult *res, int row, int col, uint8_t **out, size_t *outlen, struct tt_err *err)
{
	if (PQgetisnull(res, row, col))
		return tt_fail(err, "value is NULL");
	const char *s = PQgetvalue(res, row, col);
	size_t len = (size_t)PQgetlength(res, row, col);
	if (len < 2 || s[0] != '\\' || s[1] != 'x')
		return tt_fail(err, "bytea not in hex format");
	size_t cap = (len - 2) / 2;
	uint8_t *buf = malloc(cap ? cap : 1);
	if (!buf)
		return tt_fail(err, "out of memory");
	size_t bin_len = 0;
	if (sodium_hex2bin(buf, cap, s + 2, len - 2, NULL, &bin_len, NULL) != 0 || bin_len != cap) {
		free(buf);
		return tt_fail(err, "bytea has invalid hex");
	}
	*out = buf;
	*outlen = bin_len;
	return 0;
}

char *tt_db_bytea_param(const uint8_t *data, size_t len)
{
	char *s = malloc(2 * len + 3);
	if (!s)
		return NULL;
	s[0] = '\\';
	s[1] = 'x';
	sodium_bin2hex(s + 2, 2 * len + 1, data, len);
	return s;
}

char *tt_db_text_array(const char *const *items, size_t n)
{
	size_t size = 3;
	for (size_t i = 0; i < n; i++)
		size += 2 * strlen(items[i]) + 3;
	char *buf = malloc(size), *p = buf;
	if (!buf)
		return NULL;
	*p++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		*p++ = '"';
		for (const char *c = items[i]; *c; c++) {
			if (*c == '"' || *c == '\\')
				*p++ = '\\';
			*p++ = *c;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = '\0';
	return buf;
}

const char *tt_db_id_text(char *buf, int64_t id)
{
	snprintf(buf, TT_DB_ID_TEXT, "%" PRId64, id);
	return buf;
}
