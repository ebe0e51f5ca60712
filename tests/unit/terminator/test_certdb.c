/* certdb against the real PostgreSQL: certificate and challenge lookups through the non-blocking
 * connection, negative answers, a tampered key, coalescing, cancel, NOTIFY on renewal, a killed
 * connection and the revalidation after it, batched loading against one query per name, and
 * databases that refuse or never answer. One test per behaviour, each with its own setup. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "terminator.h"
#include "testcert.h"

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long this thread has slept, in ns: elapsed time less the time it ran and the time it waited
 * for a CPU (/proc/thread-self/schedstat), so a machine busy with other work does not read as a
 * call that blocked. Without schedstat, elapsed time. */
static int64_t slept_ns(void)
{
	struct timespec ts;
	unsigned long long ran = 0, waited = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	FILE *f = fopen("/proc/thread-self/schedstat", "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &ran, &waited) != 2)
			ran = waited = 0;
		fclose(f);
	}
	return now - (int64_t)ran - (int64_t)waited;
}

/* The longest a certdb_process call slept (blocked), in ms. */
static int64_t slowest_process_ms;

/* What a loop does: poll the socket (or wait for the deadline), then certdb_process. */
static void drive(struct certdb *db, bool (*done)(void *), void *arg, int64_t max_ms)
{
	int64_t end = mono_ms() + max_ms;
	while (!done(arg) && mono_ms() < end) {
		int64_t now = mono_ms(), dl = certdb_next_deadline_ms(db);
		int64_t timeout = end - now;
		if (dl >= 0 && dl - now < timeout)
			timeout = dl > now ? dl - now : 0;
		struct pollfd p = {.fd = certdb_fd(db), .events = POLLIN};
		if (certdb_wants_write(db))
			p.events |= POLLOUT;
		poll(&p, p.fd >= 0 ? 1 : 0, (int)timeout);
		int64_t slept = slept_ns();
		certdb_process(db, mono_ms());
		slept = (slept_ns() - slept) / 1000000;
		if (slept > slowest_process_ms)
			slowest_process_ms = slept;
	}
}

struct answer {
	int calls;
	int status;
	struct cert_entry *entry;
	char key_auth[256];
};

static void on_cert(void *arg, int status, struct cert_entry *entry)
{
	struct answer *a = arg;
	a->calls++;
	a->status = status;
	if (a->entry)
		cert_entry_release(a->entry);
	a->entry = entry;
}

static void on_challenge(void *arg, int status, const char *key_auth)
{
	struct answer *a = arg;
	a->calls++;
	a->status = status;
	snprintf(a->key_auth, sizeof(a->key_auth), "%s", key_auth ? key_auth : "");
}

/* A callback that, like a connection closing another, cancels a second waiter. */
struct canceller {
	struct answer a;
	struct certdb *db;
	void *victim;
};

static void on_cert_cancel(void *arg, int status, struct cert_entry *entry)
{
	struct canceller *c = arg;
	on_cert(&c->a, status, entry);
	certdb_cancel(c->db, c->victim);
}

static bool answered(void *arg)
{
	return ((struct answer *)arg)->calls > 0;
}

static bool all_three_answered(void *arg)
{
	struct answer **a = arg;
	return a[0]->calls > 0 && a[1]->calls > 0 && a[2]->calls > 0;
}

static bool both_answered(void *arg)
{
	struct answer *a = arg;
	return a[0].calls > 0 && a[1].calls > 0;
}

static PGconn *pg;
static struct tt_keyring *kr;
static char *dir;

static int64_t sql_id(const char *sql, int n, const char *const *params)
{
	PGresult *res;
	struct tt_err err;
	if (tt_db_exec(pg, &res, &err, sql, n, params) < 0) {
		printf("sql failed: %s\n", err.msg);
		return -1;
	}
	int64_t id = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
	PQclear(res);
	return id;
}

/* Stores a fresh certificate for name (creating the domain) and makes it current. With tamper
 * set, the key is sealed for another row, so it cannot open under this one. */
static int64_t store_cert(const char *name, bool tamper)
{
	char *chain, idbuf[32], aad[512];
	uint8_t *key, *sealed;
	size_t chain_len, key_len, sealed_len, aad_len;
	struct tt_err err;
	if (testcert_make(dir, name, false, &chain, &chain_len, &key, &key_len) < 0)
		return -1;
	const char *p1[] = {name};
	int64_t domain = sql_id("INSERT INTO domains (name, state) VALUES ($1, 'active') "
				"ON CONFLICT (name) DO UPDATE SET state = 'active' RETURNING id",
				1, p1);
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)domain);
	const char *p2[] = {idbuf, chain};
	int64_t cert =
	    sql_id("INSERT INTO certificates (domain_id, chain_pem, master_key_id, serial, not_before, not_after) "
		   "VALUES ($1, $2, 1, '01', now(), now() + interval '1 day') RETURNING id",
		   2, p2);
	aad_len = tt_envelope_aad_cert(aad, sizeof(aad), name, tamper ? cert + 1000 : cert);
	if (tt_envelope_seal(kr, aad, aad_len, key, key_len, &sealed, &sealed_len, &err) < 0) {
		printf("seal: %s\n", err.msg);
		return -1;
	}
	char *blob = tt_db_bytea_param(sealed, sealed_len);
	char certbuf[32];
	snprintf(certbuf, sizeof(certbuf), "%lld", (long long)cert);
	const char *p3[] = {blob, certbuf};
	tt_db_run(pg, &err, "UPDATE certificates SET sealed_key = $1 WHERE id = $2", 2, p3);
	const char *p4[] = {certbuf, idbuf};
	tt_db_run(pg, &err, "UPDATE domains SET current_cert_id = $1 WHERE id = $2", 2, p4);
	free(blob);
	free(sealed);
	free(chain);
	free(key);
	return cert;
}

static bool stat_reached(void *arg)
{
	struct {
		struct certdb *db;
		uint64_t want;
	} *w = arg;
	struct certdb_stats st;
	certdb_stats(w->db, &st);
	return st.notifications >= w->want;
}

/* What each of the database tests below starts from: an empty cache and a certdb that listens,
 * with session tickets and a started challenge set, under an application_name the killed-connection
 * tests aim at. Each test makes its own rows first, so none depends on another having run. */
struct fixture {
	struct sni_cache *cache;
	struct tickets *tickets;
	struct challenge_set *chs;
	struct certdb *db;
};

#define FIXTURE_APP "certdb_test"

static bool fixture_start(const char *conninfo, struct fixture *f)
{
	struct sni_cache_limits lim = {0};
	struct tt_err err;
	char info[1024];

	memset(f, 0, sizeof(*f));
	slowest_process_ms = 0;
	snprintf(info, sizeof(info), "%s application_name=" FIXTURE_APP, conninfo);
	struct certdb_config cfg = {.conninfo = info, .keyring = kr, .query_timeout_ms = 3000, .listen = true};
	if (sni_cache_new(&lim, &f->cache, &err) < 0 || tickets_new(&f->tickets, &err) < 0 ||
	    challenge_set_new(&f->chs, &err) < 0 || challenge_set_start(f->chs, conninfo, 3000, &err) < 0) {
		printf("FAIL: fixture: %s\n", err.msg);
		return false;
	}
	cfg.cache = f->cache;
	cfg.tickets = f->tickets;
	cfg.challenges = f->chs;
	if (certdb_new(&cfg, &f->db, &err) < 0) {
		printf("FAIL: fixture: certdb_new: %s\n", err.msg);
		return false;
	}
	return true;
}

/* Every test also asserts that no certdb_process call blocked the thread meanwhile. */
static void fixture_stop(struct fixture *f, const char *test)
{
	struct certdb_stats st;
	char what[128];

	certdb_stats(f->db, &st);
	snprintf(what, sizeof(what), "%s: certdb_process never blocked the thread", test);
	CHECK(slowest_process_ms < 100, what);
	printf("# %s: queries=%llu errors=%llu timeouts=%llu notifications=%llu reconnects=%llu avg_query_us=%llu\n",
	       test, (unsigned long long)st.queries, (unsigned long long)st.query_errors,
	       (unsigned long long)st.query_timeouts, (unsigned long long)st.notifications,
	       (unsigned long long)st.reconnects,
	       (unsigned long long)(st.queries ? st.query_us_total / st.queries : 0));
	certdb_free(f->db);
	challenge_set_free(f->chs);
	sni_cache_free(f->cache);
	tickets_free(f->tickets);
}

/* Loads name and waits for the answer; the caller releases a->entry. */
static void load_and_wait(struct fixture *f, const char *name, struct answer *a)
{
	certdb_load_cert(f->db, name, on_cert, a);
	drive(f->db, answered, a, 5000);
}

/* Two misses for one name on one thread: one query, two answers, and a context ready to serve. */
static void test_load(const char *conninfo)
{
	struct fixture f;
	struct certdb_stats st;
	struct cert_entry *got;
	int64_t id = store_cert("load.example", false);
	if (!fixture_start(conninfo, &f))
		return;
	struct answer two[2] = {{0}};
	CHECK(certdb_load_cert(f.db, "load.example", on_cert, &two[0]) == 0 &&
		  certdb_load_cert(f.db, "load.example", on_cert, &two[1]) == 0,
	      "load: requests queued while connecting");
	CHECK(two[0].calls == 0, "load: callback never runs inside the request");
	drive(f.db, both_answered, two, 10000);
	certdb_stats(f.db, &st);
	CHECK(id > 0 && two[0].status == 0 && two[1].status == 0 && two[0].entry && two[0].entry == two[1].entry &&
		  cert_entry_cert_id(two[0].entry) == id,
	      "load: certificate found, both waiters get the entry");
	CHECK(st.queries == 1, "load: concurrent misses made one query");
	CHECK(sni_cache_lookup(f.cache, "load.example", &got) == SNI_HIT && got == two[0].entry, "load: entry cached");
	if (got)
		cert_entry_release(got);
	if (two[0].entry) {
		WOLFSSL *ssl = wolfSSL_new(cert_entry_ctx(two[0].entry));
		CHECK(ssl != NULL, "load: context ready for a session");
		CHECK(wolfSSL_CTX_get_TicketEncCtx(cert_entry_ctx(two[0].entry)) == f.tickets,
		      "load: session tickets attached to the context");
		wolfSSL_free(ssl);
		cert_entry_release(two[0].entry);
	}
	if (two[1].entry)
		cert_entry_release(two[1].entry);
	fixture_stop(&f, "load");
}

static void test_unknown(const char *conninfo)
{
	struct fixture f;
	struct cert_entry *got;
	if (!fixture_start(conninfo, &f))
		return;
	struct answer unknown = {0};
	load_and_wait(&f, "unknown.example", &unknown);
	CHECK(unknown.calls == 1 && unknown.status == 1 && !unknown.entry, "unknown: status 1");
	enum sni_result r = sni_cache_lookup(f.cache, "unknown.example", &got);
	CHECK(r == SNI_NEGATIVE, "unknown: negative-cached");
	if (r == SNI_HIT)
		cert_entry_release(got);
	if (unknown.entry)
		cert_entry_release(unknown.entry);
	fixture_stop(&f, "unknown");
}

static void test_tampered(const char *conninfo)
{
	struct fixture f;
	struct certdb_stats st;
	const char *pb[] = {"tampered.example"};
	const char *sealed = "SELECT count(*) FROM certificates c JOIN domains d ON d.id = c.domain_id "
			     "WHERE d.name = $1 AND c.sealed_key IS NOT NULL";
	store_cert("tampered.example", true);
	int64_t stored = sql_id(sealed, 1, pb);
	if (!fixture_start(conninfo, &f))
		return;
	struct answer bad = {0};
	load_and_wait(&f, "tampered.example", &bad);
	certdb_stats(f.db, &st);
	CHECK(bad.calls == 1 && bad.status == -1 && st.bad_certs == 1, "tampered: status -1 and counted");
	CHECK(stored >= 1 && sql_id(sealed, 1, pb) == stored, "tampered: nothing deleted");
	if (bad.entry)
		cert_entry_release(bad.entry);
	fixture_stop(&f, "tampered");
}

static void test_removed(const char *conninfo)
{
	struct fixture f;
	struct tt_err err;
	const char *pr[] = {"removed.example"};
	store_cert("removed.example", false);
	tt_db_run(pg, &err, "UPDATE domains SET state = 'removed' WHERE name = $1", 1, pr);
	if (!fixture_start(conninfo, &f))
		return;
	struct answer removed = {0};
	load_and_wait(&f, "removed.example", &removed);
	CHECK(removed.calls == 1 && removed.status == 1 && !removed.entry, "removed: a removed domain is not served");
	if (removed.entry)
		cert_entry_release(removed.entry);
	fixture_stop(&f, "removed");
}

/* The connection went away: its callback must never run. */
static void test_cancel(const char *conninfo)
{
	struct fixture f;
	if (!fixture_start(conninfo, &f))
		return;
	struct answer cancelled = {0}, after = {0};
	certdb_load_cert(f.db, "cancelled.example", on_cert, &cancelled);
	certdb_cancel(f.db, &cancelled);
	load_and_wait(&f, "after-cancel.example", &after);
	CHECK(after.calls == 1 && cancelled.calls == 0, "cancel: withdrawn callback never runs");
	fixture_stop(&f, "cancel");
}

/* Waits until the set is listening and has read the table; false after 5 s. */
static bool wait_trusted(struct challenge_set *chs)
{
	for (int i = 0; i < 500 && !challenge_set_trusted(chs); i++)
		usleep(10000);
	return challenge_set_trusted(chs);
}

/* Challenges are answered from the set (filled by its scan and NOTIFY), never a query here. */
static void test_challenge(const char *conninfo)
{
	struct fixture f;
	struct tt_err err;
	char ka[256];
	store_cert("challenge.example", false);
	tt_db_run(pg, &err, "DELETE FROM challenges", 0, NULL);
	if (!fixture_start(conninfo, &f))
		return;
	CHECK(wait_trusted(f.chs), "challenge set: trusted once listening and read");
	const char *pc[] = {"tok-valid", "tok-old"};
	tt_db_run(
	    pg, &err,
	    "INSERT INTO challenges (token, key_authorization, domain_id, expires_at) "
	    "SELECT $1, $1 || '.thumb', id, now() + interval '1 hour' FROM domains WHERE name = 'challenge.example' "
	    "UNION ALL SELECT $2, 'x', id, now() - interval '1 minute' FROM domains WHERE name = 'challenge.example'",
	    2, pc);
	/* both rows are notified; the set reads each one before it answers for it */
	for (int i = 0; i < 500 && (challenge_set_lookup(f.chs, "tok-valid", ka, sizeof ka) != CHALLENGE_FOUND ||
				    challenge_set_lookup(f.chs, "tok-old", ka, sizeof ka) == CHALLENGE_WAIT);
	     i++)
		usleep(10000);
	CHECK(challenge_set_size(f.chs) == 1, "challenge set: the notified token is held, the expired one not");
	struct answer ch = {0}, old = {0}, none = {0};
	certdb_get_challenge(f.db, "tok-valid", on_challenge, &ch);
	certdb_get_challenge(f.db, "tok-old", on_challenge, &old);
	certdb_get_challenge(f.db, "tok-none", on_challenge, &none);
	struct answer *three[] = {&ch, &old, &none};
	drive(f.db, all_three_answered, three, 5000);
	CHECK(ch.status == 0 && strcmp(ch.key_auth, "tok-valid.thumb") == 0, "challenge: key authorization served");
	CHECK(old.calls == 1 && old.status == 1 && none.calls == 1 && none.status == 1,
	      "challenge: expired and unknown tokens are unknown");
	tt_db_run(pg, &err, "DELETE FROM challenges WHERE token = 'tok-valid'", 0, NULL);
	for (int i = 0; i < 500 && challenge_set_lookup(f.chs, "tok-valid", ka, sizeof ka) != CHALLENGE_UNKNOWN; i++)
		usleep(10000);
	CHECK(challenge_set_size(f.chs) == 0, "challenge set: a deleted token leaves on its NOTIFY");
	fixture_stop(&f, "challenge");
}

/* Tokens nobody stored are refused from the set, later, without a query each. */
static void test_challenge_unknown(const char *conninfo)
{
	struct fixture f;
	struct certdb_stats st;
	if (!fixture_start(conninfo, &f))
		return;
	CHECK(wait_trusted(f.chs), "challenge unknown: set trusted");
	certdb_stats(f.db, &st);
	uint64_t queries_before = st.queries;
	struct answer rnd[200];
	memset(rnd, 0, sizeof rnd);
	for (int i = 0; i < 200; i++) {
		char tok[32];
		snprintf(tok, sizeof tok, "random-%d", i);
		certdb_get_challenge(f.db, tok, on_challenge, &rnd[i]);
	}
	CHECK(rnd[0].calls == 0, "challenge: never answered from inside the request call");
	drive(f.db, answered, &rnd[199], 5000);
	int n_unknown = 0;
	for (int i = 0; i < 200; i++)
		n_unknown += rnd[i].calls == 1 && rnd[i].status == 1;
	certdb_stats(f.db, &st);
	CHECK(n_unknown == 200 && st.queries == queries_before,
	      "challenge: 200 random tokens are unknown, no query made");
	fixture_stop(&f, "challenge_unknown");
}

/* Renewal: NOTIFY drops the old entry; the next lookup gets the new certificate, while a session
 * holding the old entry keeps it. */
static void test_notify(const char *conninfo)
{
	struct fixture f;
	struct certdb_stats st;
	struct cert_entry *got;
	int64_t first = store_cert("renewed.example", false);
	if (!fixture_start(conninfo, &f))
		return;
	struct answer held = {0};
	load_and_wait(&f, "renewed.example", &held);
	certdb_stats(f.db, &st);
	struct {
		struct certdb *db;
		uint64_t want;
	} w = {f.db, st.notifications + 1};
	int64_t renewed = store_cert("renewed.example", false);
	drive(f.db, stat_reached, &w, 5000);
	certdb_stats(f.db, &st);
	CHECK(held.status == 0 && st.notifications >= w.want, "notify: renewal notification received");
	enum sni_result r = sni_cache_lookup(f.cache, "renewed.example", &got);
	CHECK(r == SNI_MISS || (r == SNI_HIT && cert_entry_cert_id(got) == renewed),
	      "notify: the old certificate is no longer served");
	if (r == SNI_HIT)
		cert_entry_release(got);
	struct answer fresh = {0};
	if (sni_cache_lookup(f.cache, "renewed.example", &fresh.entry) == SNI_HIT)
		fresh.calls = 1;
	else
		certdb_load_cert(f.db, "renewed.example", on_cert, &fresh);
	drive(f.db, answered, &fresh, 5000);
	CHECK(fresh.entry && cert_entry_cert_id(fresh.entry) == renewed, "notify: the next handshake gets the renewal");
	CHECK(held.entry && cert_entry_cert_id(held.entry) == first && cert_entry_ctx(held.entry) != NULL,
	      "notify: a session holding the old entry keeps it");
	if (fresh.entry)
		cert_entry_release(fresh.entry);
	if (held.entry)
		cert_entry_release(held.entry);
	fixture_stop(&f, "notify");
}

/* Ends the fixture's database session (not the challenge set's); returns once it is gone. */
static void kill_certdb_connection(void)
{
	struct tt_err err;
	tt_db_run(pg, &err,
		  "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = '" FIXTURE_APP
		  "'",
		  0, NULL);
}

/* Waits until certdb is back and has revalidated the cache: a request queued behind the
 * revalidation tells when it is done. */
static bool wait_reconnected(struct fixture *f)
{
	struct certdb_stats st;
	struct answer barrier = {0};
	int64_t start = mono_ms();
	while ((barrier.calls == 0 || barrier.status != 1) && mono_ms() - start < 10000) {
		barrier.calls = 0;
		if (certdb_load_cert(f->db, "barrier.example", on_cert, &barrier) < 0) {
			struct answer never = {0};
			drive(f->db, answered, &never, 50); /* backing off: let the reconnect timer run */
			continue;
		}
		drive(f->db, answered, &barrier, 5000);
	}
	/* the first barrier may have been queued while connecting, ahead of the revalidation */
	struct answer barrier2 = {0};
	load_and_wait(f, "barrier2.example", &barrier2);
	certdb_stats(f->db, &st);
	return barrier.status == 1 && barrier2.status == 1 && st.reconnects >= 1;
}

/* The connection is killed: the request in flight fails at once, cached names keep serving, and
 * certdb reconnects by itself. */
static void test_killed(const char *conninfo)
{
	struct fixture f;
	struct cert_entry *got;
	int64_t keep_id = store_cert("keep.example", false);
	if (!fixture_start(conninfo, &f))
		return;
	struct answer keep = {0};
	load_and_wait(&f, "keep.example", &keep);
	CHECK(keep.status == 0 && keep.entry && cert_entry_cert_id(keep.entry) == keep_id, "killed: a name cached");
	kill_certdb_connection();
	struct answer lost = {0};
	int64_t killed_at = mono_ms();
	load_and_wait(&f, "lost.example", &lost);
	CHECK(lost.calls == 1 && lost.status == -1 && mono_ms() - killed_at < 1000,
	      "killed: request in flight fails at once, not at the timeout");
	CHECK(sni_cache_lookup(f.cache, "keep.example", &got) == SNI_HIT,
	      "killed: cached names keep serving meanwhile");
	if (got)
		cert_entry_release(got);
	CHECK(wait_reconnected(&f), "killed: reconnected by itself");
	if (keep.entry)
		cert_entry_release(keep.entry);
	fixture_stop(&f, "killed");
}

/* A renewal lands while the connection is down, so its notification is lost: once back, certdb
 * revalidates the cache, dropping that name and keeping the one still current. */
static void test_revalidate(const char *conninfo)
{
	struct fixture f;
	struct cert_entry *got;
	int64_t kept_id = store_cert("kept.example", false);
	store_cert("renewed-offline.example", false);
	if (!fixture_start(conninfo, &f))
		return;
	struct answer kept = {0}, old = {0};
	load_and_wait(&f, "kept.example", &kept);
	load_and_wait(&f, "renewed-offline.example", &old);
	CHECK(kept.status == 0 && kept.entry && cert_entry_cert_id(kept.entry) == kept_id && old.status == 0,
	      "revalidate: both names cached");
	kill_certdb_connection();
	int64_t renewed = store_cert("renewed-offline.example", false);
	CHECK(wait_reconnected(&f), "revalidate: reconnected");
	CHECK(sni_cache_lookup(f.cache, "kept.example", &got) == SNI_HIT && got == kept.entry,
	      "revalidate: a certificate still current stays cached, no reload");
	if (got)
		cert_entry_release(got);
	enum sni_result r = sni_cache_lookup(f.cache, "renewed-offline.example", &got);
	CHECK(r == SNI_MISS, "revalidate: a certificate renewed while not listening is dropped");
	if (r == SNI_HIT)
		cert_entry_release(got);
	struct answer back = {0};
	load_and_wait(&f, "renewed-offline.example", &back);
	CHECK(back.status == 0 && back.entry && cert_entry_cert_id(back.entry) == renewed,
	      "revalidate: the next load gets the renewal");
	if (back.entry)
		cert_entry_release(back.entry);
	if (old.entry)
		cert_entry_release(old.entry);
	if (kept.entry)
		cert_entry_release(kept.entry);
	fixture_stop(&f, "revalidate");
}

/* A set that is not listening cannot say: lookups wait, then fail (503) at the query timeout; past
 * the per-second budget they fail at once. No certificate load shares their fate. */
static void test_challenge_untrusted(const char *conninfo)
{
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct certdb *db;
	struct challenge_set *chs;
	struct tt_err err;
	store_cert("untrusted.example", false);
	sni_cache_new(&lim, &cache, &err);
	challenge_set_new(&chs, &err);
	struct certdb_config cfg = {
	    .conninfo = conninfo, .keyring = kr, .cache = cache, .query_timeout_ms = 300, .challenges = chs};
	certdb_new(&cfg, &db, &err);
	struct answer cert = {0}, waits[150];
	memset(waits, 0, sizeof waits);
	int refused = 0;
	for (int i = 0; i < 150; i++)
		refused += certdb_get_challenge(db, "some-token", on_challenge, &waits[i]) < 0;
	CHECK(refused >= 40 && refused <= 60, "untrusted set: lookups past 100 a second are refused at once");
	certdb_load_cert(db, "untrusted.example", on_cert, &cert);
	int64_t t0 = mono_ms();
	drive(db, answered, &waits[0], 5000);
	CHECK(waits[0].calls == 1 && waits[0].status == -1 && mono_ms() - t0 >= 250,
	      "untrusted set: a waiting lookup fails at the query timeout");
	drive(db, answered, &cert, 5000);
	CHECK(cert.calls == 1 && cert.status == 0, "  ... and the certificate load beside it is served");
	cert_entry_release(cert.entry);
	certdb_free(db);
	challenge_set_free(chs);
	sni_cache_free(cache);
}

static bool all_answered(void *arg)
{
	struct answer *a = arg;
	for (int i = 0; i < 20; i++)
		if (a[i].status == 0 && a[i].calls == 0)
			return false;
	return true;
}

/* Misses for n distinct names (fmt takes the index); returns how many were refused as throttled,
 * whose answers are marked as not waiting. */
static int load_flood(struct certdb *db, const char *fmt, struct answer *a, int n)
{
	int refused = 0;
	for (int i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof(name), fmt, i);
		int rc = certdb_load_cert(db, name, on_cert, &a[i]);
		if (rc < 0) {
			refused += rc == CERTDB_THROTTLED;
			a[i].status = -2; /* not waiting */
		}
	}
	return refused;
}

/* A flood of random names: only max_misses_per_sec of them become queries. */
static void test_throttle(const char *conninfo)
{
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct certdb *db;
	struct certdb_stats st;
	struct tt_err err;
	struct answer a[20] = {{0}};

	sni_cache_new(&lim, &cache, &err);
	struct certdb_config cfg = {.conninfo = conninfo, .keyring = kr, .cache = cache, .max_misses_per_sec = 5};
	certdb_new(&cfg, &db, &err);
	int refused = load_flood(db, "random%d.flood.example", a, 20);
	/* joining a name already being loaded costs nothing */
	struct answer join = {0};
	CHECK(certdb_load_cert(db, "random0.flood.example", on_cert, &join) == 0, "throttle: joining a query is free");
	drive(db, all_answered, a, 5000);
	certdb_stats(db, &st);
	CHECK(refused >= 14 && refused <= 15, "throttle: beyond the rate, refused as throttled");
	CHECK(st.queries <= 6 && a[0].status == 1 && join.status == 1, "throttle: the rest were queried and answered");
	certdb_free(db);
	sni_cache_free(cache);
}

/* No fixed rate by default: misses are refused only when too many already wait for the database,
 * and every refusal is counted by cause. */
static void test_queue_limit(const char *conninfo)
{
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct certdb *db;
	struct certdb_stats st;
	struct tt_err err;
	struct answer a[20] = {{0}};

	sni_cache_new(&lim, &cache, &err);
	struct certdb_config cfg = {.conninfo = conninfo, .keyring = kr, .cache = cache, .max_pending = 8};
	certdb_new(&cfg, &db, &err);
	int refused = load_flood(db, "queued%d.example", a, 20);
	drive(db, all_answered, a, 5000);
	certdb_stats(db, &st);
	CHECK(refused == 12 && st.refused[CERTDB_REFUSED_QUEUE] == 12 && st.refused[CERTDB_REFUSED_RATE] == 0,
	      "queue: beyond max_pending names waiting, refused and counted as queue");
	CHECK(a[0].status == 1 && a[7].status == 1 && st.queries == 1, "queue: the waiting names went in one query");
	struct answer later = {0};
	CHECK(certdb_load_cert(db, "queued-later.example", on_cert, &later) == 0,
	      "queue: once answered, new misses are taken again (no fixed rate)");
	drive(db, answered, &later, 5000);
	certdb_free(db);
	sni_cache_free(cache);
}

/* Started before the schema exists: requests fail, and once migrated it recovers by itself. */
static void test_unmigrated(const char *conninfo)
{
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct certdb *db;
	struct tt_err err;
	char info[1024], dbname[128];
	PGconn *other;
	int applied;

	snprintf(dbname, sizeof(dbname), "%s_later", PQdb(pg));
	char drop[256], create[256];
	snprintf(drop, sizeof(drop), "DROP DATABASE IF EXISTS \"%s\"", dbname);
	snprintf(create, sizeof(create), "CREATE DATABASE \"%s\"", dbname);
	if (tt_db_run(pg, &err, drop, 0, NULL) < 0 || tt_db_run(pg, &err, create, 0, NULL) < 0) {
		printf("FAIL: unmigrated: %s\n", err.msg);
		return;
	}
	snprintf(info, sizeof(info), "%s dbname=%s", conninfo, dbname);
	sni_cache_new(&lim, &cache, &err);
	struct certdb_config cfg = {.conninfo = info, .keyring = kr, .cache = cache, .listen = true};
	certdb_new(&cfg, &db, &err);
	struct answer a = {0};
	certdb_load_cert(db, "good.example", on_cert, &a);
	drive(db, answered, &a, 5000);
	CHECK(a.calls == 1 && a.status == -1, "unmigrated: request fails");

	if (tt_db_connect(info, &other, &err) < 0 || tt_db_migrate(other, &applied, &err) < 0) {
		printf("FAIL: unmigrated: %s\n", err.msg);
		return;
	}
	struct answer b = {0};
	int64_t start = mono_ms();
	while ((b.calls == 0 || b.status == -1) && mono_ms() - start < 10000) {
		b.calls = 0;
		if (certdb_load_cert(db, "nobody.example", on_cert, &b) < 0) {
			struct answer never = {0};
			drive(db, answered, &never, 50);
			continue;
		}
		drive(db, answered, &b, 5000);
	}
	CHECK(b.status == 1, "unmigrated: recovers once the schema is there");
	PQfinish(other);
	certdb_free(db);
	sni_cache_free(cache);
}

/* Batched loading answers exactly what one query per name answers. */
#define BATCH_NAMES 10
static const char *const batch_names[BATCH_NAMES] = {
    "b-good1.example", "b-good2.example",   "b-good1.example",	  "b-unknown1.example", "b-good3.example",
    "b-bad.example",   "b-removed.example", "b-unknown2.example", "b-changed.example",	"b-good4.example"};
#define CHANGED 8 /* its certificate changes while the query is out */

struct batch_outcome {
	int status[BATCH_NAMES];
	int64_t cert_id[BATCH_NAMES];
	enum sni_result cached[BATCH_NAMES];
	int64_t cached_id[BATCH_NAMES];
	/* the name's cache shard is the changed name's: the change's invalidation may keep its answer
	 * out of the cache (the epoch rule), and shards follow a random per-cache key */
	bool shares_shard[BATCH_NAMES];
	int64_t changed_before, changed_after, reloaded_id;
	uint64_t queries, batches;
};

static bool batch_done(void *arg)
{
	struct answer *a = arg;
	for (int i = 0; i < BATCH_NAMES; i++)
		if (a[i].calls == 0)
			return false;
	return true;
}

static void batch_run(const char *conninfo, size_t batch_max, struct batch_outcome *out)
{
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct certdb *db;
	struct certdb_stats st0, st;
	struct tt_err err;
	struct answer a[BATCH_NAMES] = {{0}}, warm = {0}, again = {0};
	const char *p1[] = {batch_names[CHANGED]};

	memset(out, 0, sizeof(*out));
	sni_cache_new(&lim, &cache, &err);
	struct certdb_config cfg = {
	    .conninfo = conninfo, .keyring = kr, .cache = cache, .query_timeout_ms = 3000, .batch_max = batch_max};
	certdb_new(&cfg, &db, &err);
	certdb_load_cert(db, "b-warmup.example", on_cert, &warm); /* connected before the misses come */
	drive(db, answered, &warm, 5000);
	certdb_stats(db, &st0);
	out->changed_before = sql_id("SELECT current_cert_id FROM domains WHERE name = $1", 1, p1);
	for (int i = 0; i < BATCH_NAMES; i++)
		certdb_load_cert(db, batch_names[i], on_cert, &a[i]);
	/* the loop's next round sends what collected; then the answer is on the socket, unread,
	 * when the certificate changes and its notification drops the name */
	certdb_process(db, mono_ms());
	struct pollfd p = {.fd = certdb_fd(db), .events = POLLIN};
	poll(&p, 1, 3000);
	store_cert(batch_names[CHANGED], false);
	out->changed_after = sql_id("SELECT current_cert_id FROM domains WHERE name = $1", 1, p1);
	uint64_t epoch[BATCH_NAMES];
	for (int i = 0; i < BATCH_NAMES; i++)
		epoch[i] = sni_cache_epoch(cache, batch_names[i]);
	sni_cache_invalidate(cache, batch_names[CHANGED]);
	for (int i = 0; i < BATCH_NAMES; i++)
		out->shares_shard[i] = sni_cache_epoch(cache, batch_names[i]) != epoch[i];
	drive(db, batch_done, a, 5000);
	certdb_stats(db, &st);
	out->queries = st.queries - st0.queries;
	out->batches = st.batches - st0.batches;
	for (int i = 0; i < BATCH_NAMES; i++) {
		struct cert_entry *e;
		out->status[i] = a[i].calls == 1 ? a[i].status : -100;
		out->cert_id[i] = a[i].entry ? cert_entry_cert_id(a[i].entry) : -1;
		out->cached[i] = sni_cache_lookup(cache, batch_names[i], &e);
		out->cached_id[i] = e ? cert_entry_cert_id(e) : -1;
		if (e)
			cert_entry_release(e);
		if (a[i].entry)
			cert_entry_release(a[i].entry);
	}
	certdb_load_cert(db, batch_names[CHANGED], on_cert, &again);
	drive(db, answered, &again, 5000);
	out->reloaded_id = again.entry ? cert_entry_cert_id(again.entry) : -1;
	if (again.entry)
		cert_entry_release(again.entry);
	certdb_free(db);
	sni_cache_free(cache);
}

static void test_batch(const char *conninfo)
{
	struct tt_err err;
	const char *pr[] = {"b-removed.example"};
	struct batch_outcome one, many;

	store_cert("b-good1.example", false);
	store_cert("b-good2.example", false);
	store_cert("b-good3.example", false);
	store_cert("b-good4.example", false);
	store_cert("b-bad.example", true);
	store_cert("b-removed.example", false);
	store_cert("b-changed.example", false);
	tt_db_run(pg, &err, "UPDATE domains SET state = 'removed' WHERE name = $1", 1, pr);

	batch_run(conninfo, 1, &one);
	batch_run(conninfo, 128, &many);
	CHECK(one.queries == BATCH_NAMES - 1 && one.batches == 0, "batch: one by one, a query per distinct name");
	CHECK(many.queries == 1 && many.batches == 1, "batch: misses that arrive together make one query");
	bool same = true;
	for (int i = 0; i < BATCH_NAMES; i++) {
		if (i == CHANGED)
			continue;
		bool epoch_rule = one.shares_shard[i] || many.shares_shard[i];
		if (one.status[i] != many.status[i] || one.cert_id[i] != many.cert_id[i] ||
		    (!epoch_rule && (one.cached[i] != many.cached[i] || one.cached_id[i] != many.cached_id[i]))) {
			printf("# %s: one by one status=%d id=%lld cached=%d/%lld, batched status=%d id=%lld "
			       "cached=%d/%lld\n",
			       batch_names[i], one.status[i], (long long)one.cert_id[i], one.cached[i],
			       (long long)one.cached_id[i], many.status[i], (long long)many.cert_id[i], many.cached[i],
			       (long long)many.cached_id[i]);
			same = false;
		}
	}
	CHECK(same, "batch: every name answered and cached as one by one");
	CHECK(many.status[0] == 0 && many.cert_id[0] > 0 && many.cert_id[2] == many.cert_id[0] &&
		  (many.shares_shard[0] || (many.cached[0] == SNI_HIT && many.cached_id[0] == many.cert_id[0])),
	      "batch: certificates found and cached, a name asked twice answered twice");
	/* the batch went out before the change's invalidation: a negative answer in the changed name's
	 * shard is dropped, not cached (the epoch rule) */
	CHECK(many.status[3] == 1 && many.cached[3] == (many.shares_shard[3] ? SNI_MISS : SNI_NEGATIVE) &&
		  many.status[7] == 1 && many.status[6] == 1,
	      "batch: unknown and removed names are negative answers");
	CHECK(many.status[5] == -1 && many.cached[5] == (many.shares_shard[5] ? SNI_MISS : SNI_NEGATIVE),
	      "batch: a broken row fails and is negative-cached");
	for (int k = 0; k < 2; k++) {
		const struct batch_outcome *o = k ? &many : &one;
		char what[128];
		snprintf(what, sizeof(what),
			 "batch: %s, a certificate changed mid-query is answered, not cached, "
			 "and the next load gets the new one",
			 k ? "batched" : "one by one");
		CHECK(o->status[CHANGED] == 0 && o->cert_id[CHANGED] == o->changed_before &&
			  o->cached[CHANGED] == SNI_MISS && o->reloaded_id == o->changed_after &&
			  o->changed_after != o->changed_before,
		      what);
	}
}

static void test_unreachable(const char *conninfo)
{
	(void)conninfo; /* it makes its own: a closed port and a silent one */
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct certdb *db;
	struct certdb_stats st;
	struct tt_err err;
	char info[256];

	sni_cache_new(&lim, &cache, &err);
	struct certdb_config bad = {.conninfo = "host=127.0.0.1 port=notaport", .cache = cache};
	CHECK(certdb_new(&bad, &db, &err) == 0 || strlen(err.msg) > 0,
	      "unreachable: malformed connection string handled");
	if (db)
		certdb_free(db);
	struct certdb_config garbage = {.conninfo = "this is not = a conninfo '", .cache = cache};
	CHECK(certdb_new(&garbage, &db, &err) < 0 && strstr(err.msg, "connection string"),
	      "unreachable: unparsable connection string refused with a message");

	/* nothing listens on the port: refused at once, requests fail fast */
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	bind(s, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(s, (struct sockaddr *)&sa, &sl);
	close(s); /* the port is now closed */
	snprintf(info, sizeof(info), "host=127.0.0.1 port=%d user=x dbname=x", ntohs(sa.sin_port));
	struct certdb_config refused = {.conninfo = info, .cache = cache, .query_timeout_ms = 300};
	int64_t t0 = mono_ms();
	certdb_new(&refused, &db, &err);
	struct answer a = {0};
	int rc = certdb_load_cert(db, "x.example", on_cert, &a);
	if (rc == 0)
		drive(db, answered, &a, 2000);
	certdb_stats(db, &st);
	CHECK((rc < 0 || (a.calls == 1 && a.status == -1)) && mono_ms() - t0 < 300 + 100 && st.query_errors >= 1,
	      "refused: request fails fast and is counted");
	certdb_free(db);

	/* a server that accepts TCP but never answers: the request fails at query_timeout_ms */
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t ll = sizeof(la);
	bind(l, (struct sockaddr *)&la, sizeof(la));
	listen(l, 8);
	getsockname(l, (struct sockaddr *)&la, &ll);
	snprintf(info, sizeof(info), "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", ntohs(la.sin_port));
	struct certdb_config silent = {.conninfo = info, .cache = cache, .query_timeout_ms = 300};
	slowest_process_ms = 0;
	t0 = mono_ms();
	certdb_new(&silent, &db, &err);
	struct answer b = {0}, victim = {0};
	rc = certdb_load_cert(db, "y.example", on_cert, &b);
	/* two more waiters on one name: the one answered first cancels the other */
	struct canceller canc = {.db = db, .victim = &victim};
	certdb_load_cert(db, "z.example", on_cert, &victim);
	certdb_load_cert(db, "z.example", on_cert_cancel, &canc);
	drive(db, answered, &b, 3000);
	int64_t took = mono_ms() - t0;
	certdb_stats(db, &st);
	CHECK(rc == 0 && b.calls == 1 && b.status == -1 && st.query_timeouts == 2,
	      "silent: request times out, counted");
	CHECK(took >= 300 && took < 300 + 150, "silent: fails at the timeout, not later");
	CHECK(slowest_process_ms < 50, "silent: no call blocked");
	CHECK(canc.a.calls == 1 && canc.a.status == -1 && victim.calls == 0,
	      "silent: a waiter cancelled by another's callback is not called");
	printf("# silent server: failed after %lld ms\n", (long long)took);
	certdb_free(db);
	close(l);
	sni_cache_free(cache);
}

/* Each test makes its own rows and its own certdb, so any one runs alone and in any order:
 * TT_CERTDB_TESTS="revalidate load" runs just those, in that order. */
static const struct {
	const char *name;
	void (*run)(const char *conninfo);
} tests[] = {
    {"load", test_load},
    {"unknown", test_unknown},
    {"tampered", test_tampered},
    {"removed", test_removed},
    {"cancel", test_cancel},
    {"challenge", test_challenge},
    {"challenge_unknown", test_challenge_unknown},
    {"notify", test_notify},
    {"killed", test_killed},
    {"revalidate", test_revalidate},
    {"unmigrated", test_unmigrated},
    {"throttle", test_throttle},
    {"challenge_untrusted", test_challenge_untrusted},
    {"queue_limit", test_queue_limit},
    {"batch", test_batch},
    {"unreachable", test_unreachable},
};

/* Runs the space-separated names in list; false if one is not a test. */
static bool run_named(const char *list, const char *conninfo)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *save, *name = strtok_r(buf, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
		size_t i = 0;
		while (i < sizeof(tests) / sizeof(tests[0]) && strcmp(tests[i].name, name) != 0)
			i++;
		if (i == sizeof(tests) / sizeof(tests[0]))
			return false;
		tests[i].run(conninfo);
	}
	return true;
}

int main(void)
{
	const char *conninfo = check_test_db();
	struct tt_err err;
	char ringpath[600];
	uint32_t kid;
	int applied;

	wolfSSL_Init();
	dir = testcert_dir();
	snprintf(ringpath, sizeof(ringpath), "%s/master.keys", dir);
	if (!dir || tt_keyring_generate(ringpath, &kid, &err) < 0 || tt_keyring_load(ringpath, &kr, &err) < 0 ||
	    tt_db_connect(conninfo, &pg, &err) < 0 || tt_db_migrate(pg, &applied, &err) < 0) {
		printf("FAIL: setup: %s\n", err.msg);
		return 1;
	}
	const char *only = getenv("TT_CERTDB_TESTS");
	if (!only || !*only) {
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
			tests[i].run(conninfo);
	} else if (!run_named(only, conninfo)) {
		printf("FAIL: TT_CERTDB_TESTS names a test that does not exist: %s\n", only);
	}
	PQfinish(pg);
	tt_keyring_free(kr);
	testcert_cleanup(dir);
	wolfSSL_Cleanup();
	CHECK_DONE();
}
