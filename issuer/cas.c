/* cas: the run's CAs in order of preference (--directory given more than once) and how each is
 * doing in this run: a CA that keeps failing (transport, timeouts, 5xx) is down for the rest of the
 * run, one whose rate limit outlasts the run is paused; orders go to the first usable CA that the
 * domain's CAA permits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

/* Consecutive orders lost to transport errors or timeouts before a CA counts as down. */
#define CA_FAILURES_TO_STOP 3

int cas_open(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct cas *out, struct tt_err *err)
{
	memset(out, 0, sizeof(*out));
	size_t n = issuer_opt_count(ctx, "directory"); /* at least the table's default */
	if (n > ISSUER_MAX_CAS)
		return tt_fail(err, "--directory: at most %d", ISSUER_MAX_CAS);
	out->s = calloc(n, sizeof(*out->s));
	if (!out->s)
		return tt_fail(err, "out of memory");
	out->n = n;
	pthread_mutex_init(&out->mu, NULL);
	size_t opened = 0;
	for (size_t i = 0; i < n; i++) {
		struct tt_err e = {{0}};
		if (account_open(ctx, db, kr, true, i, &out->s[i], &e) != 0) {
			/* the next CA may carry the run; alone, this is why the run cannot work */
			snprintf(err->msg, sizeof(err->msg), "%s", e.msg);
			out->st[i].down = true;
			char q[TT_LOG_QUOTED_MAX], qdir[TT_LOG_QUOTED_MAX];
			tt_log(TT_WARN, "ca_down", "directory=%s error=%s",
			       tt_log_quote(qdir, sizeof(qdir), out->s[i].directory),
			       tt_log_quote(q, sizeof(q), e.msg));
			continue;
		}
		opened++;
	}
	return opened ? 0 : -1;
}

void cas_close(struct cas *c)
{
	if (!c->s)
		return;
	for (size_t i = 0; i < c->n; i++)
		account_close(&c->s[i]);
	free(c->s);
	pthread_mutex_destroy(&c->mu);
	memset(c, 0, sizeof(*c));
}

int cas_find(const struct cas *c, const char *directory)
{
	for (size_t i = 0; directory && *directory && i < c->n; i++)
		if (strcmp(c->s[i].directory, directory) == 0)
			return (int)i;
	return -1;
}

bool cas_usable(struct cas *c, size_t i, int64_t now_ms)
{
	pthread_mutex_lock(&c->mu);
	bool ok = i < c->n && !c->st[i].down && c->st[i].paused_until_ms <= now_ms;
	pthread_mutex_unlock(&c->mu);
	return ok;
}

int cas_pick(struct cas *c, const bool *permits, size_t from, int64_t now_ms)
{
	for (size_t i = from; i < c->n; i++)
		if (permits[i] && cas_usable(c, i, now_ms))
			return (int)i;
	return -1;
}

bool cas_failed(struct cas *c, size_t i)
{
	pthread_mutex_lock(&c->mu);
	if (++c->st[i].failures_in_row >= CA_FAILURES_TO_STOP && !c->st[i].down) {
		c->st[i].down = true;
		char qdir[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "ca_down", "directory=%s failures_in_row=%d",
		       tt_log_quote(qdir, sizeof(qdir), c->s[i].directory), c->st[i].failures_in_row);
	}
	bool all = true;
	for (size_t k = 0; k < c->n; k++)
		all &= c->st[k].down;
	pthread_mutex_unlock(&c->mu);
	return all;
}

void cas_answered(struct cas *c, size_t i)
{
	pthread_mutex_lock(&c->mu);
	c->st[i].failures_in_row = 0;
	pthread_mutex_unlock(&c->mu);
}

void cas_pause(struct cas *c, size_t i, int64_t until_ms)
{
	pthread_mutex_lock(&c->mu);
	if (c->st[i].paused_until_ms < until_ms)
		c->st[i].paused_until_ms = until_ms;
	pthread_mutex_unlock(&c->mu);
}
