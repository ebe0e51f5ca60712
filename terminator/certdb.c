/* certdb: one thread's non-blocking PostgreSQL connection (libpq pipeline mode) that loads
 * certificates into the shared cache and follows LISTEN tracktls_cert; and the thread's HTTP-01
 * lookups, answered from the shared challenge set (never by a query on this connection). */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "terminator.h"

#define DEFAULT_QUERY_TIMEOUT_MS 1000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_BATCH_MAX 128
#define DEFAULT_MAX_PENDING 1024
#define DEFAULT_LATENCY_LIMIT_MS 250
/* Certificate queries in flight before misses wait for one of them to return: one is answered
 * while the next is on the wire, and whatever arrives meanwhile shares the query after it. */
#define CERT_QUERIES_IN_FLIGHT 2
/* Weight of the newest answer in the latency estimate. */
#define LATENCY_EWMA_WEIGHT 0.2
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
/* Requests beyond this many in flight fail at once: a stalled database must not grow memory. */
#define MAX_ITEMS 4096
/* What a cached domain costs beyond its DER certificates and key: WOLFSSL_CTX (2608 bytes), cert
 * manager, suites, verify param, malloc headers, cache entry; 3840-3990 bytes of RSS measured with
 * this wolfSSL build over 10,000 and 100,000 domains. Added to the PEM sizes, which overstate DER. */
#define CTX_OVERHEAD_BYTES 4000
/* HTTP-01 lookups the challenge set cannot answer yet (it is reconnecting or reading a token's
 * row) wait, rechecked this often, at most this many at once and this many a second per thread;
 * beyond, they fail at once (503). */
#define CHALLENGE_POLL_MS 10
#define MAX_CHALLENGE_WAITS 1024
#define CHALLENGE_WAITS_PER_SEC 100
/* A key authorization is the token (at most 128 characters), a dot and a 43-character thumbprint. */
#define KEY_AUTH_MAX 256
/* Refusals are logged at most once a second, with the count since the last line: a flood of
 * misses must not become a flood of log lines. */
#define THROTTLE_LOG_EVERY_US 1000000

static const char sql_cert[] = "SELECT c.id, c.chain_pem, c.sealed_key FROM domains d "
			       "JOIN certificates c ON c.id = d.current_cert_id "
			       "WHERE d.name = $1 AND d.state <> 'removed' AND c.sealed_key IS NOT NULL";
/* Each name held, with the id of the certificate it should serve now (NULL: none). */
static const char sql_revalidate[] =
    "SELECT n.name, c.id FROM unnest($1::text[]) AS n(name) "
    "LEFT JOIN domains d ON d.name = n.name AND d.state <> 'removed' "
    "LEFT JOIN certificates c ON c.id = d.current_cert_id AND c.sealed_key IS NOT NULL";
/* The lookup of sql_cert for many names at once: a row per name that can be served, tagged with
 * the name's position in the array (1-based); a name without a row is unknown. */
const char certdb_sql_batch[] = "SELECT n.i, c.id, c.chain_pem, c.sealed_key "
				"FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) "
				"JOIN domains d ON d.name = n.name AND d.state <> 'removed' "
				"JOIN certificates c ON c.id = d.current_cert_id AND c.sealed_key IS NOT NULL";

enum item_kind { ITEM_SETUP, ITEM_LISTEN, ITEM_CERT, ITEM_REVALIDATE, ITEM_BATCH };
static const char *const kind_names[] = {"setup", "listen", "cert", "revalidate", "batch"};

struct waiter {
	struct waiter *next;
	certdb_cert_cb cb; /* NULL once answered or cancelled */
	void *arg;
};

/* An HTTP-01 lookup waiting for the challenge set (see the end of the file). */
struct challenge_wait {
	struct challenge_wait *next;
	certdb_challenge_cb cb; /* NULL once cancelled */
	void *arg;
	int64_t check_ms, deadline_ms;
	char token[];
};

/* One pipelined request: its statements each end with a NULL from PQgetResult, then its own
 * Sync ends the item (so a failing statement aborts nothing else). */
struct item {
	struct item *next;
	enum item_kind kind;
	int statements_left;
	bool sent;
	bool answered;
	bool timed_out;
	int64_t deadline_ms;
	int64_t started_us;
	uint64_t epoch;
	struct waiter *waiters; /* ITEM_CERT */
	struct item *members;	/* ITEM_BATCH: its names, each an ITEM_CERT outside the queue */
	size_t nmembers;
	char key[]; /* name or names array literal */
};

enum db_state { DB_DOWN, DB_CONNECTING, DB_READY };

struct certdb {
	char *conninfo;
	const struct tt_keyring *keyring;
	struct sni_cache *cache;
	struct tickets *tickets;
	struct tt_secret_buf key_buf; /* each row's key opens here: see tt_envelope_open_reuse */
	bool listen;
	int64_t query_timeout_ms, connect_timeout_ms;
	/* Optional fixed ceiling (deprecated, 0: none): a token bucket for certificate queries. */
	double miss_tokens, misses_per_sec;
	int64_t miss_refill_us;
	/* Refusals are logged at most once a second, with how many there were since. */
	uint64_t throttled_unlogged;
	int64_t throttle_logged_us;

	enum db_state state;
	PGconn *conn;
	PostgresPollingStatusType poll;
	bool flush_pending;
	/* The connection must be replaced (a send failed, or setup did), noticed where a callback may
	 * be running: certdb_process disconnects. */
	bool broken;
	bool connected_once;
	int64_t connect_deadline_ms;
	int64_t retry_at_ms;
	int64_t backoff_ms;

	struct item *head, *tail; /* in send order */
	size_t nitems;
	/* Batched loading: misses collect in open (an ITEM_BATCH outside the queue) while
	 * CERT_QUERIES_IN_FLIGHT certificate queries are out, and go as one query when one returns. */
	struct item *open;
	size_t batch_max;
	size_t cert_names;    /* names in certificate items of the queue */
	size_t cert_inflight; /* certificate items sent, not yet done */
	/* Misses are refused only while the database is behind: max_pending names waiting, or
	 * answers slower than latency_limit_us with a full batch already waiting. */
	size_t max_pending;
	int64_t latency_limit_us;
	double latency_us; /* moving estimate of a certificate query's round trip */
	/* Items taken off the queue that are being failed: certdb_cancel must still find them. */
	struct item *detached;

	/* HTTP-01 lookups waiting for their answer from the challenge set (see the end of the file). */
	struct challenge_set *challenges;
	struct challenge_wait *waits, *waits_detached;
	size_t nwaits;
	double wait_tokens;
	int64_t wait_refill_us;

	struct certdb_stats stats;
};

static const char *one_line(char *buf, size_t size, const char *msg)
{
	char flat[sizeof(((struct tt_err *)0)->msg)];
	size_t n = 0;
	for (; msg[n] && n < sizeof(flat) - 1; n++)
		flat[n] = msg[n] == '\n' || msg[n] == '\t' ? ' ' : msg[n];
	while (n > 0 && flat[n - 1] == ' ')
		n--;
	flat[n] = '\0';
	return tt_log_quote(buf, size, flat);
}

static void free_item(struct item *it)
{
	while (it->members) {
		struct item *m = it->members;
		it->members = m->next;
		free_item(m);
	}
	while (it->waiters) {
		struct waiter *w = it->waiters;
		it->waiters = w->next;
		free(w);
	}
	free(it);
}

/* Answers whoever still waits on it. The item stays where it is (in the queue until its Sync, or
 * on the detached list), so a callback may cancel, load or query again; nothing a callback can
 * call frees an item. */
static void answer(struct item *it, int status, struct cert_entry *entry)
{
	it->answered = true;
	if (it->kind == ITEM_BATCH) {
		for (struct item *m = it->members; m; m = m->next)
			if (!m->answered)
				answer(m, status, entry);
	} else if (it->kind == ITEM_CERT) {
		for (struct waiter *w = it->waiters; w; w = w->next) {
			certdb_cert_cb cb = w->cb;
			if (!cb)
				continue;
			w->cb = NULL;
			cb(w->arg, status, status == 0 ? cert_entry_ref(entry) : NULL);
		}
	}
}

static bool is_cert(const struct item *it)
{
	return it->kind == ITEM_CERT || it->kind == ITEM_BATCH;
}

static bool is_request(const struct item *it)
{
	return is_cert(it);
}

/* Lookups an item answers: errors and timeouts count per name, batched or not. */
static uint64_t lookups_of(const struct item *it)
{
	return it->kind == ITEM_BATCH ? it->nmembers : 1;
}

static void enqueue(struct certdb *db, struct item *it)
{
	it->next = NULL;
	if (db->tail)
		db->tail->next = it;
	else
		db->head = it;
	db->tail = it;
	db->nitems++;
	if (is_cert(it))
		db->cert_names += lookups_of(it);
}

static struct item *pop(struct certdb *db)
{
	struct item *it = db->head;
	db->head = it->next;
	if (!db->head)
		db->tail = NULL;
	db->nitems--;
	if (is_cert(it)) {
		db->cert_names -= lookups_of(it);
		if (it->sent)
			db->cert_inflight--;
	}
	it->next = NULL;
	return it;
}

static void fail_all(struct certdb *db)
{
	db->detached = db->head;
	if (db->open) {
		db->open->next = db->detached;
		db->detached = db->open;
		db->open = NULL;
	}
	db->head = db->tail = NULL;
	db->nitems = 0;
	db->cert_names = db->cert_inflight = 0;
	while (db->detached) {
		struct item *it = db->detached;
		if (is_request(it) && !it->answered) {
			if (!it->timed_out)
				db->stats.query_errors += lookups_of(it);
			answer(it, -1, NULL);
		}
		db->detached = it->next;
		free_item(it);
	}
}

static void disconnect(struct certdb *db, int64_t now_ms, const char *why)
{
	char buf[TT_LOG_QUOTED_MAX];
	if (db->listen && db->state == DB_READY)
		sni_cache_listener_lost(db->cache);
	tt_log(TT_WARN, "db_disconnected", "listener=%s pending=%zu retry_ms=%lld error=%s",
	       db->listen ? "true" : "false", db->nitems, (long long)db->backoff_ms,
	       one_line(buf, sizeof(buf),
			why	   ? why
			: db->conn ? PQerrorMessage(db->conn)
				   : "out of memory"));
	if (db->conn)
		PQfinish(db->conn);
	db->conn = NULL;
	db->state = DB_DOWN;
	db->flush_pending = false;
	db->broken = false;
	db->retry_at_ms = now_ms + db->backoff_ms;
	db->backoff_ms = db->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : db->backoff_ms * 2;
	fail_all(db);
}

/* Never disconnects itself: callers may be inside a callback. */
static void flush(struct certdb *db)
{
	int r = PQflush(db->conn);
	if (r < 0)
		db->broken = true;
	db->flush_pending = r == 1;
}

static int send_item(struct certdb *db, struct item *it)
{
	const char *params[1] = {it->key};
	char timeout_ms[24];
	const char *timeout_param[1] = {timeout_ms};
	int ok;

	switch (it->kind) {
	case ITEM_SETUP:
		/* The server gives up when we do: a query we abandon (say, stuck behind a table lock)
		 * must not hold a backend after its connection is gone, or timeouts pile them up. */
		snprintf(timeout_ms, sizeof(timeout_ms), "%lld", (long long)db->query_timeout_ms);
		it->statements_left = 4;
		ok = PQsendQueryParams(db->conn, "SELECT set_config('statement_timeout', $1, false)", 1, NULL,
				       timeout_param, NULL, NULL, 0) &&
		     PQsendPrepare(db->conn, "cert", sql_cert, 1, NULL) &&
		     PQsendPrepare(db->conn, "batch", certdb_sql_batch, 1, NULL) &&
		     PQsendPrepare(db->conn, "revalidate", sql_revalidate, 1, NULL);
		break;
	case ITEM_LISTEN:
		it->statements_left = 1;
		ok = PQsendQueryParams(db->conn, "LISTEN " TT_CHANNEL_CERT, 0, NULL, NULL, NULL, NULL, 0);
		break;
	case ITEM_CERT:
		it->statements_left = 1;
		/* binary results: the id as int8, chain and sealed key as raw bytes (no hex decoding) */
		ok = PQsendQueryPrepared(db->conn, "cert", 1, params, NULL, NULL, 1);
		break;
	case ITEM_BATCH:
		it->statements_left = 1;
		ok = PQsendQueryPrepared(db->conn, "batch", 1, params, NULL, NULL, 1);
		break;
	default:
		it->statements_left = 1;
		ok = PQsendQueryPrepared(db->conn, "revalidate", 1, params, NULL, NULL, 0);
		break;
	}
	if (!ok || !PQpipelineSync(db->conn)) {
		db->broken = true;
		return -1;
	}
	it->sent = true;
	it->started_us = tt_now_us();
	if (is_request(it))
		db->stats.queries++;
	if (is_cert(it))
		db->cert_inflight++;
	if (it->kind == ITEM_BATCH) {
		db->stats.batches++;
		db->stats.batched_names += it->nmembers;
	}
	return 0;
}

static struct item *item_new(enum item_kind kind, const char *key, int64_t deadline_ms)
{
	size_t len = key ? strlen(key) : 0;
	struct item *it = calloc(1, sizeof(*it) + len + 1);
	if (!it)
		return NULL;
	it->kind = kind;
	it->deadline_ms = deadline_ms;
	if (key)
		memcpy(it->key, key, len + 1);
	return it;
}

/* Queues a request; sends it at once when connected. 0, or -1 when it cannot be taken. */
static int submit(struct certdb *db, struct item *it)
{
	if (db->state == DB_DOWN || db->broken || db->nitems >= MAX_ITEMS) {
		db->stats.query_errors++;
		free_item(it);
		return -1;
	}
	enqueue(db, it);
	if (db->state == DB_READY && send_item(db, it) == 0)
		flush(db);
	return 0;
}

static void became_ready(struct certdb *db, int64_t now_ms)
{
	struct item *queued = db->head, *setup, *listen = NULL;

	if (PQsetnonblocking(db->conn, 1) != 0 || PQenterPipelineMode(db->conn) != 1) {
		disconnect(db, now_ms, NULL);
		return;
	}
	setup = item_new(ITEM_SETUP, NULL, now_ms + db->query_timeout_ms);
	if (db->listen)
		listen = item_new(ITEM_LISTEN, NULL, now_ms + db->query_timeout_ms);
	if (!setup || (db->listen && !listen)) {
		free(setup);
		free(listen);
		disconnect(db, now_ms, "out of memory");
		return;
	}
	db->state = DB_READY;
	db->backoff_ms = BACKOFF_MIN_MS;
	tt_log(TT_INFO, "db_connected", "listener=%s pending=%zu", db->listen ? "true" : "false", db->nitems);
	/* Setup goes first: the requests queued while connecting use its prepared statements. */
	db->head = db->tail = NULL;
	db->nitems = 0;
	db->cert_names = db->cert_inflight = 0;
	enqueue(db, setup);
	if (listen)
		enqueue(db, listen);
	while (queued) {
		struct item *it = queued;
		queued = it->next;
		enqueue(db, it);
	}
	for (struct item *it = db->head; it; it = it->next)
		if (send_item(db, it) < 0)
			return;
	flush(db);
}

/* Server notices (shutdown warnings and the like) become log lines instead of raw stderr. */
static void notice(void *arg, const char *message)
{
	char buf[TT_LOG_QUOTED_MAX];
	tt_log(TT_WARN, "db_notice", "message=%s", one_line(buf, sizeof(buf), message));
}

static void start_connect(struct certdb *db, int64_t now_ms)
{
	if (db->connected_once)
		db->stats.reconnects++;
	db->connected_once = true;
	db->conn = PQconnectStart(db->conninfo);
	if (!db->conn || PQstatus(db->conn) == CONNECTION_BAD) {
		disconnect(db, now_ms, NULL);
		return;
	}
	PQsetNoticeProcessor(db->conn, notice, NULL);
	db->state = DB_CONNECTING;
	db->poll = PGRES_POLLING_WRITING;
	db->connect_deadline_ms = now_ms + db->connect_timeout_ms;
}

static void drive_connect(struct certdb *db, int64_t now_ms)
{
	db->poll = PQconnectPoll(db->conn);
	if (db->poll == PGRES_POLLING_OK)
		became_ready(db, now_ms);
	else if (db->poll == PGRES_POLLING_FAILED)
		disconnect(db, now_ms, NULL);
	else if (now_ms >= db->connect_deadline_ms)
		disconnect(db, now_ms, "connect timed out");
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int certdb_entry_from_row(const struct certdb_loader *ld, uint64_t epoch, const char *name, const PGresult *res,
			  int row, int col, int64_t *cert_id, struct cert_entry **entry, struct tt_err *err)
{
	char aad[TT_NAME_MAX + 64];
	size_t key_len = 0, chain_len, aad_len;
	const char *chain;
	WOLFSSL_CTX *ctx = NULL;
	int rc;

	*cert_id = -1;
	if (PQgetlength(res, row, col) != 8)
		return tt_fail(err, "certificate id is not an int8");
	*cert_id = (int64_t)be64((const uint8_t *)PQgetvalue(res, row, col));
	chain = PQgetvalue(res, row, col + 1);
	chain_len = (size_t)PQgetlength(res, row, col + 1);
	aad_len = tt_envelope_aad_cert(aad, sizeof(aad), name, *cert_id);
	if (tt_envelope_open_reuse(ld->keyring, aad, aad_len, (const uint8_t *)PQgetvalue(res, row, col + 2),
				   (size_t)PQgetlength(res, row, col + 2), ld->key_buf, &key_len, err) < 0)
		return -1;
	rc = certctx_new(chain, chain_len, ld->key_buf->p, key_len, &ctx, err);
	tt_secret_buf_wipe(ld->key_buf);
	if (rc < 0)
		return -1;
	if (ld->tickets && tickets_attach(ld->tickets, ctx) < 0) {
		wolfSSL_CTX_free(ctx);
		return tt_fail(err, "cannot attach the session ticket callback");
	}
	return sni_cache_insert_since(ld->cache, epoch, name, *cert_id, ctx, chain_len + key_len + CTX_OVERHEAD_BYTES,
				      entry, err);
}

/* The domain's row arrived (row < 0: it has none): open the key, build the context, cache it,
 * answer. The row's columns start at col: id, chain, sealed key. */
static void cert_loaded(struct certdb *db, struct item *it, const PGresult *res, int row, int col)
{
	const struct certdb_loader ld = {
	    .keyring = db->keyring, .tickets = db->tickets, .cache = db->cache, .key_buf = &db->key_buf};
	char buf[TT_LOG_QUOTED_MAX];
	struct tt_err err = {{0}};
	int64_t cert_id = -1;
	struct cert_entry *entry = NULL;

	if (row < 0) {
		sni_cache_insert_negative_since(db->cache, it->epoch, it->key);
		answer(it, 1, NULL);
		return;
	}
	if (certdb_entry_from_row(&ld, it->epoch, it->key, res, row, col, &cert_id, &entry, &err) < 0)
		goto bad;
	tt_log(TT_DEBUG, "cert_loaded", "name=%s cert_id=%lld", it->key, (long long)cert_id);
	answer(it, 0, entry);
	cert_entry_release(entry);
	return;
bad:
	db->stats.bad_certs++;
	tt_log(TT_ERROR, "cert_load_failed", "name=%s cert_id=%lld error=%s", it->key, (long long)cert_id,
	       one_line(buf, sizeof(buf), err.msg));
	/* Negative-cached so a broken row costs one query per TTL, not one per handshake. */
	sni_cache_insert_negative_since(db->cache, it->epoch, it->key);
	answer(it, -1, NULL);
}

/* ---- batched certificate loading ----
 * Misses that arrive while CERT_QUERIES_IN_FLIGHT certificate queries are out collect in
 * db->open; the next certdb_process after one returns sends them as one query (certdb_sql_batch:
 * one round trip, one statement). A lone miss goes as the single-name query, as before batching.
 * Each name keeps its own item (epoch, waiters), so joining, cancelling, failing and the epoch
 * check work per name exactly as for a single query. */

static void latency_sample(struct certdb *db, int64_t us)
{
	db->latency_us =
	    db->latency_us > 0 ? db->latency_us + LATENCY_EWMA_WEIGHT * ((double)us - db->latency_us) : (double)us;
}

/* How long the database takes now: the moving estimate, or the age of the oldest certificate
 * query still out if that is longer (a stall shows before its answer arrives). */
static int64_t latency_now_us(const struct certdb *db, int64_t now_us)
{
	int64_t us = (int64_t)db->latency_us;
	for (const struct item *it = db->head; it && it->sent; it = it->next) {
		if (is_cert(it)) {
			if (now_us - it->started_us > us)
				us = now_us - it->started_us;
			break;
		}
	}
	return us;
}

static size_t names_waiting(const struct certdb *db)
{
	return db->cert_names + (db->open ? db->open->nmembers : 0);
}

static bool batch_may_go(const struct certdb *db)
{
	return db->state != DB_READY || db->cert_inflight < CERT_QUERIES_IN_FLIGHT ||
	       db->open->nmembers >= db->batch_max;
}

/* The open batch's names as a text[] parameter, in list order. */
static char *batch_array(const struct item *batch)
{
	const char **names = malloc(batch->nmembers * sizeof(*names));
	size_t n = 0;
	if (!names)
		return NULL;
	for (const struct item *m = batch->members; m; m = m->next)
		names[n++] = m->key;
	char *array = tt_db_text_array(names, n);
	free(names);
	return array;
}

static void queue_item(struct certdb *db, struct item *it)
{
	enqueue(db, it);
	if (db->state == DB_READY && !db->broken)
		send_item(db, it);
}

/* Queues the open batch (and sends it when connected). Runs from certdb_process or, for a full
 * batch, from certdb_load_cert, so it never answers anyone: out of memory for the batch's query,
 * its names go one by one. */
static void batch_send(struct certdb *db)
{
	struct item *open = db->open, *it = NULL, *m;
	char *names = open->nmembers > 1 ? batch_array(open) : NULL;

	db->open = NULL;
	if (names && (it = item_new(ITEM_BATCH, names, open->deadline_ms))) {
		it->members = open->members;
		it->nmembers = open->nmembers;
		open->members = NULL;
		queue_item(db, it);
	}
	free(names);
	while ((m = open->members)) {
		open->members = m->next;
		queue_item(db, m);
	}
	free_item(open);
	if (db->state == DB_READY)
		flush(db);
}

/* Takes a new miss (an ITEM_CERT with its first waiter). 0, or -1 (no callback) when the
 * database is down. */
static int batch_add(struct certdb *db, struct item *it)
{
	if (db->state == DB_DOWN || db->broken || db->nitems >= MAX_ITEMS) {
		db->stats.query_errors++;
		free_item(it);
		return -1;
	}
	if (db->batch_max <= 1)
		return submit(db, it);
	if (!db->open && !(db->open = item_new(ITEM_BATCH, NULL, it->deadline_ms))) {
		db->stats.query_errors++;
		free_item(it);
		return -1;
	}
	it->next = db->open->members;
	db->open->members = it;
	db->open->nmembers++;
	if (db->open->nmembers >= db->batch_max)
		batch_send(db);
	return 0;
}

/* The batch's rows arrived: each carries its name's position; a name without one is unknown. */
static void batch_loaded(struct certdb *db, struct item *batch, const PGresult *res)
{
	struct item **by_pos = calloc(batch->nmembers, sizeof(*by_pos));
	size_t pos = 0;
	char buf[TT_LOG_QUOTED_MAX];

	if (!by_pos) {
		db->stats.query_errors += batch->nmembers;
		answer(batch, -1, NULL);
		return;
	}
	batch->answered = true;
	/* batch_array wrote the members in list order: position 1 is the head */
	for (struct item *m = batch->members; m; m = m->next)
		by_pos[pos++] = m;
	for (int r = 0; r < PQntuples(res); r++) {
		int64_t i = PQgetlength(res, r, 0) == 8 ? (int64_t)be64((const uint8_t *)PQgetvalue(res, r, 0)) : 0;
		if (i < 1 || (size_t)i > batch->nmembers || by_pos[i - 1]->answered) {
			tt_log(TT_ERROR, "db_query_failed", "query=batch error=%s",
			       one_line(buf, sizeof(buf), "a row for no name of the batch"));
			continue;
		}
		cert_loaded(db, by_pos[i - 1], res, r, 1);
	}
	for (size_t i = 0; i < batch->nmembers; i++)
		if (!by_pos[i]->answered)
			cert_loaded(db, by_pos[i], res, -1, 1);
	free(by_pos);
}

/* Why a new miss is refused now, or -1: only while the database is behind (or, if set, beyond
 * the deprecated fixed rate). */
static int refusal(struct certdb *db, int64_t now_us)
{
	size_t waiting = names_waiting(db);

	if (db->max_pending && waiting >= db->max_pending)
		return CERTDB_REFUSED_QUEUE;
	if (db->latency_limit_us && waiting >= db->batch_max && latency_now_us(db, now_us) > db->latency_limit_us)
		return CERTDB_REFUSED_LATENCY;
	if (db->misses_per_sec > 0) {
		db->miss_tokens += (double)(now_us - db->miss_refill_us) * db->misses_per_sec / 1e6;
		if (db->miss_tokens > db->misses_per_sec)
			db->miss_tokens = db->misses_per_sec; /* bursts up to one second's worth */
		db->miss_refill_us = now_us;
		if (db->miss_tokens < 1)
			return CERTDB_REFUSED_RATE;
		db->miss_tokens -= 1;
	}
	return -1;
}

static void refuse(struct certdb *db, int cause, int64_t now_us)
{
	static const char *const causes[CERTDB_REFUSAL_CAUSES] = {"queue", "latency", "rate"};
	db->stats.refused[cause]++;
	db->throttled_unlogged++;
	if (now_us - db->throttle_logged_us >= THROTTLE_LOG_EVERY_US) {
		tt_log(TT_WARN, "cert_queries_throttled",
		       "refused=%llu limit_per_sec=%.0f cause=%s waiting=%zu latency_ms=%.1f max_pending=%zu "
		       "latency_limit_ms=%lld",
		       (unsigned long long)db->throttled_unlogged, db->misses_per_sec, causes[cause], names_waiting(db),
		       (double)latency_now_us(db, now_us) / 1000, db->max_pending,
		       (long long)(db->latency_limit_us / 1000));
		db->throttled_unlogged = 0;
		db->throttle_logged_us = now_us;
	}
}

/* LISTEN is in place. Changes made while nobody listened were missed: revalidate what the cache
 * holds, shard by shard, on this connection (so after LISTEN: later changes will be notified). */
static void listening(struct certdb *db, struct item *listen)
{
	size_t nshards = sni_cache_begin_revalidation(db->cache), held = 0;

	/* Queries behind LISTEN on this connection run after it, so their answers are current. */
	for (struct item *q = listen->next; q; q = q->next) {
		if (q->kind == ITEM_CERT)
			q->epoch = sni_cache_epoch(db->cache, q->key);
		for (struct item *m = q->members; m; m = m->next)
			m->epoch = sni_cache_epoch(db->cache, m->key);
	}
	for (size_t i = 0; i < nshards; i++) {
		char *names;
		size_t n;
		struct item *it;
		if (sni_cache_shard_snapshot(db->cache, i, &names, &n) < 0) {
			sni_cache_invalidate_all(db->cache);
			break;
		}
		if (!n)
			continue;
		it = item_new(ITEM_REVALIDATE, names, tt_now_ms() + db->query_timeout_ms);
		free(names);
		if (!it || submit(db, it) < 0) {
			sni_cache_invalidate_all(db->cache);
			break;
		}
		held += n;
	}
	tt_log(TT_INFO, "db_listening", "channel=%s revalidating=%zu", TT_CHANNEL_CERT, held);
}

static void handle_result(struct certdb *db, struct item *it, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
	char buf[TT_LOG_QUOTED_MAX];

	if (!ok) {
		tt_log(TT_ERROR, "db_query_failed", "query=%s error=%s", kind_names[it->kind],
		       one_line(buf, sizeof(buf), PQresultErrorMessage(res)));
		if (it->kind == ITEM_REVALIDATE)
			sni_cache_invalidate_all(db->cache); /* cannot tell what is current: drop it all */
		/* Without its statements or LISTEN the connection is useless (say, the schema is not
		 * migrated yet): replace it after a backoff. */
		if (it->kind == ITEM_SETUP || it->kind == ITEM_LISTEN)
			db->broken = true;
		if (is_request(it) && !it->answered) {
			/* The server's statement_timeout equals ours and can fire first. */
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			if (state && strcmp(state, "57014") == 0)
				db->stats.query_timeouts += lookups_of(it);
			else
				db->stats.query_errors += lookups_of(it);
			answer(it, -1, NULL);
		}
		return;
	}
	switch (it->kind) {
	case ITEM_SETUP:
		break;
	case ITEM_LISTEN:
		listening(db, it);
		break;
	case ITEM_REVALIDATE:
		for (int i = 0; i < PQntuples(res); i++)
			sni_cache_drop_unless(db->cache, PQgetvalue(res, i, 0),
					      PQgetisnull(res, i, 1) ? -1 : strtoll(PQgetvalue(res, i, 1), NULL, 10));
		break;
	case ITEM_CERT:
		if (!it->answered)
			cert_loaded(db, it, res, PQntuples(res) > 0 ? 0 : -1, 0);
		break;
	case ITEM_BATCH:
		if (!it->answered)
			batch_loaded(db, it, res);
		break;
	}
}

/* Takes what has arrived off the connection; stops when libpq would need more input. */
static void drain(struct certdb *db)
{
	while (db->head && db->head->sent && !db->broken && !PQisBusy(db->conn)) {
		struct item *it = db->head;
		PGresult *res = PQgetResult(db->conn);
		if (!res) {
			if (it->statements_left == 0)
				return; /* the Sync has not arrived */
			it->statements_left--;
			continue;
		}
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			db->detached = pop(db);
			db->stats.query_us_total += (uint64_t)(tt_now_us() - it->started_us);
			if (is_cert(it))
				latency_sample(db, tt_now_us() - it->started_us);
			if (is_request(it) && !it->answered) {
				db->stats.query_errors += lookups_of(it);
				answer(it, -1, NULL);
			}
			db->detached = NULL;
			free_item(it);
			continue;
		}
		handle_result(db, it, res);
		PQclear(res);
	}
}

static void notified(struct certdb *db, const PGnotify *n, int64_t now_ms)
{
	db->stats.notifications++;
	if (strcmp(n->relname, TT_CHANNEL_CERT) != 0)
		return;
	/* Drop now so the next handshake cannot get the old certificate; a name that was in use is
	 * reloaded at once so its next handshake need not wait for the query. */
	if (sni_cache_invalidate(db->cache, n->extra)) {
		struct item *it = item_new(ITEM_CERT, n->extra, now_ms + db->query_timeout_ms);
		if (it) {
			it->epoch = sni_cache_epoch(db->cache, n->extra);
			submit(db, it);
		}
	}
	tt_log(TT_DEBUG, "cert_changed", "name=%s", n->extra);
}

static void expire(struct certdb *db, int64_t now_ms)
{
	bool expired = false;

	if (db->state == DB_READY) {
		/* A connection that lets a query expire is not trusted with the rest (libpq cannot
		 * cancel one pipelined query): all fail, and a new connection is made. */
		for (struct item *it = db->head; it; it = it->next) {
			if (now_ms >= it->deadline_ms) {
				expired = true;
				if (is_request(it) && !it->answered) {
					it->timed_out = true;
					db->stats.query_timeouts += lookups_of(it);
				}
			}
		}
		if (expired)
			disconnect(db, now_ms, "query timed out");
		return;
	}
	/* Not connected yet: nothing was sent, each request expires on its own (in queue order,
	 * since they were queued with one timeout). */
	while (db->head && now_ms >= db->head->deadline_ms) {
		struct item *it = db->detached = pop(db);
		db->stats.query_timeouts += lookups_of(it);
		answer(it, -1, NULL);
		db->detached = NULL;
		free_item(it);
	}
}

static void challenges_process(struct certdb *db, int64_t now_ms);

void certdb_process(struct certdb *db, int64_t now_ms)
{
	PGnotify *n;

	challenges_process(db, now_ms);
	if (db->state == DB_DOWN && now_ms >= db->retry_at_ms)
		start_connect(db, now_ms);
	if (db->state == DB_CONNECTING)
		drive_connect(db, now_ms);
	if (db->state == DB_READY) {
		if (db->flush_pending)
			flush(db);
		if (!db->broken && !PQconsumeInput(db->conn)) {
			disconnect(db, now_ms, NULL);
			return;
		}
		drain(db);
		while (!db->broken && (n = PQnotifies(db->conn)) != NULL) {
			notified(db, n, now_ms);
			PQfreemem(n);
		}
		/* libpq drops the socket itself on a FATAL error: nothing more will ever arrive. */
		if (db->broken || PQstatus(db->conn) == CONNECTION_BAD || PQsocket(db->conn) < 0) {
			disconnect(db, now_ms, NULL);
			return;
		}
		if (db->flush_pending)
			flush(db);
	}
	if (db->open && batch_may_go(db))
		batch_send(db);
	expire(db, now_ms);
}

int certdb_new(const struct certdb_config *config, struct certdb **out, struct tt_err *err)
{
	const char *conninfo = config->conninfo ? config->conninfo : "";
	char *perr = NULL;
	PQconninfoOption *opts;
	struct certdb *db;

	*out = NULL;
	opts = PQconninfoParse(conninfo, &perr);
	if (!opts) {
		char buf[TT_LOG_QUOTED_MAX];
		tt_fail(err, "database connection string: %s",
			one_line(buf, sizeof(buf), perr ? perr : "out of memory"));
		PQfreemem(perr);
		return -1;
	}
	PQconninfoFree(opts);
	db = calloc(1, sizeof(*db));
	if (!db || !(db->conninfo = strdup(conninfo))) {
		free(db);
		return tt_fail(err, "out of memory");
	}
	db->keyring = config->keyring;
	db->cache = config->cache;
	db->listen = config->listen;
	db->tickets = config->tickets;
	db->query_timeout_ms = config->query_timeout_ms > 0 ? config->query_timeout_ms : DEFAULT_QUERY_TIMEOUT_MS;
	db->connect_timeout_ms =
	    config->connect_timeout_ms > 0 ? config->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	db->misses_per_sec = config->max_misses_per_sec > 0 ? (double)config->max_misses_per_sec : 0;
	db->miss_tokens = db->misses_per_sec;
	db->batch_max = config->batch_max > 0 ? config->batch_max : DEFAULT_BATCH_MAX;
	db->max_pending = config->max_pending > 0 ? config->max_pending : DEFAULT_MAX_PENDING;
	db->latency_limit_us = config->latency_limit_ms > 0    ? config->latency_limit_ms * 1000
			       : config->latency_limit_ms == 0 ? DEFAULT_LATENCY_LIMIT_MS * 1000
							       : 0;
	db->miss_refill_us = tt_now_us();
	db->backoff_ms = BACKOFF_MIN_MS;
	db->state = DB_DOWN;
	db->challenges = config->challenges;
	db->wait_tokens = CHALLENGE_WAITS_PER_SEC;
	db->wait_refill_us = db->miss_refill_us;
	certdb_process(db, tt_now_ms());
	*out = db;
	return 0;
}

void certdb_free(struct certdb *db)
{
	if (!db)
		return;
	while (db->head)
		free_item(pop(db));
	while (db->waits) {
		struct challenge_wait *w = db->waits;
		db->waits = w->next;
		free(w);
	}
	if (db->open)
		free_item(db->open);
	if (db->conn)
		PQfinish(db->conn);
	tt_secret_buf_free(&db->key_buf);
	free(db->conninfo);
	free(db);
}

/* A certificate item of list (or of a batch in it) loading name since epoch, or NULL. */
static struct item *find_loading(struct item *list, const char *name, uint64_t epoch)
{
	for (struct item *it = list; it; it = it->next) {
		if (it->kind == ITEM_BATCH) {
			struct item *m = it->answered ? NULL : find_loading(it->members, name, epoch);
			if (m)
				return m;
		} else if (it->kind == ITEM_CERT && !it->answered && it->epoch == epoch && strcmp(it->key, name) == 0) {
			return it;
		}
	}
	return NULL;
}

int certdb_load_cert(struct certdb *db, const char *name, certdb_cert_cb cb, void *arg)
{
	uint64_t epoch = sni_cache_epoch(db->cache, name);
	struct waiter *w = calloc(1, sizeof(*w));
	struct item *it;

	if (!w) {
		db->stats.query_errors++;
		return -1;
	}
	w->cb = cb;
	w->arg = arg;
	/* Join a query for the same name unless the name changed since it was sent. */
	if ((it = find_loading(db->head, name, epoch)) || (it = find_loading(db->open, name, epoch))) {
		w->next = it->waiters;
		it->waiters = w;
		return 0;
	}
	int64_t now_us = tt_now_us();
	int cause = db->state == DB_DOWN ? -1 : refusal(db, now_us);
	if (cause >= 0) {
		free(w);
		refuse(db, cause, now_us);
		return CERTDB_THROTTLED;
	}
	it = item_new(ITEM_CERT, name, now_us / 1000 + db->query_timeout_ms);
	if (!it) {
		free(w);
		db->stats.query_errors++;
		return -1;
	}
	it->epoch = epoch;
	it->waiters = w;
	return batch_add(db, it);
}

static void cancel_in(struct item *list, void *arg)
{
	for (struct item *it = list; it; it = it->next) {
		for (struct waiter *w = it->waiters; w; w = w->next)
			if (w->arg == arg)
				w->cb = NULL;
		cancel_in(it->members, arg);
	}
}

static void challenges_cancel(struct certdb *db, void *arg);

void certdb_cancel(struct certdb *db, void *arg)
{
	cancel_in(db->head, arg);
	cancel_in(db->detached, arg);
	challenges_cancel(db, arg);
	cancel_in(db->open, arg);
}

int certdb_fd(const struct certdb *db)
{
	return db->state == DB_DOWN ? -1 : PQsocket(db->conn);
}

bool certdb_wants_write(const struct certdb *db)
{
	if (db->state == DB_CONNECTING)
		return db->poll == PGRES_POLLING_WRITING;
	return db->state == DB_READY && db->flush_pending;
}

static int64_t challenges_next_deadline_ms(const struct certdb *db);

static int64_t queries_next_deadline_ms(const struct certdb *db)
{
	int64_t d = -1;
	if (db->state == DB_DOWN)
		return db->retry_at_ms;
	if (db->broken)
		return 0; /* a send failed: certdb_process must run now to reconnect */
	if (db->open && batch_may_go(db))
		return 0; /* misses wait to be sent: right after the loop's current round of events */
	if (db->state == DB_CONNECTING)
		d = db->connect_deadline_ms;
	for (const struct item *it = db->head; it; it = it->next)
		if (d < 0 || it->deadline_ms < d)
			d = it->deadline_ms;
	return d;
}

int64_t certdb_next_deadline_ms(const struct certdb *db)
{
	int64_t q = queries_next_deadline_ms(db), c = challenges_next_deadline_ms(db);
	return q < 0 || (c >= 0 && c < q) ? c : q;
}

bool certdb_ready(const struct certdb *db)
{
	return db->state == DB_READY && !db->broken;
}

void certdb_stats(const struct certdb *db, struct certdb_stats *out)
{
	*out = db->stats;
}

/* ---- HTTP-01 lookups: answered from the challenge set, never by a query on this connection ---- */

/* A token bucket for lookups that must wait: only those may come to cost the database work. */
static bool challenge_wait_allowed(struct certdb *db)
{
	int64_t now_us = tt_now_us();
	db->wait_tokens += (double)(now_us - db->wait_refill_us) * CHALLENGE_WAITS_PER_SEC / 1e6;
	if (db->wait_tokens > CHALLENGE_WAITS_PER_SEC)
		db->wait_tokens = CHALLENGE_WAITS_PER_SEC;
	db->wait_refill_us = now_us;
	if (db->wait_tokens < 1)
		return false;
	db->wait_tokens -= 1;
	return true;
}

int certdb_get_challenge(struct certdb *db, const char *token, certdb_challenge_cb cb, void *arg)
{
	char key_auth[KEY_AUTH_MAX];
	size_t len = strlen(token);
	struct challenge_wait *w = NULL;
	if (db->nwaits < MAX_CHALLENGE_WAITS &&
	    (challenge_set_lookup(db->challenges, token, key_auth, sizeof key_auth) != CHALLENGE_WAIT ||
	     challenge_wait_allowed(db)))
		w = malloc(sizeof *w + len + 1);
	if (!w) {
		challenge_set_count(db->challenges, CHALLENGE_REFUSED);
		return -1;
	}
	int64_t now_ms = tt_now_ms();
	/* Answered by the next certdb_process, never from inside this call. */
	*w = (struct challenge_wait){
	    .next = db->waits, .cb = cb, .arg = arg, .check_ms = now_ms, .deadline_ms = now_ms + db->query_timeout_ms};
	memcpy(w->token, token, len + 1);
	db->waits = w;
	db->nwaits++;
	return 0;
}

/* Answers the lookups the set can answer now, and times out those waiting too long. */
static void challenges_process(struct certdb *db, int64_t now_ms)
{
	struct challenge_wait *keep = NULL, *w;
	char key_auth[KEY_AUTH_MAX];
	/* Callbacks may look up again (onto db->waits) or cancel (here, too). */
	db->waits_detached = db->waits;
	db->waits = NULL;
	while ((w = db->waits_detached) != NULL) {
		db->waits_detached = w->next;
		enum challenge_result r = CHALLENGE_WAIT;
		if (w->cb && w->check_ms <= now_ms)
			r = challenge_set_lookup(db->challenges, w->token, key_auth, sizeof key_auth);
		if (w->cb && r == CHALLENGE_WAIT && now_ms < w->deadline_ms) {
			if (w->check_ms <= now_ms)
				w->check_ms = now_ms + CHALLENGE_POLL_MS < w->deadline_ms ? now_ms + CHALLENGE_POLL_MS
											  : w->deadline_ms;
			w->next = keep;
			keep = w;
			continue;
		}
		db->nwaits--;
		if (w->cb) {
			challenge_set_count(db->challenges, r == CHALLENGE_FOUND     ? CHALLENGE_SERVED
							    : r == CHALLENGE_UNKNOWN ? CHALLENGE_NOT_FOUND
										     : CHALLENGE_TIMED_OUT);
			w->cb(w->arg,
			      r == CHALLENGE_FOUND     ? 0
			      : r == CHALLENGE_UNKNOWN ? 1
						       : -1,
			      r == CHALLENGE_FOUND ? key_auth : NULL);
		}
		free(w);
	}
	while (keep) {
		w = keep;
		keep = w->next;
		w->next = db->waits;
		db->waits = w;
	}
}

static void challenges_cancel(struct certdb *db, void *arg)
{
	for (struct challenge_wait *w = db->waits; w; w = w->next)
		if (w->arg == arg)
			w->cb = NULL;
	for (struct challenge_wait *w = db->waits_detached; w; w = w->next)
		if (w->arg == arg)
			w->cb = NULL;
}

static int64_t challenges_next_deadline_ms(const struct certdb *db)
{
	int64_t d = -1;
	for (const struct challenge_wait *w = db->waits; w; w = w->next)
		if (d < 0 || w->check_ms < d)
			d = w->check_ms;
	return d;
}
