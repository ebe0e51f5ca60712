/* conn: one client connection's state machine: ClientHello -> SNI -> certificate -> handshake ->
 * request head -> backend -> response, one exchange at a time, and the plain port-80 path. The
 * connection's state is one enum; its client side, its backend side (backend.c) and the exchange
 * in progress are one struct each. Input-driven work runs in conn_progress's loop, which yields
 * back to the ring after a budget per event; callbacks set state, they never call the parser. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "terminator.h"

#define HEAD_MAX 16384
/* Past these the connection stops reading from a side until its output drains. */
#define PENDING_HIGH (256 * 1024)
/* A client that keeps sending while it has nothing to say (ClientHello, waiting for a certificate)
 * is cut off here. */
#define HELLO_MAX (64 * 1024)
/* Requests, and bytes of request heads, worked off per event before yielding back to the ring. */
#define PROGRESS_REQUESTS 32
#define PROGRESS_BYTES (64 * 1024)
/* Room for what the rewrite adds to a request head (it only drops the client's own forwarding
 * headers): X-Forwarded-For, -Proto and -Host, with an IPv6 address and a host name of TT_NAME_MAX,
 * fit with margin. */
#define FORWARD_HEADERS_ROOM 1024
/* A PROXY v2 header at most: 16 bytes, IPv6 addresses and ports (36), and TLVs for the SNI (at most
 * TT_NAME_MAX), ALPN, version and cipher names. */
#define PROXY_V2_HEADER_ROOM 1024
#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"
#define TOKEN_MAX 128

enum conn_state {
	C_HELLO, /* buffering the ClientHello record */
	C_CERT,	 /* waiting for the certificate from the database */
	C_HANDSHAKE,
	C_HEAD,	     /* between exchanges: waiting for (the rest of) a request head */
	C_CHALLENGE, /* waiting for an HTTP-01 key authorization from the database */
	C_PROXY,     /* an exchange is with the backend */
	C_TUNNEL,    /* --backend-mode proxy-v2 or after 101: bytes pass both ways unparsed */
	C_FINISHING, /* sending what is queued, then closing */
	C_CLOSED,    /* waiting for the ring to give back its requests */
};

/* One request/response exchange with the backend. The backend connection may serve another
 * exchange only once req is REQ_SENT (head and every body byte sent), resp is RESP_DONE and
 * backend_keep_alive holds; anything else closes it. */
enum req_state {
	REQ_BODY, /* body bytes left to forward */
	REQ_SENT, /* the whole request is queued for the backend */
};
enum resp_state {
	RESP_HEAD, /* waiting for (the rest of) the response head */
	RESP_BODY, /* response bytes left to relay */
	RESP_DONE,
};
struct exchange {
	enum req_state req;
	enum resp_state resp;
	struct http_body req_body, resp_body;
	bool head_method;
	bool client_keep_alive;	 /* the client may send another request on its connection */
	bool backend_keep_alive; /* the response allows another request on the backend connection */
	bool until_close;	 /* the response ends when the backend closes */
	bool started;		 /* a byte of the response went to the client */
	bool retry_ok;		 /* the request may be sent once more on a new connection */
	struct buf retry;	 /* the request head, while it may be */
	int64_t deadline_ms;	 /* the whole response must have reached the client by then */
};

struct conn {
	struct timer timer; /* first: the ring's tokens point at it */
	struct loop *loop;
	enum conn_state state;
	bool tls;
	bool served;	    /* answered a request: the next wait is keep-alive, not a first head */
	bool db_pending;    /* certdb holds a callback for this connection */
	struct side client; /* in: request plaintext not yet forwarded; out: to the client */
	struct tls_conn session;
	struct backend backend; /* in: backend bytes not yet relayed; out: to the backend */
	struct exchange x;
	/* Plaintext for the client not yet encrypted: what one turn writes (a response's head and
	 * body) leaves as one TLS record, not one per piece (the client's reads and decryptions). */
	struct buf plain_out;
	struct cert_entry *entry;
	char sni[TT_NAME_MAX];
	char client_ip[INET6_ADDRSTRLEN];
};

static const struct timer_ops conn_ops;
static void conn_flush_client(struct conn *c);
static void conn_seal(struct conn *c);
static void conn_progress(struct conn *c);
static void conn_tunnel_start(struct conn *c);

static struct conn *conn_of(struct timer *t)
{
	return (struct conn *)((char *)t - offsetof(struct conn, timer));
}

static bool conn_active(const struct conn *c)
{
	return c->state < C_FINISHING;
}

static void conn_timer(struct conn *c, int kind)
{
	loop_timer_set(c->loop, &c->timer, kind);
}

static void conn_forget_db(struct conn *c)
{
	if (c->db_pending)
		certdb_cancel(c->loop->db, c);
	c->db_pending = false;
}

/* The backend connection of an exchange that did not finish on both sides is closed. */
static void conn_drop_backend(struct conn *c)
{
	backend_release(c->loop, &c->backend, c, false);
}

/* The connection ends or idles: a backend connection kept from its last exchange goes to the pool,
 * one in an exchange is closed. */
static void conn_let_go_backend(struct conn *c)
{
	if (c->backend.state != BACKEND_RETURNING)
		backend_release(c->loop, &c->backend, c, c->backend.state == BACKEND_KEPT);
}

static void conn_close(struct conn *c)
{
	if (c->state == C_CLOSED)
		return;
	conn_forget_db(c);
	conn_let_go_backend(c);
	c->backend.wanted = false;
	c->state = C_CLOSED;
	ring_cancel_fd(c->loop->ring, c->client.fd);
	conn_timer(c, TIMER_CLOSED);
}

/* Sends what is queued, then closes; a TLS session says close_notify first. */
static void conn_finish(struct conn *c)
{
	if (!conn_active(c))
		return;
	conn_forget_db(c);
	conn_let_go_backend(c);
	c->backend.wanted = false;
	c->state = C_FINISHING;
	conn_seal(c);
	tls_conn_close_notify(&c->session);
	conn_flush_client(c);
}

/* Plaintext for the client: on TLS connections held in plain_out until conn_seal. */
static int conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->session.ssl)
		return buf_append(&c->plain_out, p, n);
	return buf_append(&c->client.out, p, n);
}

/* Encrypts what conn_write held into client.out; before anything else goes there (wolfSSL's own
 * records, close_notify) and at every flush. */
static void conn_seal(struct conn *c)
{
	if (buf_size(&c->plain_out) == 0)
		return;
	if (tls_conn_write(&c->session, buf_head(&c->plain_out), buf_size(&c->plain_out)) < 0)
		c->session.io.failed = true;
	c->plain_out.off = c->plain_out.len = 0;
}

static void conn_respond_error(struct conn *c, int status)
{
	char out[512];
	ssize_t n = http_write_simple(status, NULL, false, out, sizeof out);
	if (c->x.head_method && n > 0) {
		/* A HEAD response has no body; the simple writers' bodies are short messages. */
		char *end = memmem(out, (size_t)n, "\r\n\r\n", 4);
		if (end)
			n = end + 4 - out;
	}
	if (n < 0 || conn_write(c, out, (size_t)n) < 0) {
		conn_close(c);
		return;
	}
	conn_finish(c);
}

/* After a short send, the rest of the flight goes again. */
static void conn_send_client_flight(struct conn *c)
{
	c->client.send_busy = true;
	c->client.ops++;
	ring_send(c->loop->ring, c->client.fd, buf_head(&c->client.flight), buf_size(&c->client.flight),
		  loop_token(&c->timer, OP_CLIENT_SEND));
}

static void conn_flush_client(struct conn *c)
{
	if (c->state == C_CLOSED)
		return;
	conn_seal(c);
	if (c->session.io.failed) {
		conn_close(c);
		return;
	}
	if (c->client.send_busy)
		return;
	if (buf_size(&c->client.out) == 0) {
		if (c->state == C_FINISHING)
			conn_close(c);
		return;
	}
	struct buf t = c->client.out;
	c->client.out = c->client.flight;
	c->client.flight = t;
	conn_send_client_flight(c);
}

static void conn_arm_client_recv(struct conn *c)
{
	if (c->state == C_CLOSED || c->client.recv_armed || c->client.recv_paused || c->client.eof)
		return;
	c->client.recv_armed = true;
	c->client.ops++;
	ring_recv_multishot(c->loop->ring, c->client.fd, loop_token(&c->timer, OP_CLIENT_RECV));
}

static void conn_pause_client(struct conn *c)
{
	if (c->client.recv_paused)
		return;
	c->client.recv_paused = true;
	if (c->client.recv_armed)
		ring_cancel(c->loop->ring, loop_token(&c->timer, OP_CLIENT_RECV));
}

static void conn_resume_client(struct conn *c)
{
	if (!c->client.recv_paused)
		return;
	c->client.recv_paused = false;
	conn_arm_client_recv(c);
}

/* Bytes for the client not yet on the ring, sealed or not. */
static size_t conn_client_queued(const struct conn *c)
{
	return buf_size(&c->client.out) + buf_size(&c->plain_out);
}

/* Client bytes held and not yet gone anywhere: reading stops past PENDING_HIGH. */
static size_t conn_pending_from_client(const struct conn *c)
{
	return buf_size(&c->client.in) + buf_size(&c->session.in) + buf_size(&c->backend.s.out);
}
static size_t conn_pending_to_client(const struct conn *c)
{
	return conn_client_queued(c) + buf_size(&c->backend.s.in);
}

/* The response timer: backend silence (--backend-timeout), but never past the response's
 * absolute deadline, which a slow reader cannot push back. */
static void conn_response_timer(struct conn *c)
{
	loop_timer_set_by(c->loop, &c->timer, TIMER_BACKEND, c->x.deadline_ms);
}

/* ---- backend ---- */

static void conn_backend_connect(struct conn *c);

static void conn_backend_failed(struct conn *c, int status)
{
	if (c->state == C_TUNNEL) {
		/* No HTTP spoken here to say 502 in. */
		METRIC_ADD(c->loop->m, backend_errors, 1);
		conn_close(c);
		return;
	}
	conn_drop_backend(c);
	if (c->state != C_PROXY)
		return;
	METRIC_ADD(c->loop->m, backend_errors, 1);
	if (c->x.started)
		conn_close(c);
	else
		conn_respond_error(c, status);
}

/* A backend may close a kept-alive connection just as a request goes out on it. A request without a
 * body that got no byte of answer is sent once more, on a new connection; else the client gets 502. */
static void conn_backend_lost(struct conn *c)
{
	if (c->state == C_PROXY && c->x.retry_ok && c->backend.reused && !c->x.started) {
		c->x.retry_ok = false;
		conn_drop_backend(c);
		if (buf_append(&c->backend.s.out, buf_head(&c->x.retry), buf_size(&c->x.retry)) == 0) {
			conn_timer(c, TIMER_BACKEND_CONNECT);
			c->backend.fresh = true;
			conn_backend_connect(c);
			return;
		}
	}
	conn_backend_failed(c, 502);
}

static void conn_backend_reused(struct conn *c)
{
	METRIC_ADD(c->loop->m, backend_reuses, 1);
	conn_response_timer(c);
	backend_arm_recv(c->loop, &c->backend, &c->timer);
	backend_flush(c->loop, &c->backend, &c->timer);
}

static void conn_backend_connect(struct conn *c)
{
	struct backend *b = &c->backend;
	bool may_reuse = c->loop->cfg->backend_mode == BACKEND_HTTP;
	if (backend_take_kept(c->loop, b, may_reuse)) {
		conn_backend_reused(c);
		return;
	}
	if (b->s.ops) {
		/* Completions of the previous backend socket are still due; connect after them. */
		b->wanted = true;
		return;
	}
	b->wanted = false;
	switch (backend_open(c->loop, b, &c->timer, may_reuse)) {
	case BACKEND_OPENED:
		conn_backend_reused(c);
		break;
	case BACKEND_PENDING:
		METRIC_ADD(c->loop->m, backend_connects, 1);
		break;
	case BACKEND_FAILED:
		conn_backend_failed(c, 502);
		break;
	}
}

/* The response is relayed: if the exchange finished on both sides, the backend connection stays
 * for the client's next request (back to the pool when the client ends or idles past its linger),
 * and the connection waits for that request (conn_progress runs after). */
static void conn_response_done(struct conn *c)
{
	struct exchange *x = &c->x;
	x->resp = RESP_DONE;
	c->state = C_HEAD;
	c->served = true;
	x->retry_ok = false;
	x->retry.off = x->retry.len = 0;
	bool reusable = x->req == REQ_SENT && x->backend_keep_alive && !x->until_close;
	/* A body the client has not finished sending can no longer go anywhere. */
	bool next = x->client_keep_alive && !x->until_close && x->req == REQ_SENT && !c->client.eof &&
		    c->loop->accept != ACCEPT_DRAINING;
	if (!(reusable && next && backend_keep(&c->backend)))
		backend_release(c->loop, &c->backend, &c->timer, reusable);
	if (!next)
		conn_finish(c);
}

/* A response head for a client whose connection ends after it (the loop drains): its Connection
 * headers are replaced by Connection: close, so the client does not send another request. */
static int conn_write_head_closing(struct conn *c, const uint8_t *p, size_t n)
{
	size_t blank = n >= 2 && p[n - 2] == '\r' ? 2 : 1;
	size_t at = 0;
	while (at < n - blank) {
		const uint8_t *nl = memchr(p + at, '\n', n - blank - at);
		size_t len = nl ? (size_t)(nl - (p + at)) + 1 : n - blank - at;
		if (!(len >= 11 && strncasecmp((const char *)p + at, "connection:", 11) == 0) &&
		    conn_write(c, p + at, len) < 0)
			return -1;
		at += len;
	}
	static const char close_hdr[] = "Connection: close\r\n\r\n";
	return conn_write(c, close_hdr, sizeof close_hdr - 1);
}

/* One response head at p: relayed, and the exchange's response state set from it. Returns the
 * bytes used, 0 when incomplete, -1 when the connection or the backend went. */
static ssize_t conn_relay_head(struct conn *c, const uint8_t *p, size_t len)
{
	struct exchange *x = &c->x;
	struct http_response r;
	enum http_parse rc = http_parse_response((const char *)p, len, HEAD_MAX, x->head_method, &r);
	if (rc == HTTP_INCOMPLETE)
		return 0;
	if (rc != HTTP_OK) {
		conn_backend_failed(c, 502);
		return -1;
	}
	bool closing = c->loop->accept == ACCEPT_DRAINING && r.status >= 200;
	if (closing)
		x->client_keep_alive = false;
	if ((closing ? conn_write_head_closing(c, p, r.head_len) : conn_write(c, p, r.head_len)) < 0) {
		conn_close(c);
		return -1;
	}
	x->started = true;
	if (r.status >= 100 && r.status < 200 && r.status != 101)
		return (ssize_t)r.head_len;
	x->backend_keep_alive = r.keep_alive;
	if (r.status == 101) {
		/* Switched protocols (WebSocket): from here the bytes pass both ways unparsed. */
		x->resp = RESP_DONE;
		c->state = C_TUNNEL;
		conn_timer(c, TIMER_IDLE);
		return (ssize_t)r.head_len;
	}
	if (r.no_body) {
		if (r.head_len < len)
			x->backend_keep_alive = false;
		conn_response_done(c);
		return (ssize_t)r.head_len;
	}
	x->until_close = !r.chunked && r.content_length < 0;
	http_body_init(&x->resp_body, r.content_length, r.chunked, x->until_close);
	x->resp = RESP_BODY;
	return (ssize_t)r.head_len;
}

/* Relays backend bytes at p; returns how many were used (the rest waits for the client). */
static size_t conn_relay_response(struct conn *c, const uint8_t *p, size_t len)
{
	size_t used = 0;
	while (used < len && c->state == C_PROXY) {
		if (conn_client_queued(c) > PENDING_HIGH)
			break;
		if (c->x.resp == RESP_HEAD) {
			ssize_t n = conn_relay_head(c, p + used, len - used);
			if (n < 0)
				return len;
			if (n == 0)
				break;
			used += (size_t)n;
			continue;
		}
		bool done = false;
		ssize_t n = http_body_consume(&c->x.resp_body, (const char *)p + used, len - used, &done);
		if (n < 0) {
			conn_backend_failed(c, 502);
			return len;
		}
		if (n > 0 && conn_write(c, p + used, (size_t)n) < 0) {
			conn_close(c);
			return len;
		}
		used += (size_t)n;
		if (done) {
			/* Bytes past the response answer nothing we asked: that backend connection is done. */
			if (used < len)
				c->x.backend_keep_alive = false;
			conn_response_done(c);
		}
	}
	if (c->state == C_TUNNEL && used < len) {
		if (conn_write(c, p + used, len - used) < 0)
			conn_close(c);
		used = len;
	}
	conn_flush_client(c);
	return used;
}

/* Relays what waits in backend.s.in, as far as the client keeps up. */
static void conn_pump_response(struct conn *c)
{
	struct buf *in = &c->backend.s.in;
	if (c->state != C_PROXY || buf_size(in) == 0)
		return;
	size_t used = conn_relay_response(c, buf_head(in), buf_size(in));
	buf_consume(in, used < buf_size(in) ? used : buf_size(in));
	/* A response framed by the close is whole once what came before the close is relayed. */
	if (c->state == C_PROXY && c->backend.s.eof && buf_size(in) == 0) {
		conn_drop_backend(c);
		conn_response_done(c);
	}
}

static void conn_backend_data(struct conn *c, const uint8_t *p, size_t len)
{
	if (c->state == C_TUNNEL) {
		conn_timer(c, TIMER_IDLE);
		if (conn_write(c, p, len) < 0) {
			conn_close(c);
			return;
		}
		if (conn_client_queued(c) > PENDING_HIGH)
			backend_pause(c->loop, &c->backend, &c->timer);
		conn_flush_client(c);
		return;
	}
	if (c->state != C_PROXY || c->x.resp == RESP_DONE) {
		/* Bytes outside a response: the backend broke framing; never pass them on. */
		conn_drop_backend(c);
		return;
	}
	conn_response_timer(c);
	struct buf *in = &c->backend.s.in;
	if (buf_size(in) == 0) {
		size_t used = conn_relay_response(c, p, len);
		/* Whatever the state now, unrelayed bytes of this backend are kept only while it is ours. */
		if (used < len && c->backend.state == BACKEND_OPEN && c->state == C_PROXY &&
		    buf_append(in, p + used, len - used) < 0)
			conn_close(c);
	} else {
		if (buf_append(in, p, len) < 0) {
			conn_close(c);
			return;
		}
		conn_pump_response(c);
	}
	if (conn_pending_to_client(c) > PENDING_HIGH)
		backend_pause(c->loop, &c->backend, &c->timer);
	conn_progress(c);
}

static void conn_backend_eof(struct conn *c)
{
	if (c->state == C_TUNNEL) {
		conn_drop_backend(c);
		conn_finish(c);
		return;
	}
	if (c->state == C_PROXY && c->x.resp == RESP_BODY && c->x.until_close) {
		c->backend.s.eof = true;
		if (buf_size(&c->backend.s.in) == 0) {
			conn_drop_backend(c);
			conn_response_done(c);
			conn_progress(c);
		}
		return;
	}
	if (c->state == C_PROXY)
		conn_backend_lost(c);
	else
		conn_drop_backend(c);
}

/* ---- requests ---- */

static bool conn_token_valid(const char *t, size_t n)
{
	if (n == 0 || n > TOKEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = t[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		      ch == '_'))
			return false;
	}
	return true;
}

/* Answers the challenge request and sets the state for the next one; never parses further. */
static void conn_challenge_answer(struct conn *c, int status, const char *key_auth)
{
	char out[1024];
	ssize_t n;
	bool keep = c->x.client_keep_alive && c->loop->accept != ACCEPT_DRAINING;
	if (status == 0)
		n = http_write_simple(200, key_auth, keep, out, sizeof out);
	else
		n = http_write_simple(status == 1 ? 404 : 503, NULL, keep, out, sizeof out);
	if (n < 0 || conn_write(c, out, (size_t)n) < 0) {
		conn_close(c);
		return;
	}
	c->state = C_HEAD;
	c->served = true;
	if (!keep || c->client.eof)
		conn_finish(c);
}

/* certdb's callback, from certdb_process: the next request waits for the loop's next turn. */
static void conn_challenge_done(void *arg, int status, const char *key_auth)
{
	struct conn *c = arg;
	c->db_pending = false;
	conn_challenge_answer(c, status, key_auth);
	if (conn_active(c))
		loop_defer(c->loop, &c->timer);
	else
		conn_flush_client(c);
}

/* token: NULL when the request named no valid one (answered 404 without a query). */
static void conn_challenge(struct conn *c, const char *token)
{
	METRIC_ADD(c->loop->m, challenges, 1);
	if (!token) {
		conn_challenge_answer(c, 1, NULL);
		return;
	}
	c->state = C_CHALLENGE;
	c->db_pending = true;
	if (certdb_get_challenge(c->loop->db, token, conn_challenge_done, c) < 0) {
		if (c->db_pending) {
			c->db_pending = false;
			conn_challenge_answer(c, -1, NULL);
		}
		return;
	}
	loop_db_watch(c->loop, false);
}

static const char *conn_client_ip(struct conn *c)
{
	if (c->client_ip[0])
		return c->client_ip;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getpeername(c->client.fd, (struct sockaddr *)&ss, &len) < 0)
		snprintf(c->client_ip, sizeof c->client_ip, "unknown");
	else if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->client_ip, sizeof c->client_ip);
	else if (IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
		/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; the backend wants a.b.c.d. */
		inet_ntop(AF_INET, ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr + 12, c->client_ip,
			  sizeof c->client_ip);
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->client_ip, sizeof c->client_ip);
	return c->client_ip;
}

/* Starts an exchange: the rewritten head queued for the backend, and a backend connection. */
static void conn_forward(struct conn *c, const struct http_request *r)
{
	char host[TT_NAME_MAX + 8];
	const char *fwd_host = c->sni;
	if (!c->tls) {
		/* HTTP/1.1 requires Host; an HTTP/1.0 request without one goes on without X-Forwarded-Host. */
		if ((!r->host && r->minor_version >= 1) || (r->host && r->host_len >= sizeof host)) {
			conn_respond_error(c, 400);
			return;
		}
		fwd_host = NULL;
		if (r->host) {
			memcpy(host, r->host, r->host_len);
			host[r->host_len] = 0;
			fwd_host = host;
		}
	}
	struct http_forward fwd = {
	    .client_ip = conn_client_ip(c), .proto = c->tls ? "https" : "http", .host = fwd_host};
	struct buf *out = &c->backend.s.out;
	size_t room = r->head_len + FORWARD_HEADERS_ROOM;
	if (buf_reserve(out, room) < 0) {
		conn_close(c);
		return;
	}
	ssize_t n = http_rewrite_request(r, &fwd, (char *)out->data + out->len, out->cap - out->len);
	if (n < 0) {
		conn_respond_error(c, 431);
		return;
	}
	struct exchange *x = &c->x;
	bool body = r->content_length > 0 || r->chunked;
	x->req = body ? REQ_BODY : REQ_SENT;
	x->resp = RESP_HEAD;
	x->started = x->until_close = false;
	x->backend_keep_alive = false;
	x->retry.off = x->retry.len = 0;
	x->retry_ok = !body && buf_append(&x->retry, out->data + out->len, (size_t)n) == 0;
	x->deadline_ms = c->loop->now_ms + c->loop->cfg->response_timeout_ms;
	out->len += (size_t)n;
	buf_consume(&c->client.in, r->head_len);
	http_body_init(&x->req_body, r->content_length, r->chunked, false);
	c->state = C_PROXY;
	conn_timer(c, TIMER_BACKEND_CONNECT);
	conn_backend_connect(c);
}

/* Parses one request head from client.in and starts what it asks for. */
static void conn_request(struct conn *c)
{
	struct http_request r;
	enum http_parse rc =
	    http_parse_request((const char *)buf_head(&c->client.in), buf_size(&c->client.in), HEAD_MAX, &r);
	if (rc == HTTP_INCOMPLETE) {
		if (c->timer.kind != TIMER_HEADER)
			conn_timer(c, TIMER_HEADER);
		if (c->client.eof)
			conn_close(c);
		return;
	}
	c->x.head_method = rc == HTTP_OK && r.method_len == 4 && memcmp(r.method, "HEAD", 4) == 0;
	if (rc != HTTP_OK) {
		METRIC_ADD(c->loop->m, bad_requests, 1);
		conn_respond_error(c, rc == HTTP_TOO_LARGE ? 431 : 400);
		return;
	}
	METRIC_ADD(c->loop->m, requests, 1);
	c->x.client_keep_alive = r.keep_alive;
	size_t plen = sizeof CHALLENGE_PREFIX - 1;
	if (!c->tls && r.method_len == 3 && memcmp(r.method, "GET", 3) == 0 && r.target_len >= plen &&
	    memcmp(r.target, CHALLENGE_PREFIX, plen) == 0) {
		if (r.content_length > 0 || r.chunked) {
			conn_respond_error(c, 400);
			return;
		}
		/* Copied out: the head is consumed before the answer. */
		char token[TOKEN_MAX + 1];
		size_t n = r.target_len - plen;
		bool valid = conn_token_valid(r.target + plen, n);
		if (valid) {
			memcpy(token, r.target + plen, n);
			token[n] = 0;
		}
		buf_consume(&c->client.in, r.head_len);
		conn_challenge(c, valid ? token : NULL);
		return;
	}
	if (c->loop->cfg->backend_mode == BACKEND_PROXY_V2) {
		/* From here on this connection is the backend's, head included. */
		conn_tunnel_start(c);
		return;
	}
	conn_forward(c, &r);
}

/* Moves request body bytes from client.in to the backend. */
static void conn_request_body(struct conn *c)
{
	struct exchange *x = &c->x;
	struct buf *in = &c->client.in;
	if (x->req != REQ_BODY || buf_size(in) == 0)
		return;
	bool done = false;
	ssize_t n = http_body_consume(&x->req_body, (const char *)buf_head(in), buf_size(in), &done);
	if (n < 0) {
		METRIC_ADD(c->loop->m, bad_requests, 1);
		if (x->started)
			conn_close(c);
		else
			conn_respond_error(c, 400);
		return;
	}
	if (n > 0) {
		if (buf_append(&c->backend.s.out, buf_head(in), (size_t)n) < 0) {
			conn_close(c);
			return;
		}
		buf_consume(in, (size_t)n);
	}
	if (done)
		x->req = REQ_SENT;
}

/* Gives back the buffers that hold nothing (those the kernel is sending from stay). */
static void conn_trim(struct conn *c)
{
	struct buf *bufs[] = {&c->client.in,  &c->session.in, &c->backend.s.in, &c->backend.s.out,
			      &c->client.out, &c->x.retry,    &c->plain_out};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		if (buf_size(bufs[i]) == 0)
			buf_release(bufs[i]);
	if (!c->backend.s.send_busy)
		buf_release(&c->backend.s.flight);
	if (!c->client.send_busy)
		buf_release(&c->client.flight);
}

/* ---- proxy-v2 tunnel ---- */

/* The backend learns who the client is from a PROXY v2 header, then gets the bytes as they are. */
static void conn_tunnel_start(struct conn *c)
{
	struct sockaddr_storage src, dst;
	socklen_t sl = sizeof src, dl = sizeof dst;
	if (getpeername(c->client.fd, (struct sockaddr *)&src, &sl) < 0 ||
	    getsockname(c->client.fd, (struct sockaddr *)&dst, &dl) < 0) {
		conn_close(c);
		return;
	}
	struct proxy_v2_tls tls, *tlsp = NULL;
	char alpn[64];
	if (c->session.ssl) {
		tls = (struct proxy_v2_tls){.sni = c->sni,
					    .alpn = tls_conn_alpn(&c->session, alpn, sizeof alpn),
					    .version = wolfSSL_get_version(c->session.ssl),
					    .cipher = wolfSSL_get_cipher_name(c->session.ssl)};
		tlsp = &tls;
	}
	struct buf *out = &c->backend.s.out;
	if (buf_reserve(out, PROXY_V2_HEADER_ROOM) < 0) {
		conn_close(c);
		return;
	}
	ssize_t n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, tlsp, out->data + out->len,
				    out->cap - out->len);
	if (n < 0) {
		conn_close(c);
		return;
	}
	out->len += (size_t)n;
	c->state = C_TUNNEL;
	conn_timer(c, TIMER_BACKEND_CONNECT);
	conn_backend_connect(c);
}

static void conn_tunnel_pass(struct conn *c)
{
	struct buf *in = &c->client.in;
	if (buf_size(in)) {
		if (buf_append(&c->backend.s.out, buf_head(in), buf_size(in)) < 0) {
			conn_close(c);
			return;
		}
		buf_consume(in, buf_size(in));
		if (c->backend.state == BACKEND_OPEN)
			conn_timer(c, TIMER_IDLE);
	}
	/* The client is done: once the backend has all it sent, the tunnel closes. */
	if (c->client.eof && buf_size(&c->backend.s.out) == 0 && !c->backend.s.send_busy)
		conn_finish(c);
}

static void conn_go_idle(struct conn *c)
{
	/* Bytes that complete nothing (part of a TLS record) do not restart an idle period. */
	if (c->served && (c->timer.kind == TIMER_LINGER || c->timer.kind == TIMER_IDLE))
		return;
	int kind = c->served ? TIMER_LINGER : TIMER_HEADER;
	if (c->timer.kind != kind)
		conn_timer(c, kind);
}

/* ---- TLS ---- */

/* Ciphertext at p (none: what waits in the session) through wolfSSL into client.in. */
static void conn_tls_input(struct conn *c, const uint8_t *p, size_t len)
{
	bool established;
	conn_seal(c);
	enum tls_result rc = tls_conn_feed(&c->session, p, len, &c->client.in, PENDING_HIGH, &established);
	if (established) {
		if (wolfSSL_version(c->session.ssl) == TLS1_3_VERSION)
			METRIC_ADD(c->loop->m, handshakes_ok[HS_TLS13], 1);
		else
			METRIC_ADD(c->loop->m, handshakes_ok[HS_TLS12], 1);
		c->state = C_HEAD;
		conn_timer(c, TIMER_HEADER);
		if (c->loop->cfg->backend_mode == BACKEND_PROXY_V2)
			conn_tunnel_start(c);
	}
	switch (rc) {
	case TLS_OK:
	case TLS_HANDSHAKING:
		break;
	case TLS_HANDSHAKE_FAILED:
		METRIC_ADD(c->loop->m, handshakes_failed, 1);
		/* wolfSSL queued its alert; send it, then go. */
		c->state = C_FINISHING;
		conn_flush_client(c);
		break;
	case TLS_NOMEM:
		conn_close(c);
		break;
	case TLS_CLOSED:
	case TLS_BROKEN:
		c->client.eof = true;
		if (rc == TLS_BROKEN && c->state != C_PROXY && c->state != C_TUNNEL)
			conn_close(c);
		break;
	}
}

static void conn_start_session(struct conn *c)
{
	if (tls_conn_start(&c->session, cert_entry_ctx(c->entry), c->sni, &c->client.out) < 0) {
		METRIC_ADD(c->loop->m, handshakes_failed, 1);
		conn_close(c);
		return;
	}
	c->state = C_HANDSHAKE;
	conn_tls_input(c, NULL, 0);
	conn_progress(c);
}

static void conn_refuse_name(struct conn *c, const uint8_t alert[7])
{
	if (buf_append(&c->client.out, alert, 7) < 0) {
		conn_close(c);
		return;
	}
	conn_finish(c);
}

static void conn_cert_loaded(void *arg, int status, struct cert_entry *entry)
{
	struct conn *c = arg;
	c->db_pending = false;
	if (status == 0) {
		c->entry = entry;
		conn_start_session(c);
		return;
	}
	if (status == 1) {
		METRIC_ADD(c->loop->m, unknown_sni, 1);
		conn_refuse_name(c, tls_alert_unrecognized_name);
	} else {
		METRIC_ADD(c->loop->m, cert_errors, 1);
		conn_refuse_name(c, tls_alert_internal_error);
	}
}

static void conn_hello(struct conn *c)
{
	struct buf *in = &c->session.in;
	int rc = tls_hello_complete(buf_head(in), buf_size(in));
	if (rc == 0)
		return;
	if (rc < 0) {
		METRIC_ADD(c->loop->m, bad_hello, 1);
		conn_close(c);
		return;
	}
	rc = tls_hello_sni(buf_head(in), buf_size(in), c->sni);
	if (rc <= 0) {
		METRIC_ADD(c->loop->m, no_sni, 1);
		conn_refuse_name(c, tls_alert_unrecognized_name);
		return;
	}
	switch (sni_cache_lookup(c->loop->cfg->cache, c->sni, &c->entry)) {
	case SNI_HIT:
		conn_start_session(c);
		return;
	case SNI_NEGATIVE:
		METRIC_ADD(c->loop->m, unknown_sni, 1);
		conn_refuse_name(c, tls_alert_unrecognized_name);
		return;
	case SNI_MISS:
		break;
	}
	c->state = C_CERT;
	c->db_pending = true;
	rc = certdb_load_cert(c->loop->db, c->sni, conn_cert_loaded, c);
	if (rc < 0) {
		c->db_pending = false;
		if (rc == CERTDB_THROTTLED)
			METRIC_ADD(c->loop->m, throttled, 1);
		else
			METRIC_ADD(c->loop->m, cert_errors, 1);
		conn_refuse_name(c, tls_alert_internal_error);
		return;
	}
	loop_db_watch(c->loop, false);
}

/* ---- the driver ---- */

/* Works off what the client sent as far as the state allows, in a loop: a pipelined burst of any
 * length costs no stack, and after a budget the connection yields back to the ring (loop_defer)
 * so that one client cannot hold its thread. */
static void conn_progress(struct conn *c)
{
	unsigned requests = PROGRESS_REQUESTS;
	size_t bytes = PROGRESS_BYTES;
	while (conn_active(c)) {
		if (c->session.stalled && c->state >= C_HEAD && buf_size(&c->client.in) < PENDING_HIGH) {
			conn_tls_input(c, NULL, 0);
			continue;
		}
		if (c->state == C_HEAD) {
			size_t pending = buf_size(&c->client.in);
			if (pending == 0) {
				if (c->client.eof)
					conn_finish(c);
				else
					conn_go_idle(c);
				break;
			}
			/* Answers wait for the client to read them; its send completion resumes here. */
			if (conn_client_queued(c) > PENDING_HIGH)
				break;
			if (requests == 0 || bytes == 0) {
				loop_defer(c->loop, &c->timer);
				break;
			}
			conn_request(c);
			requests--;
			size_t used = pending - buf_size(&c->client.in);
			bytes = used < bytes ? bytes - used : 0;
			continue;
		}
		if (c->state == C_PROXY) {
			conn_request_body(c);
			if (c->state != C_PROXY)
				continue;
			if (c->client.eof && c->x.req == REQ_BODY && buf_size(&c->client.in) == 0) {
				/* The client went before its body was whole: that request can never complete. */
				conn_close(c);
				return;
			}
			backend_flush(c->loop, &c->backend, &c->timer);
		} else if (c->state == C_TUNNEL) {
			conn_tunnel_pass(c);
			if (c->state != C_TUNNEL)
				continue;
			backend_flush(c->loop, &c->backend, &c->timer);
		}
		break;
	}
	if (c->state == C_CLOSED)
		return;
	/* Whatever the state, a client that sends faster than its bytes can go anywhere waits, and so
	 * does one that does not read what it asks for: TLS answers its records by itself (KeyUpdate),
	 * without a byte of plaintext to hold back. */
	if (conn_pending_from_client(c) > PENDING_HIGH || conn_client_queued(c) > PENDING_HIGH)
		conn_pause_client(c);
	else
		conn_resume_client(c);
	conn_flush_client(c);
}

/* ---- events ---- */

static void conn_client_data(struct conn *c, const uint8_t *p, size_t len)
{
	METRIC_ADD(c->loop->m, bytes_in, len);
	if (!conn_active(c))
		return;
	if (!c->tls) {
		if (buf_append(&c->client.in, p, len) < 0) {
			conn_close(c);
			return;
		}
		conn_progress(c);
		return;
	}
	if (c->state == C_HELLO || c->state == C_CERT) {
		if (buf_size(&c->session.in) + len > HELLO_MAX || buf_append(&c->session.in, p, len) < 0) {
			METRIC_ADD(c->loop->m, bad_hello, 1);
			conn_close(c);
			return;
		}
		if (c->state == C_HELLO)
			conn_hello(c);
		return;
	}
	conn_tls_input(c, p, len);
	conn_progress(c);
}

static void conn_client_eof(struct conn *c)
{
	c->client.eof = true;
	if (c->state == C_PROXY || c->state == C_TUNNEL) {
		conn_progress(c);
		return;
	}
	if (c->state == C_CHALLENGE || !conn_active(c))
		return;
	if (c->state == C_HEAD && buf_size(&c->client.in))
		conn_progress(c);
	else
		conn_close(c);
}

static void conn_client_recv(struct conn *c, const struct ring_event *ev)
{
	if (ev->buf >= 0) {
		if (c->state != C_CLOSED && ev->res > 0)
			conn_client_data(c, ring_buf(c->loop->ring, ev->buf), (size_t)ev->res);
		ring_buf_recycle(c->loop->ring, ev->buf);
	}
	if (ev->res == 0 && c->state != C_CLOSED)
		conn_client_eof(c);
	else if (ev->res < 0 && ev->res != -ENOBUFS && ev->res != -ECANCELED && c->state != C_CLOSED)
		conn_close(c);
	if (!ev->more) {
		c->client.recv_armed = false;
		c->client.ops--;
		if (ev->res != 0)
			conn_arm_client_recv(c);
	}
}

static void conn_client_sent(struct conn *c, const struct ring_event *ev)
{
	c->client.send_busy = false;
	c->client.ops--;
	if (c->state == C_CLOSED)
		return;
	if (ev->res <= 0) {
		conn_close(c);
		return;
	}
	METRIC_ADD(c->loop->m, bytes_out, (uint64_t)ev->res);
	buf_consume(&c->client.flight, (size_t)ev->res);
	if (buf_size(&c->client.flight)) {
		conn_send_client_flight(c);
		return;
	}
	if (c->state == C_PROXY) {
		/* Progress of a slow reader moves the backend timer, never past the response deadline. */
		conn_response_timer(c);
		conn_pump_response(c);
		if (conn_pending_to_client(c) <= PENDING_HIGH)
			backend_resume(c->loop, &c->backend, &c->timer);
	} else if (c->state == C_TUNNEL) {
		conn_timer(c, TIMER_IDLE);
		if (conn_client_queued(c) <= PENDING_HIGH)
			backend_resume(c->loop, &c->backend, &c->timer);
	}
	conn_progress(c);
}

static void conn_backend_connected(struct conn *c, const struct ring_event *ev)
{
	struct loop *l = c->loop;
	if (ev->res < 0) {
		if (!l->backend_down && ev->res != -ECANCELED) {
			char q[128];
			tt_log(TT_WARN, "backend_unreachable", "thread=%d error=%s", l->id,
			       tt_log_quote(q, sizeof q, strerror(-ev->res)));
		}
		l->backend_down = ev->res != -ECANCELED || l->backend_down;
		conn_backend_failed(c, ev->res == -ECANCELED ? 504 : 502);
		return;
	}
	if (l->backend_down)
		tt_log(TT_INFO, "backend_reachable", "thread=%d", l->id);
	l->backend_down = false;
	if (c->state == C_TUNNEL)
		conn_timer(c, TIMER_IDLE);
	else
		conn_response_timer(c);
	backend_arm_recv(l, &c->backend, &c->timer);
	conn_progress(c);
}

static void conn_backend_event(struct conn *c, enum loop_op op, const struct ring_event *ev)
{
	struct loop *l = c->loop;
	/* Completions of a backend socket already closed or handed back only settle the accounts. */
	bool stale = backend_completed(l, &c->backend, &c->timer, op, ev) || c->state == C_CLOSED ||
		     c->backend.state == BACKEND_RETURNING || c->backend.s.fd < 0;
	switch (op) {
	case OP_BACKEND_CONNECT:
		if (!stale)
			conn_backend_connected(c, ev);
		break;
	case OP_BACKEND_SEND:
		if (stale)
			break;
		if (ev->res <= 0)
			conn_backend_lost(c);
		else if (!c->backend.s.send_busy)
			conn_progress(c);
		break;
	case OP_BACKEND_RECV:
		if (ev->buf >= 0) {
			if (!stale && ev->res > 0)
				conn_backend_data(c, ring_buf(l->ring, ev->buf), (size_t)ev->res);
			ring_buf_recycle(l->ring, ev->buf);
		}
		stale = stale || c->backend.s.fd < 0 || c->backend.state != BACKEND_OPEN;
		if (!stale && ev->res == 0)
			conn_backend_eof(c);
		else if (!stale && ev->res < 0 && ev->res != -ENOBUFS && ev->res != -ECANCELED)
			conn_backend_lost(c);
		else if (!stale && !ev->more)
			backend_arm_recv(l, &c->backend, &c->timer);
		break;
	default:
		break;
	}
	backend_settle(l, &c->backend);
	if (c->backend.s.ops == 0 && c->backend.wanted && conn_active(c))
		conn_backend_connect(c);
}

static void conn_event(struct timer *t, enum loop_op op, const struct ring_event *ev)
{
	struct conn *c = conn_of(t);
	switch (op) {
	case OP_CLIENT_RECV:
		conn_client_recv(c, ev);
		break;
	case OP_CLIENT_SEND:
		conn_client_sent(c, ev);
		break;
	default:
		conn_backend_event(c, op, ev);
		break;
	}
}

void conn_accept(struct loop *l, int fd, bool tls)
{
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return;
	}
	c->timer.kind = -1;
	c->timer.ops = &conn_ops;
	c->loop = l;
	c->client.fd = fd;
	c->backend.s.fd = -1;
	c->tls = tls;
	c->session.io.out = &c->client.out;
	c->state = tls ? C_HELLO : C_HEAD;
	METRIC_ADD(l->m, accepted, 1);
	l->nconns++;
	conn_timer(c, tls ? TIMER_HANDSHAKE : TIMER_HEADER);
	conn_arm_client_recv(c);
}

static void conn_expire(struct timer *t)
{
	struct conn *c = conn_of(t);
	int kind = t->kind;
	if (kind == TIMER_LINGER) {
		conn_let_go_backend(c);
		conn_trim(c);
		conn_timer(c, TIMER_IDLE);
		return;
	}
	METRIC_ADD(c->loop->m, timeouts[kind], 1);
	switch (kind) {
	case TIMER_HANDSHAKE:
		METRIC_ADD(c->loop->m, handshakes_timeout, 1);
		conn_close(c);
		break;
	case TIMER_BACKEND_CONNECT:
	case TIMER_BACKEND:
		METRIC_ADD(c->loop->m, backend_timeouts, 1);
		conn_backend_failed(c, 504);
		break;
	default:
		if (c->state == C_FINISHING)
			conn_close(c);
		else
			conn_finish(c);
		break;
	}
	/* What is left to send gets one idle period, then the connection goes. */
	if (c->state != C_CLOSED && t->kind == kind)
		conn_timer(c, TIMER_IDLE);
}

static void conn_resume(struct timer *t)
{
	struct conn *c = conn_of(t);
	if (conn_active(c))
		conn_progress(c);
}

/* The loop started draining: an idle keep-alive connection closes now, others after their
 * response; one that has not had its first request yet is kept, its client is about to send it. */
static void conn_drain(struct timer *t)
{
	struct conn *c = conn_of(t);
	if (c->state != C_HEAD || !c->served || buf_size(&c->client.in))
		return;
	conn_finish(c);
}

static void conn_destroy(struct timer *t)
{
	struct conn *c = conn_of(t);
	loop_timer_clear(&c->timer);
	tls_conn_free(&c->session);
	if (c->entry)
		cert_entry_release(c->entry);
	backend_destroy(&c->backend);
	if (c->client.fd >= 0)
		close(c->client.fd);
	struct buf *bufs[] = {&c->client.in, &c->client.out, &c->client.flight, &c->x.retry, &c->plain_out};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		buf_release(bufs[i]);
	METRIC_ADD(c->loop->m, closed, 1);
	c->loop->nconns--;
	free(c);
}

/* Frees a closed connection once the ring holds nothing of it. */
static bool conn_reap(struct timer *t)
{
	struct conn *c = conn_of(t);
	if (c->client.ops || c->backend.s.ops || t->deferred)
		return false;
	/* The ring closes the socket; conn_destroy must not close it again. */
	ring_close(c->loop->ring, c->client.fd);
	c->client.fd = -1;
	conn_destroy(t);
	return true;
}

static const struct timer_ops conn_ops = {
    .event = conn_event,
    .expire = conn_expire,
    .resume = conn_resume,
    .drain = conn_drain,
    .reap = conn_reap,
    .destroy = conn_destroy,
};
