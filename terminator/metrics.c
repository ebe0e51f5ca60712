/* metrics: the per-loop counters summed into Prometheus text, served with /healthz by a small
 * thread of its own using blocking I/O, so scrapes never touch a loop. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "terminator.h"

struct metrics_server {
	int fd;
	pthread_t thread;
	struct metrics_sources src;
	char body[65536];
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
	}
	counter(op, "tracktls_db_queries_total", "Database lookups (certificates and challenges).", SUM(db_queries));
	counter(op, "tracktls_db_query_errors_total", "Database lookups that failed.", SUM(db_query_errors));
	counter(op, "tracktls_db_query_timeouts_total", "Database lookups that timed out.", SUM(db_query_timeouts));
	counter(op, "tracktls_db_notifications_total", "Certificate change notifications received.",
		SUM(db_notifications));
	counter(op, "tracktls_db_reconnects_total", "Database reconnections.", SUM(db_reconnects));
	counter(op, "tracktls_db_bad_certificates_total", "Certificate rows that did not open or load.",
		SUM(db_bad_certs));
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

/* Why a load balancer should send no new connections here, or NULL. A warm cache serves most
 * clients through a database outage, so only a cold cache without a database is unhealthy. */
static const char *metrics_unhealthy(const struct metrics_sources *src)
{
	if (src->draining && atomic_load(src->draining))
		return "draining";
	for (int i = 0; i < src->nloops; i++)
		if (atomic_load_explicit(&src->loops[i]->db_ready, memory_order_relaxed))
			return NULL;
	struct sni_cache_stats st;
	sni_cache_stats(src->cache, &st);
	return st.entries > 0 ? NULL : "database unreachable and certificate cache empty";
}

static void metrics_answer(struct metrics_server *srv, int fd)
{
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	char req[2048];
	size_t got = 0;
	while (got < sizeof req - 1) {
		ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
		if (n <= 0)
			return;
		got += (size_t)n;
		req[got] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[got] = 0;
	char *body = srv->body;
	size_t blen;
	int status = 200;
	const char *type = "text/plain; version=0.0.4; charset=utf-8";
	if (strncmp(req, "GET /metrics ", 13) == 0 || strncmp(req, "GET /metrics?", 13) == 0) {
		blen = metrics_render(&srv->src, body, sizeof srv->body);
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
	if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl)
		send(fd, body, blen, MSG_NOSIGNAL);
}

static void *metrics_thread(void *arg)
{
	struct metrics_server *srv = arg;
	for (;;) {
		int fd = accept4(srv->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
				continue;
			break;
		}
		metrics_answer(srv, fd);
		close(fd);
	}
	return NULL;
}

int metrics_server_start(int fd, const struct metrics_sources *src, struct metrics_server **out, struct tt_err *err)
{
	int rc;
	struct metrics_server *srv = calloc(1, sizeof *srv);
	if (!srv) {
		close(fd);
		return tt_fail(err, "out of memory");
	}
	srv->fd = fd;
	srv->src = *src;
	rc = pthread_create(&srv->thread, NULL, metrics_thread, srv);
	if (rc != 0) {
		close(fd);
		free(srv);
		return tt_fail(err, "metrics thread: %s", strerror(rc));
	}
	*out = srv;
	return 0;
}

void metrics_server_stop(struct metrics_server *srv)
{
	if (!srv)
		return;
	/* Wakes the blocked accept. */
	shutdown(srv->fd, SHUT_RDWR);
	pthread_join(srv->thread, NULL);
	close(srv->fd);
	free(srv);
}
