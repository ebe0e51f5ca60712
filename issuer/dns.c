/* dns: the questions the preflight asks of DNS (A, AAAA with their CNAME chain; CAA), with
 * c-ares against the system's resolvers or one given server. One resolver per thread: a c-ares
 * channel is not shared. Each query waits for its answer (poll), bounded by the timeout. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

#include "issuer.h"

#define DNS_CLASS_IN 1
#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_CAA 257
/* Each server is asked this many times before the answer counts as a failure. */
#define DNS_TRIES 2
/* RFC 8659 section 4.1: the Issuer Critical Flag is the high bit of the flags octet. */
#define CAA_FLAG_CRITICAL 0x80

struct dns_resolver {
	ares_channel ch;
};

struct query {
	bool done;
	int status;
	unsigned char *abuf;
	int alen;
};

int dns_library_init(struct tt_err *err)
{
	int rc = ares_library_init(ARES_LIB_INIT_ALL);
	return rc == ARES_SUCCESS ? 0 : tt_fail(err, "c-ares: %s", ares_strerror(rc));
}

int dns_open(const char *server, int64_t timeout_ms, struct dns_resolver **out, struct tt_err *err)
{
	struct dns_resolver *r = calloc(1, sizeof(*r));
	if (!r)
		return tt_fail(err, "out of memory");
	/* NOCHECKRESP: a SERVFAIL or REFUSED answer is the verdict we report, not a server to skip */
	struct ares_options o = {.timeout = (int)(timeout_ms / DNS_TRIES),
				 .tries = DNS_TRIES,
				 .flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_NOCHECKRESP};
	int rc = ares_init_options(&r->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS) {
		free(r);
		return tt_fail(err, "c-ares: %s", ares_strerror(rc));
	}
	if (server && (rc = ares_set_servers_ports_csv(r->ch, server)) != ARES_SUCCESS) {
		dns_close(r);
		return tt_fail(err, "--dns-server %s: %s", server, ares_strerror(rc));
	}
	*out = r;
	return 0;
}

void dns_close(struct dns_resolver *r)
{
	if (!r)
		return;
	ares_destroy(r->ch);
	free(r);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct query *q = arg;
	q->done = true;
	q->status = status;
	if (status == ARES_SUCCESS && abuf && alen > 0) {
		q->abuf = malloc((size_t)alen);
		if (q->abuf) {
			memcpy(q->abuf, abuf, (size_t)alen);
			q->alen = alen;
		} else {
			q->status = ARES_ENOMEM;
		}
	}
}

/* Asks and waits; c-ares' own timeouts and tries bound the wait. */
static void ask(struct dns_resolver *r, const char *name, int type, struct query *q)
{
	memset(q, 0, sizeof(*q));
	ares_query(r->ch, name, DNS_CLASS_IN, type, on_answer, q);
	while (!q->done) {
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		/* the bit tests by hand: c-ares' macros shift a signed 1 into the sign bit */
		unsigned bits = (unsigned)ares_getsock(r->ch, socks, ARES_GETSOCK_MAXNUM);
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		nfds_t n = 0;
		for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = (short)((bits & (1u << i) ? POLLIN : 0) |
					   (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0));
			if (ev)
				pfd[n++] = (struct pollfd){.fd = socks[i], .events = ev};
		}
		struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
		int ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1 : 1000;
		int ready = poll(pfd, n, ms);
		if (ready < 0 && errno != EINTR)
			break;
		if (ready <= 0) {
			ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (nfds_t i = 0; i < n; i++)
			if (pfd[i].revents)
				ares_process_fd(
				    r->ch, pfd[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd : ARES_SOCKET_BAD,
				    pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD);
	}
	if (!q->done) {
		ares_cancel(r->ch); /* runs on_answer with ARES_ECANCELLED */
		q->done = true;
	}
}

/* NXDOMAIN and an empty answer both mean "no such records"; anything else leaves us not knowing. */
static enum dns_status status_of(const struct query *q, char *why, size_t size)
{
	if (q->status == ARES_SUCCESS)
		return DNS_OK;
	if (q->status == ARES_ENODATA || q->status == ARES_ENOTFOUND)
		return DNS_NODATA;
	snprintf(why, size, "%s", q->status == ARES_ESERVFAIL ? "SERVFAIL" : ares_strerror(q->status));
	return DNS_FAIL;
}

static void add_name(struct dns_answer *a, const char *name)
{
	struct tt_err err;
	if (a->nnames < DNS_MAX_CHAIN && name && *name && tt_name_normalize(name, a->names[a->nnames], &err) == 0)
		a->nnames++;
}

enum dns_status dns_addrs(struct dns_resolver *r, const char *name, int family, struct dns_answer *out)
{
	memset(out, 0, sizeof(*out));
	struct query q;
	ask(r, name, family == AF_INET6 ? DNS_TYPE_AAAA : DNS_TYPE_A, &q);
	enum dns_status st = status_of(&q, out->error, sizeof(out->error));
	if (st != DNS_OK) {
		free(q.abuf);
		return st;
	}
	struct hostent *h = NULL;
	int naddr = DNS_MAX_ADDRS, rc;
	if (family == AF_INET6) {
		struct ares_addr6ttl ttls[DNS_MAX_ADDRS];
		rc = ares_parse_aaaa_reply(q.abuf, q.alen, &h, ttls, &naddr);
		for (int i = 0; rc == ARES_SUCCESS && i < naddr; i++)
			inet_ntop(AF_INET6, &ttls[i].ip6addr, out->addrs[out->naddrs++], sizeof(out->addrs[0]));
	} else {
		struct ares_addrttl ttls[DNS_MAX_ADDRS];
		rc = ares_parse_a_reply(q.abuf, q.alen, &h, ttls, &naddr);
		for (int i = 0; rc == ARES_SUCCESS && i < naddr; i++)
			inet_ntop(AF_INET, &ttls[i].ipaddr, out->addrs[out->naddrs++], sizeof(out->addrs[0]));
	}
	free(q.abuf);
	/* the names the answer's CNAME records went through, and where they ended */
	if (h) {
		for (char **al = h->h_aliases; al && *al; al++)
			add_name(out, *al);
		add_name(out, h->h_name);
		ares_free_hostent(h);
	}
	if (rc == ARES_ENODATA)
		return DNS_NODATA;
	if (rc != ARES_SUCCESS) {
		snprintf(out->error, sizeof(out->error), "%s", ares_strerror(rc));
		return DNS_FAIL;
	}
	return DNS_OK;
}

enum dns_status dns_caa(struct dns_resolver *r, const char *name, struct dns_caa_set *out)
{
	memset(out, 0, sizeof(*out));
	struct query q;
	ask(r, name, DNS_TYPE_CAA, &q);
	enum dns_status st = status_of(&q, out->error, sizeof(out->error));
	if (st != DNS_OK) {
		free(q.abuf);
		return st;
	}
	struct ares_caa_reply *caa = NULL;
	int rc = ares_parse_caa_reply(q.abuf, q.alen, &caa);
	free(q.abuf);
	if (rc == ARES_ENODATA)
		return DNS_NODATA;
	if (rc != ARES_SUCCESS) {
		snprintf(out->error, sizeof(out->error), "%s", ares_strerror(rc));
		return DNS_FAIL;
	}
	size_t n = 0;
	for (struct ares_caa_reply *c = caa; c; c = c->next)
		n++;
	if (n == 0) {
		ares_free_data(caa);
		return DNS_NODATA;
	}
	out->recs = calloc(n, sizeof(*out->recs));
	if (!out->recs) {
		ares_free_data(caa);
		snprintf(out->error, sizeof(out->error), "out of memory");
		return DNS_FAIL;
	}
	for (struct ares_caa_reply *c = caa; c; c = c->next)
		out->recs[out->n++] = (struct caa_record){
		    .critical = (c->critical & CAA_FLAG_CRITICAL) != 0, /* c-ares hands over the flags byte */
		    .tag = (const char *)c->property,
		    .tag_len = c->plength,
		    .value = (const char *)c->value,
		    .value_len = c->length,
		};
	out->raw = caa;
	return DNS_OK;
}

void dns_caa_free(struct dns_caa_set *s)
{
	free(s->recs);
	if (s->raw)
		ares_free_data(s->raw);
	memset(s, 0, sizeof(*s));
}
