/* name_filter: a Bloom filter of the names the database can serve, kept by a helper thread, so a
 * flood of random SNI names is refused in memory instead of costing one query per name. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "terminator.h"

#define HASHES 7
#define BITS_PER_NAME 12 /* with 7 hashes: about 0.3% false positives at the expected count */
#define MIN_BITS ((size_t)1 << 20)
/* Names read between two looks at stop, and two rests of the paced scan (a power of two). */
#define NAME_SCAN_STEP 4096

struct name_filter {
	_Atomic uint64_t *bits;
	size_t nbits;		/* power of two */
	struct tt_hash_key key; /* secret: clients choose the names, and must not aim at chosen bits */
	/* Seqlock-like: odd = trusted. Distrust and every rebuild move it on, so a reader that saw
	 * the same odd value before and after reading bits read a complete, trusted filter. */
	_Atomic uint64_t trust;
	/* Bumped by name_filter_distrust; a build that saw it change did not see every name. */
	_Atomic uint64_t distrusts;

	char *conninfo;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool rebuild, stop; /* under lock */
	_Atomic uint64_t builds, build_errors, names;
};

static void hashes(const struct name_filter *f, const char *name, uint64_t *h1, uint64_t *h2)
{
	uint64_t h[2];
	tt_name_hash2(&f->key, name, strlen(name), h);
	*h1 = h[0];
	*h2 = h[1] | 1;
}

int name_filter_new(size_t expected_names, struct name_filter **out, struct tt_err *err)
{
	struct name_filter *f = calloc(1, sizeof(*f));
	size_t want = expected_names * BITS_PER_NAME;

	*out = NULL;
	if (!f)
		return tt_fail(err, "out of memory");
	f->nbits = MIN_BITS;
	while (f->nbits < want)
		f->nbits <<= 1;
	f->bits = calloc(f->nbits / 64, sizeof(*f->bits));
	if (!f->bits || tt_hash_key_random(&f->key, err) < 0) {
		free(f->bits);
		free(f);
		return tt_fail(err, "cannot set up a name filter of %zu bits", want);
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->wake, NULL);
	*out = f;
	return 0;
}

void name_filter_add(struct name_filter *f, const char *name)
{
	uint64_t h1, h2;
	hashes(f, name, &h1, &h2);
	for (int i = 0; i < HASHES; i++) {
		uint64_t b = (h1 + (uint64_t)i * h2) & (f->nbits - 1);
		atomic_fetch_or_explicit(&f->bits[b / 64], (uint64_t)1 << (b % 64), memory_order_relaxed);
	}
}

bool name_filter_may_exist(const struct name_filter *f, const char *name)
{
	uint64_t before = atomic_load_explicit(&f->trust, memory_order_acquire), h1, h2;
	bool present = true;

	if (!(before & 1))
		return true;
	hashes(f, name, &h1, &h2);
	for (int i = 0; i < HASHES && present; i++) {
		uint64_t b = (h1 + (uint64_t)i * h2) & (f->nbits - 1);
		present = atomic_load_explicit(&f->bits[b / 64], memory_order_relaxed) & ((uint64_t)1 << (b % 64));
	}
	atomic_thread_fence(memory_order_acquire);
	return present || atomic_load_explicit(&f->trust, memory_order_relaxed) != before;
}

bool name_filter_trusted(const struct name_filter *f)
{
	return atomic_load_explicit(&f->trust, memory_order_acquire) & 1;
}

void name_filter_distrust(struct name_filter *f)
{
	atomic_fetch_add_explicit(&f->distrusts, 1, memory_order_acq_rel);
	uint64_t t = atomic_load_explicit(&f->trust, memory_order_acquire);
	if (t & 1)
		atomic_compare_exchange_strong(&f->trust, &t, t + 1);
}

void name_filter_request_rebuild(struct name_filter *f)
{
	pthread_mutex_lock(&f->lock);
	f->rebuild = true;
	pthread_cond_signal(&f->wake);
	pthread_mutex_unlock(&f->lock);
}

static bool stopping(struct name_filter *f)
{
	pthread_mutex_lock(&f->lock);
	bool stop = f->stop;
	pthread_mutex_unlock(&f->lock);
	return stop;
}

int name_filter_build(struct name_filter *f, PGconn *conn, struct tt_err *err)
{
	uint64_t distrusts = atomic_load_explicit(&f->distrusts, memory_order_acquire), n = 0;
	uint64_t t = atomic_load_explicit(&f->trust, memory_order_acquire);
	PGresult *res;
	int rc = 0;

	/* Untrusted (even) while the bits are cleared and refilled. */
	atomic_store_explicit(&f->trust, (t | 1) + 1, memory_order_release);
	for (size_t i = 0; i < f->nbits / 64; i++)
		atomic_store_explicit(&f->bits[i], 0, memory_order_relaxed);
	/* Names committed after this query's snapshot are notified to the listener, which adds them:
	 * the caller starts a build only once LISTEN is in place. COPY streams the names as lines in
	 * a few large buffers: a row at a time (PGresult per row) cost about 6 s of the terminator's
	 * CPU for 1,000,000 names, on the cores that serve. */
	struct tt_pace pace;
	tt_pace_start(&pace, TERM_SCAN_NAMES_PER_SEC);
	if (!PQsendQuery(conn,
			 "COPY (SELECT name FROM domains WHERE current_cert_id IS NOT NULL AND state <> 'removed') "
			 "TO STDOUT"))
		return tt_fail(err, "name scan: %s", PQerrorMessage(conn));
	while ((res = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);
		PQclear(res);
		if (st == PGRES_COPY_OUT) {
			char *line;
			int len;
			while ((len = PQgetCopyData(conn, &line, 0)) > 0) {
				/* One name a line; host names need no COPY escapes. */
				if (line[len - 1] == '\n')
					line[len - 1] = '\0';
				name_filter_add(f, line);
				PQfreemem(line);
				if ((++n & (NAME_SCAN_STEP - 1)) == 0) {
					if (stopping(f))
						return tt_fail(err, "stopped");
					/* While it rests, PostgreSQL fills the socket and waits: both are paced. */
					tt_sleep_ms(tt_pace_rest_us(&pace, n) / 1000);
				}
			}
			if (len == -2)
				return tt_fail(err, "name scan: %s", PQerrorMessage(conn));
		} else if (st != PGRES_COMMAND_OK && rc == 0) {
			rc = tt_fail(err, "name scan: %s", PQerrorMessage(conn));
		}
	}
	if (rc < 0)
		return -1;
	atomic_store_explicit(&f->names, n, memory_order_relaxed);
	t = atomic_load_explicit(&f->trust, memory_order_acquire);
	/* A listener lost meanwhile may have dropped a notification: stay untrusted, the next
	 * LISTEN asks for another build. */
	if (atomic_load_explicit(&f->distrusts, memory_order_acquire) == distrusts && !(t & 1))
		atomic_compare_exchange_strong(&f->trust, &t, t + 1);
	return 0;
}

static void *builder(void *arg)
{
	struct name_filter *f = arg;
	char buf[TT_LOG_QUOTED_MAX];
	setpriority(PRIO_PROCESS, (id_t)gettid(), TERM_BACKGROUND_NICE);

	for (;;) {
		pthread_mutex_lock(&f->lock);
		while (!f->rebuild && !f->stop)
			pthread_cond_wait(&f->wake, &f->lock);
		bool stop = f->stop;
		f->rebuild = false;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			return NULL;
		struct tt_err err = {{0}};
		PGconn *conn = tt_db_connect_bounded(f->conninfo, &err);
		if (!conn || name_filter_build(f, conn, &err) < 0) {
			atomic_fetch_add_explicit(&f->build_errors, 1, memory_order_relaxed);
			tt_log(TT_WARN, "name_filter_failed", "error=%s", tt_log_quote(buf, sizeof(buf), err.msg));
		} else {
			atomic_fetch_add_explicit(&f->builds, 1, memory_order_relaxed);
			tt_log(TT_INFO, "name_filter_built", "names=%llu bits=%zu trusted=%s",
			       (unsigned long long)atomic_load(&f->names), f->nbits,
			       name_filter_trusted(f) ? "true" : "false");
		}
		PQfinish(conn);
	}
}

int name_filter_start(struct name_filter *f, const char *conninfo, struct tt_err *err)
{
	f->conninfo = strdup(conninfo ? conninfo : "");
	if (!f->conninfo)
		return tt_fail(err, "out of memory");
	if (pthread_create(&f->thread, NULL, builder, f) != 0)
		return tt_fail(err, "cannot start the name filter thread");
	f->started = true;
	return 0;
}

void name_filter_stats(const struct name_filter *f, struct name_filter_stats *out)
{
	out->builds = atomic_load(&f->builds);
	out->build_errors = atomic_load(&f->build_errors);
	out->names = atomic_load(&f->names);
	out->bits = f->nbits;
	out->trusted = name_filter_trusted(f);
}

void name_filter_free(struct name_filter *f)
{
	if (!f)
		return;
	if (f->started) {
		pthread_mutex_lock(&f->lock);
		f->stop = true;
		pthread_cond_signal(&f->wake);
		pthread_mutex_unlock(&f->lock);
		pthread_join(f->thread, NULL);
	}
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->wake);
	free(f->conninfo);
	free(f->bits);
	free(f);
}
