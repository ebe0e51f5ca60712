/* issuer: the whole map. A batch binary that cron starts: it takes its share of the due domains,
 * obtains or renews their certificates from an ACME CA, stores them sealed, and exits.
 *
 *   main.c        command dispatch, flags + environment + config file, --help per command
 *   options.c     reading the resolved options; opening the database and the key ring
 *   cli_db.c      `db migrate`
 *   cli_keys.c    `keys generate`, `keys rotate` (re-seal under the newest master key)
 *   cli_domain.c  `domain add|remove|list|show`
 *   cli_cert.c    `cert import`, `cert import-batch`, `revoke`
 *   cli_account.c `account show|rollover`
 *   names.c       user input -> normalized A-label name (libidn2, then tt_name_normalize)
 *   certinfo.c    reads certificates with wolfSSL: serial, validity, SANs, key match
 *   keygen.c      fresh domain keys (P-256 or RSA-2048) and their CSRs, with wolfSSL
 *   keystore.c    the only module that sees the master key: seals and opens private keys
 *   store.c       domain and certificate rows: add, find, remove, list (domain_status), store a
 *                 certificate, record served; domain_events rows (store_event)
 *   jws.c         base64url, JWS ES256 with the account key, JWK thumbprint
 *   acme_parse.c  hand-written parsers of the CA's header values and dates (fuzzed)
 *   acme.c        RFC 8555 over libcurl: directory, nonces, account, orders, challenges,
 *                 finalize, download, revoke, keyChange, renewalInfo
 *   account.c     our ACME account per directory: load the sealed key, check the CA still has
 *                 it, or register (once, under an advisory lock)
 *   run.c         the batch run: workers claim due domains (FOR NO KEY UPDATE SKIP LOCKED) and
 *                 hold the row for the whole order; attempts and the shared order budget, HTTP-01
 *                 publish + self-check, failures with backoff, ARI, deadline, signals, summary;
 *                 --linger: LISTEN tracktls_domain_event and wake the waiting workers when a
 *                 domain becomes due; every change is recorded with its domain_events row
 *   served.c      https_ready: a TLS handshake with SNI through the edge, chain verified, serial
 *                 compared with the stored certificate; sweeps the stored-but-not-served ones
 *   events.c      `events [--since ID] [--follow]`: domain_events in id order, LISTEN across
 *                 reconnects; pruning after --events-retention
 *   metrics.c     the Prometheus textfile written at the end of a run
 *
 * How they talk: main.c resolves the configuration into a struct issuer_ctx and calls one cli_*
 * or run entry point. Protocol code (acme.c, run.c) never calls tt_envelope_*: it hands clear
 * keys to keystore.c and gets sealed blobs back, which store.c writes. Each run worker owns one
 * acme_client (its own curl handle and jws_key) and two PostgreSQL connections: one holds the
 * claimed domain's row lock in an open transaction, the other commits attempts and challenge
 * rows at once so every terminator can answer the CA. */
#ifndef TRACKTLS_ISSUER_H
#define TRACKTLS_ISSUER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "common.h"

#define ISSUER_DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"

/* ---- main.c, options.c ---- */
struct issuer_ctx {
	struct tt_config_entry *cfg;
	size_t ncfg;
	int argc; /* positional arguments after the command words */
	char **argv;
};
/* Prefixes err's message: "prefix: message". */
int err_wrap(struct tt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The resolved value of a configuration key, or NULL. */
const char *issuer_opt(const struct issuer_ctx *ctx, const char *key);
bool issuer_flag(const struct issuer_ctx *ctx, const char *key);
/* Parses a non-negative integer option (def when unset). */
int issuer_opt_int(const struct issuer_ctx *ctx, const char *key, long def, long *out, struct tt_err *err);
/* Connects to the database and refuses a schema this binary cannot work with. */
int issuer_db_open(const struct issuer_ctx *ctx, PGconn **out, struct tt_err *err);
int issuer_keyring_open(const struct issuer_ctx *ctx, struct tt_keyring **out, struct tt_err *err);

/* Command entry points: each returns the process exit status (0 ok, 1 some failed, 2 cannot run). */
int cli_db_migrate(struct issuer_ctx *ctx);
int cli_keys_generate(struct issuer_ctx *ctx);
int cli_keys_rotate(struct issuer_ctx *ctx);
int cli_domain_add(struct issuer_ctx *ctx);
int cli_domain_remove(struct issuer_ctx *ctx);
int cli_domain_list(struct issuer_ctx *ctx);
int cli_domain_show(struct issuer_ctx *ctx);
int cli_cert_import(struct issuer_ctx *ctx);
int cli_cert_import_batch(struct issuer_ctx *ctx);
int cli_revoke(struct issuer_ctx *ctx);
int cli_account_show(struct issuer_ctx *ctx);
int cli_account_rollover(struct issuer_ctx *ctx);
int run_main(struct issuer_ctx *ctx);
int cli_tickets_rotate(struct issuer_ctx *ctx);

/* ---- tickets.c ---- */
/* Creates the next session-ticket key when the newest ends soon and deletes expired ones, by
 * --ticket-rotate and --ticket-lifetime (tt_ticket_keys_rotate; several hosts may run it at once). */
int ticket_keys_rotate(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct tt_err *err);

struct domain_row;
/* ---- cli_cert.c ---- */
/* Revokes the domain's current certificate at the CA and records it (also used by domain remove). */
int revoke_current(const struct issuer_ctx *ctx, PGconn *db, const struct domain_row *d, int reason,
		   struct tt_err *err);

/* ---- names.c ---- */
/* Accepts a U-label or A-label name; writes the normalized A-label form. */
int name_to_ascii(const char *in, char out[TT_NAME_MAX], struct tt_err *err);

/* ---- certinfo.c ---- */
struct certinfo {
	char serial[130]; /* lowercase hex, no separators */
	char ari_id[200]; /* RFC 9773 certificate id, "" without an authority key id */
	time_t not_before, not_after;
	char **sans; /* DNS names, lowercase */
	size_t nsans;
};
/* Copies only the CERTIFICATE blocks of a PEM file (a combined cert+key file must never put its
 * key into certificates.chain_pem); *out is malloc'd. Fails when there is none. */
int certinfo_certs_only(const char *pem, size_t len, char **out, size_t *outlen, struct tt_err *err);
/* Parses the leaf (first certificate) of a PEM chain. */
int certinfo_parse(const char *chain_pem, size_t len, struct certinfo *out, struct tt_err *err);
void certinfo_free(struct certinfo *ci);
bool certinfo_covers(const struct certinfo *ci, const char *name);
/* 0 when the PEM private key is the key of the chain's leaf. */
int certinfo_key_matches(const char *chain_pem, size_t chain_len, const uint8_t *key_pem, size_t key_len,
			 struct tt_err *err);
/* A PEM private key's type as stored in certificates.key_type ("ecdsa-p256", "rsa-2048", ...). */
int certinfo_key_type(const uint8_t *key_pem, size_t key_len, char *out, size_t size, struct tt_err *err);
/* When to renew: a random point early in the last third of the lifetime (half under 10 days). */
time_t certinfo_renew_at(time_t not_before, time_t not_after);

/* ---- keygen.c ---- */
enum key_type { KEY_ECDSA_P256, KEY_RSA_2048 };
int key_type_parse(const char *s, enum key_type *out, struct tt_err *err);
const char *key_type_name(enum key_type t);
/* A fresh key (PEM, in locked memory: tt_secret_free) and a DER CSR for name (malloc'd). */
int keygen_domain(enum key_type type, const char *name, uint8_t **key_pem, size_t *key_len, uint8_t **csr,
		  size_t *csr_len, struct tt_err *err);
/* A fresh P-256 account key as PEM in locked memory. */
int keygen_account(uint8_t **key_pem, size_t *key_len, struct tt_err *err);

/* ---- keystore.c ---- */
int keystore_seal_cert(const struct tt_keyring *kr, const char *name, int64_t cert_id, const uint8_t *key,
		       size_t key_len, uint8_t **blob, size_t *blob_len, struct tt_err *err);
int keystore_seal_account(const struct tt_keyring *kr, const char *directory, const uint8_t *key, size_t key_len,
			  uint8_t **blob, size_t *blob_len, struct tt_err *err);
int keystore_open_account(const struct tt_keyring *kr, const char *directory, const uint8_t *blob, size_t blob_len,
			  uint8_t **key, size_t *key_len, struct tt_err *err);
/* Opens a blob and seals it again under the newest master key; the clear key never leaves here. */
enum keystore_kind { KEYSTORE_CERT, KEYSTORE_ACCOUNT, KEYSTORE_TICKET };
int keystore_reseal(const struct tt_keyring *kr, enum keystore_kind kind, const char *label, int64_t id,
		    const uint8_t *blob, size_t blob_len, uint8_t **out, size_t *out_len, struct tt_err *err);
uint32_t keystore_newest_id(const struct tt_keyring *kr);

/* ---- store.c ---- */
struct domain_row {
	int64_t id;
	char name[TT_NAME_MAX];
	char state[16];
	int64_t current_cert_id; /* 0 when none */
};
/* Inserts a pending domain; a removed or paused one comes back (due now, failures reset). */
enum domain_added { DOMAIN_ADDED, DOMAIN_EXISTS, DOMAIN_RESUMED };
int store_domain_add(PGconn *db, const char *name, const char *owner, const char *profile, int64_t *id,
		     enum domain_added *outcome, struct tt_err *err);
/* 1 found, 0 no such domain, -1 error. */
int store_domain_find(PGconn *db, const char *name, struct domain_row *out, struct tt_err *err);
/* Soft-deletes the domain and destroys its sealed keys. */
int store_domain_remove(PGconn *db, int64_t domain_id, struct tt_err *err);
/* Domains (or one) as a JSON array of domain_status rows: exactly the view's columns. */
int store_domain_json(PGconn *db, const char *name, json_t **out, struct tt_err *err);
/* Writes a domain_events row (tracktls_domain_event) in the caller's transaction, which must
 * commit right after: ids are drawn under a lock held until commit so they appear in order. */
int store_event(PGconn *db, int64_t domain_id, const char *kind, const char *detail, struct tt_err *err);
/* Records why an order was put off (rate limit, CA down) without counting a failure. */
int store_note_error(PGconn *db, int64_t domain_id, const char *type, const char *detail, struct tt_err *err);
/* The edge was seen serving cert_id: https_ready (first) or renewed, in one transaction.
 * 1 recorded, 0 nothing to record (already recorded, replaced, or the row is busy), -1 error. */
int store_served(PGconn *db, int64_t domain_id, int64_t cert_id, struct tt_err *err);
int64_t store_cert_next_id(PGconn *db, struct tt_err *err);
struct cert_new {
	int64_t id; /* from store_cert_next_id: the sealed key's AAD binds it */
	int64_t domain_id;
	const char *chain_pem;
	const uint8_t *sealed_key;
	size_t sealed_len;
	uint32_t master_key_id;
	const char *key_type;
	const struct certinfo *info;
	const char *source; /* "acme" or "import" */
	int64_t attempt_id; /* issuance_attempts row to mark valid, or 0 */
	time_t renew_at;
};
/* Inside the caller's transaction: the certificate row (replacing the current one),
 * domains.current_cert_id/state/next_attempt_at, the attempt marked valid, the challenge rows gone. */
int store_cert_insert(PGconn *db, const struct cert_new *c, struct tt_err *err);

/* ---- jws.c ---- */
struct jws_key;
char *b64url(const void *data, size_t len);
int b64url_decode(const char *s, uint8_t **out, size_t *len);
/* Loads a PEM P-256 private key; each thread loads its own (the key holds its RNG). */
int jws_key_load(const uint8_t *pem, size_t pem_len, struct jws_key **out, struct tt_err *err);
void jws_key_free(struct jws_key *k);
json_t *jws_key_jwk(const struct jws_key *k);
const char *jws_key_thumbprint(const struct jws_key *k);
/* Adds "alg" to protected and returns the flattened JWS {protected, payload, signature}. */
json_t *jws_sign(struct jws_key *k, json_t *protected, const char *payload, struct tt_err *err);
/* The externalAccountBinding object for newAccount (HS256 over the account JWK). */
json_t *jws_eab(const char *kid, const char *hmac_b64, const char *url, const struct jws_key *account,
		struct tt_err *err);

/* ---- acme.c ---- */
enum { ACME_OK = 0, ACME_FAIL = -1, ACME_RATE_LIMITED = -2 };
struct acme_config {
	const char *directory;
	const char *ca_file;
	long timeout_ms;	   /* every request */
	int64_t poll_limit_ms;	   /* how long one authorization or order may stay pending */
	const _Atomic int *cancel; /* when set non-zero, requests in flight are abandoned (may be NULL) */
};
struct acme_directory {
	char new_nonce[512], new_account[512], new_order[512], revoke_cert[512], key_change[512], renewal_info[512];
	bool eab_required;
	json_t *profiles; /* meta.profiles or NULL */
};
/* An RFC 7807 problem document from the CA, or one of ours (selfCheck, transport, timeout). */
struct acme_problem {
	long status;
	char type[256];
	char detail[1024];
	json_t *doc;
};
struct acme_order_req {
	const char *name;
	const char *profile;  /* or NULL */
	const char *replaces; /* ARI certificate id or NULL */
	const uint8_t *csr;
	size_t csr_len;
	/* Makes token -> key authorization answerable on port 80 (and self-checks it). */
	int (*publish)(void *arg, const char *token, const char *key_auth, struct acme_problem *prob,
		       struct tt_err *err);
	void (*order_created)(void *arg, const char *order_url);
	void *arg;
};
struct acme_client;
int acme_client_new(const struct acme_config *cfg, struct acme_client **out, struct tt_err *err);
void acme_client_free(struct acme_client *c);
void acme_client_set_account(struct acme_client *c, const struct acme_directory *dir, struct jws_key *key,
			     const char *kid);
void acme_problem_clear(struct acme_problem *p);
/* Replaces the problem (doc, when given, is taken over). */
void acme_problem_set(struct acme_problem *p, long status, const char *type, const char *detail, json_t *doc);
int acme_directory_fetch(struct acme_client *c, struct acme_directory *dir, struct tt_err *err);
void acme_directory_free(struct acme_directory *dir);
/* Seconds of the last response's Retry-After, or -1. */
int64_t acme_retry_after(const struct acme_client *c);
/* The calls below return ACME_OK, ACME_FAIL or ACME_RATE_LIMITED (429, or 503 with Retry-After). */
int acme_get(struct acme_client *c, const char *url, json_t **out, struct acme_problem *prob, struct tt_err *err);
int acme_post(struct acme_client *c, const char *url, const char *payload, json_t **out, struct acme_problem *prob,
	      struct tt_err *err);
int acme_account_register(struct acme_client *c, const char *contact, const char *eab_kid, const char *eab_hmac,
			  char *kid, size_t kid_size, struct acme_problem *prob, struct tt_err *err);
/* newOrder -> http-01 -> finalize -> download; *chain_pem is malloc'd. */
int acme_order(struct acme_client *c, const struct acme_order_req *req, char **chain_pem, struct acme_problem *prob,
	       struct tt_err *err);
int acme_revoke(struct acme_client *c, const char *chain_pem, int reason, struct acme_problem *prob,
		struct tt_err *err);
/* ARI (RFC 9773): the CA's suggested renewal window for a certificate id. */
int acme_renewal_info(struct acme_client *c, const char *ari_id, time_t *start, time_t *end, struct acme_problem *prob,
		      struct tt_err *err);
int acme_key_change(struct acme_client *c, struct jws_key *new_key, struct acme_problem *prob, struct tt_err *err);

/* ---- acme_parse.c ---- */
/* When line is header `name` (given with its colon, any case), copies its trimmed value. */
bool acme_header_value(const char *line, size_t len, const char *name, char *out, size_t size);
/* Seconds of a Retry-After value (delta-seconds or HTTP date), capped at a day; -1 if malformed. */
int64_t acme_parse_retry_after(const char *v);
int acme_parse_rfc3339(const char *s, time_t *out);

/* ---- account.c ---- */
/* What every thread needs to talk to the CA as our account. */
struct acme_session {
	struct acme_config cfg;
	struct acme_directory dir;
	int64_t account_id;
	char kid[1024];
	uint8_t *key_pem; /* locked memory */
	size_t key_len;
};
/* Reads the directory and our account for it; with create, registers one (once, under an
 * advisory lock, with EAB when given or required) and stores its key sealed. 1 = no account. */
int session_open(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, bool create,
		 struct acme_session *s, struct tt_err *err);
void session_close(struct acme_session *s);
/* A client and key of the thread's own, logged in as the session's account. */
int session_client(const struct acme_session *s, struct acme_client **c, struct jws_key **k, struct tt_err *err);
/* session_open without registering, then session_client: for the commands that act as the
 * existing account (account show/rollover, revoke). Fails when there is no account yet. */
int session_open_client(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct acme_session *s,
			struct acme_client **c, struct jws_key **k, struct tt_err *err);

/* ---- served.c ---- */
/* Where and how to check what the edge serves: --https-check-via, --https-check-ca-file. */
struct served_config {
	char via_host[256]; /* "" = the name itself, port 443 */
	uint16_t via_port;
	const char *ca_file; /* NULL = the system's trust */
};
int served_config_parse(const struct issuer_ctx *ctx, struct served_config *out, struct tt_err *err);
/* A TLS handshake with SNI name through the edge: 0 when the chain verifies and the leaf's serial
 * is serial, -1 (err says why) otherwise. */
int served_check(CURL *h, const struct served_config *cfg, const char *name, const char *serial, struct tt_err *err);
/* served_check, then store_served on success: 1 served and recorded, 0 not served (err says why), -1
 * database error. */
int served_check_and_record(PGconn *db, CURL *h, const struct served_config *cfg, int64_t domain_id, const char *name,
			    int64_t cert_id, const char *serial, struct tt_err *err);
/* Checks up to limit domains whose current certificate is not yet seen served, least recently
 * checked first. Returns how many are still not served, or -1. */
int served_sweep(PGconn *db, CURL *h, const struct served_config *cfg, long limit, struct tt_err *err);

/* ---- events.c ---- */
int cli_events(struct issuer_ctx *ctx);
/* Deletes events older than --events-retention (default 30 days). */
int events_prune(const struct issuer_ctx *ctx, PGconn *db, struct tt_err *err);

/* ---- metrics.c ---- */
/* Writes --metrics-file (if set) atomically: the run's counters and the store's state. */
int metrics_write(const struct issuer_ctx *ctx, PGconn *db, long issued, long renewed, long failed, struct tt_err *err);

#endif
