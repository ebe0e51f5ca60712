/* handover: warm restarts. The outgoing process writes the names it holds certificates for,
 * hottest first, to the hot-names file (names only: never a certificate or a key); the incoming
 * one reads it at start and whenever it changes during its watch window, and loads those names
 * in batches on a connection of its own, from a low-priority thread, while the loops serve. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "terminator.h"

#define HOT_NAMES_MAGIC "# tracktls hot names v1"
/* A list larger than this is not a hot-names file. */
#define HOT_NAMES_MAX_BYTES (256u << 20)
/* How often the file is checked for a newer list during the watch window. */
#define WATCH_POLL_MS 100
/* Only this many of a list's hottest names are prefetched (a restart waits for those of the list
 * found at start before it accepts); the rest load on demand, in batched misses. With Zipf traffic
 * over 62,500 names the first 1,024 take about 60 % of the handshakes. Prefetching the whole list
 * cost more than it saved: at half the warm rate, 10,000 names loaded after a takeover held the
 * p99 above twice warm for 16 of 30 s unpaced and 21 of 30 s paced at a fifth of the time, where
 * the hottest 1,024 alone gave 2 of 30, as without a handover (bench/restart.sh, 2026-11-30). */
#define PREFETCH_NAMES 1024
#define PREFETCH_STATEMENT_TIMEOUT "10s"
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000

struct handover {
	struct handover_config cfg;
	char *path, *conninfo;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	PGconn *conn;
	struct tt_secret_buf key_buf; /* the prefetch thread's, as certdb has one per loop */
	int64_t backoff_ms;
	_Atomic uint64_t files_read, loaded, unknown, failed, queries, query_us, files_written, names_written;
	_Atomic bool prefetching;
	_Atomic bool initial_done; /* the list found at start is loaded, or there was none */
};

/* Sleeps up to ms unless stopped; true once stop is set. */
static bool pause_ms(struct handover *h, int64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&h->lock);
	while (!h->stop && pthread_cond_timedwait(&h->wake, &h->lock, &until) != ETIMEDOUT)
		;
	bool stop = h->stop;
	pthread_mutex_unlock(&h->lock);
	return stop;
}

static bool stopping(struct handover *h)
{
	pthread_mutex_lock(&h->lock);
	bool stop = h->stop;
	pthread_mutex_unlock(&h->lock);
	return stop;
}

/* A usable connection, or false when the window closed or we stop (the database may be down:
 * the names then load on demand, as in a cold start). */
static bool connected(struct handover *h, int64_t end_ms)
{
	struct tt_err err = {{0}};
	char q[TT_LOG_QUOTED_MAX];

	if (h->conn && PQstatus(h->conn) == CONNECTION_OK)
		return true;
	if (h->conn)
		PQfinish(h->conn);
	h->conn = NULL;
	while (tt_now_ms() < end_ms) {
		if (tt_db_connect(h->conninfo, &h->conn, &err) == 0 &&
		    tt_db_run(h->conn, &err,
			      "SELECT set_config('statement_timeout', '" PREFETCH_STATEMENT_TIMEOUT "', false)", 0,
			      NULL) == 0) {
			h->backoff_ms = RECONNECT_MIN_MS;
			return true;
		}
		if (h->conn)
			PQfinish(h->conn);
		h->conn = NULL;
		tt_log(TT_WARN, "handover_db_unavailable", "retry_ms=%lld error=%s", (long long)h->backoff_ms,
		       tt_log_quote(q, sizeof(q), err.msg));
		if (pause_ms(h, h->backoff_ms))
			return false;
		h->backoff_ms = h->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : h->backoff_ms * 2;
	}
	return false;
}

/* One batch: the names not cached yet, one query, a context per row. False when the database
 * is gone for the rest of the window. */
static bool prefetch_batch(struct handover *h, char **names, size_t n, int64_t end_ms)
{
	const struct certdb_loader ld = {
	    .keyring = h->cfg.keyring, .tickets = h->cfg.tickets, .cache = h->cfg.cache, .key_buf = &h->key_buf};
	const char **want = malloc(n * sizeof(*want));
	uint64_t *epochs = malloc(n * sizeof(*epochs));
	bool *found = calloc(n, sizeof(*found));
	size_t k = 0;
	bool ok = true;

	if (!want || !epochs || !found) {
		free(want);
		free(epochs);
		free(found);
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		if (sni_cache_holds(h->cfg.cache, names[i]))
			continue;
		epochs[k] = sni_cache_epoch(h->cfg.cache, names[i]);
		want[k++] = names[i];
	}
	char *array = k ? tt_db_text_array(want, k) : NULL;
	while (array) {
		if (!connected(h, end_ms)) {
			ok = false;
			break;
		}
		const char *params[1] = {array};
		int64_t t0 = tt_now_us();
		PGresult *res = PQexecParams(h->conn, certdb_sql_batch, 1, NULL, params, NULL, NULL, 1);
		h->queries++;
		h->query_us += (uint64_t)(tt_now_us() - t0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			char q[TT_LOG_QUOTED_MAX];
			tt_log(TT_WARN, "handover_query_failed", "names=%zu error=%s", k,
			       tt_log_quote(q, sizeof(q), PQerrorMessage(h->conn)));
			PQclear(res);
			if (PQstatus(h->conn) == CONNECTION_OK) {
				h->failed += k; /* the database answered: this batch is lost, not the rest */
				break;
			}
			continue; /* the connection broke: reconnect and ask again */
		}
		for (int r = 0; r < PQntuples(res); r++) {
			int64_t pos = -1, cert_id;
			struct cert_entry *entry = NULL;
			struct tt_err err = {{0}};
			if (PQgetlength(res, r, 0) == 8) {
				const uint8_t *p = (const uint8_t *)PQgetvalue(res, r, 0);
				pos = 0;
				for (int b = 0; b < 8; b++)
					pos = pos << 8 | p[b];
			}
			if (pos < 1 || (size_t)pos > k || found[pos - 1])
				continue;
			found[pos - 1] = true;
			if (certdb_entry_from_row(&ld, epochs[pos - 1], want[pos - 1], res, r, 1, &cert_id, &entry,
						  &err) < 0) {
				char q[TT_LOG_QUOTED_MAX];
				h->failed++;
				tt_log(TT_ERROR, "cert_load_failed", "name=%s cert_id=%lld error=%s", want[pos - 1],
				       (long long)cert_id, tt_log_quote(q, sizeof(q), err.msg));
				continue;
			}
			cert_entry_release(entry);
			/* An answer older than its shard's last change is handed back but not cached: the
			 * name is still missing, and the next pass asks again. */
			if (sni_cache_holds(h->cfg.cache, want[pos - 1]))
				h->loaded++;
		}
		for (size_t i = 0; i < k; i++)
			h->unknown += !found[i];
		PQclear(res);
		break;
	}
	free(array);
	free(want);
	free(epochs);
	free(found);
	return ok;
}

/* The names in the file, or NULL when it is missing, not a hot-names file, or our own. */
static char **read_names(struct handover *h, size_t *n, char **text)
{
	struct stat st;
	int fd = open(h->path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL, **names = NULL;
	size_t got = 0, count = 0;

	*n = 0;
	*text = NULL;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && (size_t)st.st_size <= HOT_NAMES_MAX_BYTES &&
	    (buf = malloc((size_t)st.st_size + 1))) {
		ssize_t r;
		while (got < (size_t)st.st_size && (r = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
			got += (size_t)r;
		buf[got] = '\0';
	}
	close(fd);
	char own[64];
	snprintf(own, sizeof(own), " pid=%ld ", (long)getpid());
	char *eol = buf ? strchr(buf, '\n') : NULL;
	if (!buf || strncmp(buf, HOT_NAMES_MAGIC " ", strlen(HOT_NAMES_MAGIC) + 1) != 0 || !eol ||
	    memmem(buf, (size_t)(eol - buf), own, strlen(own))) {
		free(buf);
		return NULL;
	}
	for (char *p = eol + 1; *p; p++)
		count += *p == '\n';
	names = malloc((count + 1) * sizeof(*names));
	if (!names) {
		free(buf);
		return NULL;
	}
	count = 0;
	for (char *line = eol + 1, *next; *line; line = next) {
		char norm[TT_NAME_MAX];
		next = strchr(line, '\n');
		if (!next)
			break; /* a torn last line */
		*next++ = '\0';
		/* Only names the terminator could have served: anything else in the file is ignored. */
		if (tt_name_normalize(line, norm, NULL) == 0 && strcmp(norm, line) == 0)
			names[count++] = line;
	}
	*n = count;
	*text = buf;
	return names;
}

/* The hottest names of the list found at start are loaded: the restart may accept now; later
 * lists load while this process serves. */
static void warmed(struct handover *h)
{
	h->initial_done = true;
}

static void *prefetcher(void *arg)
{
	struct handover *h = arg;
	int64_t start = tt_now_ms(), end = start + h->cfg.watch_ms;
	setpriority(PRIO_PROCESS, (id_t)gettid(), TERM_BACKGROUND_NICE);
	struct stat last = {0};

	while (!stopping(h) && tt_now_ms() < end) {
		struct stat st;
		if (stat(h->path, &st) == 0 &&
		    (st.st_ino != last.st_ino || st.st_size != last.st_size ||
		     st.st_mtim.tv_sec != last.st_mtim.tv_sec || st.st_mtim.tv_nsec != last.st_mtim.tv_nsec)) {
			size_t n;
			char *text;
			char **names = read_names(h, &n, &text);
			last = st;
			if (names) {
				uint64_t loaded0 = h->loaded;
				int64_t t0 = tt_now_ms();
				h->files_read++;
				h->prefetching = true;
				tt_log(TT_INFO, "handover_prefetch_started", "path=%s names=%zu", h->path, n);
				if (n > PREFETCH_NAMES)
					n = PREFETCH_NAMES;
				size_t i = 0;
				/* The first list's names are what a restart waits for, twice: loads that were in
				 * flight when the listener first revalidated the cache were handed back
				 * uncached, and the second pass asks only for the names still missing. */
				for (int pass = h->initial_done ? 1 : 0; pass < 2 && !stopping(h); pass++)
					for (i = 0; i < n && !stopping(h); i += h->cfg.batch)
						if (!prefetch_batch(h, names + i,
								    n - i < h->cfg.batch ? n - i : h->cfg.batch, end))
							break;
				if (!h->initial_done)
					warmed(h);
				h->prefetching = false;
				tt_log(TT_INFO, "handover_prefetch_done", "names=%zu loaded=%llu complete=%s ms=%lld",
				       n, (unsigned long long)(h->loaded - loaded0), i >= n ? "true" : "false",
				       (long long)(tt_now_ms() - t0));
			}
			free(names);
			free(text);
		}
		if (!h->initial_done)
			warmed(h);
		pause_ms(h, WATCH_POLL_MS);
	}
	if (h->conn)
		PQfinish(h->conn);
	h->conn = NULL;
	tt_secret_buf_free(&h->key_buf);
	return NULL;
}

int handover_start(const struct handover_config *cfg, struct handover **out, struct tt_err *err)
{
	struct handover *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h || !(h->path = strdup(cfg->path)) || !(h->conninfo = strdup(cfg->conninfo ? cfg->conninfo : ""))) {
		if (h)
			free(h->path);
		free(h);
		return tt_fail(err, "out of memory");
	}
	h->cfg = *cfg;
	h->backoff_ms = RECONNECT_MIN_MS;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	if (cfg->watch_ms > 0) {
		if (pthread_create(&h->thread, NULL, prefetcher, h) != 0) {
			handover_stop(h);
			return tt_fail(err, "cannot start the handover prefetch thread");
		}
		h->started = true;
	}
	*out = h;
	return 0;
}

int handover_write(struct handover *h, size_t *written, struct tt_err *err)
{
	char tmp[4200], stamp[32], *text;
	size_t len, n;
	time_t now = time(NULL);
	struct tm tm;
	FILE *f;
	int64_t t0 = tt_now_ms();

	*written = 0;
	if (sni_cache_hot_names(h->cfg.cache, &text, &len, &n) < 0)
		return tt_fail(err, "out of memory");
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", h->path, (long)getpid());
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		if (fd >= 0)
			close(fd);
		free(text);
		return tt_fail(err, "--hot-names-file %s: %s", tmp, strerror(errno));
	}
	fprintf(f, HOT_NAMES_MAGIC " pid=%ld written=%s names=%zu\n", (long)getpid(), stamp, n);
	if (len)
		fwrite(text, 1, len, f);
	free(text);
	bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, h->path) < 0) {
		int e = errno;
		unlink(tmp);
		return tt_fail(err, "--hot-names-file %s: %s", h->path, strerror(e));
	}
	h->files_written++;
	h->names_written += n;
	*written = n;
	tt_log(TT_INFO, "hot_names_written", "path=%s names=%zu ms=%lld", h->path, n, (long long)(tt_now_ms() - t0));
	return 0;
}

void handover_stop(struct handover *h)
{
	if (!h)
		return;
	if (h->started) {
		pthread_mutex_lock(&h->lock);
		h->stop = true;
		pthread_cond_signal(&h->wake);
		pthread_mutex_unlock(&h->lock);
		pthread_join(h->thread, NULL);
	}
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->wake);
	free(h->path);
	free(h->conninfo);
	free(h);
}

void handover_stats(const struct handover *h, struct handover_stats *out)
{
	out->files_read = h->files_read;
	out->loaded = h->loaded;
	out->unknown = h->unknown;
	out->failed = h->failed;
	out->queries = h->queries;
	out->query_us = h->query_us;
	out->files_written = h->files_written;
	out->names_written = h->names_written;
	out->prefetching = h->prefetching;
	out->initial_done = h->initial_done || !h->started;
}
