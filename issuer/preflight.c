/* preflight: before any order, does the name reach our edge (CNAME chain or addresses) and does
 * its CAA record set let our CA(s) issue? The verdict is a reason code and the exact record the
 * customer must add or remove; nothing here talks to a CA. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

const char *preflight_reason_code(enum preflight_reason r)
{
	switch (r) {
	case PREFLIGHT_OK:
		return "ok";
	case PREFLIGHT_DNS_NOT_POINTED:
		return "dns_not_pointed";
	case PREFLIGHT_DNS_STRAY_AAAA:
		return "dns_stray_aaaa";
	case PREFLIGHT_CAA_FORBIDS_CA:
		return "caa_forbids_ca";
	case PREFLIGHT_DNS_SERVFAIL:
		return "dns_servfail";
	}
	return "unknown";
}

/* "ADDR" or "ADDR/PREFIX", IPv4 or IPv6. */
static int parse_net(const char *s, struct edge_net *n, struct tt_err *err)
{
	char buf[INET6_ADDRSTRLEN + 8];
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(n, 0, sizeof(*n));
	n->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
	int bits = n->family == AF_INET6 ? 128 : 32;
	if (inet_pton(n->family, buf, n->addr) != 1)
		return tt_fail(err, "--edge-addrs: '%s' is not an IP address", s);
	n->prefix = bits;
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);
		if (*end || end == slash + 1 || p < 0 || p > bits)
			return tt_fail(err, "--edge-addrs: bad prefix length in '%s'", s);
		n->prefix = (int)p;
	}
	return 0;
}

static bool net_contains(const struct edge_net *n, int family, const uint8_t *addr)
{
	if (n->family != family)
		return false;
	int full = n->prefix / 8, rest = n->prefix % 8;
	if (memcmp(n->addr, addr, (size_t)full) != 0)
		return false;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return rest == 0 || (n->addr[full] & mask) == (addr[full] & mask);
}

/* Splits a list on commas and blanks, calling fn on each item. */
static int each_item(const char *list, int (*fn)(void *arg, const char *item, struct tt_err *err), void *arg,
		     struct tt_err *err)
{
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		return tt_fail(err, "out of memory");
	int rc = 0;
	for (char *t = strtok_r(copy, ", \t", &save); t && rc == 0; t = strtok_r(NULL, ", \t", &save))
		rc = fn(arg, t, err);
	free(copy);
	return rc;
}

static int add_cname(void *arg, const char *item, struct tt_err *err)
{
	struct preflight_config *c = arg;
	if (c->ncnames >= PREFLIGHT_MAX_EDGE)
		return tt_fail(err, "--edge-cname: at most %d names", PREFLIGHT_MAX_EDGE);
	if (tt_name_normalize(item, c->cnames[c->ncnames], err) < 0)
		return tt_wrap(err, "--edge-cname");
	c->ncnames++;
	return 0;
}

static int add_net(void *arg, const char *item, struct tt_err *err)
{
	struct preflight_config *c = arg;
	if (c->nnets >= PREFLIGHT_MAX_EDGE)
		return tt_fail(err, "--edge-addrs: at most %d addresses", PREFLIGHT_MAX_EDGE);
	return parse_net(item, &c->nets[c->nnets++], err);
}

int preflight_config_load(const struct issuer_ctx *ctx, struct preflight_config *out, struct tt_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *cn = issuer_opt(ctx, "edge-cname"), *ad = issuer_opt(ctx, "edge-addrs");
	if ((cn && each_item(cn, add_cname, out, err) < 0) || (ad && each_item(ad, add_net, out, err) < 0))
		return -1;
	out->enabled = out->ncnames || out->nnets;
	out->dns_server = issuer_opt(ctx, "dns-server");
	out->timeout_ms = PREFLIGHT_DNS_TIMEOUT_MS;
	return 0;
}

static bool in_edge(const struct preflight_config *c, int family, const char *addr)
{
	uint8_t bin[16];
	if (inet_pton(family, addr, bin) != 1)
		return false;
	for (size_t i = 0; i < c->nnets; i++)
		if (net_contains(&c->nets[i], family, bin))
			return true;
	return false;
}

static bool reaches_edge_cname(const struct preflight_config *c, const char *name, const struct dns_answer *a)
{
	for (size_t i = 0; i < a->nnames; i++)
		for (size_t j = 0; j < c->ncnames; j++)
			if (strcmp(a->names[i], name) != 0 && strcmp(a->names[i], c->cnames[j]) == 0)
				return true;
	return false;
}

/* Appends the addresses of a outside the edge as "TYPE addr" items. */
static size_t list_outside(const struct preflight_config *c, int family, const struct dns_answer *a, char *buf,
			   size_t size)
{
	size_t n = 0, used = strlen(buf);
	for (size_t i = 0; i < a->naddrs; i++) {
		if (in_edge(c, family, a->addrs[i]))
			continue;
		n++;
		int w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", a->addrs[i]);
		if (w > 0 && (size_t)w < size - used)
			used += (size_t)w;
	}
	return n;
}

/* The first edge address, as a record value the customer can type. */
static void edge_target(const struct preflight_config *c, char *type, char *addr)
{
	const struct edge_net *n = &c->nets[0];
	strcpy(type, n->family == AF_INET6 ? "AAAA" : "A");
	inet_ntop(n->family, n->addr, addr, INET6_ADDRSTRLEN);
}

static enum preflight_reason servfail(struct preflight_verdict *v, const char *name, const char *type, const char *why)
{
	snprintf(v->detail, sizeof(v->detail),
		 "the DNS servers of %s fail to answer its %s records (%s): repair the zone's name servers or its "
		 "delegation so they answer",
		 name, type, why);
	return v->reason = PREFLIGHT_DNS_SERVFAIL;
}

static enum preflight_reason check_pointing(struct dns_resolver *r, const struct preflight_config *c, const char *name,
					    struct preflight_verdict *v)
{
	struct dns_answer a4, a6;
	enum dns_status s4 = dns_addrs(r, name, AF_INET, &a4);
	if (s4 == DNS_FAIL)
		return servfail(v, name, "A", a4.error);
	enum dns_status s6 = dns_addrs(r, name, AF_INET6, &a6);
	if (s6 == DNS_FAIL)
		return servfail(v, name, "AAAA", a6.error);
	if (c->ncnames && (reaches_edge_cname(c, name, &a4) || reaches_edge_cname(c, name, &a6)))
		return PREFLIGHT_OK;
	char bad4[256] = "", bad6[256] = "";
	size_t nbad4 = list_outside(c, AF_INET, &a4, bad4, sizeof(bad4));
	size_t nbad6 = list_outside(c, AF_INET6, &a6, bad6, sizeof(bad6));
	bool has_addrs = a4.naddrs || a6.naddrs;
	if (c->nnets && has_addrs && nbad4 == 0 && nbad6 == 0)
		return PREFLIGHT_OK;
	if (c->nnets && a4.naddrs && nbad4 == 0) {
		snprintf(v->detail, sizeof(v->detail),
			 "remove the AAAA record%s %s. AAAA %s: it points away from our edge, and the CA tries IPv6 "
			 "first",
			 nbad6 > 1 ? "s" : "", name, bad6);
		return v->reason = PREFLIGHT_DNS_STRAY_AAAA;
	}
	char now[600];
	if (a4.nnames > 1)
		snprintf(now, sizeof(now), "it is a CNAME to %s", a4.names[a4.nnames - 1]);
	else if (has_addrs)
		snprintf(now, sizeof(now), "it points at %s%s%s", bad4, *bad4 && *bad6 ? ", " : "", bad6);
	else
		snprintf(now, sizeof(now), "it has no A, AAAA or CNAME record");
	if (c->ncnames) {
		snprintf(v->detail, sizeof(v->detail),
			 "add the record %s. CNAME %s. (replacing its A/AAAA records): %s", name, c->cnames[0], now);
	} else {
		char type[8], addr[INET6_ADDRSTRLEN];
		edge_target(c, type, addr);
		snprintf(v->detail, sizeof(v->detail), "add the record %s. %s %s (replacing the others): %s", name,
			 type, addr, now);
	}
	return v->reason = PREFLIGHT_DNS_NOT_POINTED;
}

static enum preflight_reason check_caa(struct dns_resolver *r, const char *name, const struct caa_issuer *cas,
				       size_t ncas, struct preflight_verdict *v)
{
	struct dns_caa_set set = {0};
	const char *at = name;
	enum dns_status st = DNS_NODATA;
	/* RFC 8659 section 3: the relevant set is the first non-empty one climbing towards the root */
	for (;;) {
		st = dns_caa(r, at, &set);
		if (st != DNS_NODATA)
			break;
		const char *dot = strchr(at, '.');
		if (!dot)
			break;
		at = dot + 1;
	}
	if (st == DNS_FAIL)
		return servfail(v, at, "CAA", set.error);
	bool any = false;
	char why[600] = "";
	for (size_t i = 0; i < ncas && i < ISSUER_MAX_CAS; i++) {
		v->permits[i] =
		    st != DNS_OK || caa_evaluate(set.recs, set.n, false, &cas[i], why, sizeof(why)) == CAA_PERMITS;
		any |= v->permits[i];
	}
	if (st == DNS_OK)
		snprintf(v->caa_owner, sizeof(v->caa_owner), "%s", at);
	dns_caa_free(&set);
	if (any || !ncas)
		return PREFLIGHT_OK;
	snprintf(v->detail, sizeof(v->detail),
		 "add the record %s. CAA 0 issue \"%s\": the CAA records at %s allow no CA we use (%s)", name,
		 cas[0].identity, v->caa_owner, why);
	return v->reason = PREFLIGHT_CAA_FORBIDS_CA;
}

enum preflight_reason preflight_check(struct dns_resolver *r, const struct preflight_config *c, const char *name,
				      const struct caa_issuer *cas, size_t ncas, struct preflight_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (check_pointing(r, c, name, v) != PREFLIGHT_OK)
		return v->reason;
	return check_caa(r, name, cas, ncas, v);
}
