/* name_filter against the real PostgreSQL: which names it rules out after a scan, names added
 * by notification, distrust, the cache answering random names without a query, and the
 * listener's LISTEN driving rebuilds through the helper thread. */
#include <poll.h>
#include <time.h>

#include "check.h"
#include "terminator.h"

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static PGconn *pg;

/* Runs ;-separated statements one by one (tt_db_run takes one). */
static int run_sql(const char *script, struct tt_err *err)
{
	char *copy = strdup(script), *save = NULL;
	int rc = 0;
	for (char *stmt = strtok_r(copy, ";", &save); stmt && rc == 0; stmt = strtok_r(NULL, ";", &save))
		rc = tt_db_run(pg, err, stmt, 0, NULL);
	free(copy);
	return rc;
}

static int ruled_out(struct name_filter *f, const char *fmt, int n)
{
	int out = 0;
	for (int i = 0; i < n; i++) {
		char name[128];
		snprintf(name, sizeof(name), fmt, i);
		out += !name_filter_may_exist(f, name);
	}
	return out;
}

static void drive_until(struct certdb *db, bool (*done)(void *), void *arg, int64_t max_ms)
{
	int64_t end = mono_ms() + max_ms;
	while (!done(arg) && mono_ms() < end) {
		int64_t now = mono_ms(), dl = certdb_next_deadline_ms(db), timeout = 20;
		if (dl >= 0 && dl - now < timeout)
			timeout = dl > now ? dl - now : 0;
		struct pollfd p = {.fd = certdb_fd(db), .events = POLLIN};
		if (certdb_wants_write(db))
			p.events |= POLLOUT;
		poll(&p, p.fd >= 0 ? 1 : 0, (int)timeout); /* short: the filter thread works meanwhile */
		certdb_process(db, mono_ms());
	}
}

static bool trusted(void *arg)
{
	return name_filter_trusted(arg);
}

static bool untrusted(void *arg)
{
	return !name_filter_trusted(arg);
}

static bool may_exist_pending0(void *arg)
{
	return name_filter_may_exist(arg, "pending0.filter.example");
}

int main(void)
{
	const char *conninfo = check_test_db();
	struct name_filter *f;
	struct tt_err err;
	int applied;

	if (tt_db_connect(conninfo, &pg, &err) < 0 || tt_db_migrate(pg, &applied, &err) < 0 ||
	    run_sql(
		      "INSERT INTO domains (name, state) SELECT 'ok' || g || '.filter.example', 'active' "
		      "FROM generate_series(0, 199) g;"
		      "INSERT INTO domains (name, state) SELECT 'gone' || g || '.filter.example', 'active' "
		      "FROM generate_series(0, 19) g;"
		      "INSERT INTO certificates (domain_id, chain_pem, master_key_id, serial, not_before, not_after) "
		      "SELECT id, 'x', 1, '1', now(), now() FROM domains;"
		      "UPDATE domains d SET current_cert_id = c.id FROM certificates c WHERE c.domain_id = d.id;"
		      "UPDATE domains SET state = 'removed' WHERE name LIKE 'gone%';"
		      "INSERT INTO domains (name) SELECT 'pending' || g || '.filter.example' FROM generate_series(0, 19) g",
		      &err) < 0) {
		printf("FAIL: setup: %s\n", err.msg);
		return 1;
	}

	CHECK(name_filter_new(1000, &f, &err) == 0, "filter: created");
	CHECK(!name_filter_trusted(f) && ruled_out(f, "random%d.example", 100) == 0,
	      "filter: untrusted until built, rules nothing out");
	CHECK(name_filter_build(f, pg, &err) == 0 && name_filter_trusted(f), "filter: a scan makes it trusted");
	CHECK(ruled_out(f, "ok%d.filter.example", 200) == 0, "filter: every servable name may exist");
	int rnd = ruled_out(f, "random%d.example", 1000);
	printf("# random names ruled out: %d of 1000\n", rnd);
	CHECK(rnd >= 980, "filter: random names ruled out");
	CHECK(ruled_out(f, "gone%d.filter.example", 20) >= 18 && ruled_out(f, "pending%d.filter.example", 20) >= 18,
	      "filter: removed names and names without a certificate ruled out");
	name_filter_add(f, "random7.example");
	CHECK(name_filter_may_exist(f, "random7.example"), "filter: an added name may exist");
	name_filter_distrust(f);
	CHECK(!name_filter_trusted(f) && ruled_out(f, "random%d.example", 100) == 0, "filter: distrusted rules nothing out");

	/* the cache answers ruled-out names itself */
	struct sni_cache_limits lim = {0};
	struct sni_cache *cache;
	struct cert_entry *e;
	struct sni_cache_stats st;
	sni_cache_new(&lim, &cache, &err);
	sni_cache_set_filter(cache, f);
	name_filter_build(f, pg, &err);
	CHECK(sni_cache_lookup(cache, "random1.example", &e) == SNI_NEGATIVE, "cache: ruled-out name is negative");
	CHECK(sni_cache_lookup(cache, "ok1.filter.example", &e) == SNI_MISS, "cache: a servable name is a miss to load");
	sni_cache_invalidate(cache, "random1.example"); /* as on a notification */
	CHECK(sni_cache_lookup(cache, "random1.example", &e) == SNI_MISS, "cache: a notified name is no longer ruled out");
	sni_cache_stats(cache, &st);
	CHECK(st.filtered == 1 && st.misses == 2 && st.negative_entries == 0,
	      "cache: filtered lookups counted, no negative entries made");

	/* the real wiring: the listener's LISTEN asks the helper thread for a scan */
	name_filter_distrust(f);
	CHECK(name_filter_start(f, conninfo, &err) == 0, "thread: started");
	char info[1024];
	snprintf(info, sizeof(info), "%s application_name=filter_test", conninfo);
	struct certdb *db;
	struct certdb_config cfg = {.conninfo = info, .cache = cache, .listen = true};
	certdb_new(&cfg, &db, &err);
	drive_until(db, trusted, f, 10000);
	CHECK(name_filter_trusted(f), "thread: LISTEN in place, scan done, trusted");
	CHECK(!name_filter_may_exist(f, "pending0.filter.example"), "thread: a name without certificate ruled out");
	run_sql("INSERT INTO certificates (domain_id, chain_pem, master_key_id, serial, not_before, not_after) "
		"SELECT id, 'x', 1, '1', now(), now() FROM domains WHERE name = 'pending0.filter.example';"
		"UPDATE domains d SET current_cert_id = c.id FROM certificates c "
		"WHERE c.domain_id = d.id AND d.name = 'pending0.filter.example'",
		&err);
	drive_until(db, may_exist_pending0, f, 5000);
	CHECK(name_filter_may_exist(f, "pending0.filter.example"), "thread: a name given a certificate is notified in");
	tt_db_run(pg, &err, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = 'filter_test'",
		  0, NULL);
	drive_until(db, untrusted, f, 5000);
	CHECK(!name_filter_trusted(f), "thread: listener lost, filter untrusted");
	drive_until(db, trusted, f, 10000);
	struct name_filter_stats fs;
	name_filter_stats(f, &fs);
	CHECK(name_filter_trusted(f) && fs.builds >= 2 && fs.names == 201, "thread: listener back, rebuilt, trusted");
	certdb_free(db);
	sni_cache_free(cache);
	name_filter_free(f);
	PQfinish(pg);
	CHECK_DONE();
}
