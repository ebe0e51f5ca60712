/* options: what every command reads from the resolved configuration, and the two resources most
 * commands open (database with a schema check, master key ring). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

int err_wrap(struct tt_err *err, const char *fmt, ...)
{
	char prefix[256], old[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(old, sizeof(old), "%s", err->msg);
	return tt_fail(err, "%s: %s", prefix, old);
}

const char *issuer_opt(const struct issuer_ctx *ctx, const char *key)
{
	struct tt_config_entry *e = tt_config_find(ctx->cfg, ctx->ncfg, key);
	return e && e->value && *e->value ? e->value : NULL;
}

bool issuer_flag(const struct issuer_ctx *ctx, const char *key)
{
	const char *v = issuer_opt(ctx, key);
	return v && strcmp(v, "0") != 0 && strcmp(v, "false") != 0 && strcmp(v, "no") != 0;
}

int issuer_opt_int(const struct issuer_ctx *ctx, const char *key, long def, long *out, struct tt_err *err)
{
	const char *v = issuer_opt(ctx, key);
	if (!v) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || *end || end == v || n < 0)
		return tt_fail(err, "--%s: expected a non-negative integer, got '%s'", key, v);
	*out = n;
	return 0;
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
