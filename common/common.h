/* common: what the terminator and the issuer share: errors, logfmt logging, the options layer,
 * domain names, the master key ring and key envelope, and PostgreSQL access with migrations. */
#ifndef TRACKTLS_COMMON_H
#define TRACKTLS_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>

#define TT_VERSION "0.1.0"
/* A numeric macro as a string literal, for help texts that must agree with the code. */
#define TT_STRINGIFY_(x) #x
#define TT_STRINGIFY(x) TT_STRINGIFY_(x)
#define TT_MS_PER_S 1000

/* ---- err.c: errors are values. A failing function fills a tt_err and returns -1. ---- */
struct tt_err {
	char msg[512];
};
int tt_fail(struct tt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes err's message with the formatted text and ": " (the flag or the step it is about). */
int tt_wrap(struct tt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Exit statuses both binaries share: 1 the work failed; 2 refused options or usage (the issuer
 * also uses 2 for "cannot run"). */
#define TT_EXIT_FAILED 1
#define TT_EXIT_USAGE 2
/* Says why a binary stops, as "PROG: message" on stderr; returns status for main to exit with. */
int tt_prog_fail(const char *prog, const struct tt_err *err, int status);

/* ---- log.c: one logfmt line per event, to stderr. ----
 * tt_log(TT_INFO, "cert_loaded", "name=%s bytes=%zu", name, n) prints
 * ts=... level=info event=cert_loaded name=... bytes=...  Values with spaces must go through
 * tt_log_quote. */
enum tt_level { TT_DEBUG, TT_INFO, TT_WARN, TT_ERROR };
void tt_log_set_level(enum tt_level level);
int tt_log_parse_level(const char *s, enum tt_level *out);
void tt_log(enum tt_level level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes s as a logfmt value (quoted and escaped when needed) into buf; returns buf. */
const char *tt_log_quote(char *buf, size_t size, const char *s);
/* Room for n bytes quoted by tt_log_quote: every byte may become \xNN, plus the two quotes and NUL. */
#define TT_LOG_QUOTED_SIZE(n) (4 * (n) + 3)
/* Room for a tt_err message (or a libpq or curl error of that size) quoted by tt_log_quote. */
#define TT_LOG_QUOTED_MAX TT_LOG_QUOTED_SIZE(sizeof(((struct tt_err *)0)->msg))

/* ---- config.c: flags, environment and an optional `key = value` file share one key space. ----
 * Precedence: command-line flag > environment variable > config file > built-in default. An empty
 * value, from any of them, leaves the key unset (the next source, or the default, applies). */
enum tt_config_kind {
	TT_KEY_ONE,	  /* one value: the last line of the file wins */
	TT_KEY_REPEAT,	  /* the file's lines add up, one value per line, in order */
	TT_KEY_FLAG_ONLY, /* --help, --version: refused in the file */
};
struct tt_config_entry {
	const char *key;   /* flag name without dashes, also the config file key: "master-key-file" */
	const char *env;   /* environment variable or NULL: "TRACKTLS_MASTER_KEY_FILE" */
	const char *value; /* after tt_opts_resolve: the winning value or the default (may be NULL) */
	char *owned;	   /* storage owned by the config (file values, repeated flags); freed by tt_config_free */
	enum tt_config_kind kind;
	bool from_file; /* value came from the file, so a later line of it may replace or extend it */
};
/* Fills what neither a flag nor the environment set from the file's `key = value` lines. */
int tt_config_load_file(struct tt_config_entry *entries, size_t n, const char *path, struct tt_err *err);
/* Fills every entry not yet set (value == NULL) from its environment variable. */
void tt_config_apply_env(struct tt_config_entry *entries, size_t n);
void tt_config_free(struct tt_config_entry *entries, size_t n);
/* Parses "ADDR:PORT", ":PORT", "[v6]:PORT" into host (may become "" for any) and port. */
int tt_parse_hostport(const char *s, char *host, size_t hostsize, uint16_t *port, struct tt_err *err);
/* Parses "30", "30s", "500ms", "5m", "2h", "1d" into milliseconds. */
int tt_parse_duration_ms(const char *s, int64_t *out_ms, struct tt_err *err);

/* ---- options.c: one table per binary drives the parser, the defaults, the checks and --help. ----
 * A row per option; adding an option is adding a row:
 *   {"idle-timeout", "TRACKTLS_IDLE_TIMEOUT", TT_OPT_DURATION, "DURATION", "60s", TT_OPT_LIVE, "keep-alive"},
 * Values resolve flag > environment > --config file > default (tt_opts_parse_argv, tt_opts_resolve);
 * tt_opts_check then parses each by its type and holds it to its range, if the binary gave one
 * (tt_opts.ranges). Errors read "--flag: reason" (the binaries print them with tt_prog_fail after
 * "tracktls-terminator" or "tracktls-issuer" and exit 2). Switches take yes/no/true/false/on/off/1/0
 * and nothing else. */
enum tt_opt_type {
	TT_OPT_STRING,
	TT_OPT_PATH,
	TT_OPT_ADDR,	 /* ADDR:PORT, as tt_parse_hostport reads it */
	TT_OPT_INT,	 /* a non-negative integer */
	TT_OPT_SIZE,	 /* a non-negative integer with an optional K, M or G */
	TT_OPT_DURATION, /* as tt_parse_duration_ms reads it */
	TT_OPT_BOOL,	 /* --flag alone means yes; --flag=VALUE by the boolean rule */
	TT_OPT_ACTION,	 /* --help, --version: no value, no environment, no file */
};
#define TT_OPT_LIVE 1u	 /* SIGHUP applies a new value; without it a change needs a restart */
#define TT_OPT_REPEAT 2u /* may be given several times: the values are kept in order, one per line */
struct tt_opt {
	const char *key; /* flag name without dashes, also the --config file key */
	const char *env; /* environment variable or NULL */
	enum tt_opt_type type;
	const char *arg;  /* the value's name in --help ("DURATION"); NULL for switches and actions */
	const char *def;  /* default or NULL (unset) */
	unsigned flags;	  /* TT_OPT_LIVE, TT_OPT_REPEAT */
	const char *help; /* one line for --help */
};
/* The accepted values of a TT_OPT_INT or TT_OPT_DURATION (in ms) row; max 0 is no upper bound. */
struct tt_opt_range {
	const char *key;
	long long min, max;
};
struct tt_opts {
	const struct tt_opt *table;
	size_t n;
	struct tt_config_entry *v;	   /* one per row, in table order */
	const struct tt_opt_range *ranges; /* set after tt_opts_init, for tt_opts_check; NULL: none */
	size_t nranges;
};
int tt_opts_init(struct tt_opts *o, const struct tt_opt *table, size_t n, struct tt_err *err);
void tt_opts_free(struct tt_opts *o);
/* Reads argv[0..argc): flags (only those in allowed, a space-separated list; NULL: all) and up to
 * maxpos positional arguments into pos (their count into *npos). */
int tt_opts_parse_argv(struct tt_opts *o, int argc, char **argv, const char *allowed, char **pos, int maxpos, int *npos,
		       struct tt_err *err);
/* Fills what the flags left unset from the environment, then the file named by config_key, then
 * the defaults. */
int tt_opts_resolve(struct tt_opts *o, const char *config_key, struct tt_err *err);
/* Every set value of the rows in allowed (NULL: all) parses as its row's type, within its range. */
int tt_opts_check(const struct tt_opts *o, const char *allowed, struct tt_err *err);
const char *tt_opts_get(const struct tt_opts *o, const char *key);
bool tt_opts_bool(const struct tt_opts *o, const char *key);
int tt_opts_int(const struct tt_opts *o, const char *key, long *out, struct tt_err *err);
int tt_opts_size(const struct tt_opts *o, const char *key, size_t *out, struct tt_err *err);
int tt_opts_duration_ms(const struct tt_opts *o, const char *key, int64_t *out_ms, struct tt_err *err);
/* One line per row in allowed (NULL: all): flag, help, [default], (environment variable). */
void tt_opts_help(FILE *f, const struct tt_opt *table, size_t n, const char *allowed);
int tt_parse_bool(const char *s, bool *out, struct tt_err *err);
int tt_parse_size(const char *s, size_t *out, struct tt_err *err);

/* ---- name.c: tracking domain names. ----
 * tt_name_normalize: lowercase, strip one trailing dot, then validate as an LDH host name in
 * A-label form (no wildcard, no IP literal, labels 1-63, total <= 253). Writes into out. */
#define TT_NAME_MAX 254
int tt_name_normalize(const char *in, char out[TT_NAME_MAX], struct tt_err *err);
/* Names are chosen by clients, who must not be able to aim them at one bucket or filter bit: every
 * table keyed by name hashes with SipHash (libsodium's crypto_shorthash) under a random key of its
 * own, made at start-up. tt_name_hash2 gives two independent 64-bit hashes (SipHash-2-4 with
 * 128 bits out) for a Bloom filter's double hashing. */
#define TT_HASH_KEY_BYTES 16
struct tt_hash_key {
	unsigned char bytes[TT_HASH_KEY_BYTES];
};
int tt_hash_key_random(struct tt_hash_key *key, struct tt_err *err);
uint64_t tt_name_hash(const struct tt_hash_key *key, const char *name, size_t len);
void tt_name_hash2(const struct tt_hash_key *key, const char *name, size_t len, uint64_t out[2]);

/* ---- keyring.c: the master key ring and the AES-256-GCM key envelope (libsodium). ----
 * File format: one key per line, "ID HEX" with a 64-hex-digit key; '#' starts a comment.
 * The key with the highest id seals; every key opens. The file must be mode 0600 or stricter. */
#define TT_MASTER_KEY_BYTES 32
struct tt_keyring;
int tt_keyring_load(const char *path, struct tt_keyring **out, struct tt_err *err);
void tt_keyring_free(struct tt_keyring *kr);
uint32_t tt_keyring_newest_id(const struct tt_keyring *kr);
size_t tt_keyring_count(const struct tt_keyring *kr);
/* Rereads the file the ring was loaded from (SIGHUP) and changes the ring in place, safe while
 * other threads seal and open with it: keys new in the file become usable; keys gone from it are
 * dropped (wiped) only if check(arg, ids, n, err) returns 0 for them, i.e. nothing still needs
 * them; a key whose id is loaded with other bytes refuses the whole reload. On refusal the ring is
 * unchanged and err says why. change lists the ids added and dropped ("2,3"). The file must be
 * one this process can open, or the very file it read at load (rewritten in place). */
typedef int (*tt_keyring_drop_check)(void *arg, const uint32_t *ids, size_t n, struct tt_err *err);
struct tt_keyring_change {
	char added[128], dropped[128];
};
int tt_keyring_reload(struct tt_keyring *kr, tt_keyring_drop_check check, void *arg, struct tt_keyring_change *change,
		      struct tt_err *err);
/* Creates the file (0600) with key id 1, or appends a key with id newest+1; reports the new id. */
int tt_keyring_generate(const char *path, uint32_t *new_id, struct tt_err *err);

/* Envelope: version(1) | key id (4, big endian) | nonce (12) | ciphertext | tag (16).
 * The associated data binds the blob to its row: see tt_envelope_aad_cert. */
#define TT_ENVELOPE_OVERHEAD (1 + 4 + 12 + 16)
int tt_envelope_seal(const struct tt_keyring *kr, const void *aad, size_t aadlen, const void *plain, size_t plainlen,
		     uint8_t **out, size_t *outlen, struct tt_err *err);
/* On success *out is sodium_malloc'd (locked, guarded); release with tt_secret_free. */
int tt_envelope_open(const struct tt_keyring *kr, const void *aad, size_t aadlen, const uint8_t *blob, size_t bloblen,
		     uint8_t **out, size_t *outlen, struct tt_err *err);
/* The largest certificate chain or private key file `issuer cert import` reads, and so the
 * largest key a sealed blob can hold. */
#define TT_PEM_FILE_MAX ((size_t)1 << 20)
/* A locked, guarded buffer kept for many opens: sodium_malloc and sodium_free cost a mapping,
 * guard pages and mlock each (about 50 us together on our VMs), which a thread that opens a key
 * per cold name should not pay per name. One thread's own; starts empty ({0}) and grows to the
 * largest key opened, at most TT_PEM_FILE_MAX (a key shorter than the buffer is followed by the
 * rest of it, not by a guard page). */
#define TT_SECRET_BUF_MIN 4096
struct tt_secret_buf {
	uint8_t *p;
	size_t cap;
};
/* tt_envelope_open into buf->p (grown when the key is larger). The caller wipes the key with
 * tt_secret_buf_wipe once it is done with it; on failure nothing of it is left in buf. */
int tt_envelope_open_reuse(const struct tt_keyring *kr, const void *aad, size_t aadlen, const uint8_t *blob,
			   size_t bloblen, struct tt_secret_buf *buf, size_t *outlen, struct tt_err *err);
/* Zeroes the whole buffer: no length to get wrong, and 4 KiB costs next to nothing. */
void tt_secret_buf_wipe(struct tt_secret_buf *buf);
void tt_secret_buf_free(struct tt_secret_buf *buf);
/* The key id a blob was sealed under, or -1 if it is not an envelope. */
int64_t tt_envelope_key_id(const uint8_t *blob, size_t bloblen);
void tt_secret_free(void *p, size_t len);
/* Reads a whole small file (at most max bytes, not empty) NUL-terminated; secrets go to locked
 * memory (release with tt_secret_free), the rest to malloc. */
int tt_read_fd(int fd, const char *path, size_t max, bool secret, char **out, size_t *len, struct tt_err *err);
/* AAD strings, so both binaries agree on what a blob is bound to. */
size_t tt_envelope_aad_cert(char *buf, size_t size, const char *domain, int64_t cert_id);
size_t tt_envelope_aad_account(char *buf, size_t size, const char *directory_url);
size_t tt_envelope_aad_ticket(char *buf, size_t size, int64_t ticket_key_id);

/* ---- db.c: PostgreSQL. ---- */
/* A row id as a text query parameter; buf needs TT_DB_ID_TEXT bytes. Returns buf. */
#define TT_DB_ID_TEXT 24
const char *tt_db_id_text(char *buf, int64_t id);
/* Connects (blocking) with a libpq connection string; NULL or "" means libpq's PG* defaults. */
int tt_db_connect(const char *conninfo, PGconn **out, struct tt_err *err);
/* The same for a helper thread's long-lived connection: connecting is bounded (10 s) and a dead
 * server is noticed by TCP keepalives, so it cannot hold the thread (and its shutdown) for the
 * kernel's TCP timeouts. NULL on failure, with err. */
PGconn *tt_db_connect_bounded(const char *conninfo, struct tt_err *err);
/* Runs a command or query with text parameters; on success *res holds the result (caller PQclear). */
int tt_db_exec(PGconn *conn, PGresult **res, struct tt_err *err, const char *sql, int nparams,
	       const char *const *params);
/* Same, for statements whose result is not needed. */
int tt_db_run(PGconn *conn, struct tt_err *err, const char *sql, int nparams, const char *const *params);
int tt_db_begin(PGconn *conn, struct tt_err *err);
int tt_db_commit(PGconn *conn, struct tt_err *err);
/* Ends the transaction on a path that has already failed: its own error is of no interest. */
void tt_db_rollback(PGconn *conn);
/* Decodes a bytea column returned in text format (\x...) into a malloc'd buffer. */
int tt_db_bytea(const PGresult *res, int row, int col, uint8_t **out, size_t *outlen, struct tt_err *err);
/* Encodes bytes as a bytea text literal "\x..." (malloc'd) for a text parameter. */
char *tt_db_bytea_param(const uint8_t *data, size_t len);
/* A text[] parameter in PostgreSQL's array literal syntax, every element quoted (malloc'd). */
char *tt_db_text_array(const char *const *items, size_t n);

/* Channels the schema's triggers notify on; the payload is the domain name. */
#define TT_CHANNEL_CERT "tracktls_cert"
#define TT_CHANNEL_CHALLENGE "tracktls_challenge"
#define TT_CHANNEL_TICKET "tracktls_ticket_keys"

/* ---- db_migrate.c: versioned schema migrations, compiled in from schema/NNN_name.sql. ---- */
struct migration {
	int version;
	const char *name;
	const char *sql;
};
extern const struct migration tt_migrations[];
extern const int tt_migrations_count;
/* Applies the missing migrations, each in its own transaction, under an advisory lock.
 * Refuses a database whose schema is newer than this binary. *applied counts what ran. */
int tt_db_migrate(PGconn *conn, int *applied, struct tt_err *err);
/* The database's schema version (0 if none) and whether this binary can work with it. */
int tt_db_check_schema(PGconn *conn, int *version, struct tt_err *err);
int tt_schema_version_latest(void);

/* ---- pem.c ---- */
/* The next "BEGIN CERTIFICATE" .. "END CERTIFICATE" block at or after *pos (before stop): its
 * bounds in *block and *len, and *pos moved past it. False when there is none. */
bool tt_pem_next_cert(const char **pos, const char *stop, const char **block, size_t *len);

/* ---- clock.c ---- */
/* CLOCK_MONOTONIC, which every deadline is measured on. */
int64_t tt_now_us(void);
int64_t tt_now_ms(void);
/* Sleeps the whole time, resuming after signals. */
void tt_sleep_ms(int64_t ms);
/* The pace of a background job that competes with serving (a restart's warm-up): at most per_sec
 * units a second since tt_pace_start (0: no limit). The job calls tt_pace_rest_us after each step
 * with the units done so far, and rests that long. */
struct tt_pace {
	int64_t start_us;
	uint64_t per_sec;
};
void tt_pace_start(struct tt_pace *p, uint64_t per_sec);
int64_t tt_pace_rest_us(const struct tt_pace *p, uint64_t done);

/* ---- process.c ---- */
/* No core dumps and not dumpable: called first thing by both binaries, which hold clear keys. */
void tt_process_protect_secrets(void);

/* ---- ticket_keys.c: TLS session-ticket keys shared by the fleet, sealed in ticket_keys. ----
 * The issuer rotates them; every terminator loads all live keys, so a client resumes on any host.
 * A key encrypts new tickets from `start` until `encrypt_until`, and decrypts until `decrypt_until`.
 * New keys are created ahead of their start so every host has them before they are used. */
#define TT_TICKET_NAME_BYTES 16
#define TT_TICKET_SECRET_BYTES 32
struct tt_ticket_key {
	int64_t id;
	int64_t start, encrypt_until, decrypt_until; /* unix seconds */
	uint8_t name[TT_TICKET_NAME_BYTES];
	uint8_t secret[TT_TICKET_SECRET_BYTES];
};
struct tt_ticket_policy {
	int64_t rotate_s;   /* how long one key encrypts new tickets */
	int64_t lifetime_s; /* how long a ticket stays valid after it is issued */
	int64_t lead_s;	    /* how long before its start a key is created */
};
/* Creates the next key when the newest one ends within lead_s, deletes keys past decrypt_until. */
int tt_ticket_keys_rotate(PGconn *conn, const struct tt_keyring *kr, const struct tt_ticket_policy *policy,
			  int *created, int *retired, struct tt_err *err);
/* Loads and opens every key still valid for decryption, oldest first, into locked memory
 * (release with tt_ticket_keys_free). */
int tt_ticket_keys_load(PGconn *conn, const struct tt_keyring *kr, struct tt_ticket_key **keys, size_t *count,
			struct tt_err *err);
void tt_ticket_keys_free(struct tt_ticket_key *keys, size_t count);

#endif
