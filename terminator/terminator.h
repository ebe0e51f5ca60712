/* terminator: the whole map. One thread per core, each with its own io_uring, listeners and
 * database connection; the certificate cache is the only thing the threads share.
 *
 *   main.c      the option table (flag, variable, type, default, help, live on SIGHUP or not; parsed by
 *               common/options.c), threads, signals; the warm-up of a restart (another process
 *               listens on the --https address: hold the listeners; the control tick polls
 *               warmed_up and calls loop_serve once warm or at --warm-up-limit)
 *   listeners.c is another process listening where connections to an address would go (asks
 *               the kernel through sock_diag for listening sockets only)
 *   loop.c      one core's event loop: owns its ring, listeners, certdb, backend pool and timer
 *               lists; accepts while it holds less than its share of --max-connections; hands
 *               completions, expiries and deferred work to their owners' callbacks
 *   ring.c      the loop's calls into the kernel, the only caller of io_uring_*: recv (provided
 *               buffers), send, connect, poll, cancel, close; submits and waits for completions
 *               up to a timeout; and accept (a plain accept4, as a listener's poll calls for)
 *   conn.c      per-connection state machine: ClientHello -> SNI -> certificate -> handshake ->
 *               request head -> backend -> response, and the plain port-80 path
 *   backend.c   the backend side of a connection (kept by its client between exchanges) and the
 *               loop's pool of idle backend connections
 *   tls.c       TLS without I/O: the ClientHello's record framing and SNI (read before any
 *               session exists), the raw alerts sent then, and wolfSSL sessions that take
 *               received ciphertext and append what they send to the connection's output buffer
 *               (handshake, reads, writes, close_notify); conn.c moves the bytes through the ring
 *   buf.c       growable byte buffers, one per direction of a connection
 *   certctx.c   builds a ready WOLFSSL_CTX for one chain + key, with our TLS policy
 *   tickets.c   TLS session tickets under the fleet's keys, reloaded by a refresher thread
 *   sni_cache.c sharded certificate cache shared by all threads, negative entries, eviction
 *   certdb.c    per-thread non-blocking PostgreSQL: certificate lookups (misses batched),
 *               LISTEN/NOTIFY for renewals, revalidating the cache shard by shard each time
 *               LISTEN is back; HTTP-01 lookups answered from the challenge set
 *   challenge_set.c  the live HTTP-01 tokens in memory, fed by NOTIFY tracktls_challenge
 *   name_filter.c    Bloom filter of the names the database can serve
 *   handover.c  warm restarts: the hot-names file, and the prefetcher that loads its names
 *   http.c      HTTP/1.1 request/response head parsing, body framing, header rewriting
 *   proxy_v2.c  PROXY protocol v2 header writer
 *   metrics.c   counters, and the /metrics and /healthz server (epoll, deadline, connection cap)
 *
 * Each section below belongs to the module named in it. */
#ifndef TRACKTLS_TERMINATOR_H
#define TRACKTLS_TERMINATOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <wolfssl/ssl.h>

#include "common.h"

/* The nice value of the threads that warm the process (name_filter.c's scan, handover.c's
 * prefetch): at nice 10 a thread gets about a tenth of a core a nice-0 thread wants, so the loops,
 * and during a restart the outgoing process on the same cores, keep serving. At full priority a
 * 1,000,000-name scan and 1,024 hot names starved the outgoing process for the second of the
 * warm-up (bench/restart.sh: 500 of 1,400 handshakes that second, p99 0.7 s). */
#define TERM_BACKGROUND_NICE 10
/* The scan's pace (tt_pace), because nice does not reach PostgreSQL, which streams the COPY at
 * full priority: it reads at most this many names a second, and PostgreSQL, blocked on the socket
 * meanwhile, keeps the same pace (a 1,000,000-name COPY cost it about 0.3 s of CPU in the 1.2 s it
 * took unpaced, on the core the load generator needed: bench/restart.sh, 2026-11-30). The
 * prefetch is not paced: at nice 10 its batches already wait for the core, and a quarter duty
 * cycle on top stretched 1,024 names to 12 s, past --warm-up-limit. */
#define TERM_SCAN_NAMES_PER_SEC 250000
/* A drained process tears down (frees its cache, closes its database connections, exits) at the
 * lowest priority, so that it takes no core from the incoming process at the switch. */
#define TERM_TEARDOWN_NICE 19

/* ---- certctx.c ---- */
/* A WOLFSSL_CTX holding chain_pem (leaf first) and the clear private key (DER or PEM), set up with
 * the terminator's policy: TLS 1.2 and 1.3 only, AEAD suites, no renegotiation, no compression.
 * The caller wipes its key buffer; the CTX's copy is wiped by wolfSSL when the CTX is freed.
 * wolfSSL_Init must have run (main, before threads start). */
int certctx_new(const char *chain_pem, size_t chain_len, const uint8_t *key, size_t key_len, WOLFSSL_CTX **out,
		struct tt_err *err);
/* Per-session part of the policy, called by tls.c right after wolfSSL_new(cert_entry_ctx(entry)): groups
 * X25519 and P-256 (kept off the cached CTX to save memory per domain), ALPN http/1.1 continuing on
 * mismatch (this wolfSSL build, without OPENSSL_ALL, does not copy a CTX's ALPN select callback
 * into its sessions). */
int certctx_session_init(WOLFSSL *ssl);

/* ---- sni_cache.c ----
 * Shared by every thread, sharded by tt_name_hash (SipHash under the cache's own random key); a
 * shard lock is held only for the table operation, never across I/O or a handshake. Entries are
 * reference counted: a handshake holds its entry, so eviction or replacement never pulls a context
 * from under a live session. */
struct sni_cache;
struct cert_entry;
struct name_filter;
/* 0 picks the default: 100000 entries, 1 GiB, 10 s, max_negative = max_entries. */
struct sni_cache_limits {
	size_t max_entries;
	size_t max_bytes;
	int64_t negative_ttl_ms;
	size_t max_negative; /* negative entries are bounded apart from certificates */
};
int sni_cache_new(const struct sni_cache_limits *limits, struct sni_cache **out, struct tt_err *err);
void sni_cache_free(struct sni_cache *cache);
enum sni_result { SNI_HIT, SNI_NEGATIVE, SNI_MISS };
/* On SNI_HIT *out holds a reference; release it with cert_entry_release. */
enum sni_result sni_cache_lookup(struct sni_cache *cache, const char *name, struct cert_entry **out);
/* Inserts or replaces the entry for name (taking ownership of ctx); *out gets a reference. */
int sni_cache_insert(struct sni_cache *cache, const char *name, int64_t cert_id, WOLFSSL_CTX *ctx, size_t bytes,
		     struct cert_entry **out, struct tt_err *err);
void sni_cache_insert_negative(struct sni_cache *cache, const char *name);
/* The name changed in the database: drop what the cache holds for it (positive or negative).
 * Returns true if it held a certificate (the name is hot: worth reloading now). */
bool sni_cache_invalidate(struct sni_cache *cache, const char *name);
void sni_cache_invalidate_all(struct sni_cache *cache);
/* For loaders (certdb): take the epoch before querying and insert with it; if the name's shard was
 * invalidated in between, the answer may predate the change, so the entry is handed to the caller
 * but not cached (a negative one is dropped). */
#define SNI_EPOCH_ANY UINT64_MAX
uint64_t sni_cache_epoch(struct sni_cache *cache, const char *name);
int sni_cache_insert_since(struct sni_cache *cache, uint64_t epoch, const char *name, int64_t cert_id, WOLFSSL_CTX *ctx,
			   size_t bytes, struct cert_entry **out, struct tt_err *err);
void sni_cache_insert_negative_since(struct sni_cache *cache, uint64_t epoch, const char *name);
/* Revalidation when notifications may have been missed (certdb's listener reconnected): every
 * load in flight becomes stale and negative entries go; then, shard by shard, the names held are
 * checked against the database and those whose current certificate changed are dropped, so the
 * certificates still current keep serving without a reload. */
size_t sni_cache_begin_revalidation(struct sni_cache *cache); /* returns the shard count */
/* The listener's connection dropped: notifications may be lost until LISTEN is back, so the name
 * filter stops ruling names out; the cache keeps serving until the revalidation. */
void sni_cache_listener_lost(struct sni_cache *cache);
/* Optional, set before the threads start: misses for names the filter rules out are SNI_NEGATIVE. */
void sni_cache_set_filter(struct sni_cache *cache, struct name_filter *filter);
/* New limits on a live cache (SIGHUP): later inserts evict down to them; the bucket count stays. */
void sni_cache_set_limits(struct sni_cache *cache, const struct sni_cache_limits *limits);
/* The names shard holds, as a PostgreSQL text[] literal (malloc'd; NULL and n = 0 if none). */
int sni_cache_shard_snapshot(struct sni_cache *cache, size_t shard, char **names, size_t *n);
/* Holds a certificate for name (no statistics, no LRU move). */
bool sni_cache_holds(struct sni_cache *cache, const char *name);
/* The names holding a certificate, one a line, those with the most lookups since the last call
 * first (malloc'd text of len bytes, n names). */
int sni_cache_hot_names(struct sni_cache *cache, char **text, size_t *len, size_t *n);
/* Drops name's certificate unless its id is current_id (-1: the name has no certificate now). */
void sni_cache_drop_unless(struct sni_cache *cache, const char *name, int64_t current_id);
WOLFSSL_CTX *cert_entry_ctx(const struct cert_entry *entry);
int64_t cert_entry_cert_id(const struct cert_entry *entry);
/* Another reference to an entry already held (one per waiting connection). */
struct cert_entry *cert_entry_ref(struct cert_entry *entry);
void cert_entry_release(struct cert_entry *entry);
struct sni_cache_stats {
	uint64_t hits, misses, negative_hits, evictions, entries, bytes;
	uint64_t negative_entries;
	uint64_t filtered; /* misses answered SNI_NEGATIVE by the name filter, without a query */
};
void sni_cache_stats(struct sni_cache *cache, struct sni_cache_stats *out);

/* ---- name_filter.c ----
 * A Bloom filter of the names the database can serve (a current certificate, not removed), so a
 * flood of random SNI names costs no queries; its bits are picked by tt_name_hash2 under the
 * filter's own random key. A helper thread scans the names with one COPY each time the
 * listener's LISTEN is (re)established (at nice 10, at most TERM_SCAN_NAMES_PER_SEC: it yields to the loops); the
 * listener adds every notified name; while a listener is lost or a scan runs the filter is untrusted and rules nothing
 * out. Wiring, in main: name_filter_new(expected, &f, err); sni_cache_set_filter(cache, f); name_filter_start(f,
 * conninfo, err); ... (after the loops stopped) name_filter_free(f); expected: the number of names to size for (12 bits
 * each, at least 128 KiB); beyond it the filter rules out fewer names, never a name it holds. */
struct name_filter;
int name_filter_new(size_t expected_names, struct name_filter **out, struct tt_err *err);
int name_filter_start(struct name_filter *f, const char *conninfo, struct tt_err *err);
void name_filter_free(struct name_filter *f);
/* False only when the filter is trusted and surely does not hold name. */
bool name_filter_may_exist(const struct name_filter *f, const char *name);
bool name_filter_trusted(const struct name_filter *f);
void name_filter_add(struct name_filter *f, const char *name);
void name_filter_distrust(struct name_filter *f);
void name_filter_request_rebuild(struct name_filter *f);
/* One blocking scan on conn (what the helper thread runs); trusted after it unless distrusted
 * meanwhile. */
int name_filter_build(struct name_filter *f, PGconn *conn, struct tt_err *err);
struct name_filter_stats {
	uint64_t builds, build_errors, names;
	size_t bits;
	bool trusted;
};
void name_filter_stats(const struct name_filter *f, struct name_filter_stats *out);

/* ---- challenge_set.c ----
 * The live HTTP-01 challenges (token, key authorization, expiry) in memory, shared by every
 * thread, so a request for a token costs no query whether the token exists or not. A helper thread
 * on a connection of its own LISTENs on tracktls_challenge, reads every live challenge each time
 * LISTEN is (re)established and fetches each notified token's row; while it is not listening or
 * reading, the set is untrusted. Nothing runs on a loop's certdb connection, so a stuck challenge
 * query never fails a certificate load. Wiring, in main: challenge_set_new, challenge_set_start
 * (conninfo of the primary: LISTEN), and after the loops stopped challenge_set_free. */
struct challenge_set;
int challenge_set_new(struct challenge_set **out, struct tt_err *err);
int challenge_set_start(struct challenge_set *s, const char *conninfo, int64_t query_timeout_ms, struct tt_err *err);
void challenge_set_free(struct challenge_set *s);
/* FOUND copies the key authorization into key_auth; WAIT: not known yet (untrusted, or the token
 * was notified and its row is being read): ask again shortly. */
enum challenge_result { CHALLENGE_FOUND, CHALLENGE_UNKNOWN, CHALLENGE_WAIT };
enum challenge_result challenge_set_lookup(struct challenge_set *s, const char *token, char *key_auth, size_t size);
/* How lookups ended, counted by certdb: answered 200, 404, timed out waiting, refused (rate). */
enum challenge_outcome {
	CHALLENGE_SERVED,
	CHALLENGE_NOT_FOUND,
	CHALLENGE_TIMED_OUT,
	CHALLENGE_REFUSED,
	CHALLENGE_OUTCOMES
};
void challenge_set_count(struct challenge_set *s, enum challenge_outcome o);
size_t challenge_set_size(struct challenge_set *s);
bool challenge_set_trusted(struct challenge_set *s);
struct challenge_set_stats {
	uint64_t outcomes[CHALLENGE_OUTCOMES];
	uint64_t scans, fetches, errors; /* the helper's queries: full reads, notified rows; lost connections */
	size_t tokens;
	bool trusted;
};
void challenge_set_stats(struct challenge_set *s, struct challenge_set_stats *out);

/* ---- certdb.c ----
 * One per thread. Queries run on a non-blocking libpq connection (pipeline mode, several queries
 * in flight) whose socket the loop watches through the ring; results arrive by callback. A miss
 * for a name already being loaded on this thread joins that query (threads do not coalesce with
 * each other). Misses that arrive while certificate queries are out are sent together, as one
 * query for up to batch_max names (one round trip), as soon as one returns. Exactly one certdb,
 * the one with listen set, runs LISTEN tracktls_cert for the shared cache: a change drops the
 * name (and reloads it if it was cached); each time LISTEN is (re)established, changes made
 * meanwhile were missed, so the cache is revalidated shard by shard (sni_cache_begin_revalidation):
 * names whose current certificate changed are dropped, the rest keep serving (only when a shard's
 * names cannot be listed or a revalidation query fails is the whole cache dropped).
 * The loop: after certdb_new, certdb_load_cert, certdb_get_challenge and certdb_process, re-read
 * certdb_fd (the socket is replaced on reconnect), certdb_wants_write and
 * certdb_next_deadline_ms, and re-arm its poll and timer. libpq resolves host names with a
 * blocking getaddrinfo: give hostaddr= or an IP address or a socket directory. */
struct certdb;
struct certdb_config {
	const char *conninfo;
	const struct tt_keyring *keyring;
	struct sni_cache *cache;
	int64_t query_timeout_ms;   /* 0: 1000; a connection that lets a query time out is replaced */
	int64_t connect_timeout_ms; /* 0: 5000 */
	bool listen;
	struct tickets *tickets; /* attached to every context loaded (NULL: no session tickets) */
	/* Misses are refused (CERTDB_THROTTLED) only while the database is behind: max_pending names
	 * waiting (0: 1024), or queries slower than latency_limit_ms (0: 250, -1: never) while a full
	 * batch waits. max_misses_per_sec (deprecated; 0: none) adds a fixed ceiling per second. */
	int64_t max_misses_per_sec;
	size_t batch_max; /* names per certificate query (0: 128; 1: one query per name) */
	size_t max_pending;
	int64_t latency_limit_ms;
	struct challenge_set *challenges; /* answers certdb_get_challenge (required to call it) */
};
int certdb_new(const struct certdb_config *config, struct certdb **out, struct tt_err *err);
void certdb_free(struct certdb *db);
/* status: 0 found (entry holds a reference), 1 unknown name (negative-cached), -1 error (a broken
 * row is negative-cached too). The request functions return 0 when the callback will run later,
 * from certdb_process, never from inside the request call; -1 (no callback) when the request fails
 * at once: database down and backing off, or too many requests in flight; CERTDB_THROTTLED (no
 * callback) for more certificate queries per second than max_misses_per_sec (joining a query in
 * flight is free). certdb_free drops pending callbacks without running them. */
#define CERTDB_THROTTLED (-2)
enum certdb_refusal { CERTDB_REFUSED_QUEUE, CERTDB_REFUSED_LATENCY, CERTDB_REFUSED_RATE, CERTDB_REFUSAL_CAUSES };
typedef void (*certdb_cert_cb)(void *arg, int status, struct cert_entry *entry);
int certdb_load_cert(struct certdb *db, const char *name, certdb_cert_cb cb, void *arg);
/* status: 0 found (key_auth valid during the call), 1 unknown token, -1 error (the challenge set
 * could not say within the query timeout). Answered from the challenge set, never by a query on
 * this connection; -1 at once (no callback) when too many lookups already wait for the set. */
typedef void (*certdb_challenge_cb)(void *arg, int status, const char *key_auth);
int certdb_get_challenge(struct certdb *db, const char *token, certdb_challenge_cb cb, void *arg);
/* Withdraws interest in a pending request (the connection went away); its callback never runs. */
void certdb_cancel(struct certdb *db, void *arg);
/* The socket to watch (-1 while disconnected), and what to watch it for. */
int certdb_fd(const struct certdb *db);
bool certdb_wants_write(const struct certdb *db);
/* Drives the connection after the socket became ready or a timer fired: reads results, runs
 * callbacks, handles NOTIFY, reconnects with backoff. now_ms is CLOCK_MONOTONIC. */
void certdb_process(struct certdb *db, int64_t now_ms);
/* When certdb_process next needs to run even without socket activity (-1: no deadline). */
int64_t certdb_next_deadline_ms(const struct certdb *db);
struct certdb_stats {
	uint64_t queries, query_errors, query_timeouts, notifications, reconnects;
	uint64_t query_us_total;
	uint64_t bad_certs;		 /* rows whose key does not open or whose chain/key does not load */
	uint64_t batches, batched_names; /* queries for several names, and the names they carried */
	uint64_t refused[CERTDB_REFUSAL_CAUSES];
};
void certdb_stats(const struct certdb *db, struct certdb_stats *out);
/* Connected, set up and able to answer queries now. */
bool certdb_ready(const struct certdb *db);
/* Shared with the handover prefetcher: the lookup for many names ($1 text[]; binary results: the
 * name's 1-based position as int8, then id, chain, sealed key), and what turns one row into a
 * cached context. */
extern const char certdb_sql_batch[];
struct certdb_loader {
	const struct tt_keyring *keyring;
	struct tickets *tickets;
	struct sni_cache *cache;
	struct tt_secret_buf *key_buf; /* the calling thread's own */
};
/* Columns col.. of row: id, chain, sealed key. Opens the key, builds the context and caches it
 * for name (unless its shard changed since epoch); 0 with *entry (a reference), -1 with err for
 * a row that cannot serve (*cert_id set once read). */
int certdb_entry_from_row(const struct certdb_loader *ld, uint64_t epoch, const char *name, const PGresult *res,
			  int row, int col, int64_t *cert_id, struct cert_entry **entry, struct tt_err *err);

/* ---- handover.c ----
 * Warm restarts. handover_write puts the names the cache holds certificates for, hottest first,
 * in the hot-names file (names only: never a certificate or a key); main calls it at SIGTERM and
 * on a timer. The file: a first line "# tracktls hot names v1 pid=P written=TIME names=N", then
 * one name a line; written to PATH.tmp.PID and renamed over PATH. For watch_ms after start a
 * thread of its own (its own blocking connection) loads the names of every new version of the
 * file written by another process, batch names a query, skipping names already cached: of the
 * hottest 1,024 names of each list (of the list found at start twice, see initial_done; the rest of
 * a list loads on demand), at TERM_BACKGROUND_NICE. If the database is down it retries until the
 * window closes, and the names load on demand. */
struct handover;
struct handover_config {
	const char *path;
	const char *conninfo;
	const struct tt_keyring *keyring;
	struct tickets *tickets;
	struct sni_cache *cache;
	size_t batch;
	int64_t watch_ms; /* 0: only write */
};
int handover_start(const struct handover_config *cfg, struct handover **out, struct tt_err *err);
int handover_write(struct handover *h, size_t *written, struct tt_err *err);
/* Stops the prefetcher (waits for a query it runs) and frees. */
void handover_stop(struct handover *h);
struct handover_stats {
	uint64_t files_read, loaded, unknown, failed, queries, query_us, files_written, names_written;
	bool prefetching;
	/* The hottest names of the list found at start are loaded (or there was none): main's
	 * warm-up waits for it. */
	bool initial_done;
};
void handover_stats(const struct handover *h, struct handover_stats *out);

/* ---- listeners.c ----
 * Sets *served when another socket listens on sa's TCP port at sa's address or at a wildcard one
 * that covers it (0.0.0.0 for IPv4, :: for both); a listener at another address of the port does
 * not count. -1 with err when the kernel could not be asked (*served is then false). */
int listeners_address_served(const struct sockaddr_storage *sa, bool *served, struct tt_err *err);

/* ---- http.c ---- */
#define HTTP_MAX_HEADERS 64
struct http_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};
enum http_parse {
	HTTP_INCOMPLETE = 0, /* need more bytes */
	HTTP_OK = 1,
	HTTP_BAD = -1,	     /* malformed or a smuggling shape: answer 400 */
	HTTP_TOO_LARGE = -2, /* head over the limit or too many headers: answer 431 */
};
struct http_request {
	const char *method;
	size_t method_len;
	const char *target;
	size_t target_len;
	int minor_version; /* HTTP/1.x */
	const char *host;  /* NULL if absent */
	size_t host_len;
	int64_t content_length; /* -1 when absent */
	bool chunked;
	bool keep_alive;
	size_t head_len; /* bytes up to and including the blank line */
	struct http_header headers[HTTP_MAX_HEADERS];
	size_t nheaders;
};
enum http_parse http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req);
struct http_response {
	int status;
	int minor_version;
	int64_t content_length; /* -1 when absent */
	bool chunked;
	bool keep_alive;
	bool no_body; /* 1xx, 204, 304, or a response to HEAD */
	size_t head_len;
};
enum http_parse http_parse_response(const char *buf, size_t len, size_t max_head, bool head_request,
				    struct http_response *resp);
/* What the terminator adds: client-supplied X-Forwarded-* and Forwarded are dropped, never trusted. */
struct http_forward {
	const char *client_ip;
	const char *proto; /* "https" or "http" */
	const char *host;  /* SNI or Host */
};
/* Writes the request head for the backend into out; returns its length, or -1 if out is too small. */
ssize_t http_rewrite_request(const struct http_request *req, const struct http_forward *fwd, char *out, size_t outsize);
/* Tracks where a message body ends (Content-Length or chunked). */
struct http_body {
	int mode; /* internal */
	uint64_t remaining;
	int state;
};
void http_body_init(struct http_body *body, int64_t content_length, bool chunked, bool until_close);
/* Consumes up to len bytes of body; returns how many belong to this message (the rest is the next
 * message), -1 on a malformed chunked encoding. *done turns true at the end of the body. */
ssize_t http_body_consume(struct http_body *body, const char *buf, size_t len, bool *done);
/* A complete short response (400, 404, 431, 502, 503, 504, or 200 with body) into out. */
ssize_t http_write_simple(int status, const char *body, bool keep_alive, char *out, size_t outsize);

/* ---- proxy_v2.c ---- */
struct proxy_v2_tls {
	const char *sni;
	const char *alpn;
	const char *version; /* "TLSv1.3" */
	const char *cipher;
};
/* Writes a PROXY v2 header (PROXY command, TCP over IPv4/IPv6), and when tls is set TLVs for the
 * authority (SNI), ALPN and the SSL TLV; returns its length or -1 if out is too small. */
ssize_t proxy_v2_header(const struct sockaddr *src, const struct sockaddr *dst, const struct proxy_v2_tls *tls,
			uint8_t *out, size_t outsize);

/* ---- tickets.c ----
 * Session tickets under the fleet's keys (common/ticket_keys.c), shared by every thread and every
 * certificate's context. A refresher thread reloads them on NOTIFY tracktls_ticket_keys and on a timer. */
struct tickets;
int tickets_new(struct tickets **out, struct tt_err *err);
void tickets_free(struct tickets *t);
/* Replaces the keys; -1 (the old ones stay) when locked memory runs out. */
int tickets_set(struct tickets *t, const struct tt_ticket_key *keys, size_t n);
/* A ticket is sealed with the server name of its session (the struct tls_io that is the session's
 * IO read context, tls.c) and opens only under that name (RFC 6066 section 3), since every
 * certificate's context shares the keys. */
int tickets_attach(struct tickets *t, WOLFSSL_CTX *ctx);
int tickets_reload(struct tickets *t, PGconn *conn, const struct tt_keyring *kr, struct tt_err *err);
int tickets_start_refresher(struct tickets *t, const char *conninfo, const struct tt_keyring *kr, int64_t interval_ms,
			    struct tt_err *err);
struct tickets_stats {
	uint64_t issued, resumed, renewed, rejected, reloads, reload_errors;
	size_t keys;
	int64_t newest_start; /* unix seconds; 0 with no fleet key */
};
void tickets_stats(struct tickets *t, struct tickets_stats *out);
/* Asks the refresher to reload the keys now (SIGHUP); returns at once. */
void tickets_reload_soon(struct tickets *t);

/* ---- ring.c, main.c, metrics.c, buf.c and tls.c, loop.c, backend.c, conn.c: below, each after
 * the types it uses ---- */

/* ---- ring.c: the only caller of io_uring_*. ----
 * Completions are tagged with a 64-bit token chosen by the caller. Receives use a ring of
 * provided buffers: an event carrying a buffer holds it until ring_buf_recycle. */
struct ring;
struct ring_event {
	uint64_t token;
	int32_t res;
	bool more; /* the multishot request stays armed */
	int buf;   /* provided buffer id, -1 if none */
};
int ring_new(unsigned entries, unsigned nbufs, unsigned buf_size, struct ring **out, struct tt_err *err);
void ring_free(struct ring *r);
const char *ring_mode(const struct ring *r);
/* One connection from a listener's queue (the listener is non-blocking), or -errno (-EAGAIN: none
 * queued). Not through the ring: an accept on the ring takes a connection whenever one comes, and
 * a loop holding its share of --max-connections could not refuse it; the loop learns a queue is not
 * empty from a poll and takes what it has room for. */
int ring_accept(struct ring *r, int fd); /* r: the seam where tests/fuzz/fuzz_conn.c stands in */
/* Completes each time fd turns readable, until cancelled (or the kernel ends it: no IORING_CQE_F_MORE). */
void ring_poll_multishot(struct ring *r, int fd, uint64_t token);
void ring_recv_multishot(struct ring *r, int fd, uint64_t token);
void ring_send(struct ring *r, int fd, const void *buf, size_t len, uint64_t token);
void ring_connect(struct ring *r, int fd, const struct sockaddr *sa, socklen_t salen, uint64_t token);
void ring_poll(struct ring *r, int fd, bool want_write, uint64_t token);
void ring_poll_remove(struct ring *r, uint64_t token);
/* Cancels the request(s) carrying token; they complete with -ECANCELED. */
void ring_cancel(struct ring *r, uint64_t token);
/* Cancels every request on fd; the cancelled ones complete with -ECANCELED. */
void ring_cancel_fd(struct ring *r, int fd);
void ring_close(struct ring *r, int fd);
/* Submits what is queued and waits up to timeout_ms for completions; fills at most max events. */
int ring_wait(struct ring *r, int64_t timeout_ms, struct ring_event *events, unsigned max, unsigned *n,
	      struct tt_err *err);
const uint8_t *ring_buf(const struct ring *r, int buf);
void ring_buf_recycle(struct ring *r, int buf);

/* ---- main.c: the resolved configuration, read-only for every loop. ---- */
enum backend_mode { BACKEND_HTTP, BACKEND_PROXY_V2 };
/* TIMER_LINGER is the first moments of idleness; after it a connection gives back its buffers and
 * waits out the rest of the idle timeout in TIMER_IDLE (whose duration is what remains). */
enum timer_kind {
	TIMER_HANDSHAKE,
	TIMER_HEADER,
	TIMER_IDLE,
	TIMER_BACKEND_CONNECT,
	TIMER_BACKEND,
	TIMER_LINGER,
	TIMER_KINDS
};
struct term_config {
	struct sockaddr_storage https_addr, http_addr, backend_addr;
	socklen_t https_len, http_len, backend_len;
	enum backend_mode backend_mode;
	int64_t timeout_ms[TIMER_KINDS];
	/* From a request's forwarding to the last byte of its response reaching the client: a slow
	 * reader cannot hold the connection's buffers longer, whatever it reads meanwhile. */
	int64_t response_timeout_ms;
	int64_t db_timeout_ms;
	const char *db_conninfo;
	const char *db_listen_conninfo; /* the primary: loop 0's certdb LISTENs there */
	const struct tt_keyring *keyring;
	struct sni_cache *cache;
	struct tickets *tickets;
	struct challenge_set *challenges;
	int64_t max_misses_per_sec;
	size_t cert_batch_max, max_pending_misses;
	int64_t miss_latency_limit_ms; /* -1: no latency limit */
	bool hold_accept;	       /* a restart warms up first: no accept until loop_serve */
	/* Each loop's share of --max-connections: the connections it holds at once, each with a
	 * descriptor for its backend kept free. */
	size_t loop_max_conns;
};

/* ---- metrics.c: per-loop counters, summed when scraped; /metrics and /healthz. ----
 * Each loop alone writes its struct (relaxed load + store, no lock prefix); the scraper reads. */
enum hs_version { HS_TLS12, HS_TLS13, HS_VERSIONS };
struct metrics {
	_Atomic uint64_t handshakes_ok[HS_VERSIONS];
	_Atomic uint64_t handshakes_failed, handshakes_timeout;
	_Atomic uint64_t bad_hello, no_sni, unknown_sni, cert_errors, throttled;
	_Atomic uint64_t accepted, closed;
	/* Times the loop stopped accepting: it held its share, ran out of descriptors, or accepting
	 * failed otherwise. */
	_Atomic uint64_t accept_full, accept_paused, accept_failed;
	_Atomic uint64_t max_conns; /* a gauge: the loop's share of --max-connections */
	_Atomic bool not_accepting; /* a gauge: ACCEPT_FULL or ACCEPT_PAUSED now */
	_Atomic uint64_t bytes_in, bytes_out;
	_Atomic uint64_t requests, bad_requests, challenges;
	_Atomic uint64_t backend_errors, backend_timeouts, backend_connects, backend_reuses;
	_Atomic uint64_t timeouts[TIMER_KINDS];
	_Atomic uint64_t db_queries, db_query_errors, db_query_timeouts, db_notifications, db_reconnects,
	    db_query_us_total, db_bad_certs;
	_Atomic uint64_t db_batches, db_batched_names, misses_refused[CERTDB_REFUSAL_CAUSES];
	_Atomic bool db_ready; /* a gauge: this loop's certdb can answer now */
};
#define METRIC_ADD(m, field, n)                                                                                        \
	atomic_store_explicit(&(m)->field, atomic_load_explicit(&(m)->field, memory_order_relaxed) + (n),              \
			      memory_order_relaxed)
/* What the process does, set by main's control tick: warming (a restart's listeners do not listen
 * yet), serving, draining (SIGTERM). */
enum process_phase { PHASE_SERVING, PHASE_WARMING, PHASE_DRAINING };
/* What a scrape reads: the loops' counters and the shared parts (tickets and filter may be NULL). */
struct metrics_sources {
	struct metrics *const *loops;
	int nloops;
	struct sni_cache *cache;
	struct tickets *tickets;
	const struct name_filter *filter;
	struct challenge_set *challenges;
	const struct handover *handover; /* NULL without --hot-names-file */
	/* /healthz answers 503 but while serving (NULL: serving), and while no loop reaches the
	 * database and the cache is empty. */
	const _Atomic(enum process_phase) *phase;
	size_t max_conns; /* connections to the port at once; past it the oldest closes */
};
struct metrics_server;
/* Connections to the metrics port at once: main reserves descriptors for METRICS_MAX_CONNS, or for
 * a sixteenth of the descriptor limit when that is fewer, but never fewer than METRICS_MIN_CONNS,
 * so a host with a low limit still starts with a metrics port. */
#define METRICS_MAX_CONNS 1024
#define METRICS_MIN_CONNS 16
#define METRICS_LIMIT_SHARE 16
/* Serves the metrics listener (bound by main with loop_listen_on, SO_REUSEPORT so a new process
 * can start while this one drains) from a thread of its own: non-blocking sockets under epoll, 5 s
 * for a whole request and its answer, at most src->max_conns connections (past that the oldest
 * closes), so no client can stall /healthz. Closes the listener, also when it fails. */
int metrics_server_start(int fd, const struct metrics_sources *src, struct metrics_server **out, struct tt_err *err);
void metrics_server_stop(struct metrics_server *srv);
/* The Prometheus text into out (truncated at outsize); returns its length. */
size_t metrics_render(const struct metrics_sources *src, char *out, size_t outsize);

/* ---- buf.c and tls.c: byte buffers; the ClientHello and wolfSSL sessions, without I/O. ---- */
struct buf {
	uint8_t *data;
	size_t off, len, cap; /* live bytes are data[off, len) */
};
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
void buf_release(struct buf *b);
static inline size_t buf_size(const struct buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *buf_head(const struct buf *b)
{
	return b->data + b->off;
}

struct tls_io {
	const uint8_t *src; /* ciphertext the ring delivered, not yet read by wolfSSL */
	size_t src_len;
	struct buf *out;	 /* where ciphertext to send goes */
	const char *server_name; /* the name the session serves: its tickets resume under it only */
	bool failed;		 /* out of memory while appending */
};
/* A TLS record is complete at the start of p: 1 yes, 0 need more, -1 not a handshake record. */
int tls_hello_complete(const uint8_t *p, size_t len);
/* The normalized server name in a ClientHello: 1 found, 0 absent, -1 malformed or invalid name. */
int tls_hello_sni(const uint8_t *p, size_t len, char name[TT_NAME_MAX]);
/* One connection's session. in holds ciphertext not yet taken by wolfSSL (first the ClientHello,
 * buffered by the caller before the session exists). */
struct tls_conn {
	WOLFSSL *ssl; /* NULL until tls_conn_start */
	struct tls_io io;
	struct buf in;
	bool stalled; /* the session holds plaintext that did not fit under the caller's limit */
};
enum tls_result {
	TLS_OK,
	TLS_HANDSHAKING,      /* the handshake needs more bytes */
	TLS_HANDSHAKE_FAILED, /* wolfSSL queued its alert in out: send it, then close */
	TLS_CLOSED,	      /* close_notify */
	TLS_BROKEN,	      /* a read failed */
	TLS_NOMEM,
};
/* Ciphertext to send goes to out. server_name (kept by the caller for the session's life) is the
 * name the session serves: its tickets resume under that name only. */
int tls_conn_start(struct tls_conn *t, WOLFSSL_CTX *ctx, const char *server_name, struct buf *out);
/* Hands ciphertext at p (len 0: what waits in t->in) to the session: the handshake if it is not
 * finished (*established turns true when it just did), then plaintext into plain while it holds
 * less than limit. */
enum tls_result tls_conn_feed(struct tls_conn *t, const uint8_t *p, size_t len, struct buf *plain, size_t limit,
			      bool *established);
/* Plaintext for the peer, encrypted into out. */
int tls_conn_write(struct tls_conn *t, const void *p, size_t n);
void tls_conn_close_notify(struct tls_conn *t);
/* The protocol ALPN chose, into out ("" if none). */
const char *tls_conn_alpn(struct tls_conn *t, char *out, size_t outsize);
void tls_conn_free(struct tls_conn *t);
/* The fatal unrecognized_name alert, sent raw before any session exists. */
extern const uint8_t tls_alert_unrecognized_name[7];
extern const uint8_t tls_alert_internal_error[7];

/* ---- loop.c: one core. A completion's token is a pointer with the operation in its low bits. ---- */
enum loop_op {
	OP_ACCEPT_TLS = 1,
	OP_ACCEPT_PLAIN,
	OP_DB_POLL,
	OP_CLIENT_RECV,
	OP_CLIENT_SEND,
	OP_BACKEND_CONNECT,
	OP_BACKEND_RECV,
	OP_BACKEND_SEND,
	OP_MASK = 15,
};
static inline uint64_t loop_token(const void *p, enum loop_op op)
{
	return (uint64_t)(uintptr_t)p | op;
}
/* Owners (connections) wait in one FIFO per timeout kind: every kind has one duration, so
 * appending keeps each list sorted by deadline and the loop only looks at the heads. TIMER_CLOSED
 * holds owners waiting for their last completions before being freed. A timer carries its owner's
 * callbacks: the loop knows no more of what it times. */
#define TIMER_CLOSED TIMER_KINDS
struct timer;
struct ring_event;
struct timer_ops {
	/* A completion whose token is loop_token(timer, op). */
	void (*event)(struct timer *t, enum loop_op op, const struct ring_event *ev);
	void (*expire)(struct timer *t);  /* its deadline passed */
	void (*resume)(struct timer *t);  /* its turn after loop_defer */
	void (*drain)(struct timer *t);	  /* the loop started draining */
	bool (*reap)(struct timer *t);	  /* on TIMER_CLOSED: frees the owner if it may; true if freed */
	void (*destroy)(struct timer *t); /* at shutdown, after the ring is gone */
};
struct timer {
	struct timer *prev, *next;
	int64_t deadline_ms;
	int kind; /* -1 when in no list */
	const struct timer_ops *ops;
	struct timer *deferred_next;
	bool deferred; /* waits in the loop's deferred list */
};

/* ---- backend.c: the backend side of a connection, and the loop's pool. ---- */
/* One side of a connection: its socket and what the ring does with it. */
struct side {
	int fd;			/* -1: none */
	bool recv_armed;	/* a multishot receive is on the ring */
	bool recv_paused;	/* reading stopped until the other side catches up */
	bool send_busy;		/* flight is on the ring */
	bool eof;		/* the peer finished sending */
	unsigned ops;		/* requests on the ring for this side */
	struct buf in;		/* received, not yet used */
	struct buf out, flight; /* queued to send, and being sent */
};
enum backend_state {
	BACKEND_NONE,
	BACKEND_CONNECTING,
	BACKEND_OPEN,
	BACKEND_RETURNING, /* its exchange finished on both sides: joins the pool once its ops settle */
	BACKEND_KEPT,	   /* its exchange finished on both sides and it stays with its owner, its receive
			    * armed (a byte, EOF or error closes it), for the owner's next exchange */
};
struct backend {
	struct side s;
	enum backend_state state;
	bool reused; /* came from the pool: the backend may have closed it meanwhile */
	bool fresh;  /* the next connection must be a new one (a retry) */
	bool wanted; /* a connect waits for the previous socket's completions */
};
#define BACKEND_POOL_MAX 64
#define BACKEND_POOL_IDLE_MS 2000
/* Idle backend connections kept for the next exchange, newest last; one older than
 * BACKEND_POOL_IDLE_MS is closed rather than trusted. */
struct backend_pool {
	int fds[BACKEND_POOL_MAX];
	int64_t since_ms[BACKEND_POOL_MAX];
	int n;
};
struct loop;
enum backend_open { BACKEND_OPENED, BACKEND_PENDING, BACKEND_FAILED };
/* A connection for b: from the pool when may_reuse (and b->fresh is not set) and a pooled one is
 * still quiet (nothing to read, no EOF), else a new one (connect on the ring, owner's token). */
enum backend_open backend_open(struct loop *l, struct backend *b, void *owner, bool may_reuse);
/* The exchange finished on both sides and the owner expects another: b stays with the owner
 * (BACKEND_KEPT) if it could return to the pool and its receive is armed; false: release it. */
bool backend_keep(struct backend *b);
/* The owner's next exchange: true when its kept connection serves it (may_reuse, not b->fresh, still
 * quiet), now BACKEND_OPEN; else a kept one is closed (what is queued stays) and false. */
bool backend_take_kept(struct loop *l, struct backend *b, bool may_reuse);
void backend_arm_recv(struct loop *l, struct backend *b, void *owner);
void backend_pause(struct loop *l, struct backend *b, void *owner);
void backend_resume(struct loop *l, struct backend *b, void *owner);
/* Sends what is queued in b->s.out. */
void backend_flush(struct loop *l, struct backend *b, void *owner);
/* Cancels what the ring holds of it and closes it; b is empty after. */
void backend_close(struct loop *l, struct backend *b);
/* The exchange is over: reusable only when it finished on both sides (the caller's judgement;
 * always so for a kept connection) and nothing is left unsent or unread; then the socket returns
 * to the pool, else it closes. */
void backend_release(struct loop *l, struct backend *b, void *owner, bool reusable);
/* A returning connection whose completions all arrived joins the pool. */
void backend_settle(struct loop *l, struct backend *b);
/* Accounts for a completion of b's socket; true when it belongs to a socket b no longer has. */
bool backend_completed(struct loop *l, struct backend *b, void *owner, enum loop_op op, const struct ring_event *ev);
void backend_pool_put(struct loop *l, int fd);
void backend_pool_free(struct backend_pool *p);
void backend_destroy(struct backend *b);

/* Where a loop's listeners are, both at once: the one place the loop keeps its accept state. */
enum accept_state {
	ACCEPT_HELD,	 /* cfg->hold_accept until loop_serve: bound, not listening, not polled */
	ACCEPT_OPEN,	 /* listeners polled; queued connections accepted while the loop holds fewer than
			  * its share of --max-connections */
	ACCEPT_FULL,	 /* the loop holds its share: queued connections wait until one of them is freed */
	ACCEPT_PAUSED,	 /* out of descriptors all the same, or accepting failed: no accept until
			  * accept_resume_ms */
	ACCEPT_DRAINING, /* polls cancelled (a listener closes once its poll ended); connections drain:
			  * idle keep-alive ones close, the rest after their response */
};
enum listener { LISTENER_HTTPS, LISTENER_HTTP, LISTENERS };
/* What the loop knows of a listener's queue in the kernel. */
enum listener_queue {
	QUEUE_UNPOLLED, /* no poll on the ring (held, or the kernel ended it): polled at the next round */
	QUEUE_EMPTY,	/* polled, and the last accept found nothing: the poll says when one comes */
	QUEUE_WAITING,	/* polled, and connections may be queued: accepted as room allows */
};

/* Configuration changes (SIGHUP) reach a loop as a new immutable snapshot in cfg_next, picked up at
 * the top of its next iteration; it says so in cfg_seen, after which main may free the old one. */
struct loop {
	int id;
	const struct term_config *cfg;
	_Atomic(const struct term_config *) cfg_next, cfg_seen;
	struct metrics *m;
	struct ring *ring;
	struct certdb *db;
	int listen_fd[LISTENERS]; /* -1 once closed */
	int64_t now_ms;
	struct timer lists[TIMER_KINDS + 1];
	struct timer *deferred, *deferred_tail; /* owners whose work yielded, run before the next wait */
	int db_fd;
	bool db_armed, db_armed_write, db_removing;
	/* Set and read by the loop's thread only; loop_run returns once ACCEPT_DRAINING left no
	 * connection and closed both listeners. */
	enum accept_state accept;
	enum listener_queue queue[LISTENERS];
	int64_t accept_resume_ms; /* ACCEPT_PAUSED: when accepting resumes */
	/* The last accept_full and accept_paused lines: one of each per LOOP_ACCEPT_WARN_MS. */
	int64_t accept_full_warned_ms, accept_paused_warned_ms;
	bool backend_down; /* logged once until a backend connect succeeds again */
	struct backend_pool pool;
	size_t nconns; /* accepted and not yet freed */
	/* Requests from main's thread, taken at the top of the loop's next round: drain (SIGTERM,
	 * to ACCEPT_DRAINING), stop, and serve (loop_serve: ACCEPT_HELD to ACCEPT_OPEN); done is
	 * the loop's answer that loop_run returned. */
	_Atomic bool drain, stop, done, serve;
};
/* Binds one loop's SO_REUSEPORT listeners (https, http): main does it for every loop before it
 * drops privileges. With cfg->hold_accept they are bound but not listening, so the kernel sends
 * them no connection until loop_serve. */
int loop_listen(const struct term_config *cfg, int fds[2], struct tt_err *err);
/* Called by main (not the loop's thread) once warm: the listeners listen, and the loop arms its
 * accepts within a few milliseconds. */
int loop_serve(struct loop *l, struct tt_err *err);
/* One SO_REUSEPORT listener on sa (what loop_listen binds twice, and main the metrics port). */
int loop_listen_on(const struct sockaddr_storage *sa, socklen_t len, int *out, struct tt_err *err);
/* Takes the listeners from loop_listen (closed by loop_free, also when loop_new fails). */
int loop_new(int id, const struct term_config *cfg, const int fds[2], struct metrics *m, struct loop **out,
	     struct tt_err *err);
/* Runs until loop_stop; returns 0 or -1 with err. */
int loop_run(struct loop *l, struct tt_err *err);
void loop_stop(struct loop *l);
/* Starts draining; loop_run returns by itself once the loop is empty (then done is true). */
void loop_drain(struct loop *l);
void loop_free(struct loop *l);
void loop_timer_set(struct loop *l, struct timer *t, int kind);
/* The same, but never later than deadline_ms. */
void loop_timer_set_by(struct loop *l, struct timer *t, int kind, int64_t deadline_ms);
void loop_timer_clear(struct timer *t);
/* t's resume callback runs once the events at hand are handled, before the loop waits again. */
void loop_defer(struct loop *l, struct timer *t);
/* The certdb socket's interest may have changed: re-arm its poll. */
void loop_db_watch(struct loop *l, bool force);

/* ---- conn.c: the per-connection state machine. ---- */
/* A new client connection on fd (a listener's, tls for the https one); its timer carries the rest. */
void conn_accept(struct loop *l, int fd, bool tls);

#endif
