/* issuer: the whole map. A batch binary that cron starts: it takes its share of the due domains,
 * obtains or renews their certificates from an ACME CA, stores them sealed, and exits.
 *
 *   main.c        the option table (one row per flag; common/options.c parses it) and the
 *                 values' ranges, command dispatch, --help per command
 *   options.c     reading the resolved options; opening the database and the key ring
 *   cli_db.c      `db migrate`
 *   cli_keys.c    `keys generate`, `keys rotate` (re-seal under the newest master key)
 *   cli_domain.c  `domain add|remove|list|show`
 *   cli_cert.c    `cert import`, `cert import-batch`, `revoke`
 *   cli_account.c `account show|rollover`
 *   name_input.c  what an operator types -> normalized A-label name (libidn2, then
 *                 tt_name_normalize)
 *   certinfo.c    reads certificates with wolfSSL: serial, validity, SANs, key match
 *   chain.c       verifies a downloaded chain (signatures to a trusted root, dates, CSR key and
 *                 name) before acme.c hands it on to be stored
 *   keygen.c      fresh domain keys (P-256 or RSA-2048) and their CSRs, with wolfSSL
 *   keystore.c    the only module that sees the master key: seals and opens private keys
 *   store.c       domain and certificate rows: add, find, remove, list (domain_status), store a
 *                 certificate, record served; domain_events rows (store_event); for the run:
 *                 claim a due domain (the due_domains view), reschedule it, the preflight streak
 *   attempts.c    issuance_attempts rows: start one within the shared order budget, abandon or
 *                 fail it (the domain's failure count, backoff, paused/dormant); challenge rows
 *   jws.c         base64url, JWS ES256 with the account key, JWK thumbprint
 *   acme_parse.c  hand-written parsers of the CA's header values, dates and tokens (fuzzed)
 *   acme.c        RFC 8555 over libcurl: directory, nonces, account, orders, challenges,
 *                 finalize, download, revoke, keyChange, renewalInfo
 *   account.c     our ACME account per directory (struct ca_account, account_*): load the sealed
 *                 key, check the CA still has it, or register (once, under an advisory lock)
 *   cas.c         the run's CAs in order of preference (--directory repeated), down or paused
 *                 ones skipped: which CA a domain is ordered from
 *   peer_addr.c   which addresses a customer's DNS may send the issuer to (the self-check's
 *                 guard against private and loopback targets)
 *   run.c         the batch run: order workers claim due domains (store.c) and hold the row for
 *                 the whole order; the preflight (failures make a domain dormant after
 *                 --dormant-after), CAs tried in order of preference (by the acme_status class of
 *                 each failure), attempts (attempts.c), HTTP-01 publish + self-check, ARI at the
 *                 issuing CA, deadline, signals, summary, run_failed; --linger: LISTEN
 *                 tracktls_domain_event and wake the waiting workers when a domain becomes due.
 *                 It holds no SQL of its own but LISTEN
 *   served.c      https_ready: a TLS handshake with SNI through the edge, chain verified, serial
 *                 compared with the stored certificate; sweeps the stored-but-not-served ones
 *   events.c      `events [--since ID] [--follow]`: domain_events in id order, LISTEN across
 *                 reconnects; pruning after --events-retention
 *   metrics_file.c the Prometheus textfile written at the end of a run
 *   ticket_rotation.c the fleet's session-ticket keys: the next one created before the newest
 *                 ends, expired ones deleted; each run and `tickets rotate`
 *   dns.c         c-ares queries (A, AAAA with the CNAME chain, CAA), one resolver per thread
 *   caa.c         RFC 8659 CAA record sets and RFC 8657 parameters: may this CA issue? (fuzzed)
 *   preflight.c   before any order: does the name reach the edge, does CAA permit a CA of ours;
 *                 a reason code (dns_not_pointed, dns_stray_aaaa, caa_forbids_ca, dns_servfail)
 *                 and the record the customer must add or remove
 *   cli_check.c   `domain check`: the preflight on demand
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
#include <pthread.h>
#include <sys/socket.h>

#include "common.h"

#define ISSUER_DEFAULT_DIRECTORY "https://acme-v02.api.letsencrypt.org/directory"
#define ISSUER_DEFAULT_CAA_IDENTITY "letsencrypt.org"
/* --directory given at most this often */
#define ISSUER_MAX_CAS 8
/* Errors about the options and usage go to stderr after this (tt_prog_fail), exit 2. */
#define ISSUER_PROG "tracktls-issuer"
/* Orders in flight in one run: each is a thread with its own ACME connections per CA. */
#define RUN_MAX_CONCURRENCY 128
#define DAY_S 86400

/* ---- main.c, options.c ---- */
struct issuer_ctx {
	const struct tt_opts *opts; /* resolved and checked against the table in main.c */
	int argc;		    /* positional arguments after the command words */
	char **argv;
};
/* The resolved value of an option (flag, environment, --config file or the table's default), or
 * NULL; issuer_flag reads a switch by the one boolean rule. */
const char *issuer_opt(const struct issuer_ctx *ctx, const char *key);
bool issuer_flag(const struct issuer_ctx *ctx, const char *key);
/* Repeatable options (--directory and its per-directory companions): how many values were given,
 * and the i-th copied into buf (one value given serves every i; NULL when none or "-"). */
size_t issuer_opt_count(const struct issuer_ctx *ctx, const char *key);
const char *issuer_opt_item(const struct issuer_ctx *ctx, const char *key, size_t i, char *buf, size_t size);
/* Each per-directory option is given at most once, or once per --directory (a shorter list would
 * leave the last CAs without a value, silently). */
int issuer_check_per_directory(const struct issuer_ctx *ctx, struct tt_err *err);
/* A non-negative integer option (its default from the table when unset). */
int issuer_opt_int(const struct issuer_ctx *ctx, const char *key, long *out, struct tt_err *err);
int issuer_opt_duration_ms(const struct issuer_ctx *ctx, const char *key, int64_t *out_ms, struct tt_err *err);
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
/* The run_failed event of a run that cannot work (exit 2): reason options, dns, database, keyring or ca. */
void run_failed(const char *reason, const char *error);
int cli_tickets_rotate(struct issuer_ctx *ctx);
int cli_domain_check(struct issuer_ctx *ctx);

/* ---- ticket_rotation.c ---- */
/* Creates the next session-ticket key when the newest ends soon and deletes expired ones, by
 * --ticket-rotate and --ticket-lifetime (tt_ticket_keys_rotate; several hosts may run it at once). */
int ticket_keys_rotate(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct tt_err *err);

struct domain_row;
/* ---- cli_cert.c ---- */
/* Revokes the domain's current certificate at the CA and records it (also used by domain remove). */
int revoke_current(const struct issuer_ctx *ctx, PGconn *db, const struct domain_row *d, int reason,
		   struct tt_err *err);

/* ---- name_input.c ---- */
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

/* ---- chain.c ---- */
/* Debian's ca-certificates bundle: the roots a production chain must verify to. */
#define CHAIN_SYSTEM_STORE "/etc/ssl/certs/ca-certificates.crt"
/* 0 when the PEM chain (leaf first) verifies up to a root in trust_file (NULL: the system store),
 * every certificate on the path is valid at now, and the leaf carries the CSR's public key and
 * names exactly name; otherwise -1 and err says which check failed. */
int chain_verify(const char *trust_file, const char *chain_pem, size_t len, const char *name, const uint8_t *csr,
		 size_t csr_len, time_t now, struct tt_err *err);

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
/* Domains (or one; or those in a state) as a JSON array of domain_status rows: exactly the view's
 * columns. */
int store_domain_json(PGconn *db, const char *name, const char *state, json_t **out, struct tt_err *err);
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
	const char *directory; /* the ACME directory that issued it, NULL when imported */
};
/* Inside the caller's transaction: the certificate row (replacing the current one),
 * domains.current_cert_id/state/next_attempt_at, the attempt marked valid, the challenge rows gone. */
int store_cert_insert(PGconn *db, const struct cert_new *c, struct tt_err *err);
/* A due domain (the due_domains view, schema/006) as a run claims it. */
struct due_claim {
	int64_t id;
	char name[TT_NAME_MAX];
	int64_t current_cert_id; /* 0 when none */
	char profile[64];
	char ari_id[200];     /* the current certificate's ARI id, "" when none */
	char directory[1024]; /* the directory that issued it, "" when unknown */
	bool dormant;
};
/* Inside the caller's transaction: locks the next domain due by due_by (FOR NO KEY UPDATE SKIP
 * LOCKED), soonest first. 1 claimed, 0 none due, -1 error. */
int store_due_claim(PGconn *db, const char *due_by, struct due_claim *out, struct tt_err *err);
/* Inside the caller's transaction: locks the domain again. 1 held, 0 locked by another, -1 error. */
int store_domain_relock(PGconn *db, int64_t domain_id, struct tt_err *err);
/* The database's now() as text (a later due_by) and whether any domain is due (any may be NULL). */
int store_due_now(PGconn *db, char *now, size_t size, bool *any, struct tt_err *err);
/* Calls each for every due domain, soonest first (kind "new" or "renewal"); how many, or -1. */
int store_due_each(PGconn *db, void (*each)(const char *name, const char *kind, void *arg), void *arg,
		   struct tt_err *err);
/* Sets next_attempt_at to at (Unix time), or to the database's now() when at is 0. */
int store_domain_retry_at(PGconn *db, int64_t domain_id, time_t at, struct tt_err *err);
/* Keeps the profile an order was placed with, so renewals ask for it again. */
int store_domain_set_profile(PGconn *db, int64_t domain_id, const char *profile, struct tt_err *err);
/* A passed preflight ends the failing streak; a dormant domain returns to pending or active. */
int store_preflight_passed(PGconn *db, int64_t domain_id, struct tt_err *err);
/* Last in a transaction that recorded a failure: the failed event, then paused or (once per
 * certificate, when the renewal keeps failing under 7 days before expiry) expiring. */
int store_failure_events(PGconn *db, int64_t domain_id, struct tt_err *err);

/* ---- attempts.c ---- */
/* The window of the shared order budget (--order-budget new orders per window): Let's Encrypt
 * counts new orders per account over 3 hours. Hours for --help, seconds for the SQL and the log. */
#define ORDER_BUDGET_WINDOW_H 3
#define ORDER_BUDGET_WINDOW_S (ORDER_BUDGET_WINDOW_H * 3600)
/* On an autocommit connection: marks the domain's attempts left started by a killed run abandoned,
 * then, under an advisory lock shared by all runs, records a new attempt when it does not count
 * against the budget or fewer than budget counted ones started in the window, with the domain's
 * event (validating or renewing). 1 recorded (*attempt_id), 0 budget spent, -1 error. */
int attempt_start(PGconn *db, int64_t domain_id, const char *kind, bool counts, long budget, const char *event,
		  int64_t *attempt_id, struct tt_err *err);
int attempt_set_order_url(PGconn *db, int64_t attempt_id, const char *url, struct tt_err *err);
/* An order given up without judging the domain: the attempt abandoned, its challenges gone. */
int attempt_abandon(PGconn *db, int64_t attempt_id, int64_t domain_id, struct tt_err *err);
/* Makes token -> key authorization answerable by every terminator at once (autocommit). */
int attempt_challenge_publish(PGconn *db, int64_t domain_id, const char *token, const char *key_auth,
			      struct tt_err *err);
/* Deletes the challenges whose time is up (left by a killed run). */
int attempt_challenges_expire(PGconn *db, struct tt_err *err);
/* The wait after the failures-th failure in a row: 1 min, 10 min, 100 min, then a day. */
int64_t attempt_backoff_s(int failures);
struct attempt_failure {
	const char *type, *detail;
	const char *doc_json; /* the problem document, stored with the attempt */
	bool preflight;	      /* never pauses: a streak of dormant_after_s makes the domain dormant */
	long max_failures;
	int64_t dormant_after_s;
};
struct attempt_failed {
	int failures;
	bool paused, dormant;
	int64_t retry_in_s;
};
/* Inside the claim transaction: the domain's failure (count, error, paused or dormant), its next
 * attempt after the backoff (a dormant one's a day away), the attempt (0: none) failed with the
 * problem, its challenges gone, then the events (store_failure_events). */
int attempt_fail(PGconn *db, int64_t domain_id, int64_t attempt_id, const struct attempt_failure *f,
		 struct attempt_failed *out, struct tt_err *err);

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
/* What an ACME call came to. Callers switch on it: each class asks for different handling. */
enum acme_status {
	ACME_OK = 0,
	ACME_FAIL = -1,		/* the order failed for the domain's sake (or our checks refused): its failure */
	ACME_RATE_LIMITED = -2, /* 429, or 503 with Retry-After: put off, no failure counted */
	ACME_UNAVAILABLE = -3,	/* transport error, timeout, 5xx, an order the CA never finished: its trouble */
	ACME_ACCOUNT_GONE = -4, /* accountDoesNotExist: the next run registers again */
};
/* Problem types of ours for the CA's trouble (stored as the domain's last error; reason ca_unavailable). */
#define ACME_PROBLEM_TRANSPORT "transport"
#define ACME_PROBLEM_TIMEOUT "timeout"
/* The CA's validator did not decide the authorization before the poll limit: the domain's failure
 * (its host took the validator's connections and never answered, say). */
#define ACME_PROBLEM_AUTHZ_PENDING "urn:tracktls:authorizationPending"
/* Problem types of ours for what the CA sent and we refused (recorded on the domain). */
#define ACME_PROBLEM_BAD_TOKEN "urn:tracktls:caTokenRefused"
#define ACME_PROBLEM_BAD_URL "urn:tracktls:caUrlRefused"
#define ACME_PROBLEM_BAD_CHAIN "urn:tracktls:chainRefused"
/* Problem types of ours for our own trouble (reason internal): publishing the challenge to the
 * database failed, or a failure came without a problem document. */
#define ACME_PROBLEM_DATABASE "urn:tracktls:database"
#define ACME_PROBLEM_ERROR "urn:tracktls:error"
/* Our own GET of the challenge did not get the key authorization (reason dns_not_pointed). */
#define ACME_PROBLEM_SELF_CHECK_FAILED "urn:tracktls:selfCheckFailed"
/* The self-check's target is loopback, private or reserved (peer_addr.c) and --self-check-via is unset. */
#define ACME_PROBLEM_SELF_CHECK_REFUSED "urn:tracktls:selfCheckRefused"
/* An authorization or order may stay pending for this many --timeout before the poll gives up. */
#define POLL_LIMIT_TIMEOUTS 2
struct acme_config {
	const char *directory;
	const char *ca_file;
	const char *chain_ca_file; /* roots for downloaded chains (--chain-ca-file); NULL: the system store */
	long timeout_ms;	   /* every request */
	int64_t poll_limit_ms;	   /* how long one authorization or order may stay pending */
	const _Atomic int *cancel; /* when set non-zero, requests in flight are abandoned (may be NULL) */
};
struct acme_directory {
	char new_nonce[512], new_account[512], new_order[512], revoke_cert[512], key_change[512], renewal_info[512];
	bool eab_required;
	json_t *profiles; /* meta.profiles or NULL */
};
/* An RFC 7807 problem document. type: the CA's, one of ours (ACME_PROBLEM_*), or a bare word for
 * what in the CA's answer was unusable (http, authorization, unsupportedChallenge, malformedOrder,
 * orderNotReady, orderInvalid, badCertificate: reason internal). */
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
/* RFC 8555's error namespace; acme_error_is tells whether a problem type is exactly the error
 * named (a bare name such as "caa"): a type that only contains the name is another error. */
#define ACME_ERROR_NS "urn:ietf:params:acme:error:"
bool acme_error_is(const char *type, const char *name);
/* Replaces the problem (doc, when given, is taken over). */
void acme_problem_set(struct acme_problem *p, long status, const char *type, const char *detail, json_t *doc);
int acme_directory_fetch(struct acme_client *c, struct acme_directory *dir, struct tt_err *err);
void acme_directory_free(struct acme_directory *dir);
/* Seconds of the last response's Retry-After, or -1. */
int64_t acme_retry_after(const struct acme_client *c);
/* How many badNonce answers this client retried (each is logged as acme_bad_nonce_retry). */
long acme_bad_nonce_retries(const struct acme_client *c);
/* The calls below return an enum acme_status; prob says what the CA (or we) objected to. */
enum acme_status acme_get(struct acme_client *c, const char *url, json_t **out, struct acme_problem *prob,
			  struct tt_err *err);
enum acme_status acme_post(struct acme_client *c, const char *url, const char *payload, json_t **out,
			   struct acme_problem *prob, struct tt_err *err);
enum acme_status acme_account_register(struct acme_client *c, const char *contact, const char *eab_kid,
				       const char *eab_hmac, char *kid, size_t kid_size, struct acme_problem *prob,
				       struct tt_err *err);
/* newOrder -> http-01 -> finalize -> download -> chain_verify; *chain_pem is malloc'd. An
 * authorization still pending at the poll limit is ACME_FAIL (ACME_PROBLEM_AUTHZ_PENDING); an
 * order still processing is ACME_UNAVAILABLE. */
enum acme_status acme_order(struct acme_client *c, const struct acme_order_req *req, char **chain_pem,
			    struct acme_problem *prob, struct tt_err *err);
enum acme_status acme_revoke(struct acme_client *c, const char *chain_pem, int reason, struct acme_problem *prob,
			     struct tt_err *err);
/* ARI (RFC 9773): the CA's suggested renewal window for a certificate id. */
enum acme_status acme_renewal_info(struct acme_client *c, const char *ari_id, time_t *start, time_t *end,
				   struct acme_problem *prob, struct tt_err *err);
enum acme_status acme_key_change(struct acme_client *c, struct jws_key *new_key, struct acme_problem *prob,
				 struct tt_err *err);

/* ---- acme_parse.c ---- */
/* When line is header `name` (given with its colon, any case), copies its trimmed value. */
bool acme_header_value(const char *line, size_t len, const char *name, char *out, size_t size);
/* A day is the longest pause worth honouring in one run; a longer Retry-After is the same. */
#define ACME_RETRY_AFTER_MAX_S DAY_S
/* Seconds of a Retry-After value (delta-seconds or HTTP date), 0..ACME_RETRY_AFTER_MAX_S; -1 if
 * malformed. */
int64_t acme_parse_retry_after(const char *v);
int acme_parse_rfc3339(const char *s, time_t *out);
/* An HTTP-01 token is base64url (RFC 8555 8.1); more than this is not a token any CA sends. */
#define ACME_TOKEN_MAX 128
/* Whether token is [A-Za-z0-9_-]{1,ACME_TOKEN_MAX}: all that may reach a URL path and the database. */
bool acme_token_valid(const char *token);
/* 0 when url is https on the directory's origin (scheme, host and port; default port explicit or
 * not); otherwise -1 and why, in words for the log and the domain's error. */
int acme_url_check(const char *directory, const char *url, char *why, size_t why_size);

/* ---- account.c ---- */
/* What every thread needs to talk to the CA as our account. */
struct ca_account {
	size_t index; /* which --directory, 0 the preferred */
	char directory[1024], ca_file[1024], chain_ca_file[1024], eab_kid[256], eab_hmac[256];
	char caa_identity[TT_NAME_MAX]; /* --caa-identity for this directory */
	struct acme_config cfg;
	struct acme_directory dir;
	int64_t account_id;
	char kid[1024];
	uint8_t *key_pem; /* locked memory */
	size_t key_len;
};
/* The settings of the index-th --directory (its CA file, EAB, CAA identity), without contacting it. */
void account_settings(const struct issuer_ctx *ctx, size_t index, struct ca_account *s);
/* account_settings, then reads the directory and our account for it; with create, registers one
 * (once, under an advisory lock, with EAB when given or required) and stores its key sealed.
 * 1 = no account. */
int account_open(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, bool create, size_t index,
		 struct ca_account *s, struct tt_err *err);
void account_close(struct ca_account *s);
/* A client and key of the thread's own, logged in as the account. */
int account_client(const struct ca_account *s, struct acme_client **c, struct jws_key **k, struct tt_err *err);
/* account_open without registering, then account_client: for the commands that act as the
 * existing account (account show/rollover, revoke). directory: the configured --directory to use
 * (revoke: the one that issued the certificate), NULL or not configured: the first. Fails when
 * there is no account yet. */
int account_open_client(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, const char *directory,
			struct ca_account *s, struct acme_client **c, struct jws_key **k, struct tt_err *err);

/* ---- cas.c ---- */
struct ca_state {
	int failures_in_row;
	bool down;
	int64_t paused_until_ms; /* monotonic: a rate limit that outlasts the run's deadline */
};
struct cas {
	struct ca_account *s; /* one per --directory, preferred first */
	size_t n;
	pthread_mutex_t mu;
	struct ca_state st[ISSUER_MAX_CAS];
};
/* Opens every directory (account created when missing); one that cannot be read is down for the
 * run. Fails only when none can be used (err: the last reason). */
int cas_open(const struct issuer_ctx *ctx, PGconn *db, const struct tt_keyring *kr, struct cas *out,
	     struct tt_err *err);
void cas_close(struct cas *c);
/* The index of a directory URL, or -1 (not configured any more, or unknown). */
int cas_find(const struct cas *c, const char *directory);
bool cas_usable(struct cas *c, size_t i, int64_t now_ms);
/* The first usable CA from index `from` on whose CAA permits[i] is true, or -1. */
int cas_pick(struct cas *c, const bool *permits, size_t from, int64_t now_ms);
/* An order lost to the CA's trouble; true when every CA is now down. */
bool cas_failed(struct cas *c, size_t i);
void cas_answered(struct cas *c, size_t i);
void cas_pause(struct cas *c, size_t i, int64_t until_ms);

/* ---- peer_addr.c ---- */
/* Whether a connection to sa reaches the public internet: not loopback, private, carrier-grade
 * NAT, link-local, multicast, documentation or reserved, nor such an IPv4 address inside IPv6. */
bool peer_addr_public(const struct sockaddr *sa);
/* Makes every connection of h refuse a non-public address; the first refused one is kept. */
struct peer_guard {
	bool refused;
	char addr[64]; /* INET6_ADDRSTRLEN and then some */
};
void peer_guard_arm(CURL *h, struct peer_guard *g);
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

/* ---- metrics_file.c ---- */
/* Writes --metrics-file (if set) atomically: the run's counters, its exit status and the store's state. */
int metrics_write(const struct issuer_ctx *ctx, PGconn *db, long issued, long renewed, long failed, int status,
		  struct tt_err *err);

/* ---- caa.c ---- */
/* One CAA resource record; tag and value point into the DNS answer (not NUL-terminated). */
struct caa_record {
	bool critical;
	const char *tag;
	size_t tag_len;
	const char *value;
	size_t value_len;
};
/* Who asks to issue: the CA's CAA identity, our account URL there (NULL: none yet), the method. */
struct caa_issuer {
	const char *identity;
	const char *account_uri;
	const char *method; /* NULL: http-01 */
};
/* An issue/issuewild value: issuer-domain-name and the RFC 8657 parameters we honour. */
struct caa_issue {
	char domain[TT_NAME_MAX];
	bool has_accounturi, has_methods;
	char accounturi[1024];
	char methods[256];
};
/* 0 parsed, -1 malformed (a malformed issue property permits no CA). */
int caa_parse_issue(const char *v, size_t len, struct caa_issue *out);
bool caa_issue_permits(const struct caa_issue *is, const struct caa_issuer *who);
enum caa_verdict { CAA_PERMITS, CAA_FORBIDS };
/* The verdict of a relevant record set (non-empty) for a name; why says what decided. */
enum caa_verdict caa_evaluate(const struct caa_record *rs, size_t n, bool wildcard, const struct caa_issuer *who,
			      char *why, size_t whysize);

/* ---- dns.c ---- */
#define DNS_MAX_CHAIN 8
#define DNS_MAX_ADDRS 16
/* DNS_NODATA: no such records (or no such name); DNS_FAIL: SERVFAIL, refused, timeout. */
enum dns_status { DNS_OK, DNS_NODATA, DNS_FAIL };
struct dns_answer {
	char names[DNS_MAX_CHAIN][TT_NAME_MAX]; /* the CNAME chain: aliases, then the canonical name */
	size_t nnames;
	char addrs[DNS_MAX_ADDRS][46];
	size_t naddrs;
	char error[128];
};
struct dns_caa_set {
	struct caa_record *recs;
	size_t n;
	struct ares_caa_reply *raw;
	char error[128];
};
struct dns_resolver;
/* Once per process, before any thread. */
int dns_library_init(struct tt_err *err);
/* server: "ADDR:PORT" (or several, comma-separated), NULL for the system's resolvers. */
int dns_open(const char *server, int64_t timeout_ms, struct dns_resolver **out, struct tt_err *err);
void dns_close(struct dns_resolver *r);
/* family AF_INET (A) or AF_INET6 (AAAA). */
enum dns_status dns_addrs(struct dns_resolver *r, const char *name, int family, struct dns_answer *out);
enum dns_status dns_caa(struct dns_resolver *r, const char *name, struct dns_caa_set *out);
void dns_caa_free(struct dns_caa_set *s);

/* ---- preflight.c ---- */
#define PREFLIGHT_MAX_EDGE 16
/* One query's wait for an answer, all tries included. */
#define PREFLIGHT_DNS_TIMEOUT_MS 5000
struct edge_net {
	int family;
	uint8_t addr[16];
	int prefix;
};
/* --edge-cname, --edge-addrs, --dns-server. The preflight runs only when an edge is given. */
struct preflight_config {
	bool enabled;
	char cnames[PREFLIGHT_MAX_EDGE][TT_NAME_MAX];
	size_t ncnames;
	struct edge_net nets[PREFLIGHT_MAX_EDGE];
	size_t nnets;
	const char *dns_server;
	int64_t timeout_ms;
};
enum preflight_reason {
	PREFLIGHT_OK,
	PREFLIGHT_DNS_NOT_POINTED,
	PREFLIGHT_DNS_STRAY_AAAA,
	PREFLIGHT_CAA_FORBIDS_CA,
	PREFLIGHT_DNS_SERVFAIL,
};
struct preflight_verdict {
	enum preflight_reason reason;
	char detail[2048];	      /* the fix: the record to add or remove, and why */
	char caa_owner[TT_NAME_MAX];  /* where the relevant CAA set is, "" when there is none */
	bool permits[ISSUER_MAX_CAS]; /* per CA given: does CAA let it issue */
};
int preflight_config_load(const struct issuer_ctx *ctx, struct preflight_config *out, struct tt_err *err);
/* The stored reason code: "dns_not_pointed" ... ("ok" for PREFLIGHT_OK). */
const char *preflight_reason_code(enum preflight_reason r);
/* Pointing first, then CAA for each CA (cas in order of preference); v->reason is the verdict. */
enum preflight_reason preflight_check(struct dns_resolver *r, const struct preflight_config *c, const char *name,
				      const struct caa_issuer *cas, size_t ncas, struct preflight_verdict *v);

#endif
