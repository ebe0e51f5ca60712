/* run: one batch run. Worker threads (each with its own CA client and two database connections)
 * claim due domains with FOR NO KEY UPDATE SKIP LOCKED, keep the row locked for the whole order
 * so no other run orders it, and record the certificate or the failure before releasing it. */
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "issuer.h"

struct run {
	const struct issuer_ctx *ctx;
	const struct tt_keyring *kr;
	struct cas *cas;
	struct preflight_config preflight;
	int64_t dormant_after_s;
	enum key_type key_type;
	const char *profile;
	bool self_check;
	char via_host[256];
	uint16_t via_port;
	long max_orders, budget, max_failures;
	int64_t deadline_ms; /* monotonic; 0 = none */
	int64_t linger_ms;   /* monotonic end of lingering; 0 = exit when nothing is due */
	struct served_config served;

	pthread_mutex_t mu;
	pthread_cond_t wake; /* a lingering run found new work due */
	unsigned wake_gen;
	char started_at[64];	/* the database's now(): domains due by then are this pass's work */
	long orders;		/* orders started by this run */
	int64_t pause_until_ms; /* monotonic: a 429/503 Retry-After pauses new work */
	bool stop;		/* budget spent or a worker cannot run */
	bool fatal;
	_Atomic int cancel; /* fatal: requests in flight give up at once */
	char fatal_msg[600];
	long issued, renewed, failed, deferred, dormant;
	bool finished; /* workers joined: the signal thread may go */
	char *failed_names;
	size_t failed_len;
};

/* A 429 without a Retry-After pauses new work this long. */
#define RATE_LIMIT_PAUSE_S 60
/* A worker waiting out a pause looks again at least this often (a stop, the deadline). */
#define PAUSE_RECHECK_MS 1000
/* A lingering worker waiting for new work looks again at least this often. */
#define LINGER_RECHECK_S 1
/* Without a Retry-After, a certificate's renewalInfo is asked again after 12 hours (twice a day). */
#define ARI_RECHECK_S (12 * 3600)

struct order_worker {
	struct run *run;
	PGconn *lock; /* holds the claimed domain row in an open transaction */
	PGconn *aux;  /* autocommit: attempts, challenges (visible to terminators at once) */
	struct acme_client *acme[ISSUER_MAX_CAS]; /* per CA; NULL for one down from the start */
	struct jws_key *key[ISSUER_MAX_CAS];
	struct dns_resolver *dns; /* the preflight's, when it runs */
	CURL *check;
	/* the domain in hand */
	int64_t domain_id, attempt_id, current_cert_id;
	char name[TT_NAME_MAX];
	char profile[64];
	char ari_id[200];
	/* the certificate just stored, for the served check after commit */
	int64_t new_cert_id;
	char new_serial[130];
	/* why the CAs put the order in hand off (rate limit, outage); noted on the domain only once the
	 * claim is released, since the note's UPDATE on aux would wait for the row lock held on lock */
	char put_off_type[256];
	char put_off_detail[1024];
	int cert_ca; /* the CA that issued the current certificate, -1 unknown */
	int ca;	     /* the CA of the order in hand */
	bool dormant;
};

static void run_fatal(struct run *r, const char *msg)
{
	pthread_mutex_lock(&r->mu);
	if (!r->fatal)
		snprintf(r->fatal_msg, sizeof(r->fatal_msg), "%s", msg);
	r->fatal = r->stop = true;
	atomic_store(&r->cancel, 1);
	pthread_mutex_unlock(&r->mu);
}

/* 1 when the worker may take another domain (and reserves an order slot), 0 when it must stop. */
static int take_slot(struct run *r)
{
	for (;;) {
		pthread_mutex_lock(&r->mu);
		int64_t now = tt_now_ms();
		if (r->stop || (r->deadline_ms && now >= r->deadline_ms) ||
		    (r->max_orders && r->orders >= r->max_orders)) {
			pthread_mutex_unlock(&r->mu);
			return 0;
		}
		int64_t pause = r->pause_until_ms - now;
		if (pause <= 0) {
			r->orders++;
			pthread_mutex_unlock(&r->mu);
			return 1;
		}
		if (r->deadline_ms && r->pause_until_ms >= r->deadline_ms) {
			pthread_mutex_unlock(&r->mu);
			return 0;
		}
		pthread_mutex_unlock(&r->mu);
		tt_sleep_ms(pause > PAUSE_RECHECK_MS ? PAUSE_RECHECK_MS : pause);
	}
}

static void give_back_slot(struct run *r)
{
	pthread_mutex_lock(&r->mu);
	r->orders--;
	pthread_mutex_unlock(&r->mu);
}

static void count_result(struct run *r, long *counter, const char *failed_name)
{
	pthread_mutex_lock(&r->mu);
	(*counter)++;
	if (failed_name) {
		size_t add = strlen(failed_name) + 1;
		char *n = realloc(r->failed_names, r->failed_len + add + 1);
		if (n) {
			r->failed_names = n;
			snprintf(n + r->failed_len, add + 1, "%s%s", r->failed_len ? "," : "", failed_name);
			r->failed_len = strlen(n);
		}
	}
	pthread_mutex_unlock(&r->mu);
}

/* Claims the next due domain. 1 claimed (transaction open on w->lock), 0 none due, -1 error. */
static int claim(struct order_worker *w, struct tt_err *err)
{
	if (tt_db_begin(w->lock, err) < 0)
		return -1;
	char due_by[sizeof(w->run->started_at)];
	pthread_mutex_lock(&w->run->mu);
	memcpy(due_by, w->run->started_at, sizeof(due_by));
	pthread_mutex_unlock(&w->run->mu);
	struct due_claim d;
	int n = store_due_claim(w->lock, due_by, &d, err);
	if (n <= 0) {
		tt_db_rollback(w->lock);
		return n;
	}
	w->domain_id = d.id;
	snprintf(w->name, sizeof(w->name), "%s", d.name);
	w->current_cert_id = d.current_cert_id;
	snprintf(w->profile, sizeof(w->profile), "%s", d.profile);
	snprintf(w->ari_id, sizeof(w->ari_id), "%s", d.ari_id);
	w->cert_ca = cas_find(w->run->cas, d.directory);
	w->dormant = d.dormant;
	w->attempt_id = 0;
	return 1;
}

/* Records a new attempt if the shared order budget allows. 1 ok, 0 budget spent, -1 error. */
static int start_attempt(struct order_worker *w, const char *kind, bool counts, struct tt_err *err)
{
	return attempt_start(w->aux, w->domain_id, kind, counts, w->run->budget,
			     w->current_cert_id ? "renewing" : "validating", &w->attempt_id, err);
}

static void order_created(void *arg, const char *url)
{
	struct order_worker *w = arg;
	struct tt_err err;
	if (attempt_set_order_url(w->aux, w->attempt_id, url, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "attempt_update_failed", "name=%s error=%s", w->name,
		       tt_log_quote(q, sizeof(q), err.msg));
	}
}

/* Enough for a key authorization (token "." thumbprint); more is cut off and fails the check. */
#define SELF_CHECK_BODY_MAX 512
/* The self-check's GET: each try may take the timeout; a try that fails is repeated after a gap
 * that starts at the first and doubles (50 ms to 1.6 s: about 3 s for a terminator to see the
 * challenge row), and the check gives up after the last try. */
#define SELF_CHECK_TIMEOUT_MS 5000L
#define SELF_CHECK_FIRST_GAP_MS 50
#define SELF_CHECK_TRIES 6

static size_t collect(char *ptr, size_t size, size_t n, void *arg)
{
	char *buf = arg;
	size_t have = strlen(buf), add = size * n;
	size_t room = SELF_CHECK_BODY_MAX - 1 - have;
	memcpy(buf + have, ptr, add < room ? add : room);
	buf[have + (add < room ? add : room)] = 0;
	return add;
}

static int self_check_refused(const struct order_worker *w, const struct peer_guard *g, struct acme_problem *prob,
			      struct tt_err *err)
{
	char detail[700];
	snprintf(detail, sizeof(detail),
		 "self-check refused: %s resolves to %s, a loopback, private or reserved address (give "
		 "--self-check-via to check through the edge)",
		 w->name, g->addr);
	tt_log(TT_WARN, "self_check_refused", "name=%s addr=%s", w->name, g->addr);
	acme_problem_set(prob, 0, ACME_PROBLEM_SELF_CHECK_REFUSED, detail, NULL);
	return tt_fail(err, "%s", detail);
}

/* GETs our own port-80 answer for the token before the CA is asked to look. */
static int self_check(struct order_worker *w, const char *token, const char *key_auth, struct acme_problem *prob,
		      struct tt_err *err)
{
	struct run *r = w->run;
	char url[512], connect_to[600], body[SELF_CHECK_BODY_MAX];
	snprintf(url, sizeof(url), "http://%s/.well-known/acme-challenge/%s", w->name, token);
	struct curl_slist *ct = NULL;
	if (r->via_host[0]) {
		bool v6 = strchr(r->via_host, ':') != NULL;
		snprintf(connect_to, sizeof(connect_to), "%s:80:%s%s%s:%u", w->name, v6 ? "[" : "", r->via_host,
			 v6 ? "]" : "", r->via_port);
		ct = curl_slist_append(NULL, connect_to);
	}
	CURL *h = w->check;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, SELF_CHECK_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_CONNECT_TO, ct);
	/* Without --self-check-via the customer's DNS picks the target: never one inside our network. */
	struct peer_guard guard = {0};
	if (!r->via_host[0])
		peer_guard_arm(h, &guard);
	long status = 0;
	CURLcode cc = CURLE_OK;
	int64_t gap = SELF_CHECK_FIRST_GAP_MS;
	for (int attempt = 0; attempt < SELF_CHECK_TRIES; attempt++, gap *= 2) {
		body[0] = 0;
		status = 0;
		cc = curl_easy_perform(h);
		if (cc == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		size_t bl = strlen(body);
		while (bl && (body[bl - 1] == '\n' || body[bl - 1] == '\r' || body[bl - 1] == ' '))
			body[--bl] = 0;
		if ((cc == CURLE_OK && status == 200 && strcmp(body, key_auth) == 0) || guard.refused)
			break;
		tt_sleep_ms(gap);
	}
	curl_slist_free_all(ct);
	if (cc == CURLE_OK && status == 200 && strcmp(body, key_auth) == 0)
		return 0;
	char detail[700];
	if (cc != CURLE_OK && guard.refused)
		return self_check_refused(w, &guard, prob, err);
	if (cc != CURLE_OK)
		snprintf(detail, sizeof(detail), "self-check GET %s: %s", url, curl_easy_strerror(cc));
	else
		snprintf(detail, sizeof(detail), "self-check GET %s: HTTP %ld, %s", url, status,
			 status == 200 ? "wrong key authorization" : "not served");
	acme_problem_set(prob, 0, ACME_PROBLEM_SELF_CHECK_FAILED, detail, NULL);
	return tt_fail(err, "%s", detail);
}

static int publish(void *arg, const char *token, const char *key_auth, struct acme_problem *prob, struct tt_err *err)
{
	struct order_worker *w = arg;
	if (attempt_challenge_publish(w->aux, w->domain_id, token, key_auth, err) < 0) {
		acme_problem_set(prob, 0, ACME_PROBLEM_DATABASE, err->msg, NULL);
		return -1;
	}
	return w->run->self_check ? self_check(w, token, key_auth, prob, err) : 0;
}

/* Inside the claim transaction: problem on the domain and the attempt, backoff, maybe paused. A
 * preflight failure never pauses: its streak makes the domain dormant after --dormant-after. */
static int record_failure(struct order_worker *w, const struct acme_problem *prob, const char *msg, bool preflight,
			  struct tt_err *err)
{
	const char *type = prob->type[0] ? prob->type : ACME_PROBLEM_ERROR;
	const char *detail = prob->detail[0] ? prob->detail : msg;
	json_t *doc = prob->doc ? json_deep_copy(prob->doc) : json_object();
	if (!json_object_get(doc, "type"))
		json_object_set_new(doc, "type", json_string(type));
	if (!json_object_get(doc, "detail"))
		json_object_set_new(doc, "detail", json_string(detail));
	char *doc_s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	struct attempt_failure f = {
	    .type = type,
	    .detail = detail,
	    .doc_json = doc_s,
	    .preflight = preflight,
	    .max_failures = w->run->max_failures,
	    .dormant_after_s = w->run->dormant_after_s,
	};
	struct attempt_failed out;
	int rc = attempt_fail(w->lock, w->domain_id, w->attempt_id, &f, &out, err);
	free(doc_s);
	if (rc < 0)
		return -1;
	w->dormant = out.dormant;
	char q[TT_LOG_QUOTED_SIZE(sizeof(((struct acme_problem *)0)->type))];
	tt_log(TT_WARN, "order_failed", "name=%s failures=%d retry_in_s=%" PRId64 " paused=%d dormant=%d type=%s",
	       w->name, out.failures, out.retry_in_s, out.paused, out.dormant, tt_log_quote(q, sizeof(q), type));
	return 0;
}

/* Checks and stores what the CA sent, sealed, in the claim transaction. */
static int store_issued(struct order_worker *w, const char *chain, const uint8_t *key, size_t key_len, const char *kind,
			struct tt_err *err)
{
	struct certinfo ci;
	if (certinfo_parse(chain, strlen(chain), &ci, err) < 0)
		return tt_wrap(err, "downloaded chain");
	int rc = -1;
	uint8_t *sealed = NULL;
	size_t sealed_len = 0;
	if (!certinfo_covers(&ci, w->name)) {
		tt_fail(err, "the issued certificate does not cover %s", w->name);
		goto out;
	}
	if (certinfo_key_matches(chain, strlen(chain), key, key_len, err) < 0)
		goto out;
	int64_t id = store_cert_next_id(w->lock, err);
	if (id < 0 || keystore_seal_cert(w->run->kr, w->name, id, key, key_len, &sealed, &sealed_len, err) < 0)
		goto out;
	struct cert_new c = {
	    .id = id,
	    .domain_id = w->domain_id,
	    .chain_pem = chain,
	    .sealed_key = sealed,
	    .sealed_len = sealed_len,
	    .master_key_id = keystore_newest_id(w->run->kr),
	    .key_type = key_type_name(w->run->key_type),
	    .info = &ci,
	    .source = "acme",
	    .attempt_id = w->attempt_id,
	    .renew_at = certinfo_renew_at(ci.not_before, ci.not_after),
	    .directory = w->run->cas->s[w->ca].directory,
	};
	/* With ARI the CA may want it back early (revocation, incidents): ask within 12 hours. */
	time_t ari_check_at = time(NULL) + ARI_RECHECK_S;
	if (w->run->cas->s[w->ca].dir.renewal_info[0] && ci.ari_id[0] && ari_check_at < c.renew_at)
		c.renew_at = ari_check_at;
	rc = store_cert_insert(w->lock, &c, err);
	w->new_cert_id = id;
	snprintf(w->new_serial, sizeof(w->new_serial), "%s", ci.serial);
	if (rc == 0) {
		char qdir[TT_LOG_QUOTED_MAX];
		tt_log(TT_INFO, "cert_issued",
		       "name=%s kind=%s cert_id=%" PRId64 " serial=%s not_after=%lld directory=%s", w->name, kind, id,
		       ci.serial, (long long)ci.not_after, tt_log_quote(qdir, sizeof(qdir), c.directory));
	}
out:
	free(sealed);
	certinfo_free(&ci);
	return rc;
}

/* The profile to ask for: the domain's, else the run's, and only if the CA lists it. */
static const char *pick_profile(struct order_worker *w)
{
	const char *p = w->profile[0] ? w->profile : w->run->profile;
	if (!p)
		return NULL;
	if (!json_object_get(w->run->cas->s[w->ca].dir.profiles, p)) {
		tt_log(TT_DEBUG, "profile_not_offered", "name=%s profile=%s", w->name, p);
		return NULL;
	}
	return p;
}

/* An order given up without judging the domain (rate limit, CA trouble): attempt and challenges go;
 * the reason is shown (domain_status) but no failure is counted. */
static void abandon_attempt(struct order_worker *w, const struct acme_problem *prob)
{
	struct tt_err err;
	if (attempt_abandon(w->aux, w->attempt_id, w->domain_id, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "abandon_failed", "name=%s error=%s", w->name, tt_log_quote(q, sizeof(q), err.msg));
	}
	snprintf(w->put_off_type, sizeof(w->put_off_type), "%s", prob->type[0] ? prob->type : ACME_PROBLEM_TRANSPORT);
	snprintf(w->put_off_detail, sizeof(w->put_off_detail), "%s", prob->detail);
}

/* Once the claim is released: why the CAs put the domain off (a rate limit, an outage). */
static void note_put_off(struct order_worker *w)
{
	struct tt_err err = {{0}};
	if (w->put_off_type[0] &&
	    store_note_error(w->aux, w->domain_id, w->put_off_type, w->put_off_detail, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "abandon_failed", "name=%s error=%s", w->name, tt_log_quote(q, sizeof(q), err.msg));
	}
}

/* Re-takes the lock on the domain in hand after its transaction aborted. 1 held, 0 gone, -1 error. */
static int claim_again(struct order_worker *w, struct tt_err *err)
{
	if (tt_db_begin(w->lock, err) < 0)
		return -1;
	int n = store_domain_relock(w->lock, w->domain_id, err);
	if (n <= 0)
		tt_db_rollback(w->lock);
	return n;
}

/* Asks renewalInfo of the CA that issued the current certificate whether to renew now. 1 yes (with
 * replaces, to that CA only), 0 not yet (the domain is rescheduled inside the suggested window and
 * the claim committed), -1 no answer: renew as usual. */
static int ari_check(struct order_worker *w)
{
	time_t start, end;
	struct acme_problem prob = {0};
	struct tt_err err = {{0}};
	struct acme_client *ca = w->acme[w->cert_ca];
	int rc = acme_renewal_info(ca, w->ari_id, &start, &end, &prob, &err);
	acme_problem_clear(&prob);
	if (rc < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "ari_failed", "name=%s error=%s", w->name, tt_log_quote(q, sizeof(q), err.msg));
		return -1;
	}
	time_t now = time(NULL);
	if (now >= start)
		return 1;
	int64_t span = (int64_t)end - (int64_t)start;
	time_t at =
	    start + (span > 0 ? (time_t)randombytes_uniform(span > UINT32_MAX ? UINT32_MAX : (uint32_t)span) : 0);
	int64_t again = acme_retry_after(ca);
	time_t recheck = now + (again > 0 ? again : ARI_RECHECK_S);
	if (recheck < at)
		at = recheck;
	if (store_domain_retry_at(w->lock, w->domain_id, at, &err) < 0 || tt_db_commit(w->lock, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "ari_schedule_failed", "name=%s error=%s", w->name,
		       tt_log_quote(q, sizeof(q), err.msg));
		tt_db_rollback(w->lock);
		return 0;
	}
	tt_log(TT_INFO, "ari_scheduled", "name=%s window_start=%lld window_end=%lld next=%lld", w->name,
	       (long long)start, (long long)end, (long long)at);
	return 0;
}

/* Once right after storing, so a lingering run reports https_ready within the second; the
 * sweeps retry what the edge did not serve yet. */
static void check_served(struct order_worker *w)
{
	struct tt_err err = {{0}};
	int rc = served_check_and_record(w->aux, w->check, &w->run->served, w->domain_id, w->name, w->new_cert_id,
					 w->new_serial, &err);
	if (rc <= 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(rc < 0 ? TT_WARN : TT_INFO, "https_not_served", "name=%s error=%s", w->name,
		       tt_log_quote(q, sizeof(q), err.msg));
	}
}

/* Before any order: the DNS and CAA preflight. 1 passed (permits[i]: CAA lets CA i issue), 0 failed
 * and recorded (claim ended, nothing asked of a CA), -1 the database is gone. */
static int preflight(struct order_worker *w, bool *permits)
{
	struct run *r = w->run;
	for (size_t i = 0; i < ISSUER_MAX_CAS; i++)
		permits[i] = true;
	if (!r->preflight.enabled)
		return 1;
	struct caa_issuer who[ISSUER_MAX_CAS];
	for (size_t i = 0; i < r->cas->n; i++)
		who[i] = (struct caa_issuer){.identity = r->cas->s[i].caa_identity,
					     .account_uri = r->cas->s[i].kid[0] ? r->cas->s[i].kid : NULL};
	struct preflight_verdict v;
	struct tt_err err = {{0}};
	if (preflight_check(w->dns, &r->preflight, w->name, who, r->cas->n, &v) == PREFLIGHT_OK) {
		memcpy(permits, v.permits, sizeof(v.permits));
		/* the streak is over; a dormant domain is back to normal issuance */
		if (store_preflight_passed(w->lock, w->domain_id, &err) < 0) {
			tt_db_rollback(w->lock);
			return -1;
		}
		if (w->dormant)
			tt_log(TT_INFO, "dormant_returned", "name=%s", w->name);
		return 1;
	}
	const char *code = preflight_reason_code(v.reason);
	char q[sizeof(v.detail) + 64];
	tt_log(TT_INFO, "preflight_failed", "name=%s reason=%s fix=%s", w->name, code,
	       tt_log_quote(q, sizeof(q), v.detail));
	struct acme_problem prob = {0};
	acme_problem_set(&prob, 0, code, v.detail, NULL);
	w->attempt_id = 0;
	int rc = record_failure(w, &prob, v.detail, true, &err);
	acme_problem_clear(&prob);
	if (rc < 0 || tt_db_commit(w->lock, &err) < 0) {
		tt_log(TT_ERROR, "record_failure_failed", "name=%s error=%s", w->name,
		       tt_log_quote(q, sizeof(q), err.msg));
		tt_db_rollback(w->lock);
		return -1;
	}
	/* a dormant domain (still or newly) failing is the expected daily check, not a failure of the run */
	count_result(r, w->dormant ? &r->dormant : &r->failed, w->dormant ? NULL : w->name);
	return 0;
}

/* What became of one order at one CA. */
enum order_end {
	ORDER_STORED,	/* the certificate is stored and the claim committed */
	ORDER_NEXT_CA,	/* not the domain's fault: the next CA may take it (claim still held) */
	ORDER_DEFERRED, /* not the domain's fault, no CA to go to: claim released, due again */
	ORDER_FAILED,	/* the domain's fault: recorded with backoff, claim committed */
	ORDER_DB_GONE,
};

/* The CA refused the name itself (its policy, or its own CAA check): another CA may not. */
static bool refused_name(const struct acme_problem *prob)
{
	return acme_error_is(prob->type, "rejectedIdentifier") || acme_error_is(prob->type, "caa");
}

/* The domain's order at CA w->ca, from new attempt to stored certificate or recorded outcome. */
static enum order_end order_at(struct order_worker *w, const char *kind, const char *replaces, bool another_ca)
{
	struct run *r = w->run;
	struct tt_err err = {{0}};
	/* Only logged: the operator's URL, quoted once for every line below. */
	char qdir[TT_LOG_QUOTED_MAX];
	const char *directory = tt_log_quote(qdir, sizeof(qdir), r->cas->s[w->ca].directory);
	int s = start_attempt(w, kind, !replaces, &err);
	if (s <= 0) {
		tt_db_rollback(w->lock);
		if (s < 0)
			return ORDER_DB_GONE;
		tt_log(TT_WARN, "order_budget_spent", "budget=%ld window_s=%d", r->budget, ORDER_BUDGET_WINDOW_S);
		pthread_mutex_lock(&r->mu);
		r->stop = true;
		pthread_mutex_unlock(&r->mu);
		return ORDER_DEFERRED;
	}
	uint8_t *key = NULL, *csr = NULL;
	size_t key_len = 0, csr_len = 0;
	char *chain = NULL;
	struct acme_problem prob = {0};
	enum acme_status st = ACME_FAIL;
	if (keygen_domain(r->key_type, w->name, &key, &key_len, &csr, &csr_len, &err) == 0) {
		struct acme_order_req req = {
		    .name = w->name,
		    .profile = pick_profile(w),
		    .replaces = replaces,
		    .csr = csr,
		    .csr_len = csr_len,
		    .publish = publish,
		    .order_created = order_created,
		    .arg = w,
		};
		st = acme_order(w->acme[w->ca], &req, &chain, &prob, &err);
		if (st == ACME_OK && req.profile && !w->profile[0] &&
		    store_domain_set_profile(w->lock, w->domain_id, req.profile, &err) < 0)
			st = ACME_FAIL;
		if (st == ACME_OK && store_issued(w, chain, key, key_len, kind, &err) < 0)
			st = ACME_FAIL;
	}
	enum order_end end = ORDER_FAILED;
	int64_t now = tt_now_ms();
	char q[TT_LOG_QUOTED_MAX], qt[TT_LOG_QUOTED_MAX];
	switch (st) {
	case ACME_UNAVAILABLE:
	/* The account vanishing at the CA is not the domain's fault either; the next run re-registers. */
	case ACME_ACCOUNT_GONE:
		/* Not the domain's fault: no failure on its record; several in a row and the CA is down. */
		tt_log(TT_WARN, "ca_unavailable", "name=%s directory=%s error=%s", w->name, directory,
		       tt_log_quote(q, sizeof(q), err.msg));
		abandon_attempt(w, &prob);
		if (cas_failed(r->cas, (size_t)w->ca)) {
			char msg[sizeof(r->fatal_msg)];
			snprintf(msg, sizeof(msg), "the CA is not answering: %s", err.msg);
			run_fatal(r, msg);
			another_ca = false;
		}
		end = another_ca ? ORDER_NEXT_CA : ORDER_DEFERRED;
		break;
	case ACME_RATE_LIMITED: {
		int64_t ra = acme_retry_after(w->acme[w->ca]);
		int64_t pause = (ra > 0 ? ra : RATE_LIMIT_PAUSE_S) * 1000;
		tt_log(TT_WARN, "rate_limited", "name=%s directory=%s retry_after_s=%" PRId64 " type=%s", w->name,
		       directory, pause / 1000, tt_log_quote(qt, sizeof(qt), prob.type));
		abandon_attempt(w, &prob);
		if (another_ca && r->deadline_ms && now + pause >= r->deadline_ms) {
			/* the limit outlasts this run: the other CAs carry it */
			cas_pause(r->cas, (size_t)w->ca, now + pause);
			end = ORDER_NEXT_CA;
		} else {
			pthread_mutex_lock(&r->mu);
			if (r->pause_until_ms < now + pause)
				r->pause_until_ms = now + pause;
			pthread_mutex_unlock(&r->mu);
			end = ORDER_DEFERRED;
		}
		break;
	}
	case ACME_OK:
		cas_answered(r->cas, (size_t)w->ca);
		if (tt_db_commit(w->lock, &err) < 0) {
			tt_log(TT_ERROR, "store_failed", "name=%s error=%s", w->name,
			       tt_log_quote(q, sizeof(q), err.msg));
			end = ORDER_DB_GONE;
		} else {
			count_result(r, w->current_cert_id ? &r->renewed : &r->issued, NULL);
			check_served(w);
			end = ORDER_STORED;
		}
		break;
	case ACME_FAIL:
		cas_answered(r->cas, (size_t)w->ca);
		if (another_ca && refused_name(&prob) && PQtransactionStatus(w->lock) == PQTRANS_INTRANS) {
			tt_log(TT_WARN, "ca_refused", "name=%s directory=%s type=%s", w->name, directory,
			       tt_log_quote(qt, sizeof(qt), prob.type));
			abandon_attempt(w, &prob);
			end = ORDER_NEXT_CA;
			break;
		}
		char msg[sizeof(err.msg)];
		snprintf(msg, sizeof(msg), "%s", err.msg);
		tt_log(TT_INFO, "order_error", "name=%s type=%s error=%s", w->name,
		       tt_log_quote(qt, sizeof(qt), prob.type), tt_log_quote(q, sizeof(q), msg));
		if (PQstatus(w->lock) != CONNECTION_OK) {
			end = ORDER_DB_GONE;
		} else {
			/* a failed statement may have aborted the claim transaction: start a fresh one */
			PGTransactionStatusType ts = PQtransactionStatus(w->lock);
			struct tt_err e2 = {{0}};
			if (ts == PQTRANS_INERROR) {
				tt_db_rollback(w->lock);
				if (claim_again(w, &e2) <= 0) {
					end = ORDER_DB_GONE;
					goto done;
				}
			}
			if (record_failure(w, &prob, msg, false, &e2) < 0 || tt_db_commit(w->lock, &e2) < 0) {
				tt_log(TT_ERROR, "record_failure_failed", "name=%s error=%s", w->name,
				       tt_log_quote(q, sizeof(q), e2.msg));
				tt_db_rollback(w->lock);
				end = ORDER_DB_GONE;
			}
		}
		count_result(r, &r->failed, w->name);
		break;
	}
done:
	acme_problem_clear(&prob);
	if (key)
		tt_secret_free(key, key_len);
	free(csr);
	free(chain);
	return end;
}

/* One claimed domain from preflight to stored certificate (or recorded failure), trying the CAs in
 * order of preference. Ends the claim transaction. Returns -1 only when the database is gone. */
static int process(struct order_worker *w)
{
	struct run *r = w->run;
	bool permits[ISSUER_MAX_CAS];
	w->put_off_type[0] = 0;
	int pf = preflight(w, permits);
	if (pf <= 0) {
		give_back_slot(r);
		return pf;
	}
	const char *kind = w->current_cert_id ? "renewal" : "new";
	bool ari_due = false;
	if (w->current_cert_id && w->ari_id[0] && w->cert_ca >= 0 && w->acme[w->cert_ca] &&
	    r->cas->s[w->cert_ca].dir.renewal_info[0] && cas_usable(r->cas, (size_t)w->cert_ca, tt_now_ms())) {
		int a = ari_check(w);
		if (a == 0) {
			give_back_slot(r);
			return 0;
		}
		if (a < 0 && PQtransactionStatus(w->lock) != PQTRANS_INTRANS)
			return -1;
		ari_due = a == 1;
	}
	/* Renewals go back to the preferred CA as soon as it is usable: the list starts there each time. */
	int ca = cas_pick(r->cas, permits, 0, tt_now_ms());
	enum order_end end = ORDER_NEXT_CA;
	while (ca >= 0) {
		w->ca = ca;
		int next = cas_pick(r->cas, permits, (size_t)ca + 1, tt_now_ms());
		bool replaces = ari_due && ca == w->cert_ca;
		end = order_at(w, replaces ? "ari_renewal" : kind, replaces ? w->ari_id : NULL, next >= 0);
		if (end == ORDER_DB_GONE)
			return -1;
		if (end == ORDER_STORED || end == ORDER_FAILED)
			return 0;
		if (end == ORDER_DEFERRED)
			break;
		ca = cas_pick(r->cas, permits, (size_t)ca + 1, tt_now_ms());
	}
	give_back_slot(r);
	count_result(r, &r->deferred, NULL);
	if (end == ORDER_DEFERRED) {
		/* the domain stays due, for this run after a pause or for the next */
		if (PQtransactionStatus(w->lock) != PQTRANS_IDLE)
			tt_db_rollback(w->lock);
		note_put_off(w);
		return 0;
	}
	/* No CA its CAA permits can take it in this run (down, or paused past the deadline): due again
	 * for the next run, but not claimed over and over by this one. */
	struct tt_err err = {{0}};
	tt_log(TT_WARN, "no_ca_available", "name=%s", w->name);
	if (store_domain_retry_at(w->lock, w->domain_id, 0, &err) < 0 || tt_db_commit(w->lock, &err) < 0) {
		tt_db_rollback(w->lock);
		return PQstatus(w->lock) == CONNECTION_OK ? 0 : -1;
	}
	note_put_off(w);
	return 0;
}

/* Lingering: waits until the main thread sees new work due (true) or the run ends (false). */
static bool linger_wait(struct run *r, unsigned *seen)
{
	pthread_mutex_lock(&r->mu);
	while (!r->stop && r->wake_gen == *seen && r->linger_ms && tt_now_ms() < r->linger_ms) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += LINGER_RECHECK_S; /* re-checks stop and the end of lingering */
		pthread_cond_timedwait(&r->wake, &r->mu, &ts);
	}
	bool more = r->wake_gen != *seen && !r->stop;
	*seen = r->wake_gen;
	pthread_mutex_unlock(&r->mu);
	return more;
}

static void *worker_main(void *arg)
{
	struct order_worker *w = arg;
	struct run *r = w->run;
	struct tt_err err = {{0}};
	const char *conninfo = issuer_opt(r->ctx, "db");
	if (tt_db_connect(conninfo, &w->lock, &err) < 0 || tt_db_connect(conninfo, &w->aux, &err) < 0 ||
	    (r->preflight.enabled && dns_open(r->preflight.dns_server, r->preflight.timeout_ms, &w->dns, &err) < 0)) {
		run_fatal(r, err.msg);
		return NULL;
	}
	for (size_t i = 0; i < r->cas->n; i++)
		if (r->cas->s[i].key_pem && account_client(&r->cas->s[i], &w->acme[i], &w->key[i], &err) < 0) {
			run_fatal(r, err.msg);
			return NULL;
		}
	w->check = curl_easy_init();
	if (!w->check) {
		run_fatal(r, "curl_easy_init failed");
		return NULL;
	}
	pthread_mutex_lock(&r->mu);
	unsigned seen = r->wake_gen;
	pthread_mutex_unlock(&r->mu);
	while (take_slot(r)) {
		int c = claim(w, &err);
		if (c <= 0) {
			give_back_slot(r);
			if (c < 0) {
				run_fatal(r, err.msg);
				break;
			}
			if (linger_wait(r, &seen))
				continue;
			break;
		}
		if (process(w) < 0) {
			run_fatal(r, "lost the database connection");
			break;
		}
	}
	return NULL;
}

static void worker_free(struct order_worker *w)
{
	if (w->lock)
		PQfinish(w->lock);
	if (w->aux)
		PQfinish(w->aux);
	for (size_t i = 0; i < ISSUER_MAX_CAS; i++) {
		acme_client_free(w->acme[i]);
		jws_key_free(w->key[i]);
	}
	dns_close(w->dns);
	if (w->check)
		curl_easy_cleanup(w->check);
}

/* SIGTERM/SIGINT (cron, systemd, an operator) stop the run taking new work; orders in flight
 * finish and are recorded. The signals are blocked everywhere and taken here with sigwait. */
static void *signal_main(void *arg)
{
	struct run *r = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	for (;;) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			return NULL;
		pthread_mutex_lock(&r->mu);
		bool finished = r->finished;
		r->stop = true;
		pthread_mutex_unlock(&r->mu);
		if (finished)
			return NULL;
		tt_log(TT_WARN, "run_stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
	}
}

/* While lingering: the served check is retried this often, for this many domains at a time. */
#define SERVED_RECHECK_MS 2000
#define LINGER_SWEEP_LIMIT 20
/* At the end of a run. */
#define SWEEP_LIMIT 200

/* Wakes the waiting workers when some domain is due now. */
static void wake_if_due(struct run *r, PGconn *db)
{
	struct tt_err err = {{0}};
	char now[sizeof(r->started_at)];
	bool any;
	if (store_due_now(db, now, sizeof(now), &any, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "linger_query_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
		return;
	}
	if (any) {
		pthread_mutex_lock(&r->mu);
		memcpy(r->started_at, now, sizeof(now));
		r->wake_gen++;
		pthread_cond_broadcast(&r->wake);
		pthread_mutex_unlock(&r->mu);
	}
}

/* Waits up to ms for notifications: 1 some came, 0 none, -1 the connection is gone. */
static int wait_notified(PGconn *db, int64_t ms)
{
	struct pollfd pfd = {.fd = PQsocket(db), .events = POLLIN};
	if (pfd.fd < 0)
		return -1;
	if (poll(&pfd, 1, (int)ms) <= 0)
		return 0;
	if (!PQconsumeInput(db) || PQstatus(db) != CONNECTION_OK)
		return -1;
	int n = 0;
	PGnotify *note;
	while ((note = PQnotifies(db))) {
		PQfreemem(note);
		n++;
	}
	return n > 0;
}

/* After the due work: LISTEN for domain events and wake the workers as soon as one makes a domain
 * due (domain add or resume), until --linger ends; meanwhile retry the served check. The event
 * is only a hint: what is due is read from domains, so a lost notification costs one interval. */
static void linger(struct run *r, PGconn *db, CURL *tls)
{
	struct tt_err err = {{0}};
	bool listening = tt_db_run(db, &err, "LISTEN tracktls_domain_event", 0, NULL) == 0;
	int64_t next_sweep = 0;
	tt_log(TT_INFO, "lingering", "for_ms=%" PRId64 " listening=%d", r->linger_ms - tt_now_ms(), listening);
	for (;;) {
		pthread_mutex_lock(&r->mu);
		bool stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		int64_t now = tt_now_ms();
		if (stop || now >= r->linger_ms)
			break;
		int64_t wait = r->linger_ms - now;
		if (wait > next_sweep - now)
			wait = next_sweep - now > 0 ? next_sweep - now : 0;
		int n = listening ? wait_notified(db, wait) : 0;
		if (!listening || n < 0) {
			if (listening) {
				char q[TT_LOG_QUOTED_MAX];
				tt_log(TT_WARN, "linger_db_lost", "error=%s",
				       tt_log_quote(q, sizeof(q), PQerrorMessage(db)));
			}
			if (!listening)
				tt_sleep_ms(wait < SERVED_RECHECK_MS ? wait : SERVED_RECHECK_MS);
			PQreset(db);
			listening = PQstatus(db) == CONNECTION_OK &&
				    tt_db_run(db, &err, "LISTEN tracktls_domain_event", 0, NULL) == 0;
			n = 1; /* anything may have happened meanwhile */
		}
		bool sweep = tt_now_ms() >= next_sweep;
		if (n > 0 || sweep)
			wake_if_due(r, db);
		if (sweep) {
			if (served_sweep(db, tls, &r->served, LINGER_SWEEP_LIMIT, &err) < 0) {
				char q[TT_LOG_QUOTED_MAX];
				tt_log(TT_WARN, "served_sweep_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
			}
			next_sweep = tt_now_ms() + SERVED_RECHECK_MS;
		}
	}
	if (listening)
		tt_db_run(db, &err, "UNLISTEN *", 0, NULL);
}

static void print_due(const char *name, const char *kind, void *arg)
{
	printf("due %s %s\n", name, kind);
}

static int dry_run(PGconn *db)
{
	struct tt_err err = {{0}};
	int n = store_due_each(db, print_due, NULL, &err);
	if (n < 0) {
		fprintf(stderr, "issuer run: %s\n", err.msg);
		return 2;
	}
	tt_log(TT_INFO, "run_done", "dry_run=1 due=%d", n);
	return 0;
}

static int parse_run_opts(struct issuer_ctx *ctx, struct run *r, long *concurrency, struct tt_err *err)
{
	long deadline, linger;
	if (issuer_opt_int(ctx, "max-orders", &r->max_orders, err) < 0 ||
	    issuer_opt_int(ctx, "concurrency", concurrency, err) < 0 ||
	    issuer_opt_int(ctx, "deadline", &deadline, err) < 0 ||
	    issuer_opt_int(ctx, "order-budget", &r->budget, err) < 0 ||
	    issuer_opt_int(ctx, "max-failures", &r->max_failures, err) < 0 ||
	    issuer_opt_int(ctx, "linger", &linger, err) < 0 || served_config_parse(ctx, &r->served, err) < 0 ||
	    key_type_parse(issuer_opt(ctx, "key-type"), &r->key_type, err) < 0)
		return -1;
	int64_t now = tt_now_ms();
	r->deadline_ms = deadline ? now + deadline * TT_MS_PER_S : 0;
	/* Lingering ends at --linger, or earlier at --deadline: no new work is taken after either. */
	r->linger_ms = linger ? now + linger * TT_MS_PER_S : 0;
	if (r->linger_ms && r->deadline_ms && r->deadline_ms < r->linger_ms)
		r->linger_ms = r->deadline_ms;
	if (r->linger_ms && !r->deadline_ms)
		r->deadline_ms = r->linger_ms;
	int64_t dormant_ms;
	if (issuer_opt_duration_ms(ctx, "dormant-after", &dormant_ms, err) < 0 ||
	    issuer_check_per_directory(ctx, err) < 0)
		return -1;
	r->dormant_after_s = dormant_ms / TT_MS_PER_S;
	if (preflight_config_load(ctx, &r->preflight, err) < 0)
		return -1;
	r->profile = issuer_opt(ctx, "profile");
	r->self_check = !issuer_flag(ctx, "no-self-check");
	const char *via = issuer_opt(ctx, "self-check-via");
	if (via && tt_parse_hostport(via, r->via_host, sizeof(r->via_host), &r->via_port, err) < 0)
		return -1;
	if (via && !r->via_host[0])
		snprintf(r->via_host, sizeof(r->via_host), "127.0.0.1");
	return 0;
}

void run_failed(const char *reason, const char *error)
{
	char q[TT_LOG_QUOTED_MAX];
	tt_log(TT_ERROR, "run_failed", "reason=%s error=%s", reason, tt_log_quote(q, sizeof(q), error));
}

/* A run that cannot do its job says why on stderr and in its run_failed event. Returns 2. */
static int cannot_run(const char *reason, const char *prefix, const struct tt_err *err)
{
	fprintf(stderr, "issuer run: %s%s\n", prefix, err->msg);
	run_failed(reason, err->msg);
	return 2;
}

int run_main(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	struct run r = {.ctx = ctx};
	long concurrency;
	if (parse_run_opts(ctx, &r, &concurrency, &err) < 0) {
		run_failed("options", err.msg);
		return tt_prog_fail(ISSUER_PROG, &err, TT_EXIT_USAGE);
	}
	int64_t started = tt_now_ms();
	PGconn *db = NULL;
	struct tt_keyring *kr = NULL;
	struct cas cas = {0};
	int rc = 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (r.preflight.enabled && dns_library_init(&err) < 0) {
		curl_global_cleanup();
		return cannot_run("dns", "", &err);
	}
	if (issuer_db_open(ctx, &db, &err) < 0) {
		cannot_run("database", "cannot use the database: ", &err);
		goto out;
	}
	if (issuer_flag(ctx, "dry-run")) {
		rc = dry_run(db);
		goto out;
	}
	if (issuer_keyring_open(ctx, &kr, &err) < 0) {
		cannot_run("keyring", "", &err);
		goto out;
	}
	/* Before the CA is involved, so ticket keys keep rotating through a CA outage; a failure here
	 * leaves the current keys serving and does not stop the certificates' work. */
	if (ticket_keys_rotate(ctx, db, kr, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_ERROR, "ticket_keys_rotate_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
	}
	if (cas_open(ctx, db, kr, &cas, &err) != 0) {
		cannot_run("ca", "", &err);
		goto out;
	}
	if (store_due_now(db, r.started_at, sizeof(r.started_at), NULL, &err) < 0) {
		cannot_run("database", "", &err);
		goto out;
	}
	/* tokens left by a killed run are useless once expired */
	if (attempt_challenges_expire(db, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "challenge_cleanup_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
	}
	for (size_t i = 0; i < cas.n; i++)
		cas.s[i].cfg.cancel = &r.cancel;
	r.kr = kr;
	r.cas = &cas;
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.wake, NULL);
	if (events_prune(ctx, db, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "events_prune_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
	}
	CURL *tls = curl_easy_init();
	struct order_worker *ws = calloc((size_t)concurrency, sizeof(*ws));
	pthread_t *ts = calloc((size_t)concurrency, sizeof(*ts));
	long started_threads = 0;
	if (!ws || !ts || !tls) {
		fprintf(stderr, "issuer run: out of memory\n");
		free(ws);
		free(ts);
		if (tls)
			curl_easy_cleanup(tls);
		goto out;
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	pthread_t sig_thread;
	bool sig_started = pthread_create(&sig_thread, NULL, signal_main, &r) == 0;
	for (long i = 0; i < concurrency; i++) {
		ws[i].run = &r;
		if (pthread_create(&ts[i], NULL, worker_main, &ws[i]) != 0)
			break;
		started_threads++;
	}
	if (r.linger_ms)
		linger(&r, db, tls);
	pthread_mutex_lock(&r.mu);
	pthread_cond_broadcast(&r.wake);
	pthread_mutex_unlock(&r.mu);
	for (long i = 0; i < started_threads; i++)
		pthread_join(ts[i], NULL);
	if (sig_started) {
		pthread_mutex_lock(&r.mu);
		r.finished = true;
		pthread_mutex_unlock(&r.mu);
		pthread_kill(sig_thread, SIGTERM);
		pthread_join(sig_thread, NULL);
	}
	long bad_nonces = 0;
	for (long i = 0; i < concurrency; i++) {
		for (size_t k = 0; k < ISSUER_MAX_CAS; k++)
			if (ws[i].acme[k])
				bad_nonces += acme_bad_nonce_retries(ws[i].acme[k]);
		worker_free(&ws[i]);
	}
	free(ws);
	free(ts);
	pthread_cond_destroy(&r.wake);
	pthread_mutex_destroy(&r.mu);
	/* The retry of the served check for a run that does not linger (cron is its timer). */
	if (served_sweep(db, tls, &r.served, SWEEP_LIMIT, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "served_sweep_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
	}
	curl_easy_cleanup(tls);

	if (r.fatal)
		fprintf(stderr, "issuer run: %s\n", r.fatal_msg);
	rc = r.fatal ? 2 : r.failed ? 1 : 0;
	tt_log(rc ? TT_WARN : TT_INFO, "run_done",
	       "status=%d issued=%ld renewed=%ld failed=%ld deferred=%ld dormant=%ld orders=%ld bad_nonce_retries=%ld"
	       " elapsed_ms=%" PRId64 " failed_domains=%s",
	       rc, r.issued, r.renewed, r.failed, r.deferred, r.dormant, r.orders, bad_nonces, tt_now_ms() - started,
	       r.failed_names ? r.failed_names : "");
	free(r.failed_names);
out:
	/* Also after a key-ring or CA failure (status 2), for the alert; a run without the database
	 * writes nothing, and the file's age tells. */
	if (db && !issuer_flag(ctx, "dry-run"))
		metrics_write(ctx, db, r.issued, r.renewed, r.failed, rc, &err);
	cas_close(&cas);
	tt_keyring_free(kr);
	if (db)
		PQfinish(db);
	curl_global_cleanup();
	return rc;
}
