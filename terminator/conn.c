/* conn: one client connection's state machine: ClientHello -> SNI -> certificate -> handshake ->
 * request head -> backend -> response, one request at a time, and the plain port-80 path. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "terminator.h"

#define HEAD_MAX 16384
/* Past these the connection stops reading from the other side until its output drains. */
#define PENDING_HIGH (256 * 1024)
/* A client that keeps sending while it has nothing to say (ClientHello, waiting for a certificate)
 * is cut off here. */
#define HELLO_MAX (64 * 1024)
#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"
#define TOKEN_MAX 128

enum conn_state {
	C_HELLO, /* buffering the ClientHello record */
	C_CERT,	 /* waiting for the certificate from the database */
	C_HANDSHAKE,
	C_HEAD,	     /* waiting for (the rest of) a request head */
	C_CHALLENGE, /* waiting for an HTTP-01 key authorization from the database */
	C_PROXY,     /* a request is with the backend */
	C_TUNNEL,    /* --backend-mode proxy-v2: bytes pass both ways unparsed */
	C_CLOSING,
};

struct conn {
	struct timer timer;
	struct loop *loop;
	int fd, bfd;
	enum conn_state state;
	bool tls;
	bool crecv_armed, crecv_paused, csend_busy;
	bool brecv_armed, brecv_paused, bsend_busy, bconnected, bwanted;
	bool bidle;   /* the backend connection answered in full and may serve another client */
	bool breused; /* the backend connection served before (it may have been closed meanwhile) */
	bool bfresh;  /* the next backend connection must be a new one (a retry) */
	bool peer_eof, close_after_flush, closed, served;
	bool db_pending;	 /* certdb holds a callback for this connection */
	bool tls_stalled;	 /* wolfSSL holds plaintext that did not fit in req */
	unsigned inflight, bops; /* requests on the ring: all, and those on the backend socket */

	WOLFSSL *ssl;
	struct cert_entry *entry;
	struct tls_io io;
	char sni[TT_NAME_MAX];

	struct buf in;		      /* client bytes not yet consumed (ClientHello, ciphertext) */
	struct buf req;		      /* client plaintext not yet forwarded */
	struct buf cout, cout_flight; /* to the client: queued, and being sent */
	struct buf bout, bout_flight; /* to the backend */
	struct buf resp;	      /* backend bytes not yet relayed */
	struct buf retry;	      /* the request head, while it may be sent once more */
	bool retry_ok;

	struct http_body req_body;
	bool req_body_active, req_keep_alive, req_head_method;
	bool resp_started, resp_head_done, resp_until_close, resp_keep_alive;
	struct http_body resp_body;
	char client_ip[INET6_ADDRSTRLEN];
};

static void conn_flush_client(struct conn *c);
static void conn_progress(struct conn *c);
static void conn_tls_feed(struct conn *c, const uint8_t *p, size_t len);
static void conn_pump_response(struct conn *c);
static void conn_tunnel_pass(struct conn *c);
static void conn_tunnel_start(struct conn *c);

struct conn *conn_of_timer(struct timer *t)
{
	return (struct conn *)((char *)t - offsetof(struct conn, timer));
}

static void conn_timer(struct conn *c, int kind)
{
	loop_timer_set(c->loop, &c->timer, kind);
}

static void conn_close_backend(struct conn *c)
{
	if (c->bfd < 0)
		return;
	ring_cancel_fd(c->loop->ring, c->bfd);
	ring_close(c->loop->ring, c->bfd);
	c->bfd = -1;
	c->bconnected = c->brecv_armed = c->brecv_paused = c->bidle = false;
	c->bout.off = c->bout.len = 0;
	c->resp.off = c->resp.len = 0;
}

/* A backend connection that finished its last response cleanly goes to the loop's pool for the
 * next client instead of being closed: a connect saved per client connection. */
static void conn_release_backend(struct conn *c)
{
	if (!c->bidle || c->bfd < 0 || !c->bconnected || c->bsend_busy || buf_size(&c->bout) ||
	    (c->state != C_HEAD && c->state != C_CHALLENGE)) {
		conn_close_backend(c);
		return;
	}
	/* The receive armed for this connection ends before the next owner arms its own. */
	if (c->brecv_armed)
		ring_cancel(c->loop->ring, loop_token(c, OP_BACKEND_RECV));
	loop_backend_put(c->loop, c->bfd);
	c->bfd = -1;
	c->bconnected = c->brecv_armed = c->brecv_paused = c->bidle = false;
}

static void conn_forget_db(struct conn *c)
{
	if (c->db_pending)
		certdb_cancel(c->loop->db, c);
	c->db_pending = false;
}

static void conn_close(struct conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	conn_forget_db(c);
	conn_release_backend(c);
	c->state = C_CLOSING;
	ring_cancel_fd(c->loop->ring, c->fd);
	conn_timer(c, TIMER_CLOSED);
}

/* Sends what is queued, then closes; a TLS session says close_notify first. */
static void conn_finish(struct conn *c)
{
	if (c->close_after_flush || c->closed)
		return;
	c->close_after_flush = true;
	conn_forget_db(c);
	conn_release_backend(c);
	c->state = C_CLOSING;
	if (c->ssl && wolfSSL_is_init_finished(c->ssl))
		wolfSSL_shutdown(c->ssl);
	conn_flush_client(c);
}

/* Plaintext for the client: encrypted into cout on TLS connections. */
static int conn_write(struct conn *c, const void *p, size_t n)
{
	if (!c->ssl) {
		if (buf_append(&c->cout, p, n) < 0)
			return -1;
		return 0;
	}
	const uint8_t *q = p;
	while (n) {
		int chunk = n > 65536 ? 65536 : (int)n;
		int rc = wolfSSL_write(c->ssl, q, chunk);
		if (rc <= 0 || c->io.failed)
			return -1;
		q += rc;
		n -= (size_t)rc;
	}
	return 0;
}

static void conn_respond_error(struct conn *c, int status)
{
	char out[512];
	ssize_t n = http_write_simple(status, NULL, false, out, sizeof out);
	if (c->req_head_method && n > 0) {
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

/* A send goes out from the flight buffer while the other one queues; after a short send, the
 * rest of the flight goes again. */
static void conn_send_client_flight(struct conn *c)
{
	c->csend_busy = true;
	c->inflight++;
	ring_send(c->loop->ring, c->fd, buf_head(&c->cout_flight), buf_size(&c->cout_flight),
		  loop_token(c, OP_CLIENT_SEND));
}

static void conn_send_backend_flight(struct conn *c)
{
	c->bsend_busy = true;
	c->inflight++;
	c->bops++;
	ring_send(c->loop->ring, c->bfd, buf_head(&c->bout_flight), buf_size(&c->bout_flight),
		  loop_token(c, OP_BACKEND_SEND));
}

static void conn_flush_client(struct conn *c)
{
	if (c->closed || c->csend_busy)
		return;
	if (buf_size(&c->cout) == 0) {
		if (c->close_after_flush)
			conn_close(c);
		return;
	}
	struct buf t = c->cout;
	c->cout = c->cout_flight;
	c->cout_flight = t;
	conn_send_client_flight(c);
}

static void conn_flush_backend(struct conn *c)
{
	if (c->bfd < 0 || !c->bconnected || c->bsend_busy || buf_size(&c->bout) == 0)
		return;
	struct buf t = c->bout;
	c->bout = c->bout_flight;
	c->bout_flight = t;
	conn_send_backend_flight(c);
}

static void conn_arm_client_recv(struct conn *c)
{
	if (c->closed || c->crecv_armed || c->crecv_paused || c->peer_eof)
		return;
	c->crecv_armed = true;
	c->inflight++;
	ring_recv_multishot(c->loop->ring, c->fd, loop_token(c, OP_CLIENT_RECV));
}

static void conn_arm_backend_recv(struct conn *c)
{
	if (c->bfd < 0 || !c->bconnected || c->brecv_armed || c->brecv_paused)
		return;
	c->brecv_armed = true;
	c->inflight++;
	c->bops++;
	ring_recv_multishot(c->loop->ring, c->bfd, loop_token(c, OP_BACKEND_RECV));
}

/* Flow control: a side whose output to the other is too far behind stops being read. */
static size_t conn_pending_to_backend(const struct conn *c)
{
	return buf_size(&c->bout) + buf_size(&c->req);
}
static size_t conn_pending_to_client(const struct conn *c)
{
	return buf_size(&c->cout) + buf_size(&c->resp);
}

static void conn_pause_client(struct conn *c)
{
	if (c->crecv_paused)
		return;
	c->crecv_paused = true;
	if (c->crecv_armed)
		ring_cancel(c->loop->ring, loop_token(c, OP_CLIENT_RECV));
}

static void conn_resume_client(struct conn *c)
{
	if (!c->crecv_paused)
		return;
	c->crecv_paused = false;
	conn_arm_client_recv(c);
}

static void conn_pause_backend(struct conn *c)
{
	if (c->brecv_paused)
		return;
	c->brecv_paused = true;
	if (c->brecv_armed)
		ring_cancel(c->loop->ring, loop_token(c, OP_BACKEND_RECV));
}

static void conn_resume_backend(struct conn *c)
{
	if (!c->brecv_paused)
		return;
	c->brecv_paused = false;
	conn_arm_backend_recv(c);
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
	if (c->state != C_PROXY) {
		/* A kept-alive backend connection went away between requests. */
		conn_close_backend(c);
		return;
	}
	METRIC_ADD(c->loop->m, backend_errors, 1);
	conn_close_backend(c);
	if (c->resp_started)
		conn_close(c);
	else
		conn_respond_error(c, status);
}

/* A backend may close a kept-alive connection just as a request goes out on it. A request without a
 * body that got no byte of answer is sent once more, on a new connection; else the client gets 502. */
static void conn_backend_lost(struct conn *c)
{
	if (c->state == C_PROXY && c->retry_ok && c->breused && !c->resp_started) {
		c->retry_ok = false;
		conn_close_backend(c);
		if (buf_append(&c->bout, buf_head(&c->retry), buf_size(&c->retry)) == 0) {
			conn_timer(c, TIMER_BACKEND_CONNECT);
			c->bfresh = true;
			conn_backend_connect(c);
			return;
		}
	}
	conn_backend_failed(c, 502);
}

static void conn_backend_connect(struct conn *c)
{
	const struct term_config *cfg = c->loop->cfg;
	if (c->bops) {
		/* Completions of the previous backend socket are still due; connect after them. */
		c->bwanted = true;
		return;
	}
	c->bwanted = false;
	int pooled = c->bfresh || cfg->backend_mode != BACKEND_HTTP ? -1 : loop_backend_take(c->loop);
	c->bfresh = false;
	if (pooled >= 0) {
		METRIC_ADD(c->loop->m, backend_reuses, 1);
		c->bfd = pooled;
		c->bconnected = true;
		c->breused = true;
		conn_timer(c, TIMER_BACKEND);
		conn_arm_backend_recv(c);
		conn_flush_backend(c);
		return;
	}
	c->breused = false;
	METRIC_ADD(c->loop->m, backend_connects, 1);
	int fd = socket(cfg->backend_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tt_log(TT_ERROR, "backend_socket_failed", "error=%d", errno);
		conn_backend_failed(c, 502);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->bfd = fd;
	c->inflight++;
	c->bops++;
	ring_connect(c->loop->ring, fd, (const struct sockaddr *)&cfg->backend_addr, cfg->backend_len,
		     loop_token(c, OP_BACKEND_CONNECT));
}

/* The response is relayed; the caller then runs conn_progress for the next request. */
static void conn_response_done(struct conn *c)
{
	c->state = C_HEAD;
	c->served = true;
	c->retry_ok = false;
	c->retry.off = c->retry.len = 0;
	if (!c->resp_keep_alive || c->resp_until_close)
		conn_close_backend(c);
	c->bidle = c->bfd >= 0;
	if (!c->req_keep_alive || c->resp_until_close || c->req_body_active || c->peer_eof || c->loop->draining)
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

/* Relays backend bytes at p; returns how many were used (the rest waits for the client). */
static size_t conn_relay_response(struct conn *c, const uint8_t *p, size_t len)
{
	size_t used = 0;
	while (used < len && c->state == C_PROXY) {
		if (conn_pending_to_client(c) > PENDING_HIGH && buf_size(&c->cout) > PENDING_HIGH)
			break;
		if (!c->resp_head_done) {
			struct http_response r;
			enum http_parse rc =
			    http_parse_response((const char *)p + used, len - used, HEAD_MAX, c->req_head_method, &r);
			if (rc == HTTP_INCOMPLETE)
				break;
			if (rc != HTTP_OK) {
				conn_backend_failed(c, 502);
				return len;
			}
			bool closing = c->loop->draining && r.status >= 200;
			if (closing)
				c->req_keep_alive = false;
			if ((closing ? conn_write_head_closing(c, p + used, r.head_len)
				     : conn_write(c, p + used, r.head_len)) < 0) {
				conn_close(c);
				return len;
			}
			c->resp_started = true;
			used += r.head_len;
			if (r.status >= 100 && r.status < 200 && r.status != 101)
				continue;
			c->resp_head_done = true;
			c->resp_keep_alive = r.keep_alive;
			if (r.status == 101) {
				/* Switched protocols (WebSocket): from here the bytes pass both ways unparsed. */
				c->state = C_TUNNEL;
				conn_timer(c, TIMER_IDLE);
				if (used < len && conn_write(c, p + used, len - used) < 0)
					conn_close(c);
				used = len;
				break;
			}
			if (r.no_body) {
				if (used < len)
					c->resp_keep_alive = false;
				conn_response_done(c);
				break;
			}
			c->resp_until_close = !r.chunked && r.content_length < 0;
			http_body_init(&c->resp_body, r.content_length, r.chunked, c->resp_until_close);
			continue;
		}
		bool done = false;
		ssize_t n = http_body_consume(&c->resp_body, (const char *)p + used, len - used, &done);
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
				c->resp_keep_alive = false;
			conn_response_done(c);
			break;
		}
	}
	conn_flush_client(c);
	return used;
}

/* Relays what waits in resp, as far as the client keeps up. */
static void conn_pump_response(struct conn *c)
{
	if (c->state != C_PROXY || buf_size(&c->resp) == 0 || c->bfd < 0)
		return;
	size_t used = conn_relay_response(c, buf_head(&c->resp), buf_size(&c->resp));
	if (c->bfd >= 0)
		buf_consume(&c->resp, used);
}

static void conn_backend_data(struct conn *c, const uint8_t *p, size_t len)
{
	if (c->state == C_TUNNEL) {
		conn_timer(c, TIMER_IDLE);
		if (conn_write(c, p, len) < 0) {
			conn_close(c);
			return;
		}
		if (buf_size(&c->cout) > PENDING_HIGH)
			conn_pause_backend(c);
		conn_flush_client(c);
		return;
	}
	if (c->state != C_PROXY) {
		/* Bytes outside a response: the backend broke framing; never pass them on. */
		conn_close_backend(c);
		return;
	}
	conn_timer(c, TIMER_BACKEND);
	if (buf_size(&c->resp) == 0) {
		size_t used = conn_relay_response(c, p, len);
		if (used < len && c->bfd >= 0 && buf_append(&c->resp, p + used, len - used) < 0)
			conn_close(c);
	} else {
		if (buf_append(&c->resp, p, len) < 0) {
			conn_close(c);
			return;
		}
		conn_pump_response(c);
	}
	if (conn_pending_to_client(c) > PENDING_HIGH)
		conn_pause_backend(c);
	conn_progress(c);
}

static void conn_backend_eof(struct conn *c)
{
	if (c->state == C_TUNNEL) {
		conn_close_backend(c);
		conn_finish(c);
		return;
	}
	bool in_response = c->state == C_PROXY;
	if (in_response && c->resp_head_done && c->resp_until_close) {
		conn_close_backend(c);
		conn_response_done(c);
		conn_progress(c);
		return;
	}
	if (in_response)
		conn_backend_lost(c);
	else
		conn_close_backend(c);
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

static void conn_challenge_done(void *arg, int status, const char *key_auth)
{
	struct conn *c = arg;
	c->db_pending = false;
	char out[1024];
	ssize_t n;
	bool keep = c->req_keep_alive && !c->loop->draining;
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
	if (!c->req_keep_alive || c->peer_eof || c->loop->draining) {
		conn_finish(c);
		return;
	}
	conn_flush_client(c);
	conn_progress(c);
}

/* token: NULL when the request named no valid one (answered 404 without a query). */
static void conn_challenge(struct conn *c, const char *token)
{
	METRIC_ADD(c->loop->m, challenges, 1);
	if (!token) {
		conn_challenge_done(c, 1, NULL);
		return;
	}
	c->state = C_CHALLENGE;
	c->db_pending = true;
	if (certdb_get_challenge(c->loop->db, token, conn_challenge_done, c) < 0) {
		if (c->db_pending)
			conn_challenge_done(c, -1, NULL);
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
	if (getpeername(c->fd, (struct sockaddr *)&ss, &len) < 0)
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
	size_t room = r->head_len + 1024;
	if (buf_reserve(&c->bout, room) < 0) {
		conn_close(c);
		return;
	}
	ssize_t n = http_rewrite_request(r, &fwd, (char *)c->bout.data + c->bout.len, c->bout.cap - c->bout.len);
	if (n < 0) {
		conn_respond_error(c, 431);
		return;
	}
	c->retry_ok = false;
	c->bidle = false;
	c->retry.off = c->retry.len = 0;
	c->req_body_active = r->content_length > 0 || r->chunked;
	if (!c->req_body_active && buf_append(&c->retry, c->bout.data + c->bout.len, (size_t)n) == 0)
		c->retry_ok = true;
	c->bout.len += (size_t)n;
	buf_consume(&c->req, r->head_len);
	http_body_init(&c->req_body, r->content_length, r->chunked, false);
	c->resp_started = c->resp_head_done = c->resp_until_close = false;
	c->state = C_PROXY;
	if (c->bfd < 0) {
		conn_timer(c, TIMER_BACKEND_CONNECT);
		conn_backend_connect(c);
	} else {
		c->breused = true;
		conn_timer(c, TIMER_BACKEND);
		conn_arm_backend_recv(c);
	}
}

static void conn_request(struct conn *c)
{
	struct http_request r;
	enum http_parse rc = http_parse_request((const char *)buf_head(&c->req), buf_size(&c->req), HEAD_MAX, &r);
	if (rc == HTTP_INCOMPLETE) {
		if (c->timer.kind != TIMER_HEADER)
			conn_timer(c, TIMER_HEADER);
		if (c->peer_eof)
			conn_close(c);
		return;
	}
	c->req_head_method = rc == HTTP_OK && r.method_len == 4 && memcmp(r.method, "HEAD", 4) == 0;
	if (rc != HTTP_OK) {
		METRIC_ADD(c->loop->m, bad_requests, 1);
		conn_respond_error(c, rc == HTTP_TOO_LARGE ? 431 : 400);
		return;
	}
	METRIC_ADD(c->loop->m, requests, 1);
	c->req_keep_alive = r.keep_alive;
	size_t plen = sizeof CHALLENGE_PREFIX - 1;
	if (!c->tls && r.method_len == 3 && memcmp(r.method, "GET", 3) == 0 && r.target_len >= plen &&
	    memcmp(r.target, CHALLENGE_PREFIX, plen) == 0) {
		if (r.content_length > 0 || r.chunked) {
			conn_respond_error(c, 400);
			return;
		}
		/* Copied out: the head is consumed before the answer, which may come at once. */
		char token[TOKEN_MAX + 1];
		size_t n = r.target_len - plen;
		bool valid = conn_token_valid(r.target + plen, n);
		if (valid) {
			memcpy(token, r.target + plen, n);
			token[n] = 0;
		}
		buf_consume(&c->req, r.head_len);
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

/* Moves request body bytes from req to the backend. */
static void conn_request_body(struct conn *c)
{
	if (!c->req_body_active || buf_size(&c->req) == 0)
		return;
	bool done = false;
	ssize_t n = http_body_consume(&c->req_body, (const char *)buf_head(&c->req), buf_size(&c->req), &done);
	if (n < 0) {
		METRIC_ADD(c->loop->m, bad_requests, 1);
		conn_close(c);
		return;
	}
	if (n > 0) {
		if (buf_append(&c->bout, buf_head(&c->req), (size_t)n) < 0) {
			conn_close(c);
			return;
		}
		buf_consume(&c->req, (size_t)n);
	}
	if (done)
		c->req_body_active = false;
}

/* Gives back the buffers that hold nothing (those the kernel is sending from stay). */
static void conn_trim(struct conn *c)
{
	struct buf *bufs[] = {&c->in, &c->req, &c->resp, &c->bout, &c->cout, &c->retry};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		if (buf_size(bufs[i]) == 0)
			buf_release(bufs[i]);
	if (!c->bsend_busy)
		buf_release(&c->bout_flight);
	if (!c->csend_busy)
		buf_release(&c->cout_flight);
}

/* ---- proxy-v2 tunnel ---- */

/* The backend learns who the client is from a PROXY v2 header, then gets the bytes as they are. */
static void conn_tunnel_start(struct conn *c)
{
	struct sockaddr_storage src, dst;
	socklen_t sl = sizeof src, dl = sizeof dst;
	if (getpeername(c->fd, (struct sockaddr *)&src, &sl) < 0 ||
	    getsockname(c->fd, (struct sockaddr *)&dst, &dl) < 0) {
		conn_close(c);
		return;
	}
	struct proxy_v2_tls tls, *tlsp = NULL;
	char alpn[64] = "";
	if (c->ssl) {
		char *proto;
		unsigned short plen;
		if (wolfSSL_ALPN_GetProtocol(c->ssl, &proto, &plen) == WOLFSSL_SUCCESS && plen < sizeof alpn) {
			memcpy(alpn, proto, plen);
			alpn[plen] = 0;
		}
		tls = (struct proxy_v2_tls){.sni = c->sni,
					    .alpn = alpn,
					    .version = wolfSSL_get_version(c->ssl),
					    .cipher = wolfSSL_get_cipher_name(c->ssl)};
		tlsp = &tls;
	}
	if (buf_reserve(&c->bout, 1024) < 0) {
		conn_close(c);
		return;
	}
	ssize_t n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, tlsp, c->bout.data + c->bout.len,
				    c->bout.cap - c->bout.len);
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->bout.len += (size_t)n;
	c->state = C_TUNNEL;
	conn_timer(c, TIMER_BACKEND_CONNECT);
	conn_backend_connect(c);
}

static void conn_tunnel_pass(struct conn *c)
{
	if (buf_size(&c->req)) {
		if (buf_append(&c->bout, buf_head(&c->req), buf_size(&c->req)) < 0) {
			conn_close(c);
			return;
		}
		buf_consume(&c->req, buf_size(&c->req));
		if (c->bconnected)
			conn_timer(c, TIMER_IDLE);
	}
	/* The client is done: once the backend has all it sent, the tunnel closes. */
	if (c->peer_eof && buf_size(&c->bout) == 0 && !c->bsend_busy)
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

/* Drives the plaintext side as far as the buffered bytes allow. */
static void conn_progress(struct conn *c)
{
	if (c->closed)
		return;
	if (c->tls_stalled && buf_size(&c->req) < PENDING_HIGH &&
	    (c->state == C_HEAD || c->state == C_PROXY || c->state == C_TUNNEL))
		conn_tls_feed(c, NULL, 0);
	if (c->state == C_HEAD && buf_size(&c->req) == 0) {
		if (c->peer_eof)
			conn_finish(c);
		else
			conn_go_idle(c);
	} else if (c->state == C_HEAD) {
		conn_request(c);
	}
	if (c->state == C_PROXY || c->state == C_TUNNEL) {
		if (c->state == C_PROXY)
			conn_request_body(c);
		else
			conn_tunnel_pass(c);
		if (c->closed)
			return;
		if (c->state == C_PROXY && c->peer_eof && c->req_body_active && buf_size(&c->req) == 0) {
			/* The client went before its body was whole: that request can never complete. */
			conn_close(c);
			return;
		}
		conn_flush_backend(c);
	}
	/* Whatever the state, a client that sends faster than its bytes can go anywhere waits. */
	if (conn_pending_to_backend(c) > PENDING_HIGH)
		conn_pause_client(c);
	else
		conn_resume_client(c);
	conn_flush_client(c);
}

/* ---- TLS ---- */

static void conn_tls_read(struct conn *c)
{
	c->tls_stalled = false;
	while (!c->closed) {
		if (buf_size(&c->req) >= PENDING_HIGH) {
			c->tls_stalled = true;
			break;
		}
		if (buf_reserve(&c->req, 4096) < 0) {
			conn_close(c);
			return;
		}
		int room = (int)(c->req.cap - c->req.len);
		int n = wolfSSL_read(c->ssl, c->req.data + c->req.len, room);
		if (n > 0) {
			c->req.len += (size_t)n;
			continue;
		}
		int e = wolfSSL_get_error(c->ssl, n);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			break;
		c->peer_eof = true;
		if (e != WOLFSSL_ERROR_ZERO_RETURN && c->state != C_PROXY && c->state != C_TUNNEL) {
			conn_close(c);
			return;
		}
		break;
	}
}

static void conn_tls_drive(struct conn *c)
{
	if (c->state == C_HANDSHAKE) {
		int rc = wolfSSL_accept(c->ssl);
		if (rc != WOLFSSL_SUCCESS) {
			int e = wolfSSL_get_error(c->ssl, rc);
			if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
				conn_flush_client(c);
				return;
			}
			METRIC_ADD(c->loop->m, handshakes_failed, 1);
			/* wolfSSL queued its alert; send it, then go. */
			c->close_after_flush = true;
			c->state = C_CLOSING;
			conn_flush_client(c);
			return;
		}
		if (wolfSSL_version(c->ssl) == TLS1_3_VERSION)
			METRIC_ADD(c->loop->m, handshakes_ok[HS_TLS13], 1);
		else
			METRIC_ADD(c->loop->m, handshakes_ok[HS_TLS12], 1);
		c->state = C_HEAD;
		conn_timer(c, TIMER_HEADER);
		if (c->loop->cfg->backend_mode == BACKEND_PROXY_V2)
			conn_tunnel_start(c);
	}
	if (c->state == C_CLOSING || c->closed)
		return;
	conn_tls_read(c);
}

/* Hands ciphertext at p to wolfSSL; what it does not take yet stays in c->in. */
static void conn_tls_feed(struct conn *c, const uint8_t *p, size_t len)
{
	bool from_in = buf_size(&c->in) > 0;
	if (from_in) {
		if (len && buf_append(&c->in, p, len) < 0) {
			conn_close(c);
			return;
		}
		p = buf_head(&c->in);
		len = buf_size(&c->in);
	}
	c->io.src = p;
	c->io.src_len = len;
	conn_tls_drive(c);
	size_t left = c->io.src_len;
	c->io.src = NULL;
	c->io.src_len = 0;
	if (from_in)
		buf_consume(&c->in, len - left);
	else if (left && !c->closed && buf_append(&c->in, p + len - left, left) < 0)
		conn_close(c);
}

static void conn_start_session(struct conn *c)
{
	c->ssl = tls_session_new(cert_entry_ctx(c->entry), &c->io);
	if (!c->ssl) {
		METRIC_ADD(c->loop->m, handshakes_failed, 1);
		conn_close(c);
		return;
	}
	c->state = C_HANDSHAKE;
	conn_tls_feed(c, NULL, 0);
	conn_progress(c);
}

static void conn_refuse_name(struct conn *c, const uint8_t alert[7])
{
	if (buf_append(&c->cout, alert, 7) < 0) {
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
	int rc = tls_hello_complete(buf_head(&c->in), buf_size(&c->in));
	if (rc == 0)
		return;
	if (rc < 0) {
		METRIC_ADD(c->loop->m, bad_hello, 1);
		conn_close(c);
		return;
	}
	rc = tls_hello_sni(buf_head(&c->in), buf_size(&c->in), c->sni);
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

/* ---- events ---- */

static void conn_client_data(struct conn *c, const uint8_t *p, size_t len)
{
	METRIC_ADD(c->loop->m, bytes_in, len);
	if (c->close_after_flush)
		return;
	if (!c->tls) {
		if (buf_append(&c->req, p, len) < 0) {
			conn_close(c);
			return;
		}
		conn_progress(c);
		return;
	}
	if (c->state == C_HELLO || c->state == C_CERT) {
		if (buf_size(&c->in) + len > HELLO_MAX || buf_append(&c->in, p, len) < 0) {
			METRIC_ADD(c->loop->m, bad_hello, 1);
			conn_close(c);
			return;
		}
		if (c->state == C_HELLO)
			conn_hello(c);
		return;
	}
	conn_tls_feed(c, p, len);
	conn_progress(c);
}

static void conn_client_eof(struct conn *c)
{
	c->peer_eof = true;
	if (c->state == C_PROXY || c->state == C_TUNNEL) {
		conn_progress(c);
		return;
	}
	if (c->state == C_CHALLENGE || c->close_after_flush)
		return;
	if (c->state == C_HEAD && buf_size(&c->req))
		conn_progress(c);
	else
		conn_close(c);
}

static void conn_client_recv(struct conn *c, const struct ring_event *ev)
{
	if (ev->buf >= 0) {
		if (!c->closed && ev->res > 0)
			conn_client_data(c, ring_buf(c->loop->ring, ev->buf), (size_t)ev->res);
		ring_buf_recycle(c->loop->ring, ev->buf);
	}
	if (ev->res == 0 && !c->closed)
		conn_client_eof(c);
	else if (ev->res < 0 && ev->res != -ENOBUFS && ev->res != -ECANCELED && !c->closed)
		conn_close(c);
	if (!ev->more) {
		c->crecv_armed = false;
		c->inflight--;
		if (ev->res != 0)
			conn_arm_client_recv(c);
	}
}

static void conn_client_sent(struct conn *c, const struct ring_event *ev)
{
	c->csend_busy = false;
	c->inflight--;
	if (c->closed)
		return;
	if (ev->res <= 0) {
		conn_close(c);
		return;
	}
	METRIC_ADD(c->loop->m, bytes_out, (uint64_t)ev->res);
	buf_consume(&c->cout_flight, (size_t)ev->res);
	if (buf_size(&c->cout_flight)) {
		conn_send_client_flight(c);
		return;
	}
	if (c->state == C_PROXY) {
		conn_timer(c, TIMER_BACKEND);
		conn_pump_response(c);
		if (conn_pending_to_client(c) <= PENDING_HIGH)
			conn_resume_backend(c);
	} else if (c->state == C_TUNNEL) {
		conn_timer(c, TIMER_IDLE);
		if (buf_size(&c->cout) <= PENDING_HIGH)
			conn_resume_backend(c);
	}
	conn_progress(c);
}

static void conn_backend_event(struct conn *c, enum loop_op op, const struct ring_event *ev)
{
	/* Completions of a backend socket already closed only settle the accounts. */
	bool stale = c->bfd < 0 || c->closed;
	switch (op) {
	case OP_BACKEND_CONNECT:
		c->inflight--;
		c->bops--;
		if (stale)
			break;
		if (ev->res < 0) {
			if (!c->loop->backend_down && ev->res != -ECANCELED) {
				char q[128];
				tt_log(TT_WARN, "backend_unreachable", "thread=%d error=%s", c->loop->id,
				       tt_log_quote(q, sizeof q, strerror(-ev->res)));
			}
			c->loop->backend_down = ev->res != -ECANCELED || c->loop->backend_down;
			conn_backend_failed(c, ev->res == -ECANCELED ? 504 : 502);
			break;
		}
		if (c->loop->backend_down)
			tt_log(TT_INFO, "backend_reachable", "thread=%d", c->loop->id);
		c->loop->backend_down = false;
		c->bconnected = true;
		conn_timer(c, c->state == C_TUNNEL ? TIMER_IDLE : TIMER_BACKEND);
		conn_arm_backend_recv(c);
		conn_progress(c);
		break;
	case OP_BACKEND_SEND:
		c->bsend_busy = false;
		c->inflight--;
		c->bops--;
		if (stale) {
			c->bout_flight.off = c->bout_flight.len = 0;
			break;
		}
		if (ev->res <= 0) {
			conn_backend_lost(c);
			break;
		}
		buf_consume(&c->bout_flight, (size_t)ev->res);
		if (buf_size(&c->bout_flight)) {
			conn_send_backend_flight(c);
			break;
		}
		conn_progress(c);
		break;
	case OP_BACKEND_RECV:
		if (ev->buf >= 0) {
			if (!stale && ev->res > 0)
				conn_backend_data(c, ring_buf(c->loop->ring, ev->buf), (size_t)ev->res);
			ring_buf_recycle(c->loop->ring, ev->buf);
		}
		if (!ev->more) {
			c->inflight--;
			c->bops--;
		}
		stale = stale || c->bfd < 0;
		if (!stale && ev->res == 0)
			conn_backend_eof(c);
		else if (!stale && ev->res < 0 && ev->res != -ENOBUFS && ev->res != -ECANCELED)
			conn_backend_lost(c);
		else if (!stale && !ev->more) {
			c->brecv_armed = false;
			conn_arm_backend_recv(c);
		}
		break;
	default:
		break;
	}
	if (c->bops == 0 && c->bwanted && !c->closed)
		conn_backend_connect(c);
}

void conn_event(struct conn *c, enum loop_op op, const struct ring_event *ev)
{
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
	c->loop = l;
	c->fd = fd;
	c->bfd = -1;
	c->tls = tls;
	c->timer.kind = -1;
	c->io.out = &c->cout;
	c->state = tls ? C_HELLO : C_HEAD;
	METRIC_ADD(l->m, accepted, 1);
	l->nconns++;
	conn_timer(c, tls ? TIMER_HANDSHAKE : TIMER_HEADER);
	conn_arm_client_recv(c);
}

void conn_expire(struct conn *c)
{
	int kind = c->timer.kind;
	if (kind == TIMER_LINGER) {
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
		if (c->close_after_flush)
			conn_close(c);
		else
			conn_finish(c);
		break;
	}
	/* What is left to send gets one idle period, then the connection goes. */
	if (!c->closed && c->timer.kind == kind)
		conn_timer(c, TIMER_IDLE);
}

void conn_drain(struct conn *c)
{
	/* Between requests on a kept-alive connection, nothing is lost by closing; a connection that
	 * has not had its first request yet is kept, since its client is about to send one. */
	if (c->closed || c->close_after_flush || c->state != C_HEAD || !c->served || buf_size(&c->req))
		return;
	conn_finish(c);
}

void conn_destroy(struct conn *c)
{
	loop_timer_clear(&c->timer);
	if (c->ssl)
		wolfSSL_free(c->ssl);
	if (c->entry)
		cert_entry_release(c->entry);
	if (c->bfd >= 0)
		close(c->bfd);
	if (c->fd >= 0)
		close(c->fd);
	struct buf *bufs[] = {&c->in,	&c->req,	 &c->cout, &c->cout_flight,
			      &c->bout, &c->bout_flight, &c->resp, &c->retry};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		buf_release(bufs[i]);
	METRIC_ADD(c->loop->m, closed, 1);
	c->loop->nconns--;
	free(c);
}

bool conn_reap(struct conn *c)
{
	if (c->inflight)
		return false;
	/* The ring closes the socket; conn_destroy must not close it again. */
	ring_close(c->loop->ring, c->fd);
	c->fd = -1;
	conn_destroy(c);
	return true;
}
