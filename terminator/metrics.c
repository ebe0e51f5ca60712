/* metrics: the per-loop counters summed into Prometheus text, served with /healthz by a small
 * thread of its own, so scrapes never touch a loop. The port is a server like the others: one
 * epoll loop over non-blocking sockets, so no client can hold it; each connection gets one overall
 * deadline for its whole request and response (not an idle timer a trickled byte re-arms); and
 * past the cap on connections the oldest one is closed to make room, so a flood of slow clients
 * cannot keep the load balancer's health check out. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "terminator.h"

#define METRICS_DEADLINE_MS 5000
#define METRICS_HEAD_MAX 2048
#define METRICS_BODY_MAX 65536
#define METRICS_EVENTS 64
/* Out of descriptors with no connection to close: accepting waits this long before trying again. */
#define METRICS_ACCEPT_BACKOFF_MS 100

/* One client of the port. Connections are listed oldest first: every one has the same deadline
 * duration, so the list is also sorted by deadline, and its head is the one to evict. */
struct mconn {
	struct mconn *prev, *next;
	int fd;
	int64_t deadline_ms;
	size_t got;
	char *out; /* the response once the head is read (NULL while reading) */
	size_t out_len, out_off;
	char req[METRICS_HEAD_MAX];
};

struct metrics_server {
	int fd, epfd, stopfd;
	pthread_t thread;
	struct metrics_sources src;
	struct mconn *oldest, *newest;
	size_t nconns;
	int64_t accept_resume_ms; /* 0 while the listener is watched */
	/* Written and rendered by the server's thread only. */
	uint64_t timeouts, evicted;
	char body[METRICS_BODY_MAX];
};

struct out {
	char *p;
	size_t size, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	if (o->len >= o->size)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->p + o->len, o->size - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len = o->len + (size_t)n < o->size ? o->len + (size_t)n : o->size;
}

#define SUM(field)                                                                                                     \
	({                                                                                                             \
		uint64_t s_ = 0;                                                                                       \
		for (int i_ = 0; i_ < src->nloops; i_++)                                                               \
			s_ += atomic_load_explicit(&src->loops[i_]->field, memory_order_relaxed);                      \
		s_;                                                                                                    \
	})

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
	put(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void gauge(struct out *o, const char *name, const char *help, uint64_t v)
{
	put(o, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

/* Why a load balancer should send no new connections here, or NULL. A warm cache serves most
 * clients through a database outage, so only a cold cache without a database is unhealthy. */
static const char *metrics_unhealthy(const struct metrics_sources *src)
{
	enum process_phase phase = src->phase ? atomic_load(src->phase) : PHASE_SERVING;
	if (phase == PHASE_DRAINING)
		return "draining";
	if (phase == PHASE_WARMING)
		return "warming up";
	for (int i = 0; i < src->nloops; i++)
		if (atomic_load_explicit(&src->loops[i]->db_ready, memory_order_relaxed))
			return NULL;
	struct sni_cache_stats st;
	sni_cache_stats(src->cache, &st);
	return st.entries > 0 ? NULL : "database unreachable and certificate cache empty";
}

size_t metrics_render(const struct metrics_sources *src, char *buf, size_t size)
{
	struct out o = {buf, size, 0};
	struct out *op = &o;
	put(op, "# HELP tracktls_handshakes_total TLS handshakes by result and version.\n"
		"# TYPE tracktls_handshakes_total counter\n");
	put(op, "tracktls_handshakes_total{result=\"ok\",version=\"TLSv1.3\"} %llu\n",
	    (unsigned long long)SUM(handshakes_ok[HS_TLS13]));
	put(op, "tracktls_handshakes_total{result=\"ok\",version=\"TLSv1.2\"} %llu\n",
	    (unsigned long long)SUM(handshakes_ok[HS_TLS12]));
	put(op, "tracktls_handshakes_total{result=\"failed\",version=\"\"} %llu\n",
	    (unsigned long long)SUM(handshakes_failed));
	put(op, "tracktls_handshakes_total{result=\"timeout\",version=\"\"} %llu\n",
	    (unsigned long long)SUM(handshakes_timeout));
	put(op, "# HELP tracktls_client_hello_refused_total ClientHellos refused before a handshake, by reason.\n"
		"# TYPE tracktls_client_hello_refused_total counter\n");
	put(op, "tracktls_client_hello_refused_total{reason=\"malformed\"} %llu\n", (unsigned long long)SUM(bad_hello));
	put(op, "tracktls_client_hello_refused_total{reason=\"no_sni\"} %llu\n", (unsigned long long)SUM(no_sni));
	put(op, "tracktls_client_hello_refused_total{reason=\"unknown_sni\"} %llu\n",
	    (unsigned long long)SUM(unknown_sni));
	put(op, "tracktls_client_hello_refused_total{reason=\"certificate_error\"} %llu\n",
	    (unsigned long long)SUM(cert_errors));
	put(op, "tracktls_client_hello_refused_total{reason=\"throttled\"} %llu\n", (unsigned long long)SUM(throttled));
	uint64_t accepted = SUM(accepted), closed = SUM(closed);
	counter(op, "tracktls_connections_accepted_total", "Client connections accepted.", accepted);
	gauge(op, "tracktls_connections_open", "Client connections open now.", accepted - closed);
	gauge(op, "tracktls_connections_limit",
	      "Client connections held at once (--max-connections, as the threads share it).", SUM(max_conns));
	put(op, "# HELP tracktls_accept_paused_total Times a thread stopped accepting: it held its share of "
		"--max-connections, ran out of descriptors all the same, or accepting failed otherwise.\n"
		"# TYPE tracktls_accept_paused_total counter\n");
	put(op, "tracktls_accept_paused_total{reason=\"connection_limit\"} %llu\n",
	    (unsigned long long)SUM(accept_full));
	put(op, "tracktls_accept_paused_total{reason=\"descriptors\"} %llu\n", (unsigned long long)SUM(accept_paused));
	put(op, "tracktls_accept_paused_total{reason=\"error\"} %llu\n", (unsigned long long)SUM(accept_failed));
	gauge(op, "tracktls_threads_not_accepting",
	      "Threads leaving new connections in the kernel's queue now (share held, or accepting paused).",
	      SUM(not_accepting));
	put(op, "# HELP tracktls_client_bytes_total Bytes from and to clients, as on the wire.\n"
		"# TYPE tracktls_client_bytes_total counter\n");
	put(op, "tracktls_client_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)SUM(bytes_in));
	put(op, "tracktls_client_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)SUM(bytes_out));
	counter(op, "tracktls_requests_total", "HTTP requests read from clients.", SUM(requests));
	counter(op, "tracktls_bad_requests_total", "Requests answered 400 or 431.", SUM(bad_requests));
	counter(op, "tracktls_acme_challenges_total", "HTTP-01 challenge requests on the plain port.", SUM(challenges));
	counter(op, "tracktls_backend_errors_total", "Backend connections refused, broken or timed out.",
		SUM(backend_errors));
	counter(op, "tracktls_backend_timeouts_total", "Backend connects or responses that took too long.",
		SUM(backend_timeouts));
	counter(op, "tracktls_backend_connects_total", "New backend connections.", SUM(backend_connects));
	counter(op, "tracktls_backend_reuses_total", "Idle backend connections taken up by another client.",
		SUM(backend_reuses));
	static const char *const phases[TIMER_LINGER] = {"handshake", "header", "idle", "backend_connect", "backend"};
	put(op, "# HELP tracktls_timeouts_total Connections whose timer ran out, by phase.\n"
		"# TYPE tracktls_timeouts_total counter\n");
	for (int k = 0; k < TIMER_LINGER; k++)
		put(op, "tracktls_timeouts_total{phase=\"%s\"} %llu\n", phases[k],
		    (unsigned long long)SUM(timeouts[k]));
	struct sni_cache_stats cs;
	sni_cache_stats(src->cache, &cs);
	counter(op, "tracktls_cert_cache_hits_total", "Certificate cache lookups answered with a certificate.",
		cs.hits);
	counter(op, "tracktls_cert_cache_misses_total", "Certificate cache lookups that went to the database.",
		cs.misses);
	counter(op, "tracktls_cert_cache_negative_hits_total", "Lookups answered by a negative entry.",
		cs.negative_hits);
	counter(op, "tracktls_cert_cache_evictions_total", "Certificates evicted for room.", cs.evictions);
	gauge(op, "tracktls_cert_cache_entries", "Certificates in the cache.", cs.entries);
	gauge(op, "tracktls_cert_cache_bytes", "Bytes of certificates and keys in the cache.", cs.bytes);
	gauge(op, "tracktls_cert_cache_negative_entries", "Unknown names remembered.", cs.negative_entries);
	counter(op, "tracktls_cert_cache_filtered_total", "Misses ruled out by the name filter, without a query.",
		cs.filtered);
	if (src->filter) {
		struct name_filter_stats fs;
		name_filter_stats(src->filter, &fs);
		gauge(op, "tracktls_name_filter_trusted", "1 while the name filter may rule names out.", fs.trusted);
		gauge(op, "tracktls_name_filter_names", "Names in the name filter.", fs.names);
		counter(op, "tracktls_name_filter_builds_total", "Full scans of the names.", fs.builds);
		counter(op, "tracktls_name_filter_build_errors_total", "Scans that failed.", fs.build_errors);
	}
	if (src->challenges) {
		struct challenge_set_stats chs;
		challenge_set_stats(src->challenges, &chs);
		static const char *const results[CHALLENGE_OUTCOMES] = {"found", "unknown", "timeout", "refused"};
		put(op, "# HELP tracktls_acme_challenge_lookups_total HTTP-01 token lookups by result, all answered "
			"from memory.\n# TYPE tracktls_acme_challenge_lookups_total counter\n");
		for (int r = 0; r < CHALLENGE_OUTCOMES; r++)
			put(op, "tracktls_acme_challenge_lookups_total{result=\"%s\"} %llu\n", results[r],
			    (unsigned long long)chs.outcomes[r]);
		gauge(op, "tracktls_acme_challenge_tokens", "Live HTTP-01 tokens held in memory.", chs.tokens);
		gauge(op, "tracktls_acme_challenge_set_trusted", "1 while the token set is complete (listening).",
		      chs.trusted);
		put(op,
		    "# HELP tracktls_acme_challenge_queries_total Queries that filled the token set: full reads "
		    "and notified rows.\n# TYPE tracktls_acme_challenge_queries_total counter\n"
		    "tracktls_acme_challenge_queries_total{kind=\"scan\"} %llu\n"
		    "tracktls_acme_challenge_queries_total{kind=\"fetch\"} %llu\n",
		    (unsigned long long)chs.scans, (unsigned long long)chs.fetches);
		counter(op, "tracktls_acme_challenge_set_errors_total", "Token set connections lost or failed.",
			chs.errors);
	}
	if (src->tickets) {
		struct tickets_stats ts;
		tickets_stats(src->tickets, &ts);
		counter(op, "tracktls_tickets_issued_total", "Session tickets issued.", ts.issued);
		counter(op, "tracktls_tickets_resumed_total", "Sessions resumed from a ticket.", ts.resumed);
		counter(op, "tracktls_tickets_rejected_total", "Tickets that did not decrypt (unknown or retired key).",
			ts.rejected);
		counter(op, "tracktls_ticket_key_reloads_total", "Ticket key reloads from the database.", ts.reloads);
		counter(op, "tracktls_ticket_key_reload_errors_total", "Ticket key reloads that failed.",
			ts.reload_errors);
		gauge(op, "tracktls_ticket_keys", "Ticket keys held.", ts.keys);
		gauge(op, "tracktls_ticket_key_newest_start_seconds",
		      "Unix time the newest fleet ticket key held starts encrypting (0: none).",
		      (uint64_t)ts.newest_start);
	}
	counter(op, "tracktls_db_queries_total", "Certificate lookups on the loops' database connections.",
		SUM(db_queries));
	counter(op, "tracktls_db_query_errors_total", "Database lookups that failed.", SUM(db_query_errors));
	counter(op, "tracktls_db_query_timeouts_total", "Database lookups that timed out.", SUM(db_query_timeouts));
	counter(op, "tracktls_db_notifications_total", "Certificate change notifications received.",
		SUM(db_notifications));
	counter(op, "tracktls_db_reconnects_total", "Database reconnections.", SUM(db_reconnects));
	counter(op, "tracktls_db_bad_certificates_total", "Certificate rows that did not open or load.",
		SUM(db_bad_certs));
	/* /healthz as a series, so an alert sees what the load balancer sees. */
	gauge(op, "tracktls_healthy", "1 while /healthz answers 200.", metrics_unhealthy(src) == NULL);
	put(op,
	    "# HELP tracktls_db_query_seconds_total Time spent waiting for database lookups.\n"
	    "# TYPE tracktls_db_query_seconds_total counter\ntracktls_db_query_seconds_total %.6f\n",
	    (double)SUM(db_query_us_total) / 1e6);
	counter(op, "tracktls_db_cert_batches_total", "Certificate queries that carried several names.",
		SUM(db_batches));
	counter(op, "tracktls_db_cert_batched_names_total", "Names looked up by those queries.", SUM(db_batched_names));
	static const char *const causes[CERTDB_REFUSAL_CAUSES] = {"queue", "latency", "rate"};
	put(op, "# HELP tracktls_cert_misses_refused_total Misses refused without a query because the database "
		"is behind, by cause.\n# TYPE tracktls_cert_misses_refused_total counter\n");
	for (int k = 0; k < CERTDB_REFUSAL_CAUSES; k++)
		put(op, "tracktls_cert_misses_refused_total{cause=\"%s\"} %llu\n", causes[k],
		    (unsigned long long)SUM(misses_refused[k]));
	if (src->handover) {
		struct handover_stats hs;
		handover_stats(src->handover, &hs);
		put(op, "# HELP tracktls_handover_prefetch_names_total Names from hot-names files prefetched, by "
			"result.\n# TYPE tracktls_handover_prefetch_names_total counter\n");
		put(op, "tracktls_handover_prefetch_names_total{result=\"loaded\"} %llu\n",
		    (unsigned long long)hs.loaded);
		put(op, "tracktls_handover_prefetch_names_total{result=\"unknown\"} %llu\n",
		    (unsigned long long)hs.unknown);
		put(op, "tracktls_handover_prefetch_names_total{result=\"failed\"} %llu\n",
		    (unsigned long long)hs.failed);
		counter(op, "tracktls_handover_prefetch_queries_total", "Queries the prefetcher made (a batch each).",
			hs.queries);
		put(op,
		    "# HELP tracktls_handover_prefetch_query_seconds_total Time the prefetcher waited for the "
		    "database.\n"
		    "# TYPE tracktls_handover_prefetch_query_seconds_total counter\n"
		    "tracktls_handover_prefetch_query_seconds_total %.6f\n",
		    (double)hs.query_us / 1e6);
		gauge(op, "tracktls_handover_prefetching", "1 while a hot-names list is being loaded.", hs.prefetching);
		counter(op, "tracktls_handover_files_read_total", "Hot-names files read from another process.",
			hs.files_read);
		counter(op, "tracktls_handover_files_written_total", "Hot-names files written.", hs.files_written);
		counter(op, "tracktls_handover_names_written_total", "Names written to hot-names files.",
			hs.names_written);
	}
	return o.len;
}

/* The response to a complete head (or to as much of one as fits), into c->out. */
static int metrics_respond(struct metrics_server *srv, struct mconn *c)
{
	const char *req = c->req;
	char *body = srv->body;
	size_t blen;
	int status = 200;
	const char *type = "text/plain; version=0.0.4; charset=utf-8";
	if (strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0) {
		blen = metrics_render(&srv->src, body, sizeof srv->body);
		struct out o = {body, sizeof srv->body, blen};
		counter(&o, "tracktls_metrics_request_timeouts_total",
			"Connections to the metrics port closed at their request deadline.", srv->timeouts);
		counter(&o, "tracktls_metrics_connections_evicted_total",
			"Oldest connections to the metrics port closed to make room over its cap.", srv->evicted);
		gauge(&o, "tracktls_metrics_connections", "Connections to the metrics port open now.", srv->nconns);
		blen = o.len;
	} else if (strncmp(req, "GET /healthz ", 13) == 0) {
		const char *why = metrics_unhealthy(&srv->src);
		status = why ? 503 : 200;
		blen = (size_t)snprintf(body, sizeof srv->body, "%s\n", why ? why : "ok");
		type = "text/plain; charset=utf-8";
	} else {
		status = 404;
		blen = (size_t)snprintf(body, sizeof srv->body, "not found\n");
		type = "text/plain; charset=utf-8";
	}
	char head[256];
	int hl =
	    snprintf(head, sizeof head,
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
		     status == 200   ? "OK"
		     : status == 503 ? "Service Unavailable"
				     : "Not Found",
		     type, blen);
	c->out = malloc((size_t)hl + blen);
	if (!c->out)
		return -1;
	memcpy(c->out, head, (size_t)hl);
	memcpy(c->out + hl, body, blen);
	c->out_len = (size_t)hl + blen;
	return 0;
}

static void mconn_close(struct metrics_server *srv, struct mconn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->oldest = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		srv->newest = c->prev;
	srv->nconns--;
	close(c->fd); /* also leaves the epoll set */
	free(c->out);
	free(c);
}

/* Sends what the socket takes; closes the connection when all is sent or the client is gone. */
static void mconn_send(struct metrics_server *srv, struct mconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break;
		c->out_off += (size_t)n;
	}
	mconn_close(srv, c);
}

/* Reads what arrived; once the head is complete (or the buffer full) the response is due. */
static void mconn_recv(struct metrics_server *srv, struct mconn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->req + c->got, sizeof c->req - 1 - c->got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			mconn_close(srv, c);
			return;
		}
		c->got += (size_t)n;
		c->req[c->got] = 0;
		if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") || c->got == sizeof c->req - 1)
			break;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
	if (metrics_respond(srv, c) < 0 || epoll_ctl(srv->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
		mconn_close(srv, c);
		return;
	}
	mconn_send(srv, c);
}

static void watch_listener(struct metrics_server *srv, bool on)
{
	struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.ptr = srv};
	epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->fd, &ev);
}

/* Accepts everything queued; over the cap, the oldest connection makes room. */
static void metrics_accept(struct metrics_server *srv, int64_t now)
{
	for (;;) {
		int fd = accept4(srv->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if ((errno == EMFILE || errno == ENFILE) && srv->oldest) {
				srv->evicted++;
				mconn_close(srv, srv->oldest);
				continue;
			}
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				watch_listener(srv, false);
				srv->accept_resume_ms = now + METRICS_ACCEPT_BACKOFF_MS;
			}
			return;
		}
		if (srv->nconns >= srv->src.max_conns) {
			srv->evicted++;
			mconn_close(srv, srv->oldest);
		}
		struct mconn *c = malloc(sizeof *c);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (!c || epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
			continue;
		}
		*c = (struct mconn){.fd = fd, .deadline_ms = now + METRICS_DEADLINE_MS, .prev = srv->newest};
		if (srv->newest)
			srv->newest->next = c;
		else
			srv->oldest = c;
		srv->newest = c;
		srv->nconns++;
	}
}

/* Closes the connections whose deadline passed; returns the wait until the next one (-1: none). */
static int metrics_expire(struct metrics_server *srv, int64_t now)
{
	while (srv->oldest && srv->oldest->deadline_ms <= now) {
		srv->timeouts++;
		mconn_close(srv, srv->oldest);
	}
	if (srv->accept_resume_ms && srv->accept_resume_ms <= now) {
		srv->accept_resume_ms = 0;
		watch_listener(srv, true);
	}
	int64_t next = srv->oldest ? srv->oldest->deadline_ms : -1;
	if (srv->accept_resume_ms && (next < 0 || srv->accept_resume_ms < next))
		next = srv->accept_resume_ms;
	return next < 0 ? -1 : (int)(next - now);
}

static void *metrics_thread(void *arg)
{
	struct metrics_server *srv = arg;
	struct epoll_event evs[METRICS_EVENTS];
	for (;;) {
		int wait_ms = metrics_expire(srv, tt_now_ms());
		int n = epoll_wait(srv->epfd, evs, METRICS_EVENTS, wait_ms);
		if (n < 0 && errno != EINTR)
			break;
		int64_t now = tt_now_ms();
		bool stop = false, accept_now = false;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				stop = true;
			} else if (evs[i].data.ptr == srv) {
				accept_now = true;
			} else {
				struct mconn *c = evs[i].data.ptr;
				if (c->out)
					mconn_send(srv, c);
				else
					mconn_recv(srv, c);
			}
		}
		if (stop)
			break;
		/* After the events of this round: a connection closed for room must not be one of them. */
		if (accept_now)
			metrics_accept(srv, now);
	}
	while (srv->oldest)
		mconn_close(srv, srv->oldest);
	return NULL;
}

int metrics_server_start(int fd, const struct metrics_sources *src, struct metrics_server **out, struct tt_err *err)
{
	struct metrics_server *srv = calloc(1, sizeof *srv);
	if (!srv) {
		close(fd);
		return tt_fail(err, "out of memory");
	}
	srv->fd = fd;
	srv->src = *src;
	srv->epfd = epoll_create1(EPOLL_CLOEXEC);
	srv->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = srv}, sev = {.events = EPOLLIN, .data.ptr = NULL};
	int rc = 0;
	if (srv->epfd < 0 || srv->stopfd < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &lev) < 0 ||
	    epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->stopfd, &sev) < 0)
		rc = tt_fail(err, "metrics server: %s", strerror(errno));
	else if ((rc = pthread_create(&srv->thread, NULL, metrics_thread, srv)) != 0)
		rc = tt_fail(err, "metrics thread: %s", strerror(rc));
	if (rc < 0) {
		close(fd);
		if (srv->epfd >= 0)
			close(srv->epfd);
		if (srv->stopfd >= 0)
			close(srv->stopfd);
		free(srv);
		return -1;
	}
	*out = srv;
	return 0;
}

void metrics_server_stop(struct metrics_server *srv)
{
	if (!srv)
		return;
	uint64_t one = 1;
	while (write(srv->stopfd, &one, sizeof one) < 0 && errno == EINTR)
		;
	pthread_join(srv->thread, NULL);
	close(srv->fd);
	close(srv->epfd);
	close(srv->stopfd);
	free(srv);
}
