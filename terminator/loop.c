/* loop: one core's event loop. It owns a ring, its own SO_REUSEPORT listeners, a certdb
 * connection, the backend pool and the timeout lists, and hands every completion, expiry and
 * deferred turn to the callbacks of the timer it belongs to. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "terminator.h"

/* Submission queue slots: a round of the loop queues a send, a receive or a cancel per connection
 * it touched; a full queue is flushed early (ring.c), so this sizes the batch per system call. */
#define LOOP_RING_ENTRIES 4096
/* Provided receive buffers: a completed receive holds one until the loop has handled it, so this
 * bounds the receives the kernel completes between two rounds; past it a receive ends ENOBUFS. */
#define LOOP_RECV_BUFS 1024
/* Half a TLS record's worth: a ClientHello or a request head usually fits in one. */
#define LOOP_RECV_BUF_SIZE 8192
/* Completions taken per wait: enough to batch a busy round, small enough for the stack. */
#define LOOP_EVENTS 256
/* Pending connections the kernel queues per listener (capped by net.core.somaxconn): a burst of new
 * clients after a failover or a restart waits for accept instead of being refused. */
#define LOOP_LISTEN_BACKLOG 4096
/* The loop wakes at least this often to notice loop_stop. */
#define LOOP_MAX_WAIT_MS 250
/* Out of descriptors: accepting waits this long for connections to close, rather than spinning. */
#define LOOP_ACCEPT_PAUSE_MS 100
/* Connections a round takes from a listener's queue at most: a flood of new connections still
 * leaves the loop time for those it holds. */
#define LOOP_ACCEPT_BATCH 64
/* A loop that keeps reaching its share, or running out of descriptors, says so this often. */
#define LOOP_ACCEPT_WARN_MS 10000
/* ACCEPT_HELD: the loop looks this often whether loop_serve was called. */
#define LOOP_HELD_POLL_MS 10

/* Binds a SO_REUSEPORT socket on sa; listen_now also makes it a listener. */
static int bind_on(const struct sockaddr_storage *sa, socklen_t len, bool listen_now, int *out, struct tt_err *err)
{
	/* Non-blocking: accepting stops when the queue is empty (ring_accept) or the loop is full. */
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return tt_fail(err, "socket: %s", strerror(errno));
	int one = 1;
	/* Accepted sockets inherit TCP_NODELAY, which saves a setsockopt per connection. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) {
		tt_fail(err, "setsockopt: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)sa, len) < 0 || (listen_now && listen(fd, LOOP_LISTEN_BACKLOG) < 0)) {
		tt_fail(err, "bind/listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	*out = fd;
	return 0;
}

int loop_listen_on(const struct sockaddr_storage *sa, socklen_t len, int *out, struct tt_err *err)
{
	return bind_on(sa, len, true, out, err);
}

int loop_listen(const struct term_config *cfg, int fds[2], struct tt_err *err)
{
	fds[0] = fds[1] = -1;
	if (bind_on(&cfg->https_addr, cfg->https_len, !cfg->hold_accept, &fds[0], err) < 0)
		return -1;
	if (bind_on(&cfg->http_addr, cfg->http_len, !cfg->hold_accept, &fds[1], err) < 0) {
		close(fds[0]);
		fds[0] = -1;
		return -1;
	}
	return 0;
}

int loop_serve(struct loop *l, struct tt_err *err)
{
	for (int i = 0; i < LISTENERS; i++)
		if (l->listen_fd[i] >= 0 && listen(l->listen_fd[i], LOOP_LISTEN_BACKLOG) < 0)
			return tt_fail(err, "listen: %s", strerror(errno));
	atomic_store(&l->serve, true);
	return 0;
}

int loop_new(int id, const struct term_config *cfg, const int fds[2], struct metrics *m, struct loop **out,
	     struct tt_err *err)
{
	struct loop *l = calloc(1, sizeof *l);
	if (!l)
		return tt_fail(err, "out of memory");
	l->id = id;
	l->cfg = cfg;
	atomic_init(&l->cfg_next, cfg);
	atomic_init(&l->cfg_seen, cfg);
	l->m = m;
	l->listen_fd[LISTENER_HTTPS] = fds[0];
	l->listen_fd[LISTENER_HTTP] = fds[1];
	l->db_fd = -1;
	l->now_ms = tt_now_ms();
	for (int k = 0; k <= TIMER_KINDS; k++) {
		l->lists[k].prev = l->lists[k].next = &l->lists[k];
		l->lists[k].kind = -1;
	}
	struct certdb_config dbc = {
	    .conninfo = id == 0 ? cfg->db_listen_conninfo : cfg->db_conninfo,
	    .keyring = cfg->keyring,
	    .cache = cfg->cache,
	    .query_timeout_ms = cfg->db_timeout_ms,
	    .connect_timeout_ms = cfg->timeout_ms[TIMER_BACKEND_CONNECT],
	    /* One thread listens for the shared cache. */
	    .listen = id == 0,
	    .tickets = cfg->tickets,
	    .max_misses_per_sec = cfg->max_misses_per_sec,
	    .challenges = cfg->challenges,
	    .batch_max = cfg->cert_batch_max,
	    .max_pending = cfg->max_pending_misses,
	    .latency_limit_ms = cfg->miss_latency_limit_ms,
	};
	if (ring_new(LOOP_RING_ENTRIES, LOOP_RECV_BUFS, LOOP_RECV_BUF_SIZE, &l->ring, err) < 0 ||
	    certdb_new(&dbc, &l->db, err) < 0) {
		loop_free(l);
		return -1;
	}
	*out = l;
	return 0;
}

void loop_timer_clear(struct timer *t)
{
	if (t->kind < 0)
		return;
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->prev = t->next = NULL;
	t->kind = -1;
}

void loop_timer_set_by(struct loop *l, struct timer *t, int kind, int64_t deadline_ms)
{
	loop_timer_clear(t);
	struct timer *head = &l->lists[kind], *after = head->prev;
	t->kind = kind;
	t->deadline_ms = kind == TIMER_CLOSED ? INT64_MAX : l->now_ms + l->cfg->timeout_ms[kind];
	if (deadline_ms < t->deadline_ms)
		t->deadline_ms = deadline_ms;
	/* Only a shorter timeout from a reload, or a deadline of the caller's, puts a deadline before
	 * the tail's. */
	while (after != head && after->deadline_ms > t->deadline_ms)
		after = after->prev;
	t->prev = after;
	t->next = after->next;
	after->next->prev = t;
	after->next = t;
}

void loop_timer_set(struct loop *l, struct timer *t, int kind)
{
	loop_timer_set_by(l, t, kind, INT64_MAX);
}

void loop_defer(struct loop *l, struct timer *t)
{
	if (t->deferred)
		return;
	t->deferred = true;
	t->deferred_next = NULL;
	if (l->deferred_tail)
		l->deferred_tail->deferred_next = t;
	else
		l->deferred = t;
	l->deferred_tail = t;
}

/* Runs the turns deferred so far; those deferred meanwhile wait for the next round, so a loop
 * that keeps yielding still lets the ring's events in. */
static void loop_run_deferred(struct loop *l)
{
	struct timer *t = l->deferred;
	l->deferred = l->deferred_tail = NULL;
	while (t) {
		struct timer *next = t->deferred_next;
		t->deferred = false;
		t->ops->resume(t);
		t = next;
	}
}

/* One poll at a time on the database socket. libpq may reconnect on a new socket with the same
 * number, so after certdb ran on a timer the poll is replaced rather than trusted. */
void loop_db_watch(struct loop *l, bool force)
{
	int fd = certdb_fd(l->db);
	bool w = certdb_wants_write(l->db);
	if (l->db_armed) {
		if (!l->db_removing && (force || fd != l->db_fd || w != l->db_armed_write)) {
			ring_poll_remove(l->ring, loop_token(l, OP_DB_POLL));
			l->db_removing = true;
		}
		return;
	}
	if (fd < 0)
		return;
	ring_poll(l->ring, fd, w, loop_token(l, OP_DB_POLL));
	l->db_armed = true;
	l->db_removing = false;
	l->db_fd = fd;
	l->db_armed_write = w;
}

static void loop_db_stats(struct loop *l)
{
	struct certdb_stats st;
	certdb_stats(l->db, &st);
	struct metrics *m = l->m;
	atomic_store_explicit(&m->db_queries, st.queries, memory_order_relaxed);
	atomic_store_explicit(&m->db_query_errors, st.query_errors, memory_order_relaxed);
	atomic_store_explicit(&m->db_query_timeouts, st.query_timeouts, memory_order_relaxed);
	atomic_store_explicit(&m->db_notifications, st.notifications, memory_order_relaxed);
	atomic_store_explicit(&m->db_reconnects, st.reconnects, memory_order_relaxed);
	atomic_store_explicit(&m->db_query_us_total, st.query_us_total, memory_order_relaxed);
	atomic_store_explicit(&m->db_bad_certs, st.bad_certs, memory_order_relaxed);
	atomic_store_explicit(&m->db_batches, st.batches, memory_order_relaxed);
	atomic_store_explicit(&m->db_batched_names, st.batched_names, memory_order_relaxed);
	for (int i = 0; i < CERTDB_REFUSAL_CAUSES; i++)
		atomic_store_explicit(&m->misses_refused[i], st.refused[i], memory_order_relaxed);
	atomic_store_explicit(&m->db_ready, certdb_ready(l->db), memory_order_relaxed);
}

static void loop_db_run(struct loop *l, bool force)
{
	certdb_process(l->db, l->now_ms);
	loop_db_watch(l, force);
	loop_db_stats(l);
}

/* accept(2) hands on a network error of the connection it was about to return (it is gone); the
 * next one may be fine. */
static bool accept_retry(int error)
{
	switch (-error) {
	case EINTR:
	case ECONNABORTED:
	case EPROTO:
	case ENETDOWN:
	case ENETUNREACH:
	case EHOSTDOWN:
	case EHOSTUNREACH:
	case ENONET:
	case EOPNOTSUPP:
		return true;
	default:
		return false;
	}
}

/* Takes one connection from listener i's queue: 0 when one was taken (or broke while it waited),
 * -EAGAIN when the queue is empty, or the -errno accepting failed with. */
static int loop_take(struct loop *l, enum listener i)
{
	int cfd = ring_accept(l->ring, l->listen_fd[i]);
	if (cfd >= 0) {
		conn_accept(l, cfd, i == LISTENER_HTTPS);
		return 0;
	}
	return accept_retry(cfd) ? 0 : cfd;
}

/* A listener closed with connections in its accept queue resets them, and with SO_REUSEPORT the
 * kernel keeps queueing new ones on it until it is closed. So its poll is cancelled first and, once
 * the cancel completed, the queue is emptied by hand right before the close, as far as the loop's
 * share allows: the window left for a reset is the few instructions between the two, and what
 * waits past the share is reset too (none of either with net.ipv4.tcp_migrate_req = 1, which
 * moves such connections to the new process's listener). Taking them past the share would leave
 * them, and those already held, without a descriptor for their backend. */
static void loop_listener_close(struct loop *l, enum listener i)
{
	if (l->listen_fd[i] < 0)
		return;
	while (l->nconns < l->cfg->loop_max_conns && loop_take(l, i) == 0)
		;
	close(l->listen_fd[i]);
	l->listen_fd[i] = -1;
}

/* Accepting failed for want of a resource (descriptors, memory) or for a reason accept(2) does not
 * document: trying again at once would spin, so the loop waits; the queue stays as it was. */
static void loop_accept_pause(struct loop *l, int error)
{
	l->accept = ACCEPT_PAUSED;
	l->accept_resume_ms = l->now_ms + LOOP_ACCEPT_PAUSE_MS;
	if (error == EMFILE || error == ENFILE)
		METRIC_ADD(l->m, accept_paused, 1);
	else
		METRIC_ADD(l->m, accept_failed, 1);
	if (l->now_ms - l->accept_paused_warned_ms >= LOOP_ACCEPT_WARN_MS) {
		l->accept_paused_warned_ms = l->now_ms;
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "accept_paused", "thread=%d connections=%zu error=%s", l->id, l->nconns,
		       tt_log_quote(q, sizeof q, strerror(error)));
	}
}

static enum loop_op listener_op(enum listener i)
{
	return i == LISTENER_HTTPS ? OP_ACCEPT_TLS : OP_ACCEPT_PLAIN;
}

/* Connections may wait in a listener's queue (polled: an unpolled queue is looked at when polled). */
static bool loop_queue_waiting(const struct loop *l)
{
	return l->queue[LISTENER_HTTPS] == QUEUE_WAITING || l->queue[LISTENER_HTTP] == QUEUE_WAITING;
}

/* Polls the listeners, then accepts what their queues hold while the loop holds fewer connections
 * than its share, taking turns between the listeners, at most LOOP_ACCEPT_BATCH from each. */
static void loop_accept(struct loop *l)
{
	if (l->accept != ACCEPT_OPEN && l->accept != ACCEPT_FULL)
		return;
	for (int i = 0; i < LISTENERS; i++) {
		if (l->listen_fd[i] >= 0 && l->queue[i] == QUEUE_UNPOLLED) {
			ring_poll_multishot(l->ring, l->listen_fd[i], loop_token(l, listener_op(i)));
			/* Connections may have come before the poll. */
			l->queue[i] = QUEUE_WAITING;
		}
	}
	int taken[LISTENERS] = {0};
	bool progress = true;
	while (progress && l->nconns < l->cfg->loop_max_conns) {
		progress = false;
		for (int i = 0; i < LISTENERS && l->nconns < l->cfg->loop_max_conns; i++) {
			if (l->queue[i] != QUEUE_WAITING || taken[i] == LOOP_ACCEPT_BATCH)
				continue;
			int rc = loop_take(l, i);
			taken[i]++;
			progress = true;
			if (rc == -EAGAIN) {
				l->queue[i] = QUEUE_EMPTY;
			} else if (rc < 0) {
				loop_accept_pause(l, -rc);
				return;
			}
		}
	}
	if (l->nconns < l->cfg->loop_max_conns) {
		l->accept = ACCEPT_OPEN;
	} else if (l->accept == ACCEPT_OPEN && loop_queue_waiting(l)) {
		l->accept = ACCEPT_FULL;
		METRIC_ADD(l->m, accept_full, 1);
		if (l->now_ms - l->accept_full_warned_ms >= LOOP_ACCEPT_WARN_MS) {
			l->accept_full_warned_ms = l->now_ms;
			tt_log(TT_WARN, "accept_full", "thread=%d connections=%zu", l->id, l->nconns);
		}
	}
}

/* A queue left waiting with room to take from it: the next round must not sleep. */
static bool loop_accept_due(const struct loop *l)
{
	return l->accept == ACCEPT_OPEN && l->nconns < l->cfg->loop_max_conns && loop_queue_waiting(l);
}

static void loop_begin_drain(struct loop *l)
{
	l->accept = ACCEPT_DRAINING;
	for (int i = 0; i < LISTENERS; i++) {
		if (l->queue[i] == QUEUE_UNPOLLED)
			loop_listener_close(l, i);
		else
			ring_cancel_fd(l->ring, l->listen_fd[i]);
	}
	for (int k = 0; k < TIMER_KINDS; k++) {
		struct timer *head = &l->lists[k], *t = head->next;
		while (t != head) {
			struct timer *next = t->next;
			t->ops->drain(t);
			t = next;
		}
	}
}

static void loop_dispatch(struct loop *l, const struct ring_event *ev)
{
	enum loop_op op = (enum loop_op)(ev->token & OP_MASK);
	void *p = (void *)(uintptr_t)(ev->token & ~(uint64_t)OP_MASK);
	switch (op) {
	case OP_ACCEPT_TLS:
	case OP_ACCEPT_PLAIN: {
		enum listener i = op == OP_ACCEPT_TLS ? LISTENER_HTTPS : LISTENER_HTTP;
		if (!ev->more)
			l->queue[i] = QUEUE_UNPOLLED;
		else if (ev->res > 0)
			l->queue[i] = QUEUE_WAITING;
		if (l->accept == ACCEPT_DRAINING && l->queue[i] == QUEUE_UNPOLLED)
			loop_listener_close(l, i);
		break;
	}
	case OP_DB_POLL:
		l->db_armed = l->db_removing = false;
		if (ev->res == -ECANCELED)
			loop_db_watch(l, false);
		else
			loop_db_run(l, false);
		break;
	default: {
		struct timer *t = p;
		t->ops->event(t, op, ev);
		break;
	}
	}
}

static int64_t loop_next_deadline(struct loop *l)
{
	int64_t next = l->now_ms + LOOP_MAX_WAIT_MS;
	for (int k = 0; k < TIMER_KINDS; k++) {
		struct timer *t = l->lists[k].next;
		if (t != &l->lists[k] && t->deadline_ms < next)
			next = t->deadline_ms;
	}
	int64_t db = certdb_next_deadline_ms(l->db);
	if (db >= 0 && db < next)
		next = db;
	if (l->accept == ACCEPT_PAUSED && l->accept_resume_ms < next)
		next = l->accept_resume_ms;
	if (l->accept == ACCEPT_HELD && l->now_ms + LOOP_HELD_POLL_MS < next)
		next = l->now_ms + LOOP_HELD_POLL_MS;
	return next;
}

static void loop_expire(struct loop *l)
{
	for (int k = 0; k < TIMER_KINDS; k++) {
		struct timer *t;
		while ((t = l->lists[k].next) != &l->lists[k] && t->deadline_ms <= l->now_ms)
			t->ops->expire(t);
	}
	int64_t db = certdb_next_deadline_ms(l->db);
	if (db >= 0 && db <= l->now_ms)
		loop_db_run(l, true);
	if (l->accept == ACCEPT_PAUSED && l->accept_resume_ms <= l->now_ms)
		l->accept = ACCEPT_OPEN;
}

static void loop_reap(struct loop *l)
{
	struct timer *head = &l->lists[TIMER_CLOSED], *t = head->next;
	while (t != head) {
		struct timer *next = t->next;
		t->ops->reap(t);
		t = next;
	}
}

int loop_run(struct loop *l, struct tt_err *err)
{
	struct ring_event events[LOOP_EVENTS];
	/* Held until loop_serve: a drain before it closes the listeners unarmed. */
	l->accept = l->cfg->hold_accept ? ACCEPT_HELD : ACCEPT_OPEN;
	l->accept_full_warned_ms = l->accept_paused_warned_ms = l->now_ms - LOOP_ACCEPT_WARN_MS;
	atomic_store_explicit(&l->m->max_conns, l->cfg->loop_max_conns, memory_order_relaxed);
	loop_db_watch(l, false);
	tt_log(TT_INFO, "thread_started", "thread=%d ring=%s", l->id, ring_mode(l->ring));
	while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
		const struct term_config *next = atomic_load_explicit(&l->cfg_next, memory_order_acquire);
		if (next != l->cfg) {
			l->cfg = next;
			atomic_store_explicit(&l->cfg_seen, next, memory_order_release);
		}
		if (l->accept != ACCEPT_DRAINING && atomic_load_explicit(&l->drain, memory_order_relaxed))
			loop_begin_drain(l);
		if (l->accept == ACCEPT_HELD && atomic_load(&l->serve))
			l->accept = ACCEPT_OPEN;
		loop_accept(l);
		atomic_store_explicit(&l->m->not_accepting, l->accept == ACCEPT_FULL || l->accept == ACCEPT_PAUSED,
				      memory_order_relaxed);
		if (l->accept == ACCEPT_DRAINING && l->nconns == 0 && l->listen_fd[LISTENER_HTTPS] < 0 &&
		    l->listen_fd[LISTENER_HTTP] < 0)
			break;
		l->now_ms = tt_now_ms();
		int64_t wait = l->deferred || loop_accept_due(l) ? 0 : loop_next_deadline(l) - l->now_ms;
		unsigned n;
		if (ring_wait(l->ring, wait < 0 ? 0 : wait, events, LOOP_EVENTS, &n, err) < 0)
			return -1;
		l->now_ms = tt_now_ms();
		for (unsigned i = 0; i < n; i++)
			loop_dispatch(l, &events[i]);
		loop_expire(l);
		loop_run_deferred(l);
		loop_reap(l);
	}
	atomic_store(&l->done, true);
	return 0;
}

void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, true);
}

void loop_drain(struct loop *l)
{
	atomic_store(&l->drain, true);
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	/* The ring goes first so the kernel no longer touches connection memory. */
	ring_free(l->ring);
	for (int k = 0; k <= TIMER_KINDS; k++) {
		while (l->lists[k].next != &l->lists[k])
			l->lists[k].next->ops->destroy(l->lists[k].next);
	}
	certdb_free(l->db);
	backend_pool_free(&l->pool);
	for (int i = 0; i < LISTENERS; i++)
		if (l->listen_fd[i] >= 0)
			close(l->listen_fd[i]);
	free(l);
}
