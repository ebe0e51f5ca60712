/* challenge_set: the live HTTP-01 challenges held in memory for every thread, so that a request
 * for a token, known or not, costs no query: port 80 is open to anyone, and random tokens must
 * not become database load. A helper thread with a connection of its own LISTENs on
 * tracktls_challenge, reads every live challenge each time LISTEN is (re)established, then fetches
 * each notified token's row. While it is not listening or reading the table, the set is
 * untrusted: a lookup then answers "wait", and so does one for a token notified but not yet
 * fetched. Nothing here ever runs on a loop's certdb connection, so a stuck challenge query
 * cannot fail a certificate load. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "terminator.h"

#define BUCKETS 1024
/* Far above the challenges of the orders in flight; past it the set stops trusting itself (every
 * unknown token then waits and times out) until the next full read. */
#define MAX_TOKENS 100000
#define RETRY_MS 1000
/* How often the helper wakes without a notification, to drop expired tokens. */
#define PRUNE_MS 1000
#define NOTIFY_BATCH 64

struct challenge {
	struct challenge *next;
	int64_t expires_ms; /* wall clock */
	bool pending;	    /* notified, its row not read yet */
	char *key_auth;	    /* NULL while pending */
	char token[];
};

struct challenge_set {
	struct tt_hash_key key;
	pthread_mutex_t lock;
	struct challenge *buckets[BUCKETS]; /* under lock */
	size_t count;			    /* under lock */
	bool trusted;			    /* under lock */
	char *conninfo;
	int64_t query_timeout_ms;
	int stopfd;
	pthread_t thread;
	bool started;
	_Atomic uint64_t outcomes[CHALLENGE_OUTCOMES];
	_Atomic uint64_t scans, fetches, errors;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int challenge_set_new(struct challenge_set **out, struct tt_err *err)
{
	struct challenge_set *s = calloc(1, sizeof *s);
	if (!s)
		return tt_fail(err, "out of memory");
	if (tt_hash_key_random(&s->key, err) < 0) {
		free(s);
		return -1;
	}
	s->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stopfd < 0) {
		free(s);
		return tt_fail(err, "eventfd: %s", strerror(errno));
	}
	pthread_mutex_init(&s->lock, NULL);
	*out = s;
	return 0;
}

static struct challenge **slot_of(struct challenge_set *s, const char *token)
{
	struct challenge **p = &s->buckets[tt_name_hash(&s->key, token, strlen(token)) % BUCKETS];
	while (*p && strcmp((*p)->token, token) != 0)
		p = &(*p)->next;
	return p;
}

static void remove_at(struct challenge_set *s, struct challenge **p)
{
	struct challenge *c = *p;
	*p = c->next;
	free(c->key_auth);
	free(c);
	s->count--;
}

/* Under lock. key_auth NULL: the token is pending. False when the set is full. */
static bool put(struct challenge_set *s, const char *token, const char *key_auth, int64_t expires_ms)
{
	struct challenge **p = slot_of(s, token);
	char *ka = key_auth ? strdup(key_auth) : NULL;
	if (key_auth && !ka)
		return false;
	if (!*p) {
		size_t len = strlen(token);
		struct challenge *c = s->count < MAX_TOKENS ? calloc(1, sizeof *c + len + 1) : NULL;
		if (!c) {
			free(ka);
			return false;
		}
		memcpy(c->token, token, len + 1);
		*p = c;
		s->count++;
	}
	free((*p)->key_auth);
	(*p)->key_auth = ka;
	(*p)->pending = !key_auth;
	(*p)->expires_ms = expires_ms;
	return true;
}

static void clear(struct challenge_set *s)
{
	for (size_t b = 0; b < BUCKETS; b++)
		while (s->buckets[b])
			remove_at(s, &s->buckets[b]);
}

enum challenge_result challenge_set_lookup(struct challenge_set *s, const char *token, char *key_auth, size_t size)
{
	enum challenge_result r = CHALLENGE_UNKNOWN;
	pthread_mutex_lock(&s->lock);
	struct challenge *c = *slot_of(s, token);
	if (c && c->pending)
		r = CHALLENGE_WAIT;
	else if (c && c->expires_ms > wall_ms() && strlen(c->key_auth) < size)
		r = CHALLENGE_FOUND, memcpy(key_auth, c->key_auth, strlen(c->key_auth) + 1);
	else if (!s->trusted)
		r = CHALLENGE_WAIT;
	pthread_mutex_unlock(&s->lock);
	return r;
}

void challenge_set_count(struct challenge_set *s, enum challenge_outcome o)
{
	atomic_fetch_add_explicit(&s->outcomes[o], 1, memory_order_relaxed);
}

static void set_trusted(struct challenge_set *s, bool trusted)
{
	pthread_mutex_lock(&s->lock);
	s->trusted = trusted;
	pthread_mutex_unlock(&s->lock);
}

static const char sql_all[] = "SELECT token, key_authorization, (extract(epoch FROM expires_at) * 1000)::int8 "
			      "FROM challenges WHERE expires_at > now()";
static const char sql_one[] = "SELECT token, key_authorization, (extract(epoch FROM expires_at) * 1000)::int8 "
			      "FROM challenges WHERE token = $1 AND expires_at > now()";

/* Every live challenge, replacing what the set held; trusted after it. */
static int scan(struct challenge_set *s, PGconn *conn, struct tt_err *err)
{
	PGresult *res;
	atomic_fetch_add_explicit(&s->scans, 1, memory_order_relaxed);
	if (tt_db_exec(conn, &res, err, sql_all, 0, NULL) < 0)
		return -1;
	bool full = false;
	pthread_mutex_lock(&s->lock);
	clear(s);
	for (int i = 0; i < PQntuples(res) && !full; i++)
		full = !put(s, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), strtoll(PQgetvalue(res, i, 2), NULL, 10));
	s->trusted = !full;
	pthread_mutex_unlock(&s->lock);
	PQclear(res);
	if (full)
		tt_log(TT_WARN, "challenge_set_full", "max=%d", MAX_TOKENS);
	return 0;
}

/* The current row of a notified token: present, it is served; gone (or expired), it is not. */
static int fetch(struct challenge_set *s, PGconn *conn, const char *token, struct tt_err *err)
{
	PGresult *res;
	const char *params[] = {token};
	atomic_fetch_add_explicit(&s->fetches, 1, memory_order_relaxed);
	if (tt_db_exec(conn, &res, err, sql_one, 1, params) < 0)
		return -1;
	bool ok = true;
	pthread_mutex_lock(&s->lock);
	if (PQntuples(res) > 0)
		ok = put(s, token, PQgetvalue(res, 0, 1), strtoll(PQgetvalue(res, 0, 2), NULL, 10));
	else if (*slot_of(s, token))
		remove_at(s, slot_of(s, token));
	if (!ok)
		s->trusted = false;
	pthread_mutex_unlock(&s->lock);
	PQclear(res);
	return 0;
}

static void prune(struct challenge_set *s)
{
	int64_t now = wall_ms();
	pthread_mutex_lock(&s->lock);
	for (size_t b = 0; b < BUCKETS; b++)
		for (struct challenge **p = &s->buckets[b]; *p;)
			if (!(*p)->pending && (*p)->expires_ms <= now)
				remove_at(s, p);
			else
				p = &(*p)->next;
	pthread_mutex_unlock(&s->lock);
}

/* Waits for the socket (fd < 0: none) or the stop signal; false once stopped. */
static bool wait_input(struct challenge_set *s, int fd, int timeout_ms)
{
	struct pollfd p[2] = {{.fd = s->stopfd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
	int n = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
	return !(n > 0 && p[0].revents);
}

/* One connection's life: LISTEN, read everything, follow the notifications. Returns on error. */
static int follow(struct challenge_set *s, PGconn *conn, struct tt_err *err)
{
	char timeout[24];
	const char *params[] = {timeout};
	snprintf(timeout, sizeof timeout, "%lld", (long long)s->query_timeout_ms);
	if (tt_db_run(conn, err, "SELECT set_config('statement_timeout', $1, false)", 1, params) < 0 ||
	    tt_db_run(conn, err, "LISTEN " TT_CHANNEL_CHALLENGE, 0, NULL) < 0 || scan(s, conn, err) < 0)
		return -1;
	tt_log(TT_INFO, "challenge_set_listening", "tokens=%zu", challenge_set_size(s));
	while (wait_input(s, PQsocket(conn), PRUNE_MS)) {
		if (!PQconsumeInput(conn))
			return tt_fail(err, "%s", PQerrorMessage(conn));
		for (;;) {
			/* A batch of notified tokens waits first, so no lookup reads a row older than its
			 * notice. */
			PGnotify *batch[NOTIFY_BATCH];
			size_t n = 0;
			PGnotify *nt;
			while (n < NOTIFY_BATCH && (nt = PQnotifies(conn)) != NULL)
				batch[n++] = nt;
			if (n == 0)
				break;
			pthread_mutex_lock(&s->lock);
			for (size_t i = 0; i < n; i++)
				if (!put(s, batch[i]->extra, NULL, 0))
					s->trusted = false;
			pthread_mutex_unlock(&s->lock);
			int rc = 0;
			for (size_t i = 0; i < n; i++) {
				if (rc == 0)
					rc = fetch(s, conn, batch[i]->extra, err);
				PQfreemem(batch[i]);
			}
			if (rc < 0)
				return -1;
		}
		prune(s);
	}
	return 0;
}

static void *helper(void *arg)
{
	struct challenge_set *s = arg;
	char buf[TT_LOG_QUOTED_MAX];
	for (;;) {
		struct tt_err err = {{0}};
		PGconn *conn = tt_db_connect_bounded(s->conninfo, &err);
		int rc = conn ? follow(s, conn, &err) : -1;
		PQfinish(conn);
		/* Notifications may be missed until LISTEN is back. Pending tokens stay pending. */
		set_trusted(s, false);
		if (rc == 0)
			return NULL; /* stopped */
		atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
		tt_log(TT_WARN, "challenge_set_lost", "retry_ms=%d error=%s", RETRY_MS,
		       tt_log_quote(buf, sizeof buf, err.msg));
		if (!wait_input(s, -1, RETRY_MS))
			return NULL;
	}
}

int challenge_set_start(struct challenge_set *s, const char *conninfo, int64_t query_timeout_ms, struct tt_err *err)
{
	s->conninfo = strdup(conninfo ? conninfo : "");
	if (!s->conninfo)
		return tt_fail(err, "out of memory");
	s->query_timeout_ms = query_timeout_ms;
	if (pthread_create(&s->thread, NULL, helper, s) != 0)
		return tt_fail(err, "cannot start the challenge thread");
	s->started = true;
	return 0;
}

size_t challenge_set_size(struct challenge_set *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

bool challenge_set_trusted(struct challenge_set *s)
{
	pthread_mutex_lock(&s->lock);
	bool t = s->trusted;
	pthread_mutex_unlock(&s->lock);
	return t;
}

void challenge_set_stats(struct challenge_set *s, struct challenge_set_stats *out)
{
	for (int o = 0; o < CHALLENGE_OUTCOMES; o++)
		out->outcomes[o] = atomic_load_explicit(&s->outcomes[o], memory_order_relaxed);
	out->scans = atomic_load(&s->scans);
	out->fetches = atomic_load(&s->fetches);
	out->errors = atomic_load(&s->errors);
	out->tokens = challenge_set_size(s);
	out->trusted = challenge_set_trusted(s);
}

void challenge_set_free(struct challenge_set *s)
{
	if (!s)
		return;
	if (s->started) {
		uint64_t one = 1;
		while (write(s->stopfd, &one, sizeof one) < 0 && errno == EINTR)
			;
		pthread_join(s->thread, NULL);
	}
	clear(s);
	close(s->stopfd);
	pthread_mutex_destroy(&s->lock);
	free(s->conninfo);
	free(s);
}
