/* ticket_rotation: creates and retires the fleet's TLS session-ticket keys, at the start of every run and
 * by `issuer tickets rotate` on hosts that run no ACME; terminators pick them up by NOTIFY. */
#include <stdio.h>

#include "issuer.h"

/* A new key is created this fraction of the rotation period before it is first used. */
#define TICKET_LEAD_FRACTION 4

int ticket_keys_rotate(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct tt_err *err)
{
	int64_t rotate_ms, lifetime_ms;
	if (issuer_opt_duration_ms(ctx, "ticket-rotate", &rotate_ms, err) < 0 ||
	    issuer_opt_duration_ms(ctx, "ticket-lifetime", &lifetime_ms, err) < 0)
		return -1;
	/* Terminators load a new key by NOTIFY at once, and within their --ticket-refresh when they
	 * missed it: a quarter of the rotation period ahead leaves them room before its first use.
	 * The table holds both options to at least a second, the policy's unit. */
	struct tt_ticket_policy policy = {.rotate_s = rotate_ms / TT_MS_PER_S,
					  .lifetime_s = lifetime_ms / TT_MS_PER_S,
					  .lead_s = rotate_ms / TT_MS_PER_S / TICKET_LEAD_FRACTION};
	int created, retired;
	if (tt_ticket_keys_rotate(db, kr, &policy, &created, &retired, err) < 0)
		return tt_wrap(err, "ticket keys");
	tt_log(TT_INFO, "ticket_keys_rotated", "created=%d retired=%d rotate_s=%lld lifetime_s=%lld", created, retired,
	       (long long)policy.rotate_s, (long long)policy.lifetime_s);
	return 0;
}

int cli_tickets_rotate(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	PGconn *db = NULL;
	struct tt_keyring *kr = NULL;
	int rc = 0;
	if (issuer_keyring_open(ctx, &kr, &err) < 0 || issuer_db_open(ctx, &db, &err) < 0 ||
	    ticket_keys_rotate(ctx, db, kr, &err) < 0) {
		fprintf(stderr, "issuer tickets rotate: %s\n", err.msg);
		rc = 2;
	}
	tt_keyring_free(kr);
	if (db)
		PQfinish(db);
	return rc;
}
