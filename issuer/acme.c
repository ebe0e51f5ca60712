/* acme: RFC 8555 over libcurl, one client per worker thread (its own easy handle, so connections
 * to the CA are reused). Handles nonces, badNonce retries, 5xx/timeout retries, Retry-After, and
 * drives one order from newOrder to the downloaded chain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdatomic.h>
#include <time.h>

#include <curl/curl.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include "issuer.h"

#define NONCE_RETRIES 20
#define TRANSIENT_RETRIES 3
/* Polling a pending authorization or order: gaps grow by half from the first to the largest; a
 * Retry-After is honoured up to its cap, and no gap is shorter than the smallest. */
#define POLL_FIRST_GAP_MS 50
#define POLL_MAX_GAP_MS 2000
#define POLL_MIN_GAP_MS 20
#define POLL_MAX_RETRY_AFTER_MS 10000
/* A connection to the CA is given at most this long (or --timeout, when shorter). */
#define CONNECT_TIMEOUT_MAX_MS 10000L
/* A transient failure is retried after 200 ms, then twice as long each time. */
#define TRANSIENT_FIRST_GAP_MS 200

struct acme_client {
	CURL *curl;
	const struct acme_config *cfg;
	const struct acme_directory *dir;
	struct jws_key *key;
	const char *kid;
	char nonce[256];
	/* the last response */
	long status;
	char *body;
	size_t len, cap;
	char location[1024];
	char resp_nonce[256];
	char retry_after[64];
	char content_type[128];
	bool timed_out, cancelled;
	long bad_nonce_retries; /* badNonce answers retried with the fresh nonce that came along */
	bool refused;		/* the last request's URL was not the CA's to give: no retry */
};

static size_t on_body(char *ptr, size_t size, size_t n, void *arg)
{
	struct acme_client *c = arg;
	size_t add = size * n;
	if (c->len + add + 1 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8192;
		while (cap < c->len + add + 1)
			cap *= 2;
		char *nb = realloc(c->body, cap);
		if (!nb)
			return 0;
		c->body = nb;
		c->cap = cap;
	}
	memcpy(c->body + c->len, ptr, add);
	c->len += add;
	c->body[c->len] = 0;
	return add;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
	struct acme_client *c = arg;
	size_t len = size * n;
	static const struct {
		const char *name;
		size_t off;
		size_t size;
	} hs[] = {
	    {"location:", offsetof(struct acme_client, location), sizeof(((struct acme_client *)0)->location)},
	    {"replay-nonce:", offsetof(struct acme_client, resp_nonce), sizeof(((struct acme_client *)0)->resp_nonce)},
	    {"retry-after:", offsetof(struct acme_client, retry_after), sizeof(((struct acme_client *)0)->retry_after)},
	    {"content-type:", offsetof(struct acme_client, content_type),
	     sizeof(((struct acme_client *)0)->content_type)},
	};
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		if (acme_header_value(line, len, hs[i].name, (char *)c + hs[i].off, hs[i].size))
			break;
	return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	const struct acme_client *c = arg;
	return c->cfg->cancel && atomic_load(c->cfg->cancel) ? 1 : 0;
}

int acme_client_new(const struct acme_config *cfg, struct acme_client **out, struct tt_err *err)
{
	struct acme_client *c = calloc(1, sizeof(*c));
	if (!c)
		return tt_fail(err, "out of memory");
	c->cfg = cfg;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return tt_fail(err, "curl_easy_init failed");
	}
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 cfg->timeout_ms < CONNECT_TIMEOUT_MAX_MS ? cfg->timeout_ms : CONNECT_TIMEOUT_MAX_MS);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "tracktls-issuer/" TT_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	if (cfg->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, cfg->ca_file);
	*out = c;
	return 0;
}

void acme_client_free(struct acme_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c->body);
	free(c);
}

void acme_client_set_account(struct acme_client *c, const struct acme_directory *dir, struct jws_key *key,
			     const char *kid)
{
	c->dir = dir;
	c->key = key;
	c->kid = kid;
}

void acme_problem_clear(struct acme_problem *p)
{
	json_decref(p->doc);
	memset(p, 0, sizeof(*p));
}

bool acme_error_is(const char *type, const char *name)
{
	size_t ns = strlen(ACME_ERROR_NS);
	return type && strncmp(type, ACME_ERROR_NS, ns) == 0 && strcmp(type + ns, name) == 0;
}

void acme_problem_set(struct acme_problem *p, long status, const char *type, const char *detail, json_t *doc)
{
	json_decref(p->doc);
	p->status = status;
	snprintf(p->type, sizeof(p->type), "%s", type ? type : "");
	snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
	p->doc = doc;
}

int64_t acme_retry_after(const struct acme_client *c)
{
	return acme_parse_retry_after(c->retry_after);
}

/* Whether url is https on the directory's origin; a refusal is logged and makes err say why. */
static int url_allowed(struct acme_client *c, const char *what, const char *url, struct tt_err *err)
{
	char why[700], q1[1100], q2[800];
	c->refused = acme_url_check(c->cfg->directory, url, why, sizeof(why)) < 0;
	if (!c->refused)
		return 0;
	tt_log(TT_WARN, "ca_url_refused", "what=%s url=%s reason=%s", what, tt_log_quote(q1, sizeof(q1), url),
	       tt_log_quote(q2, sizeof(q2), why));
	return tt_fail(err, "refused the CA's %s URL %s: %s", what, url, why);
}

/* Every request goes through here: none leaves the directory's origin, whatever the CA answered. */
static int perform(struct acme_client *c, const char *url, const char *post, struct curl_slist *hdrs, bool head,
		   struct tt_err *err)
{
	CURL *h = c->curl;
	if (url_allowed(c, "request", url, err) < 0)
		return -1;
	c->len = 0;
	if (c->body)
		c->body[0] = 0;
	c->location[0] = c->resp_nonce[0] = c->retry_after[0] = c->content_type[0] = 0;
	c->status = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	if (head) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (post) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(post));
	} else {
		curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	CURLcode rc = curl_easy_perform(h);
	c->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
	c->cancelled = rc == CURLE_ABORTED_BY_CALLBACK;
	if (rc != CURLE_OK)
		return tt_fail(err, "%s: %s", url,
			       c->cancelled ? "abandoned: the run is stopping" : curl_easy_strerror(rc));
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
	if (c->resp_nonce[0])
		snprintf(c->nonce, sizeof(c->nonce), "%s", c->resp_nonce);
	return 0;
}

/* After a failed or 5xx exchange: sleeps and returns true when another try is worth it; *left
 * counts the tries that remain (TRANSIENT_RETRIES at first). A request that waited out its whole
 * timeout is tried once more, not three times: a CA that stopped answering should cost minutes,
 * not tens of minutes. A cancelled run tries nothing. */
static bool retry_transient(const struct acme_client *c, int *left)
{
	if (c->cancelled || c->refused)
		*left = 0;
	else if (c->timed_out && *left > 1)
		*left = 1;
	if (*left <= 0)
		return false;
	(*left)--;
	tt_sleep_ms((int64_t)TRANSIENT_FIRST_GAP_MS << (TRANSIENT_RETRIES - *left - 1));
	return true;
}

static bool transient(long status)
{
	return status >= 500 || status == 0;
}

/* A request that got no usable answer: the CA's trouble, unless we refused its URL. */
static enum acme_status transport_failed(const struct acme_client *c, struct acme_problem *prob,
					 const struct tt_err *err)
{
	acme_problem_set(prob, c->status, c->refused ? ACME_PROBLEM_BAD_URL : ACME_PROBLEM_TRANSPORT, err->msg, NULL);
	return c->refused ? ACME_FAIL : ACME_UNAVAILABLE;
}

enum acme_status acme_get(struct acme_client *c, const char *url, json_t **out, struct acme_problem *prob,
			  struct tt_err *err)
{
	int rc, left = TRANSIENT_RETRIES;
	do
		rc = perform(c, url, NULL, NULL, false, err);
	while ((rc < 0 || transient(c->status)) && retry_transient(c, &left));
	if (rc < 0) {
		c->status = 0;
		return transport_failed(c, prob, err);
	}
	if (c->status >= 400) {
		acme_problem_set(prob, c->status, "http", c->body, NULL);
		tt_fail(err, "GET %s: HTTP %ld", url, c->status);
		return transient(c->status) ? ACME_UNAVAILABLE : ACME_FAIL;
	}
	json_error_t jerr;
	*out = json_loadb(c->body ? c->body : "", c->len, 0, &jerr);
	return *out ? ACME_OK : tt_fail(err, "GET %s: bad JSON: %s", url, jerr.text);
}

static void copy_url(char *dst, size_t size, json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	snprintf(dst, size, "%s", s ? s : "");
}

int acme_directory_fetch(struct acme_client *c, struct acme_directory *dir, struct tt_err *err)
{
	json_t *d;
	struct acme_problem prob = {0};
	int rc = acme_get(c, c->cfg->directory, &d, &prob, err);
	acme_problem_clear(&prob);
	if (rc < 0)
		return tt_wrap(err, "cannot read the ACME directory");
	memset(dir, 0, sizeof(*dir));
	copy_url(dir->new_nonce, sizeof(dir->new_nonce), d, "newNonce");
	copy_url(dir->new_account, sizeof(dir->new_account), d, "newAccount");
	copy_url(dir->new_order, sizeof(dir->new_order), d, "newOrder");
	copy_url(dir->revoke_cert, sizeof(dir->revoke_cert), d, "revokeCert");
	copy_url(dir->key_change, sizeof(dir->key_change), d, "keyChange");
	copy_url(dir->renewal_info, sizeof(dir->renewal_info), d, "renewalInfo");
	json_t *meta = json_object_get(d, "meta");
	dir->eab_required = json_is_true(json_object_get(meta, "externalAccountRequired"));
	json_t *profiles = json_object_get(meta, "profiles");
	if (json_is_object(profiles))
		dir->profiles = json_incref(profiles);
	json_decref(d);
	if (!dir->new_nonce[0] || !dir->new_account[0] || !dir->new_order[0])
		return tt_fail(err, "%s is not an ACME directory", c->cfg->directory);
	const struct {
		const char *name, *url;
	} entries[] = {{"newNonce", dir->new_nonce},   {"newAccount", dir->new_account},
		       {"newOrder", dir->new_order},   {"revokeCert", dir->revoke_cert},
		       {"keyChange", dir->key_change}, {"renewalInfo", dir->renewal_info}};
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++)
		if (entries[i].url[0] && url_allowed(c, entries[i].name, entries[i].url, err) < 0) {
			acme_directory_free(dir);
			return tt_wrap(err, "the ACME directory %s is unusable", c->cfg->directory);
		}
	return 0;
}

void acme_directory_free(struct acme_directory *dir)
{
	json_decref(dir->profiles);
	dir->profiles = NULL;
}

static int fresh_nonce(struct acme_client *c, struct tt_err *err)
{
	int rc, left = TRANSIENT_RETRIES;
	do
		rc = perform(c, c->dir->new_nonce, NULL, NULL, true, err);
	while (!(rc == 0 && c->resp_nonce[0]) && retry_transient(c, &left));
	if (rc < 0)
		return -1;
	return c->resp_nonce[0] ? 0 : tt_fail(err, "newNonce: HTTP %ld without a nonce", c->status);
}

/* Signs and POSTs; payload NULL means POST-as-GET. With jwk set the request carries the key
 * instead of the account URL (newAccount). */
static enum acme_status post_signed(struct acme_client *c, const char *url, const char *payload, bool jwk, json_t **out,
				    struct acme_problem *prob, struct tt_err *err)
{
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/jose+json");
	int transient_left = TRANSIENT_RETRIES, nonce_left = NONCE_RETRIES;
	enum acme_status rc = ACME_FAIL;
	if (out)
		*out = NULL;
	for (;;) {
		if (!c->nonce[0] && fresh_nonce(c, err) < 0) {
			rc = transport_failed(c, prob, err);
			break;
		}
		json_t *prot = json_object();
		json_object_set_new(prot, "nonce", json_string(c->nonce));
		json_object_set_new(prot, "url", json_string(url));
		if (jwk)
			json_object_set_new(prot, "jwk", jws_key_jwk(c->key));
		else
			json_object_set_new(prot, "kid", json_string(c->kid));
		c->nonce[0] = 0; /* a nonce is good for one request */
		json_t *jws = jws_sign(c->key, prot, payload ? payload : "", err);
		json_decref(prot);
		if (!jws)
			break;
		char *body = json_dumps(jws, JSON_COMPACT);
		json_decref(jws);
		if (!body) {
			tt_fail(err, "out of memory");
			break;
		}
		int prc = perform(c, url, body, hdrs, false, err);
		free(body);
		if (prc < 0 || transient(c->status)) {
			if (prc == 0 && c->status == 503 && acme_retry_after(c) >= 0) {
				acme_problem_set(prob, c->status, "rateLimited", "service unavailable, Retry-After",
						 NULL);
				rc = ACME_RATE_LIMITED;
				tt_fail(err, "%s: HTTP 503 with Retry-After %s", url, c->retry_after);
				break;
			}
			if (retry_transient(c, &transient_left))
				continue;
			if (prc == 0)
				tt_fail(err, "%s: HTTP %ld", url, c->status);
			rc = transport_failed(c, prob, err);
			break;
		}
		json_error_t jerr;
		bool is_json = strncasecmp(c->content_type, "application/", 12) == 0 && strstr(c->content_type, "json");
		json_t *doc = is_json && c->len ? json_loadb(c->body, c->len, 0, &jerr) : NULL;
		if (c->status >= 400) {
			const char *type = json_string_value(json_object_get(doc, "type"));
			const char *detail = json_string_value(json_object_get(doc, "detail"));
			if (acme_error_is(type, "badNonce") && nonce_left-- > 0) {
				json_decref(doc);
				c->bad_nonce_retries++;
				tt_log(TT_INFO, "acme_bad_nonce_retry", "url=%s retries_left=%d", url, nonce_left);
				continue; /* perform() kept the fresh nonce that came with the error */
			}
			acme_problem_set(prob, c->status, type ? type : "http", detail ? detail : c->body, doc);
			if (c->status == 429 || acme_error_is(type, "rateLimited"))
				rc = ACME_RATE_LIMITED;
			else if (acme_error_is(type, "accountDoesNotExist"))
				rc = ACME_ACCOUNT_GONE;
			tt_fail(err, "%s: HTTP %ld %s %s", url, c->status, type ? type : "", detail ? detail : "");
			break;
		}
		if (out)
			*out = doc;
		else
			json_decref(doc);
		rc = ACME_OK;
		break;
	}
	curl_slist_free_all(hdrs);
	return rc;
}

long acme_bad_nonce_retries(const struct acme_client *c)
{
	return c->bad_nonce_retries;
}

enum acme_status acme_post(struct acme_client *c, const char *url, const char *payload, json_t **out,
			   struct acme_problem *prob, struct tt_err *err)
{
	return post_signed(c, url, payload, false, out, prob, err);
}

enum acme_status acme_account_register(struct acme_client *c, const char *contact, const char *eab_kid,
				       const char *eab_hmac, char *kid, size_t kid_size, struct acme_problem *prob,
				       struct tt_err *err)
{
	if (c->dir->eab_required && (!eab_kid || !eab_hmac))
		return tt_fail(err, "the CA requires external account binding: give --eab-kid and --eab-hmac-key");
	json_t *payload = json_pack("{s:b}", "termsOfServiceAgreed", 1);
	if (contact) {
		char mailto[300];
		snprintf(mailto, sizeof(mailto), "mailto:%s", contact);
		json_object_set_new(payload, "contact", json_pack("[s]", mailto));
	}
	if (eab_kid && eab_hmac) {
		json_t *eab = jws_eab(eab_kid, eab_hmac, c->dir->new_account, c->key, err);
		if (!eab) {
			json_decref(payload);
			return -1;
		}
		json_object_set_new(payload, "externalAccountBinding", eab);
	}
	char *p = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	json_t *acct = NULL;
	enum acme_status rc = post_signed(c, c->dir->new_account, p, true, &acct, prob, err);
	free(p);
	const char *status = json_string_value(json_object_get(acct, "status"));
	if (rc == ACME_OK && (!c->location[0] || (status && strcmp(status, "valid") != 0))) {
		tt_fail(err, "newAccount: no account URL or status %s", status ? status : "?");
		rc = ACME_FAIL;
	}
	if (rc == ACME_OK && url_allowed(c, "account", c->location, err) < 0) {
		acme_problem_set(prob, 0, ACME_PROBLEM_BAD_URL, err->msg, NULL);
		rc = ACME_FAIL;
	}
	if (rc == ACME_OK)
		snprintf(kid, kid_size, "%s", c->location);
	json_decref(acct);
	return rc;
}

/* How an object still pending at the poll limit counts. */
enum poll_kind {
	POLL_AUTHZ, /* the validator could not decide: the domain's failure */
	POLL_ORDER, /* the CA did not finish its own work: the CA's trouble */
};

/* Polls url until its status leaves pending/processing, with growing gaps that honour Retry-After. */
static enum acme_status poll_status(struct acme_client *c, const char *url, enum poll_kind kind, json_t **out,
				    struct acme_problem *prob, struct tt_err *err)
{
	int64_t wait_ms = POLL_FIRST_GAP_MS, waited = 0, limit = c->cfg->poll_limit_ms;
	for (;;) {
		json_t *o;
		enum acme_status rc = acme_post(c, url, NULL, &o, prob, err);
		if (rc < 0)
			return rc;
		const char *status = json_string_value(json_object_get(o, "status"));
		if (!status || (strcmp(status, "pending") != 0 && strcmp(status, "processing") != 0)) {
			*out = o;
			return ACME_OK;
		}
		/* the status outlives the object: it is named in the error */
		char st[16];
		snprintf(st, sizeof(st), "%s", status);
		json_decref(o);
		if (waited >= limit) {
			if (kind == POLL_AUTHZ)
				acme_problem_set(prob, 0, ACME_PROBLEM_AUTHZ_PENDING,
						 "the CA's validator did not decide in time", NULL);
			else
				acme_problem_set(prob, 0, ACME_PROBLEM_TIMEOUT, "the CA did not finish in time", NULL);
			tt_fail(err, "%s still %s after %lld ms", url, st, (long long)waited);
			return kind == POLL_AUTHZ ? ACME_FAIL : ACME_UNAVAILABLE;
		}
		int64_t ra = acme_retry_after(c);
		int64_t sleep_ms =
		    ra >= 0 ? (ra * 1000 > POLL_MAX_RETRY_AFTER_MS ? POLL_MAX_RETRY_AFTER_MS : ra * 1000) : wait_ms;
		if (sleep_ms < POLL_MIN_GAP_MS)
			sleep_ms = POLL_MIN_GAP_MS;
		tt_sleep_ms(sleep_ms);
		waited += sleep_ms;
		wait_ms = wait_ms * 3 / 2 > POLL_MAX_GAP_MS ? POLL_MAX_GAP_MS : wait_ms * 3 / 2;
	}
}

static void problem_from(struct acme_problem *prob, json_t *doc, const char *fallback_type, const char *fallback)
{
	const char *type = json_string_value(json_object_get(doc, "type"));
	const char *detail = json_string_value(json_object_get(doc, "detail"));
	acme_problem_set(prob, 0, type ? type : fallback_type, detail ? detail : fallback,
			 doc ? json_incref(doc) : NULL);
}

/* Answers one authorization with HTTP-01 unless it is already valid. */
static enum acme_status authorize(struct acme_client *c, const char *authz_url, const struct acme_order_req *req,
				  struct acme_problem *prob, struct tt_err *err)
{
	json_t *authz;
	enum acme_status rc = acme_post(c, authz_url, NULL, &authz, prob, err);
	if (rc < 0)
		return rc;
	const char *st = json_string_value(json_object_get(authz, "status"));
	if (st && strcmp(st, "valid") == 0) {
		json_decref(authz);
		return ACME_OK;
	}
	if (!st || strcmp(st, "pending") != 0) {
		problem_from(prob, NULL, "authorization", "authorization is not pending");
		tt_fail(err, "authorization %s is %s", authz_url, st ? st : "?");
		json_decref(authz);
		return ACME_FAIL;
	}
	json_t *ch, *http01 = NULL, *chs = json_object_get(authz, "challenges");
	size_t i;
	for (i = 0; i < json_array_size(chs) && (ch = json_array_get(chs, i)); i++) {
		const char *t = json_string_value(json_object_get(ch, "type"));
		if (t && strcmp(t, "http-01") == 0)
			http01 = ch;
	}
	const char *token = json_string_value(json_object_get(http01, "token"));
	const char *ch_url = json_string_value(json_object_get(http01, "url"));
	if (!token || !ch_url) {
		problem_from(prob, NULL, "unsupportedChallenge", "the CA offers no usable http-01 challenge");
		json_decref(authz);
		return tt_fail(err, "no http-01 challenge for %s", req->name);
	}
	/* The token becomes a URL path on every terminator and a database key: only base64url passes. */
	if (!acme_token_valid(token)) {
		char q[300];
		tt_log(TT_WARN, "ca_token_refused", "name=%s length=%zu token=%s", req->name, strlen(token),
		       tt_log_quote(q, sizeof(q), token));
		problem_from(prob, NULL, ACME_PROBLEM_BAD_TOKEN, "the CA sent an http-01 token that is not base64url");
		json_decref(authz);
		return tt_fail(err, "refused the http-01 token for %s: not [A-Za-z0-9_-]{1,%d}", req->name,
			       ACME_TOKEN_MAX);
	}
	char keyauth[300];
	snprintf(keyauth, sizeof(keyauth), "%s.%s", token, jws_key_thumbprint(c->key));
	char ch_url_copy[1024];
	snprintf(ch_url_copy, sizeof(ch_url_copy), "%s", ch_url);
	char token_copy[256];
	snprintf(token_copy, sizeof(token_copy), "%s", token);
	json_decref(authz);
	if (req->publish(req->arg, token_copy, keyauth, prob, err) < 0)
		return ACME_FAIL;
	rc = acme_post(c, ch_url_copy, "{}", NULL, prob, err);
	if (rc < 0)
		return rc;
	rc = poll_status(c, authz_url, POLL_AUTHZ, &authz, prob, err);
	if (rc < 0)
		return rc;
	st = json_string_value(json_object_get(authz, "status"));
	if (!st || strcmp(st, "valid") != 0) {
		json_t *cerr = NULL;
		chs = json_object_get(authz, "challenges");
		for (i = 0; i < json_array_size(chs) && (ch = json_array_get(chs, i)); i++) {
			if (json_object_get(ch, "error"))
				cerr = json_object_get(ch, "error");
		}
		problem_from(prob, cerr, "authorization", "authorization failed");
		tt_fail(err, "authorization for %s is %s: %s", req->name, st ? st : "?", prob->detail);
		json_decref(authz);
		return ACME_FAIL;
	}
	json_decref(authz);
	return ACME_OK;
}

enum acme_status acme_order(struct acme_client *c, const struct acme_order_req *req, char **chain_pem,
			    struct acme_problem *prob, struct tt_err *err)
{
	*chain_pem = NULL;
	json_t *payload = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns", "value", req->name);
	if (req->profile)
		json_object_set_new(payload, "profile", json_string(req->profile));
	if (req->replaces)
		json_object_set_new(payload, "replaces", json_string(req->replaces));
	char *p = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	json_t *order = NULL;
	enum acme_status rc = acme_post(c, c->dir->new_order, p, &order, prob, err);
	free(p);
	if (rc < 0)
		return rc;
	char order_url[1024], finalize[1024], cert_url[1024];
	snprintf(order_url, sizeof(order_url), "%s", c->location);
	copy_url(finalize, sizeof(finalize), order, "finalize");
	if (!order_url[0] || !finalize[0]) {
		json_decref(order);
		problem_from(prob, NULL, "malformedOrder", "order without URL or finalize");
		return tt_fail(err, "newOrder for %s: no order URL or finalize URL", req->name);
	}
	if (url_allowed(c, "order", order_url, err) < 0) {
		json_decref(order);
		problem_from(prob, NULL, ACME_PROBLEM_BAD_URL, err->msg);
		return ACME_FAIL;
	}
	if (req->order_created)
		req->order_created(req->arg, order_url);
	json_t *authzs = json_incref(json_object_get(order, "authorizations"));
	json_decref(order);
	json_t *a;
	size_t i;
	for (i = 0; i < json_array_size(authzs) && (a = json_array_get(authzs, i)); i++) {
		const char *u = json_string_value(a);
		if (u && (rc = authorize(c, u, req, prob, err)) < 0)
			break;
	}
	json_decref(authzs);
	if (rc < 0)
		return rc;
	if ((rc = poll_status(c, order_url, POLL_ORDER, &order, prob, err)) < 0)
		return rc;
	const char *st = json_string_value(json_object_get(order, "status"));
	if (!st || strcmp(st, "ready") != 0) {
		problem_from(prob, json_object_get(order, "error"), "orderNotReady", "order is not ready");
		tt_fail(err, "order for %s is %s, not ready", req->name, st ? st : "?");
		json_decref(order);
		return ACME_FAIL;
	}
	json_decref(order);
	char *csr = b64url(req->csr, req->csr_len);
	json_t *fin = json_pack("{s:s}", "csr", csr ? csr : "");
	free(csr);
	p = json_dumps(fin, JSON_COMPACT);
	json_decref(fin);
	rc = acme_post(c, finalize, p, &order, prob, err);
	free(p);
	if (rc < 0)
		return rc;
	st = json_string_value(json_object_get(order, "status"));
	if (st && strcmp(st, "processing") == 0) {
		json_decref(order);
		if ((rc = poll_status(c, order_url, POLL_ORDER, &order, prob, err)) < 0)
			return rc;
		st = json_string_value(json_object_get(order, "status"));
	}
	copy_url(cert_url, sizeof(cert_url), order, "certificate");
	if (!st || strcmp(st, "valid") != 0 || !cert_url[0]) {
		problem_from(prob, json_object_get(order, "error"), "orderInvalid", "order did not become valid");
		tt_fail(err, "order for %s is %s after finalize", req->name, st ? st : "?");
		json_decref(order);
		return ACME_FAIL;
	}
	json_decref(order);
	if ((rc = acme_post(c, cert_url, NULL, NULL, prob, err)) < 0)
		return rc;
	if (!c->body || !strstr(c->body, "-----BEGIN CERTIFICATE-----")) {
		problem_from(prob, NULL, "badCertificate", "download is not a PEM chain");
		return tt_fail(err, "certificate download for %s is not PEM", req->name);
	}
	/* Nothing the CA sent is stored, nor served, before it verifies as what we ordered. */
	if (chain_verify(c->cfg->chain_ca_file, c->body, c->len, req->name, req->csr, req->csr_len, time(NULL), err) <
	    0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "chain_refused", "name=%s reason=%s", req->name, tt_log_quote(q, sizeof(q), err->msg));
		problem_from(prob, NULL, ACME_PROBLEM_BAD_CHAIN, err->msg);
		return tt_wrap(err, "refused the chain downloaded for %s", req->name);
	}
	*chain_pem = strdup(c->body);
	return *chain_pem ? ACME_OK : tt_fail(err, "out of memory");
}

enum acme_status acme_revoke(struct acme_client *c, const char *chain_pem, int reason, struct acme_problem *prob,
			     struct tt_err *err)
{
	if (!c->dir->revoke_cert[0])
		return tt_fail(err, "the directory has no revokeCert");
	uint8_t der[16384];
	int n = wc_CertPemToDer((const unsigned char *)chain_pem, (int)strlen(chain_pem), der, sizeof(der), CERT_TYPE);
	if (n <= 0)
		return tt_fail(err, "cannot read the certificate to revoke");
	char *b = b64url(der, (size_t)n);
	json_t *payload = json_pack("{s:s, s:i}", "certificate", b ? b : "", "reason", reason);
	free(b);
	char *p = json_dumps(payload, JSON_COMPACT);
	json_decref(payload);
	enum acme_status rc = acme_post(c, c->dir->revoke_cert, p, NULL, prob, err);
	free(p);
	return rc;
}

enum acme_status acme_key_change(struct acme_client *c, struct jws_key *new_key, struct acme_problem *prob,
				 struct tt_err *err)
{
	if (!c->dir->key_change[0])
		return tt_fail(err, "the directory has no keyChange");
	json_t *inner_prot = json_pack("{s:s, s:o}", "url", c->dir->key_change, "jwk", jws_key_jwk(new_key));
	json_t *inner_payload = json_pack("{s:s, s:o}", "account", c->kid, "oldKey", jws_key_jwk(c->key));
	char *ip = json_dumps(inner_payload, JSON_COMPACT);
	json_t *inner = ip ? jws_sign(new_key, inner_prot, ip, err) : NULL;
	free(ip);
	json_decref(inner_prot);
	json_decref(inner_payload);
	if (!inner)
		return -1;
	char *p = json_dumps(inner, JSON_COMPACT);
	json_decref(inner);
	enum acme_status rc = acme_post(c, c->dir->key_change, p, NULL, prob, err);
	free(p);
	return rc;
}

enum acme_status acme_renewal_info(struct acme_client *c, const char *ari_id, time_t *start, time_t *end,
				   struct acme_problem *prob, struct tt_err *err)
{
	if (!c->dir->renewal_info[0])
		return tt_fail(err, "the directory has no renewalInfo");
	char url[1024];
	snprintf(url, sizeof(url), "%s/%s", c->dir->renewal_info, ari_id);
	json_t *o;
	enum acme_status rc = acme_get(c, url, &o, prob, err);
	if (rc < 0)
		return rc;
	json_t *w = json_object_get(o, "suggestedWindow");
	if (acme_parse_rfc3339(json_string_value(json_object_get(w, "start")), start) < 0 ||
	    acme_parse_rfc3339(json_string_value(json_object_get(w, "end")), end) < 0 || *end < *start) {
		tt_fail(err, "renewalInfo for %s has no usable suggestedWindow", ari_id);
		rc = ACME_FAIL;
	}
	json_decref(o);
	return rc;
}
