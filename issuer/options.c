/* options: what every command reads from the resolved options (the table is in main.c), and the two resources most
 * commands open (database with a schema check, master key ring). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

const char *issuer_opt(const struct issuer_ctx *ctx, const char *key)
{
	const char *v = tt_opts_get(ctx->opts, key);
	return v && *v ? v : NULL;
}

size_t issuer_opt_count(const struct issuer_ctx *ctx, const char *key)
{
	const char *v = issuer_opt(ctx, key);
	size_t n = v ? 1 : 0;
	for (; v && (v = strchr(v, '\n')); v++)
		n++;
	return n;
}

const char *issuer_opt_item(const struct issuer_ctx *ctx, const char *key, size_t i, char *buf, size_t size)
{
	const char *v = issuer_opt(ctx, key);
	if (!v)
		return NULL;
	/* one value serves every directory; several pair up with the directories in order */
	if (issuer_opt_count(ctx, key) > 1)
		for (size_t k = 0; k < i && v; k++)
			if ((v = strchr(v, '\n')))
				v++;
	if (!v)
		return NULL;
	size_t l = strcspn(v, "\n");
	if (l >= size || (l == 1 && v[0] == '-') || l == 0)
		return NULL;
	memcpy(buf, v, l);
	buf[l] = '\0';
	return buf;
}

int issuer_check_per_directory(const struct issuer_ctx *ctx, struct tt_err *err)
{
	static const char *const per_directory[] = {"ca-file", "chain-ca-file", "eab-kid", "eab-hmac-key",
						    "caa-identity"};
	size_t n = issuer_opt_count(ctx, "directory");
	for (size_t i = 0; i < sizeof(per_directory) / sizeof(per_directory[0]); i++) {
		size_t c = issuer_opt_count(ctx, per_directory[i]);
		if (c > 1 && c != n)
			return tt_fail(
			    err,
			    "--%s: given %zu times for %zu --directory (give it once for all, or once per directory)",
			    per_directory[i], c, n);
	}
	return 0;
}

bool issuer_flag(const struct issuer_ctx *ctx, const char *key)
{
	return tt_opts_bool(ctx->opts, key);
}

int issuer_opt_int(const struct issuer_ctx *ctx, const char *key, long *out, struct tt_err *err)
{
	return tt_opts_int(ctx->opts, key, out, err);
}

int issuer_opt_duration_ms(const struct issuer_ctx *ctx, const char *key, int64_t *out_ms, struct tt_err *err)
{
	return tt_opts_duration_ms(ctx->opts, key, out_ms, err);
}

int issuer_db_open(const struct issuer_ctx *ctx, PGconn **out, struct tt_err *err)
{
	if (tt_db_connect(issuer_opt(ctx, "db"), out, err) < 0)
		return -1;
	int version;
	if (tt_db_check_schema(*out, &version, err) < 0) {
		PQfinish(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

int issuer_keyring_open(const struct issuer_ctx *ctx, struct tt_keyring **out, struct tt_err *err)
{
	return tt_keyring_load(issuer_opt(ctx, "master-key-file"), out, err);
}
