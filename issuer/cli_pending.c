/* cli_pending: commands of milestone 2 (ACME) that are not in this build yet; they say so. */
#include <stdio.h>

#include "issuer.h"

static int pending(const char *what)
{
	fprintf(stderr, "issuer: %s is not implemented yet\n", what);
	return 2;
}

int cli_keys_rotate(struct issuer_ctx *ctx) { return pending("keys rotate"); }
int cli_revoke(struct issuer_ctx *ctx) { return pending("revoke"); }
int cli_account_show(struct issuer_ctx *ctx) { return pending("account show"); }
int cli_account_rollover(struct issuer_ctx *ctx) { return pending("account rollover"); }
