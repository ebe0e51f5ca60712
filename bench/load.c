/* bench/load: TLS 1.3 load generator (wolfSSL, threads x epoll, non-blocking sockets) that opens
 * connections per server name, checks each served certificate against the name, and reports rates. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/ssl.h>

enum mode { MODE_HANDSHAKE, MODE_RESUME, MODE_KEEPALIVE };
static const char *const mode_names[] = {"handshake", "resume", "keepalive"};

enum err_kind { E_CONNECT, E_HANDSHAKE, E_MISMATCH, E_WRITE, E_READ, E_CLOSED, E_TIMEOUT, E_HTTP, E_PROTOCOL, E_COUNT };
static const char *const err_names[] = {"connect", "handshake", "mismatch",    "write",	  "read",
					"closed",  "timeout",	"http_status", "protocol"};

struct opts {
	const char *connect;
	const char *names_file;
	const char *path;
	const char *cafile;
	enum mode mode;
	int concurrency;
	int threads;
	double duration_s;
	double warmup_s;
	double timeout_s;
	uint64_t requests;
	double zipf_s;
	double rate; /* connections opened per second, all threads together; 0: as fast as they close */
	bool sequential;
	const char *label;
	const char *watch_pids; /* comma-separated: the server's processes, for its CPU time over the window */
	const char *timeline;	/* per-second figures of the whole run (warm-up included) go to this file */
	const char *timeline_raw; /* every completion of the run, one line each */
};

/* Read-only after setup except the atomics; shared by every worker thread. */
struct run {
	const struct opts *o;
	struct sockaddr_in addr;
	WOLFSSL_CTX *ctx;
	char **names;
	size_t *name_lens;
	size_t nnames;
	double *zipf_cdf; /* NULL when names are drawn uniformly */
	uint64_t t_begin, t_measure, t_end;
	atomic_uint_fast64_t issued;	/* request budget for --requests */
	atomic_uint_fast64_t next_name; /* --sequential: every name once before any repeats */
};

enum state { ST_IDLE, ST_CONNECT, ST_HANDSHAKE, ST_WRITE, ST_READ };

struct conn {
	int fd;
	WOLFSSL *ssl;
	enum state st;
	uint32_t events;
	size_t name;
	uint64_t t_start;
	uint64_t t_connected, t_handshaken; /* for --timeline-raw: where the time went */
	uint64_t deadline;
	uint64_t retry_at; /* after a refused connect, so a dead server does not spin the client */
	size_t len;
	bool counted_handshake;
	char buf[8192];
};

struct worker {
	struct run *run;
	pthread_t tid;
	int index;
	int ep;
	struct conn *conns;
	int nconns;
	uint64_t rng;
	uint64_t next_open, open_every; /* --rate: when the next connection is due, and the spacing */
	uint32_t *lat_us;
	size_t nlat, caplat;
	struct tl_rec *tl; /* --timeline: every completion and error */
	size_t ntl, captl;
	uint64_t done, full, resumed, errors[E_COUNT];
	WOLFSSL_SESSION **sessions; /* per name, resume mode only */
	char req[2048];
	bool failed;
	char failmsg[256];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static size_t pick_name(struct worker *w)
{
	struct run *r = w->run;
	if (r->o->sequential)
		return atomic_fetch_add(&r->next_name, 1) % r->nnames;
	if (!r->zipf_cdf)
		return rng_next(&w->rng) % r->nnames;
	double u = (double)(rng_next(&w->rng) >> 11) / (double)(1ULL << 53);
	size_t lo = 0, hi = r->nnames - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->zipf_cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool measuring(const struct run *r, uint64_t t)
{
	return t >= r->t_measure && t < r->t_end;
}

/* One completion for --timeline: when, relative to the start, and its latency (TL_ERROR: failed). */
struct tl_rec {
	uint32_t t_ms;
	uint32_t lat_us;
	uint32_t connect_us, handshake_us; /* from the start to TCP connected, and to the TLS handshake done */
};
#define TL_ERROR UINT32_MAX

static uint32_t us_since(uint64_t from, uint64_t to)
{
	return to > from ? (uint32_t)((to - from) / 1000) : 0;
}

static void timeline_add(struct worker *w, uint64_t t, uint32_t lat_us, const struct conn *c)
{
	if ((!w->run->o->timeline && !w->run->o->timeline_raw) || t >= w->run->t_end)
		return;
	if (w->ntl == w->captl) {
		size_t cap = w->captl ? w->captl * 2 : 65536;
		struct tl_rec *p = realloc(w->tl, cap * sizeof(*p));
		if (!p)
			return;
		w->tl = p;
		w->captl = cap;
	}
	w->tl[w->ntl++] = (struct tl_rec){(uint32_t)((t - w->run->t_begin) / 1000000), lat_us,
					  c && c->t_connected ? us_since(c->t_start, c->t_connected) : 0,
					  c && c->t_handshaken ? us_since(c->t_start, c->t_handshaken) : 0};
}

static void count_error(struct worker *w, enum err_kind k)
{
	uint64_t t = now_ns();
	timeline_add(w, t, TL_ERROR, NULL);
	if (measuring(w->run, t))
		w->errors[k]++;
}

static void record_latency(struct worker *w, const struct conn *c, uint64_t start, uint64_t end)
{
	uint64_t lat = (end - start) / 1000;
	timeline_add(w, end, lat >= TL_ERROR ? TL_ERROR - 1 : (uint32_t)lat, c);
	if (!measuring(w->run, end))
		return;
	if (w->nlat == w->caplat) {
		size_t cap = w->caplat ? w->caplat * 2 : 65536;
		uint32_t *p = realloc(w->lat_us, cap * sizeof(*p));
		if (!p)
			return;
		w->lat_us = p;
		w->caplat = cap;
	}
	uint64_t us = (end - start) / 1000;
	w->lat_us[w->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	w->done++;
}

static void conn_close(struct worker *w, struct conn *c)
{
	if (c->ssl) {
		wolfSSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->st = ST_IDLE;
	c->events = 0;
}

static void conn_fail(struct worker *w, struct conn *c, enum err_kind k)
{
	count_error(w, k);
	if (k == E_CONNECT)
		c->retry_at = now_ns() + 10000000u;
	conn_close(w, c);
}

static int conn_want(struct worker *w, struct conn *c, uint32_t ev)
{
	if (c->events == ev)
		return 0;
	struct epoll_event e = {.events = ev, .data.ptr = c};
	int op = c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(w->ep, op, c->fd, &e) < 0)
		return -1;
	c->events = ev;
	return 0;
}

static bool budget_take(struct run *r)
{
	if (!r->o->requests)
		return true;
	return atomic_fetch_add(&r->issued, 1) < r->o->requests;
}

static bool stopping(const struct run *r, uint64_t t)
{
	return t >= r->t_end;
}

/* Opens a TCP connection and a fresh TLS session for one name (resumed when we hold a ticket).
 * Latency counts from t_start: with --rate the time it was due, so a late start is not hidden. */
static void conn_open(struct worker *w, struct conn *c, uint64_t t_start)
{
	struct run *r = w->run;
	if (!budget_take(r))
		return;
	c->name = pick_name(w);
	c->t_start = t_start;
	c->deadline = c->t_start + (uint64_t)(r->o->timeout_s * 1e9);
	c->len = 0;
	c->t_connected = c->t_handshaken = 0;
	c->counted_handshake = false;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		count_error(w, E_CONNECT);
		return;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ssl = wolfSSL_new(r->ctx);
	if (!c->ssl || wolfSSL_set_fd(c->ssl, c->fd) != WOLFSSL_SUCCESS ||
	    wolfSSL_UseSNI(c->ssl, WOLFSSL_SNI_HOST_NAME, r->names[c->name], (word16)r->name_lens[c->name]) !=
		WOLFSSL_SUCCESS ||
	    wolfSSL_UseKeyShare(c->ssl, WOLFSSL_ECC_X25519) != WOLFSSL_SUCCESS) {
		conn_fail(w, c, E_HANDSHAKE);
		return;
	}
	if (r->o->mode == MODE_RESUME && w->sessions[c->name])
		wolfSSL_set_session(c->ssl, w->sessions[c->name]);
	if (connect(c->fd, (const struct sockaddr *)&r->addr, sizeof(r->addr)) < 0 && errno != EINPROGRESS) {
		conn_fail(w, c, E_CONNECT);
		return;
	}
	c->st = ST_CONNECT;
	if (conn_want(w, c, EPOLLOUT) < 0)
		conn_fail(w, c, E_CONNECT);
}

/* 1 when the served leaf certificate names the requested host. */
static bool leaf_matches(struct worker *w, struct conn *c)
{
	WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
	if (!x)
		return false;
	const struct run *r = w->run;
	bool ok = wolfSSL_X509_check_host(x, r->names[c->name], r->name_lens[c->name], 0, NULL) == WOLFSSL_SUCCESS;
	wolfSSL_X509_free(x);
	return ok;
}

static size_t build_request(struct worker *w, struct conn *c)
{
	const struct run *r = w->run;
	int n = snprintf(w->req, sizeof(w->req), "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tracktls-load\r\n%s\r\n",
			 r->o->path, r->names[c->name], r->o->mode == MODE_KEEPALIVE ? "" : "Connection: close\r\n");
	return n > 0 && (size_t)n < sizeof(w->req) ? (size_t)n : 0;
}

/* Parses what we have of an HTTP/1.1 response: 1 complete, 0 need more, -1 malformed.
 * Sets *status and *close_after. */
static int response_complete(const char *buf, size_t len, int *status, bool *close_after)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	if (!end)
		return len >= 8192 - 1 ? -1 : 0;
	size_t hlen = (size_t)(end - buf) + 4;
	if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0)
		return -1;
	*status = atoi(buf + 9);
	long clen = -1;
	*close_after = false;
	for (const char *p = memchr(buf, '\n', hlen); p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
		p++;
		if (!strncasecmp(p, "content-length:", 15))
			clen = strtol(p + 15, NULL, 10);
		else if (!strncasecmp(p, "connection:", 11)) {
			const char *v = p + 11;
			while (*v == ' ')
				v++;
			if (!strncasecmp(v, "close", 5))
				*close_after = true;
		}
	}
	if (clen < 0)
		return -1;
	if (len < hlen + (size_t)clen)
		return 0;
	return len == hlen + (size_t)clen ? 1 : -1;
}

static int ssl_want(struct worker *w, struct conn *c, int ret)
{
	int e = wolfSSL_get_error(c->ssl, ret);
	if (e == WOLFSSL_ERROR_WANT_READ)
		return conn_want(w, c, EPOLLIN) < 0 ? -1 : 1;
	if (e == WOLFSSL_ERROR_WANT_WRITE)
		return conn_want(w, c, EPOLLOUT) < 0 ? -1 : 1;
	return e == WOLFSSL_ERROR_ZERO_RETURN ? -2 : -1;
}

static void save_session(struct worker *w, struct conn *c)
{
	WOLFSSL_SESSION *s = wolfSSL_get1_session(c->ssl);
	if (!s)
		return;
	if (w->sessions[c->name])
		wolfSSL_SESSION_free(w->sessions[c->name]);
	w->sessions[c->name] = s;
}

/* Drives one connection as far as it can go without blocking. */
static void conn_step(struct worker *w, struct conn *c)
{
	struct run *r = w->run;
	for (;;) {
		switch (c->st) {
		case ST_IDLE:
			return;
		case ST_CONNECT: {
			int err = 0;
			socklen_t l = sizeof(err);
			if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
				conn_fail(w, c, E_CONNECT);
				return;
			}
			c->t_connected = now_ns();
			c->st = ST_HANDSHAKE;
			break;
		}
		case ST_HANDSHAKE: {
			int ret = wolfSSL_connect(c->ssl);
			if (ret != WOLFSSL_SUCCESS) {
				int k = ssl_want(w, c, ret);
				if (k < 0)
					conn_fail(w, c, E_HANDSHAKE);
				return;
			}
			if (!wolfSSL_session_reused(c->ssl)) {
				if (!leaf_matches(w, c)) {
					conn_fail(w, c, E_MISMATCH);
					return;
				}
			}
			c->t_handshaken = now_ns();
			c->st = ST_WRITE;
			break;
		}
		case ST_WRITE: {
			size_t n = build_request(w, c);
			int ret = wolfSSL_write(c->ssl, w->req, (int)n);
			if (ret <= 0) {
				int k = ssl_want(w, c, ret);
				if (k < 0)
					conn_fail(w, c, E_WRITE);
				return;
			}
			c->len = 0;
			c->st = ST_READ;
			break;
		}
		case ST_READ: {
			int ret = wolfSSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - 1 - c->len));
			if (ret <= 0) {
				int k = ssl_want(w, c, ret);
				if (k == -2 || (k == -1 && wolfSSL_get_error(c->ssl, ret) == SOCKET_PEER_CLOSED_E))
					conn_fail(w, c, E_CLOSED);
				else if (k < 0)
					conn_fail(w, c, E_READ);
				return;
			}
			c->len += (size_t)ret;
			int status = 0;
			bool close_after = false;
			int done = response_complete(c->buf, c->len, &status, &close_after);
			if (done == 0)
				break;
			if (done < 0) {
				conn_fail(w, c, E_PROTOCOL);
				return;
			}
			if (status < 200 || status >= 400) {
				conn_fail(w, c, E_HTTP);
				return;
			}
			uint64_t t = now_ns();
			if (!c->counted_handshake && measuring(r, t)) {
				if (wolfSSL_session_reused(c->ssl))
					w->resumed++;
				else
					w->full++;
			}
			c->counted_handshake = true;
			record_latency(w, c, c->t_start, t);
			if (r->o->mode == MODE_RESUME)
				save_session(w, c);
			if (r->o->mode != MODE_KEEPALIVE || close_after || stopping(r, t) || !budget_take(r)) {
				wolfSSL_shutdown(c->ssl);
				conn_close(w, c);
				return;
			}
			c->t_start = t;
			c->t_connected = c->t_handshaken = 0;
			c->deadline = t + (uint64_t)(r->o->timeout_s * 1e9);
			c->st = ST_WRITE;
			break;
		}
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	struct epoll_event evs[256];
	bool paced = r->o->rate > 0;
	for (;;) {
		uint64_t t = now_ns();
		bool active = paced;
		for (int i = 0; i < w->nconns; i++) {
			struct conn *c = &w->conns[i];
			if (c->st != ST_IDLE && t > c->deadline)
				conn_fail(w, c, E_TIMEOUT);
			if (c->st == ST_IDLE && !stopping(r, t) && t >= c->retry_at &&
			    (!paced || t >= w->next_open)) {
				conn_open(w, c, paced ? w->next_open : t);
				w->next_open += w->open_every;
			}
			if (c->st != ST_IDLE || t < c->retry_at)
				active = true;
		}
		if (!active || stopping(r, t))
			break;
		/* Paced: wake for the next due connection (all connections busy: it waits, and its latency
		 * says so). */
		uint64_t wait_ns = 10000000;
		if (paced)
			wait_ns = w->next_open > t ? w->next_open - t : 0;
		if (wait_ns > 10000000)
			wait_ns = 10000000;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait_ns};
		int n = epoll_pwait2(w->ep, evs, 256, &ts, NULL);
		if (n < 0 && errno != EINTR) {
			w->failed = true;
			snprintf(w->failmsg, sizeof(w->failmsg), "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++)
			conn_step(w, evs[i].data.ptr);
	}
	for (int i = 0; i < w->nconns; i++)
		conn_close(w, &w->conns[i]);
	return NULL;
}

static int load_names(struct run *r, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "load: cannot open names file %s: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 1024;
	r->names = malloc(cap * sizeof(*r->names));
	r->name_lens = malloc(cap * sizeof(*r->name_lens));
	char line[512];
	while (r->names && r->name_lens && fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, " \t\r\n");
		line[n] = 0;
		if (!n || line[0] == '#')
			continue;
		if (r->nnames == cap) {
			cap *= 2;
			char **nn = realloc(r->names, cap * sizeof(*nn));
			size_t *nl = nn ? realloc(r->name_lens, cap * sizeof(*nl)) : NULL;
			if (nn)
				r->names = nn;
			if (!nl)
				break;
			r->name_lens = nl;
		}
		r->names[r->nnames] = strdup(line);
		r->name_lens[r->nnames++] = n;
	}
	fclose(f);
	if (!r->nnames) {
		fprintf(stderr, "load: no names in %s\n", path);
		return -1;
	}
	return 0;
}

static int build_zipf(struct run *r, double s)
{
	r->zipf_cdf = malloc(r->nnames * sizeof(double));
	if (!r->zipf_cdf)
		return -1;
	double sum = 0;
	for (size_t i = 0; i < r->nnames; i++) {
		sum += 1.0 / pow((double)(i + 1), s);
		r->zipf_cdf[i] = sum;
	}
	for (size_t i = 0; i < r->nnames; i++)
		r->zipf_cdf[i] /= sum;
	return 0;
}

static int parse_connect(struct run *r, const char *s)
{
	char host[256];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host)) {
		fprintf(stderr, "load: --connect wants HOST:PORT, got %s\n", s);
		return -1;
	}
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
		fprintf(stderr, "load: cannot resolve %s\n", s);
		return -1;
	}
	memcpy(&r->addr, res->ai_addr, sizeof(r->addr));
	freeaddrinfo(res);
	return 0;
}

/* utime + stime of the watched processes, in seconds; -1 when none is given. */
static double watched_cpu_s(const char *pids)
{
	if (!pids)
		return -1;
	double ticks = 0, hz = (double)sysconf(_SC_CLK_TCK);
	char path[64], buf[1024];
	for (const char *p = pids; *p;) {
		long pid = strtol(p, (char **)&p, 10);
		if (*p == ',')
			p++;
		else if (*p)
			break;
		snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		/* Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15. */
		char *q = strrchr(buf, ')');
		unsigned long ut = 0, st = 0;
		if (q && sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			ticks += (double)(ut + st);
	}
	return ticks / hz;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static uint32_t pct(const uint32_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)ceil(p * (double)n) - 1;
	return v[i < n ? i : n - 1];
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: load --connect HOST:PORT --names FILE [--mode handshake|resume|keepalive]\n"
	    "            [--concurrency N] [--threads N] [--duration SEC | --requests N] [--warmup SEC]\n"
	    "            [--path /o/x.gif] [--zipf S | --sequential] [--cafile PEM] [--timeout SEC] [--label TEXT]\n"
	    "            [--rate N]   (open N connections per second, each due at its time, at most --concurrency)\n"
	    "            [--watch-pids PID,PID...]   (their CPU time over the measured window, as server_cpu_s)\n"
	    "            [--timeline FILE]   (a JSON line per second of the run: completed, errors, p50/p99/max)\n"
	    "            [--timeline-raw FILE]   (a line per completion: end ms, latency, to connected, to handshake done, us;\n"
	    "                                     latency -1: failed)\n"
	    "Prints a summary on stderr and one JSON line on stdout.\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {{"connect", 1, 0, 'c'},
					   {"names", 1, 0, 'n'},
					   {"mode", 1, 0, 'm'},
					   {"concurrency", 1, 0, 'C'},
					   {"threads", 1, 0, 't'},
					   {"duration", 1, 0, 'd'},
					   {"requests", 1, 0, 'r'},
					   {"path", 1, 0, 'p'},
					   {"zipf", 1, 0, 'z'},
					   {"cafile", 1, 0, 'a'},
					   {"warmup", 1, 0, 'w'},
					   {"timeout", 1, 0, 'T'},
					   {"label", 1, 0, 'l'},
					   {"sequential", 0, 0, 's'},
					   {"watch-pids", 1, 0, 'W'},
					   {"rate", 1, 0, 'R'},
					   {"timeline", 1, 0, 'L'},
					   {"timeline-raw", 1, 0, 'X'},
					   {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	*o =
	    (struct opts){.path = "/o/t.gif", .concurrency = 32, .threads = 1, .timeout_s = 10, .mode = MODE_HANDSHAKE};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->connect = optarg;
			break;
		case 'n':
			o->names_file = optarg;
			break;
		case 'm':
			for (o->mode = 0; o->mode < 3 && strcmp(optarg, mode_names[o->mode]); o->mode++)
				;
			if (o->mode == 3) {
				fprintf(stderr, "load: unknown mode %s\n", optarg);
				return -1;
			}
			break;
		case 'C':
			o->concurrency = atoi(optarg);
			break;
		case 't':
			o->threads = atoi(optarg);
			break;
		case 'd':
			o->duration_s = atof(optarg);
			break;
		case 'r':
			o->requests = strtoull(optarg, NULL, 10);
			break;
		case 'p':
			o->path = optarg;
			break;
		case 'z':
			o->zipf_s = atof(optarg);
			break;
		case 'a':
			o->cafile = optarg;
			break;
		case 'w':
			o->warmup_s = atof(optarg);
			break;
		case 'T':
			o->timeout_s = atof(optarg);
			break;
		case 'l':
			o->label = optarg;
			break;
		case 's':
			o->sequential = true;
			break;
		case 'W':
			o->watch_pids = optarg;
			break;
		case 'R':
			o->rate = atof(optarg);
			break;
		case 'L':
			o->timeline = optarg;
			break;
		case 'X':
			o->timeline_raw = optarg;
			break;
		default:
			usage();
			return -1;
		}
	}
	if (!o->connect || !o->names_file || o->concurrency < 1 || o->threads < 1 || o->duration_s < 0 ||
	    o->timeout_s <= 0 || o->zipf_s < 0 || o->rate < 0 || (o->rate > 0 && o->mode == MODE_KEEPALIVE)) {
		usage();
		return -1;
	}
	if (o->threads > o->concurrency)
		o->threads = o->concurrency;
	if (!o->duration_s && !o->requests)
		o->duration_s = 10;
	return 0;
}

static WOLFSSL_CTX *make_ctx(const struct opts *o)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	if (!ctx)
		return NULL;
	/* X25519 first: P-256 ECDH would also exercise the server's P-256 code twice per handshake. */
	int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
	if (wolfSSL_CTX_set_groups(ctx, groups, 2) != WOLFSSL_SUCCESS)
		goto fail;
	if (o->cafile) {
		if (wolfSSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != WOLFSSL_SUCCESS) {
			fprintf(stderr, "load: cannot load CA file %s\n", o->cafile);
			goto fail;
		}
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
	} else {
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
	}
	return ctx;
fail:
	wolfSSL_CTX_free(ctx);
	return NULL;
}

static void report(const struct run *r, struct worker *ws, int nw, double elapsed, double server_cpu)
{
	const struct opts *o = r->o;
	uint64_t done = 0, full = 0, resumed = 0, errs[E_COUNT] = {0}, nerr = 0;
	size_t nlat = 0;
	for (int i = 0; i < nw; i++) {
		done += ws[i].done;
		full += ws[i].full;
		resumed += ws[i].resumed;
		nlat += ws[i].nlat;
		for (int k = 0; k < E_COUNT; k++)
			errs[k] += ws[i].errors[k];
	}
	for (int k = 0; k < E_COUNT; k++)
		nerr += errs[k];
	uint32_t *all = malloc((nlat ? nlat : 1) * sizeof(*all));
	size_t at = 0;
	for (int i = 0; all && i < nw; i++) {
		memcpy(all + at, ws[i].lat_us, ws[i].nlat * sizeof(*all));
		at += ws[i].nlat;
	}
	if (all)
		qsort(all, nlat, sizeof(*all), cmp_u32);
	else
		nlat = 0;
	uint32_t p50 = pct(all, nlat, .50), p90 = pct(all, nlat, .90), p99 = pct(all, nlat, .99);
	uint32_t mx = nlat ? all[nlat - 1] : 0;
	free(all);
	double rps = elapsed > 0 ? (double)done / elapsed : 0;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		     ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;

	fprintf(stderr, "load: %s %s names=%zu%s conc=%d threads=%d: %.1f s, %llu requests, %.0f req/s\n",
		mode_names[o->mode], o->connect, r->nnames, r->zipf_cdf ? " zipf" : "", o->concurrency, o->threads,
		elapsed, (unsigned long long)done, rps);
	fprintf(stderr, "load: handshakes full=%llu resumed=%llu; latency us p50=%u p90=%u p99=%u max=%u\n",
		(unsigned long long)full, (unsigned long long)resumed, p50, p90, p99, mx);
	fprintf(stderr, "load: errors=%llu", (unsigned long long)nerr);
	for (int k = 0; k < E_COUNT; k++)
		if (errs[k])
			fprintf(stderr, " %s=%llu", err_names[k], (unsigned long long)errs[k]);
	fprintf(stderr, "\n");

	printf("{\"label\":\"%s\",\"mode\":\"%s\",\"connect\":\"%s\",\"names\":%zu,\"zipf\":%g,\"sequential\":%s,"
	       "\"concurrency\":%d,"
	       "\"threads\":%d,\"elapsed_s\":%.3f,\"requests\":%llu,\"rps\":%.1f,\"full_handshakes\":%llu,"
	       "\"resumed_handshakes\":%llu,\"latency_us\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,\"max\":%u},"
	       "\"errors_total\":%llu,\"errors\":{",
	       o->label ? o->label : "", mode_names[o->mode], o->connect, r->nnames, o->zipf_s,
	       o->sequential ? "true" : "false", o->concurrency, o->threads, elapsed, (unsigned long long)done, rps,
	       (unsigned long long)full, (unsigned long long)resumed, p50, p90, p99, mx, (unsigned long long)nerr);
	for (int k = 0; k < E_COUNT; k++)
		printf("%s\"%s\":%llu", k ? "," : "", err_names[k], (unsigned long long)errs[k]);
	printf("},\"mismatches\":%llu,\"client_cpu_s\":%.3f", (unsigned long long)errs[E_MISMATCH], cpu);
	if (server_cpu >= 0)
		printf(",\"server_cpu_s\":%.3f", server_cpu);
	printf("}\n");
	fflush(stdout);
}

static int cmp_tl(const void *a, const void *b)
{
	const struct tl_rec *x = a, *y = b;
	if (x->t_ms / 1000 != y->t_ms / 1000)
		return x->t_ms / 1000 < y->t_ms / 1000 ? -1 : 1;
	return x->lat_us < y->lat_us ? -1 : x->lat_us > y->lat_us;
}

/* --timeline: per second of the run, the completions, the errors and the latency percentiles. */
static int write_timeline(const struct opts *o, struct worker *ws, int nw)
{
	size_t n = 0, at = 0;
	for (int i = 0; i < nw; i++)
		n += ws[i].ntl;
	struct tl_rec *all = malloc((n ? n : 1) * sizeof(*all));
	FILE *f = fopen(o->timeline, "w");
	if (!all || !f) {
		fprintf(stderr, "load: cannot write %s\n", o->timeline);
		free(all);
		if (f)
			fclose(f);
		return -1;
	}
	for (int i = 0; i < nw; i++) {
		memcpy(all + at, ws[i].tl, ws[i].ntl * sizeof(*all));
		at += ws[i].ntl;
	}
	/* by second, then latency: errors (TL_ERROR) sort last within their second */
	qsort(all, n, sizeof(*all), cmp_tl);
	for (size_t i = 0; i < n;) {
		uint32_t sec = all[i].t_ms / 1000;
		size_t j = i, ok;
		while (j < n && all[j].t_ms / 1000 == sec)
			j++;
		for (ok = 0; i + ok < j && all[i + ok].lat_us != TL_ERROR; ok++)
			;
		fprintf(f, "{\"s\":%u,\"ok\":%zu,\"errors\":%zu,\"p50_us\":%u,\"p99_us\":%u,\"max_us\":%u}\n", sec, ok,
			j - i - ok, ok ? all[i + ok / 2].lat_us : 0, ok ? all[i + (ok * 99) / 100].lat_us : 0,
			ok ? all[i + ok - 1].lat_us : 0);
		i = j;
	}
	free(all);
	return fclose(f) == 0 ? 0 : -1;
}

/* --timeline-raw: every completion, in the order the workers saw them. */
static int write_timeline_raw(const struct opts *o, const struct worker *ws, int nw)
{
	FILE *f = fopen(o->timeline_raw, "w");
	if (!f) {
		fprintf(stderr, "load: cannot write %s\n", o->timeline_raw);
		return -1;
	}
	for (int i = 0; i < nw; i++)
		for (size_t k = 0; k < ws[i].ntl; k++) {
			const struct tl_rec *t = &ws[i].tl[k];
			fprintf(f, "%u %lld %u %u\n", t->t_ms, t->lat_us == TL_ERROR ? -1LL : (long long)t->lat_us,
				t->connect_us, t->handshake_us);
		}
	return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct opts o;
	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	struct run r = {.o = &o};
	if (parse_connect(&r, o.connect) < 0 || load_names(&r, o.names_file) < 0)
		return 1;
	if (o.zipf_s > 0 && build_zipf(&r, o.zipf_s) < 0)
		return 1;
	wolfSSL_Init();
	r.ctx = make_ctx(&o);
	if (!r.ctx) {
		fprintf(stderr, "load: cannot set up the TLS client context\n");
		return 1;
	}
	struct worker *ws = calloc((size_t)o.threads, sizeof(*ws));
	if (!ws)
		return 1;
	r.t_begin = now_ns();
	r.t_measure = r.t_begin + (uint64_t)(o.warmup_s * 1e9);
	/* --requests alone still ends: a dead server must not hang the harness. */
	double limit = o.duration_s ? o.duration_s + o.warmup_s : 3600;
	r.t_end = r.t_begin + (uint64_t)(limit * 1e9);
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	double cpu0 = o.warmup_s > 0 ? 0 : watched_cpu_s(o.watch_pids);
	int started = 0;
	for (int i = 0; i < o.threads; i++) {
		struct worker *w = &ws[i];
		w->run = &r;
		w->index = i;
		w->rng = seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
		w->nconns = o.concurrency / o.threads + (i < o.concurrency % o.threads);
		if (o.rate > 0) {
			w->open_every = (uint64_t)(1e9 * o.threads / o.rate);
			w->next_open = r.t_begin + w->open_every * (uint64_t)i / (uint64_t)o.threads;
		}
		w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		if (o.mode == MODE_RESUME)
			w->sessions = calloc(r.nnames, sizeof(*w->sessions));
		if (!w->conns || w->ep < 0 || (o.mode == MODE_RESUME && !w->sessions)) {
			fprintf(stderr, "load: out of memory or descriptors\n");
			return 1;
		}
		for (int k = 0; k < w->nconns; k++)
			w->conns[k].fd = -1;
		if (pthread_create(&w->tid, NULL, worker_main, w) != 0) {
			fprintf(stderr, "load: cannot start thread %d\n", i);
			break;
		}
		started++;
	}
	if (o.warmup_s > 0) {
		uint64_t t = now_ns();
		if (t < r.t_measure) {
			uint64_t d = r.t_measure - t;
			struct timespec ts = {.tv_sec = (time_t)(d / 1000000000u), .tv_nsec = (long)(d % 1000000000u)};
			nanosleep(&ts, NULL);
		}
		cpu0 = watched_cpu_s(o.watch_pids);
	}
	for (int i = 0; i < started; i++)
		pthread_join(ws[i].tid, NULL);
	double cpu1 = watched_cpu_s(o.watch_pids);
	uint64_t t_stop = now_ns();
	if (t_stop > r.t_end)
		t_stop = r.t_end;
	double elapsed = (double)(t_stop - r.t_measure) / 1e9;
	int rc = started == o.threads ? 0 : 1;
	for (int i = 0; i < started; i++)
		if (ws[i].failed) {
			fprintf(stderr, "load: thread %d: %s\n", i, ws[i].failmsg);
			rc = 1;
		}
	report(&r, ws, started, elapsed, o.watch_pids ? cpu1 - cpu0 : -1);
	if (o.timeline_raw && write_timeline_raw(&o, ws, started) < 0)
		rc = 1;
	if (o.timeline && write_timeline(&o, ws, started) < 0)
		return 1;
	for (int i = 0; i < o.threads; i++) {
		struct worker *w = &ws[i];
		if (w->sessions)
			for (size_t k = 0; k < r.nnames; k++)
				if (w->sessions[k])
					wolfSSL_SESSION_free(w->sessions[k]);
		free(w->sessions);
		free(w->conns);
		free(w->lat_us);
		free(w->tl);
		if (w->ep >= 0)
			close(w->ep);
	}
	free(ws);
	for (size_t i = 0; i < r.nnames; i++)
		free(r.names[i]);
	free(r.names);
	free(r.name_lens);
	free(r.zipf_cdf);
	wolfSSL_CTX_free(r.ctx);
	wolfSSL_Cleanup();
	return rc;
}
