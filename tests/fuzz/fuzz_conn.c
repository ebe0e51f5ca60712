// clang-format off
// fuzz-sources: terminator/conn.c terminator/backend.c terminator/loop.c terminator/http.c terminator/tls.c terminator/buf.c terminator/proxy_v2.c terminator/certctx.c common/pem.c common/name.c common/err.c common/log.c
// fuzz-libs: $(WOLFSSL_LIBS) -lsodium -lpthread -lm
// fuzz-dict: tests/fuzz/http.dict
// clang-format on
/* Drives the connection state machine in-process: the real loop.c, conn.c, backend.c and http.c,
 * with io_uring and PostgreSQL played by this file from the fuzz input. Up to four plain clients
 * send well-framed requests (each body made of its client's own marker byte, some promising more
 * body than they send), junk, and EOF, cut at arbitrary points; backends answer in full, early
 * (before the body), in part, with bytes nobody asked for, or close. Invariants, checked as it
 * runs: no crash (ASan/UBSan), memory bounded, every request a backend reads is framed (never a
 * body byte read as a head) and its body holds only its own client's bytes, and each client gets
 * the backend's answers to its own requests only, in request order. */
#include <errno.h>
#include <poll.h>
#include <sanitizer/allocator_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "terminator.h"

#define MAX_OPS 4096
#define MAX_PEERS 256
#define MAX_CLIENTS 4
#define RECV_BUF 8192
#define NBUFS 64
#define MEMORY_BOUND (96u << 20)
#define STREAM_MAX (1u << 20)

/* ---- the input ---- */
static const uint8_t *in_p;
static size_t in_left;
static int take(int mod)
{
	if (!in_left)
		return 0;
	in_left--;
	return *in_p++ % mod;
}

/* ---- peers: the other end of every socket the terminator holds ---- */
struct stream {
	uint8_t *p;
	size_t len, cap;
};
static void stream_add(struct stream *s, const void *p, size_t n)
{
	if (s->len + n > STREAM_MAX)
		return;
	if (s->len + n > s->cap) {
		s->cap = (s->len + n) * 2;
		s->p = realloc(s->p, s->cap);
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
}

enum peer_kind { PEER_CLIENT, PEER_BACKEND };
struct request_seen {
	int owner, seq; /* -1: a request that names no client */
	bool whole;	/* every body byte arrived */
};
struct peer {
	enum peer_kind kind;
	bool open;
	int fd;	   /* the terminator's end */
	int other; /* ours */
	int client;
	struct stream got;  /* bytes the terminator sent to this peer */
	struct stream todo; /* bytes this peer will send (clients: requests; backends: answers) */
	/* clients: how far got was checked, the last answer's seq */
	size_t checked;
	int last_seq;
	int next_seq;
	/* backends: how far got was parsed, requests parsed, answered so far */
	size_t parsed;
	struct request_seen reqs[64];
	int nreqs, answered;
	int body_owner;
	int64_t body_left; /* -1: chunked */
	bool in_body, broken, eof;
	bool stuck; /* answered in part: the rest never comes, nor any other answer */
};
static struct peer peers[MAX_PEERS];
static int npeers;
static int clients[MAX_CLIENTS];
static int nclients;

static int peer_of_fd(int fd)
{
	for (int i = npeers - 1; i >= 0; i--)
		if (peers[i].open && peers[i].fd == fd)
			return i;
	return -1;
}

/* ---- the ring ---- */
enum fop_kind { FOP_RECV, FOP_SEND, FOP_CONNECT };
struct fop {
	enum fop_kind kind;
	int peer;
	uint64_t token;
	const uint8_t *buf;
	size_t len;
	bool cancelled;
};
static struct fop ops[MAX_OPS];
static int nops;
static uint64_t accept_token;
/* The plain listener the loop polls (an eventfd standing in), and the client queued on it. */
static int listen_fd = -1, queued_fd = -1;
static uint8_t bufs[NBUFS][RECV_BUF];
static bool buf_used[NBUFS];
static int64_t now_ms;
static struct loop *the_loop;

struct ring {
	int unused;
};
static struct ring the_ring;

int64_t tt_now_ms(void)
{
	return now_ms;
}

int ring_new(unsigned entries, unsigned nbufs, unsigned buf_size, struct ring **out, struct tt_err *err)
{
	*out = &the_ring;
	return 0;
}
void ring_free(struct ring *r)
{
	nops = 0;
}
const char *ring_mode(const struct ring *r)
{
	return "fuzz";
}
static void op_add(enum fop_kind kind, int fd, uint64_t token, const void *buf, size_t len)
{
	int p = peer_of_fd(fd);
	if (p < 0 || nops == MAX_OPS)
		abort(); /* an operation on a socket the terminator does not hold */
	ops[nops++] = (struct fop){kind, p, token, buf, len, false};
}
static void op_remove(int i)
{
	memmove(ops + i, ops + i + 1, (size_t)(nops - i - 1) * sizeof ops[0]);
	nops--;
}
void ring_poll_multishot(struct ring *r, int fd, uint64_t token)
{
	if (fd == listen_fd)
		accept_token = token;
}
/* The input may make an accept fail first (out of descriptors: the loop pauses), or break off (the
 * loop takes the next); the client stays queued either way. */
int ring_accept(struct ring *r, int fd)
{
	int cfd = queued_fd;
	if (fd != listen_fd || cfd < 0)
		return -EAGAIN;
	switch (take(8)) {
	case 0:
		return -EMFILE;
	case 1:
		return -ECONNABORTED;
	default:
		queued_fd = -1;
		return cfd;
	}
}
void ring_recv_multishot(struct ring *r, int fd, uint64_t token)
{
	op_add(FOP_RECV, fd, token, NULL, 0);
}
void ring_send(struct ring *r, int fd, const void *buf, size_t len, uint64_t token)
{
	if (len == 0)
		abort(); /* an empty send would complete with 0, read as a dead peer */
	op_add(FOP_SEND, fd, token, buf, len);
}
void ring_connect(struct ring *r, int fd, const struct sockaddr *sa, socklen_t salen, uint64_t token)
{
	/* The socket becomes one end of a pair, so what the pool checks (MSG_PEEK) is real. */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || dup2(sv[0], fd) < 0)
		abort();
	close(sv[0]);
	struct peer *p = &peers[npeers++];
	memset(p, 0, sizeof *p);
	*p = (struct peer){.kind = PEER_BACKEND, .open = true, .fd = fd, .other = sv[1], .client = -1};
	op_add(FOP_CONNECT, fd, token, NULL, 0);
}
void ring_poll(struct ring *r, int fd, bool want_write, uint64_t token)
{
}
void ring_poll_remove(struct ring *r, uint64_t token)
{
}
void ring_cancel(struct ring *r, uint64_t token)
{
	for (int i = 0; i < nops; i++)
		if (ops[i].token == token)
			ops[i].cancelled = true;
}
void ring_cancel_fd(struct ring *r, int fd)
{
	int p = peer_of_fd(fd);
	for (int i = 0; i < nops; i++)
		if (ops[i].peer == p)
			ops[i].cancelled = true;
}
void ring_close(struct ring *r, int fd)
{
	int p = peer_of_fd(fd);
	if (p < 0)
		abort();
	peers[p].open = false;
	close(peers[p].other);
	close(fd);
}
const uint8_t *ring_buf(const struct ring *r, int buf)
{
	return bufs[buf];
}
void ring_buf_recycle(struct ring *r, int buf)
{
	if (!buf_used[buf])
		abort(); /* recycled twice */
	buf_used[buf] = false;
}
static int buf_get(void)
{
	for (int i = 0; i < NBUFS; i++)
		if (!buf_used[i]) {
			buf_used[i] = true;
			return i;
		}
	return -1;
}

/* ---- certdb: challenges answered when the input says so ---- */
struct certdb {
	int unused;
};
static struct certdb the_db;
struct pending_challenge {
	certdb_challenge_cb cb;
	void *arg;
};
static struct pending_challenge challenges[MAX_CLIENTS * 8];
static int nchallenges;
static bool db_due;
int certdb_new(const struct certdb_config *config, struct certdb **out, struct tt_err *err)
{
	*out = &the_db;
	return 0;
}
void certdb_free(struct certdb *db)
{
	nchallenges = 0;
}
int certdb_fd(const struct certdb *db)
{
	return -1;
}
bool certdb_wants_write(const struct certdb *db)
{
	return false;
}
bool certdb_ready(const struct certdb *db)
{
	return true;
}
void certdb_stats(const struct certdb *db, struct certdb_stats *out)
{
	memset(out, 0, sizeof *out);
}
int64_t certdb_next_deadline_ms(const struct certdb *db)
{
	return db_due ? now_ms : -1;
}
void certdb_process(struct certdb *db, int64_t t)
{
	db_due = false;
	while (nchallenges) {
		struct pending_challenge c = challenges[0];
		memmove(challenges, challenges + 1, (size_t)(--nchallenges) * sizeof challenges[0]);
		c.cb(c.arg, take(3) - 1, "key.auth");
	}
}
int certdb_get_challenge(struct certdb *db, const char *token, certdb_challenge_cb cb, void *arg)
{
	if (nchallenges == (int)(sizeof challenges / sizeof challenges[0]))
		return -1;
	challenges[nchallenges++] = (struct pending_challenge){cb, arg};
	return 0;
}
void certdb_cancel(struct certdb *db, void *arg)
{
	for (int i = 0; i < nchallenges; i++)
		if (challenges[i].arg == arg) {
			memmove(challenges + i, challenges + i + 1,
				(size_t)(nchallenges - i - 1) * sizeof challenges[0]);
			nchallenges--;
			i--;
		}
}
/* Plain connections only: the TLS path has fuzz_sni and the integration tests. */
int certdb_load_cert(struct certdb *db, const char *name, certdb_cert_cb cb, void *arg)
{
	abort();
}
enum sni_result sni_cache_lookup(struct sni_cache *cache, const char *name, struct cert_entry **out)
{
	abort();
}
WOLFSSL_CTX *cert_entry_ctx(const struct cert_entry *entry)
{
	abort();
}
void cert_entry_release(struct cert_entry *entry)
{
	abort();
}

/* ---- the backends: parse what they get, check it, answer in order ---- */
/* Body bytes no head, path or junk ever holds. */
#define MARKER0 0xf0
static char marker(int client)
{
	return (char)(MARKER0 + client);
}
static bool is_marker(char ch)
{
	return (unsigned char)ch >= MARKER0 && (unsigned char)ch < MARKER0 + MAX_CLIENTS;
}

/* An invariant broke: what the peer got goes to stderr, then the crash libFuzzer reports. */
static void violated(const struct peer *p, const char *what)
{
	fprintf(stderr, "fuzz_conn: %s; the peer got %zu bytes:\n", what, p->got.len);
	fwrite(p->got.p, 1, p->got.len, stderr);
	fputc('\n', stderr);
	abort();
}

/* One request head at p: its owner and seq from the path /c<k>/r<n>, its body framing. */
static bool backend_head(struct peer *b, const char *p, size_t len, size_t *used)
{
	const char *end = memmem(p, len, "\r\n\r\n", 4);
	if (!end)
		return false;
	*used = (size_t)(end + 4 - p);
	/* A head the terminator wrote starts with a method token: anything else is body bytes read
	 * as a head, which is what request smuggling is. */
	const char *sp = memchr(p, ' ', *used), *eol = memmem(p, *used, "\r\n", 2);
	if (!sp || sp == p || sp > eol || memcmp(eol - 9, " HTTP/1.", 8) != 0)
		violated(b, "a backend read a head that is no request");
	if (is_marker(p[0]))
		violated(b, "a backend read body bytes as a head");
	int owner = -1, seq = -1;
	const char *path = memchr(p, ' ', *used) + 1;
	/* sscanf reads its input to a NUL, and the bytes a backend got have none: a copy of the line. */
	char line[64] = {0};
	if (eol > path)
		memcpy(line, path, (size_t)(eol - path) < sizeof line - 1 ? (size_t)(eol - path) : sizeof line - 1);
	if (sscanf(line, "/c%d/r%d ", &owner, &seq) != 2)
		owner = seq = -1;
	b->body_owner = owner;
	b->body_left = 0;
	const char *h = p;
	while ((h = memmem(h, (size_t)(end + 2 - h), "\r\n", 2)) && h < end) {
		h += 2;
		if (strncasecmp(h, "content-length:", 15) == 0)
			b->body_left = strtoll(h + 15, NULL, 10);
		else if (strncasecmp(h, "transfer-encoding:", 18) == 0)
			b->body_left = -1;
	}
	if (b->nreqs < 64)
		b->reqs[b->nreqs++] = (struct request_seen){owner, seq, b->body_left == 0};
	b->in_body = b->body_left != 0;
	return true;
}

/* Body bytes of owner's request: a client that promised more body than it sent may have its own
 * next requests read as body, but never a byte of another client (its marker, its paths). */
static bool foreign(int owner, const char *p, size_t n)
{
	if (owner < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (is_marker(p[i]) && p[i] != marker(owner))
			return true;
		if (p[i] == '/' && i + 2 < n && p[i + 1] == 'c' && p[i + 2] >= '0' && p[i + 2] < '0' + MAX_CLIENTS &&
		    p[i + 2] != '0' + owner)
			return true;
	}
	return false;
}

/* Body bytes, checked by foreign() (chunked framing aside). */
static void backend_parse(struct peer *b)
{
	while (!b->broken && b->parsed < b->got.len) {
		const char *p = (const char *)b->got.p + b->parsed;
		size_t len = b->got.len - b->parsed, used = 0;
		if (!b->in_body) {
			if (!backend_head(b, p, len, &used))
				return;
		} else if (b->body_left > 0) {
			used = len < (size_t)b->body_left ? len : (size_t)b->body_left;
			if (foreign(b->body_owner, p, used))
				violated(b, "another client's bytes inside a client's body");
			b->body_left -= (int64_t)used;
		} else {
			/* chunked: "<hex>\r\n<data>\r\n" ... "0\r\n\r\n", as the generator writes it */
			const char *nl = memmem(p, len, "\r\n", 2);
			if (!nl)
				return;
			long size = strtol(p, NULL, 16);
			size_t need = (size_t)(nl - p) + 2 + (size_t)size + 2;
			if (len < need)
				return;
			if (foreign(b->body_owner, nl + 2, (size_t)size))
				violated(b, "another client's bytes inside a client's chunk");
			used = need;
			if (size == 0)
				b->body_left = 0;
		}
		b->parsed += used;
		if (b->body_left == 0 && b->in_body) {
			b->in_body = false;
			if (b->nreqs)
				b->reqs[b->nreqs - 1].whole = true;
		}
	}
}

/* Queues the answer to the next request, whole or not as the input says. */
static void backend_answer(struct peer *b, int mode)
{
	if (b->stuck || b->answered >= b->nreqs)
		return;
	struct request_seen *r = &b->reqs[b->answered];
	if (!r->whole && mode != 1)
		return; /* mode 1 answers early, before the body is in */
	b->answered++;
	char body[32], head[160];
	int bl = snprintf(body, sizeof body, "%d.%d", r->owner, r->seq);
	int hl = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nX-Id: %d.%d\r\nContent-Length: %d\r\n\r\n", r->owner,
			  r->seq, bl);
	size_t n = (size_t)hl + (size_t)bl;
	char all[192];
	memcpy(all, head, (size_t)hl);
	memcpy(all + hl, body, (size_t)bl);
	if (mode == 2) {
		n = (size_t)take((int)n) + 1; /* in part: the rest never comes */
		b->stuck = true;
	}
	stream_add(&b->todo, all, n);
	if (write(b->other, all, n) < 0)
		abort();
}

/* ---- the clients ---- */
static void client_request(struct peer *c)
{
	int seq = c->next_seq++;
	char head[256];
	char m = marker(c->client);
	int kind = take(5), body = take(40);
	int hl;
	switch (kind) {
	case 0:
		hl = snprintf(head, sizeof head, "GET /c%d/r%d HTTP/1.1\r\nHost: a\r\n%s\r\n", c->client, seq,
			      take(4) == 0 ? "Connection: close\r\n" : "");
		stream_add(&c->todo, head, (size_t)hl);
		return;
	case 1:
		hl = snprintf(head, sizeof head, "GET /.well-known/acme-challenge/%s HTTP/1.1\r\nHost: a\r\n\r\n",
			      take(2) ? "tok" : "!");
		stream_add(&c->todo, head, (size_t)hl);
		return;
	case 2: {
		/* Chunked: two chunks of markers. */
		hl =
		    snprintf(head, sizeof head,
			     "POST /c%d/r%d HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", c->client, seq);
		stream_add(&c->todo, head, (size_t)hl);
		for (int k = 0; k < 2; k++) {
			char line[16];
			int ll = snprintf(line, sizeof line, "%x\r\n", body);
			stream_add(&c->todo, line, (size_t)ll);
			for (int i = 0; i < body; i++)
				stream_add(&c->todo, &m, 1);
			stream_add(&c->todo, "\r\n", 2);
		}
		stream_add(&c->todo, "0\r\n\r\n", 5);
		return;
	}
	default: {
		/* Content-Length; kind 4 promises more than it sends (the early-answer shape). */
		int promised = kind == 4 ? body + 1 + take(200) : body;
		hl = snprintf(head, sizeof head, "POST /c%d/r%d HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
			      c->client, seq, promised);
		stream_add(&c->todo, head, (size_t)hl);
		for (int i = 0; i < body; i++)
			stream_add(&c->todo, &m, 1);
		return;
	}
	}
}

static void client_junk(struct peer *c)
{
	int n = take(64);
	for (int i = 0; i < n && in_left; i++) {
		char ch = (char)take(256);
		/* Junk may not name a client (a path /c...) nor carry a client's marker. */
		if (ch == 'c' || is_marker(ch))
			ch = 'z';
		stream_add(&c->todo, &ch, 1);
	}
}

/* The value of the header line at h (name of name_len bytes included), NUL-terminated in buf:
 * the client's bytes are not, and sscanf or strtol skip "\r\n" as blanks and would read on. */
static const char *header_value(const char *h, size_t name_len, const char *end, char *buf, size_t size)
{
	const char *v = h + name_len, *eol = memmem(v, (size_t)(end + 2 - v), "\r\n", 2);
	size_t n = eol ? (size_t)(eol - v) : 0;
	if (n >= size)
		n = size - 1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	return buf;
}

/* Answers a client got: each with an X-Id is one of its own, later than the one before. */
static void client_check(struct peer *c)
{
	for (;;) {
		const char *p = (const char *)c->got.p + c->checked;
		size_t len = c->got.len - c->checked;
		const char *end = len ? memmem(p, len, "\r\n\r\n", 4) : NULL;
		if (!end)
			return;
		size_t hlen = (size_t)(end + 4 - p);
		if (strncmp(p, "HTTP/1.1 ", 9) != 0)
			violated(c, "a client's answers lost their framing");
		long cl = 0;
		int owner = -2, seq = -1;
		for (const char *h = p; (h = memmem(h, hlen - (size_t)(h - p), "\r\n", 2)) && h < end;) {
			h += 2;
			char v[32];
			if (strncasecmp(h, "content-length:", 15) == 0)
				cl = strtol(header_value(h, 15, end, v, sizeof v), NULL, 10);
			else if (strncasecmp(h, "x-id:", 5) == 0 &&
				 sscanf(header_value(h, 5, end, v, sizeof v), " %d.%d", &owner, &seq) != 2)
				abort();
		}
		if (len < hlen + (size_t)cl)
			return;
		/* -1: the answer to a request made of junk, which names no client. */
		if (owner >= 0 || (owner != -2 && owner != -1)) {
			if (owner != c->client || seq <= c->last_seq)
				violated(c, "a client got another's answer, or out of order");
			c->last_seq = seq;
		}
		c->checked += hlen + (size_t)cl;
	}
}

/* ---- events ---- */
static int find_op(enum fop_kind kind, enum peer_kind pk, int which)
{
	int seen = 0, found = -1;
	for (int i = 0; i < nops; i++)
		if (ops[i].kind == kind && !ops[i].cancelled && peers[ops[i].peer].kind == pk) {
			if (seen++ == which)
				return i;
			found = i;
		}
	return found;
}

static unsigned deliver(int i, const struct stream *from, size_t *sent_upto, size_t n, struct ring_event *ev)
{
	size_t avail = from->len - *sent_upto;
	int b = avail ? buf_get() : -1;
	if (b < 0)
		return 0;
	if (n > avail)
		n = avail;
	if (n > RECV_BUF)
		n = RECV_BUF;
	memcpy(bufs[b], from->p + *sent_upto, n);
	*sent_upto += n;
	*ev = (struct ring_event){ops[i].token, (int32_t)n, true, b};
	return 1;
}

static size_t client_sent_upto[MAX_PEERS], backend_sent_upto[MAX_PEERS];

/* One step of the world, from the input; returns the events for the loop. */
static unsigned step(struct ring_event *ev)
{
	/* Cancelled operations complete first, as the kernel completes them promptly. */
	for (int i = 0; i < nops; i++)
		if (ops[i].cancelled) {
			*ev = (struct ring_event){ops[i].token, -ECANCELED, false, -1};
			op_remove(i);
			return 1;
		}
	int action = take(12);
	int which = take(4);
	switch (action) {
	case 0: { /* a new client */
		if (nclients == MAX_CLIENTS || !accept_token || npeers == MAX_PEERS || queued_fd >= 0)
			return 0;
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			abort();
		struct peer *p = &peers[npeers];
		*p = (struct peer){
		    .kind = PEER_CLIENT, .open = true, .fd = sv[0], .other = sv[1], .client = nclients, .last_seq = -1};
		clients[nclients++] = npeers++;
		/* Queued on the listener, whose poll says so; the loop accepts it. */
		queued_fd = sv[0];
		*ev = (struct ring_event){accept_token, POLLIN, true, -1};
		return 1;
	}
	case 1: /* a client writes requests */
	case 2:
		if (nclients)
			client_request(&peers[clients[which % nclients]]);
		return 0;
	case 3:
		if (nclients)
			client_junk(&peers[clients[which % nclients]]);
		return 0;
	case 4: { /* bytes from a client reach the terminator, cut anywhere */
		int i = find_op(FOP_RECV, PEER_CLIENT, which);
		if (i < 0)
			return 0;
		int p = ops[i].peer;
		return deliver(i, &peers[p].todo, &client_sent_upto[p], (size_t)take(256) * 64 + 1, ev);
	}
	case 5: { /* a client's EOF */
		int i = find_op(FOP_RECV, PEER_CLIENT, which);
		if (i < 0 || take(4))
			return 0;
		*ev = (struct ring_event){ops[i].token, 0, false, -1};
		op_remove(i);
		return 1;
	}
	case 6:	  /* a send completes, in full or in part */
	case 7: { /* (clients read, backends receive) */
		int i = find_op(FOP_SEND, action == 6 ? PEER_CLIENT : PEER_BACKEND, which);
		if (i < 0)
			return 0;
		struct fop o = ops[i];
		size_t n = take(3) == 0 ? (size_t)take((int)(o.len < 255 ? o.len : 255)) + 1 : o.len;
		struct peer *p = &peers[o.peer];
		stream_add(&p->got, o.buf, n);
		if (p->kind == PEER_CLIENT)
			client_check(p);
		else
			backend_parse(p);
		*ev = (struct ring_event){o.token, (int32_t)n, false, -1};
		op_remove(i);
		return 1;
	}
	case 8: { /* a backend connect completes */
		int i = find_op(FOP_CONNECT, PEER_BACKEND, which);
		if (i < 0)
			return 0;
		*ev = (struct ring_event){ops[i].token, take(8) == 0 ? -ECONNREFUSED : 0, false, -1};
		op_remove(i);
		return 1;
	}
	case 9: { /* a backend answers (whole, early, in part) and its bytes arrive, or it closes */
		int i = find_op(FOP_RECV, PEER_BACKEND, which);
		if (i < 0)
			return 0;
		int p = ops[i].peer;
		struct peer *b = &peers[p];
		int mode = take(5);
		if (mode == 3) {
			/* Bytes nobody asked for, sent while the connection is idle: no exchange is open on
			 * it, so they must reach no client (a pooled connection is checked before reuse). */
			bool idle = !b->stuck && b->answered == b->nreqs && !b->in_body && b->parsed == b->got.len &&
				    backend_sent_upto[p] == b->todo.len;
			for (int k = 0; k < nops && idle; k++)
				if (ops[k].peer == p && ops[k].kind == FOP_SEND)
					idle = false;
			if (!idle)
				return 0;
			static const char stray[] = "HTTP/1.1 200 OK\r\nX-Id: 9.9\r\nContent-Length: 1\r\n\r\nx";
			stream_add(&b->todo, stray, sizeof stray - 1);
			if (write(b->other, stray, sizeof stray - 1) < 0)
				abort();
		} else if (mode == 4 && backend_sent_upto[p] == b->todo.len) {
			shutdown(b->other, SHUT_WR);
			*ev = (struct ring_event){ops[i].token, 0, false, -1};
			op_remove(i);
			return 1;
		} else if (mode < 3) {
			backend_answer(b, mode);
		}
		size_t before = backend_sent_upto[p];
		unsigned n = deliver(i, &b->todo, &backend_sent_upto[p], (size_t)take(64) * 16 + 1, ev);
		/* Drain what was delivered from the kernel's copy, so MSG_PEEK stays in step. */
		char sink[RECV_BUF];
		if (n && recv(b->fd, sink, backend_sent_upto[p] - before, MSG_DONTWAIT) < 0)
			(void)0;
		return n;
	}
	case 10: /* time passes */
		now_ms += take(256) * 97;
		db_due = nchallenges > 0 && take(2);
		return 0;
	default:
		if (take(16) == 0)
			loop_drain(the_loop);
		db_due = nchallenges > 0;
		return 0;
	}
}

int ring_wait(struct ring *r, int64_t timeout_ms, struct ring_event *events, unsigned max, unsigned *n,
	      struct tt_err *err)
{
	*n = 0;
	if (__sanitizer_get_current_allocated_bytes() > MEMORY_BOUND)
		abort(); /* a connection's memory grew past every bound */
	if (!in_left) {
		/* The input is spent: cancellations settle, then the loop stops. */
		for (int i = 0; i < nops && *n < max; i++)
			if (ops[i].cancelled) {
				events[(*n)++] = (struct ring_event){ops[i].token, -ECANCELED, false, -1};
				op_remove(i--);
			}
		loop_stop(the_loop);
		return 0;
	}
	*n = step(events);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	tt_log_set_level(TT_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct term_config cfg;
	static struct metrics m;
	cfg.backend_mode = BACKEND_HTTP;
	cfg.backend_addr.ss_family = AF_UNIX;
	cfg.backend_len = sizeof(sa_family_t);
	for (int k = 0; k < TIMER_KINDS; k++)
		cfg.timeout_ms[k] = 1000 * (k + 1);
	cfg.response_timeout_ms = 4000;
	/* From the input's size, so that a loop holding its share is reached without shifting what the
	 * input's bytes mean. */
	cfg.loop_max_conns = 1 + size % MAX_CLIENTS;
	in_p = data;
	in_left = size;
	npeers = nclients = nops = 0;
	accept_token = 0;
	nchallenges = 0;
	db_due = false;
	memset(client_sent_upto, 0, sizeof client_sent_upto);
	memset(backend_sent_upto, 0, sizeof backend_sent_upto);
	/* loop_free closes it. */
	listen_fd = eventfd(0, EFD_CLOEXEC);
	if (listen_fd < 0)
		abort();
	int fds[2] = {-1, listen_fd};
	struct tt_err err;
	if (loop_new(0, &cfg, fds, &m, &the_loop, &err) < 0)
		abort();
	if (loop_run(the_loop, &err) < 0)
		abort();
	loop_free(the_loop);
	if (queued_fd >= 0)
		close(queued_fd);
	queued_fd = -1;
	for (int i = 0; i < npeers; i++) {
		if (peers[i].open)
			close(peers[i].other);
		free(peers[i].got.p);
		free(peers[i].todo.p);
	}
	for (int i = 0; i < NBUFS; i++)
		if (buf_used[i])
			abort(); /* a receive buffer never given back */
	return 0;
}
