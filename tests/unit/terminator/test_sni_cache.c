/* sni_cache: hits, misses, negative TTL, eviction by entries and bytes, references
 * that outlive eviction and replacement, stale loads, and many threads at once. */
#include <pthread.h>
#include <time.h>

#include "check.h"
#include "terminator.h"
#include "testcert.h"

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *chain_a;
static uint8_t *key_a;
static size_t chain_a_len, key_a_len;

static WOLFSSL_CTX *ctx_a(void)
{
	WOLFSSL_CTX *ctx = NULL;
	struct tt_err err;
	if (certctx_new(chain_a, chain_a_len, key_a, key_a_len, &ctx, &err) < 0)
		printf("certctx_new: %s\n", err.msg);
	return ctx;
}

static void test_hit_miss_replace(void)
{
	struct sni_cache_limits lim = {.max_entries = 16};
	struct sni_cache *c;
	struct cert_entry *e, *old, *got;
	struct sni_cache_stats st;
	struct tt_err err;

	CHECK(sni_cache_new(&lim, &c, &err) == 0, "cache: created");
	CHECK(sni_cache_lookup(c, "a.example", &got) == SNI_MISS && !got, "cache: empty cache misses");
	CHECK(sni_cache_insert(c, "a.example", 7, ctx_a(), 1000, &e, &err) == 0 && e, "cache: insert");
	CHECK(sni_cache_lookup(c, "a.example", &got) == SNI_HIT && got == e && cert_entry_cert_id(got) == 7 &&
		      cert_entry_ctx(got) != NULL,
	      "cache: hit returns the inserted entry");
	cert_entry_release(got);
	CHECK(sni_cache_lookup(c, "b.example", &got) == SNI_MISS, "cache: other name misses");

	old = e;
	CHECK(sni_cache_insert(c, "a.example", 8, ctx_a(), 1000, &e, &err) == 0, "cache: replace");
	CHECK(sni_cache_lookup(c, "a.example", &got) == SNI_HIT && cert_entry_cert_id(got) == 8,
	      "cache: replacement is served");
	cert_entry_release(got);
	/* the replaced context stays usable for whoever holds it */
	WOLFSSL *ssl = wolfSSL_new(cert_entry_ctx(old));
	CHECK(ssl && cert_entry_cert_id(old) == 7, "cache: replaced entry alive while referenced");
	wolfSSL_free(ssl);
	cert_entry_release(old);
	cert_entry_release(e);

	sni_cache_stats(c, &st);
	CHECK(st.hits == 2 && st.misses == 2 && st.entries == 1 && st.bytes >= 1000 && st.bytes < 1400,
	      "cache: stats count hits, misses, entries and bytes");

	CHECK(sni_cache_invalidate(c, "a.example") == true, "cache: invalidate reports a certificate dropped");
	CHECK(sni_cache_lookup(c, "a.example", &got) == SNI_MISS, "cache: invalidated name misses");
	sni_cache_insert_negative(c, "n.example");
	CHECK(sni_cache_invalidate(c, "n.example") == false, "cache: invalidating a negative entry is not hot");
	CHECK(sni_cache_lookup(c, "n.example", &got) == SNI_MISS, "cache: invalidated negative entry misses");
	sni_cache_free(c);
}

static void test_negative(void)
{
	struct sni_cache_limits lim = {.max_entries = 16, .negative_ttl_ms = 150, .max_negative = 2};
	struct sni_cache *c;
	struct cert_entry *got, *e;
	struct sni_cache_stats st;
	struct tt_err err;
	int64_t start;

	sni_cache_new(&lim, &c, &err);
	start = mono_ms();
	sni_cache_insert_negative(c, "gone.example");
	CHECK(sni_cache_lookup(c, "gone.example", &got) == SNI_NEGATIVE && !got, "negative: unknown name is remembered");
	enum sni_result r = SNI_NEGATIVE;
	while (r == SNI_NEGATIVE && mono_ms() - start < 5000) {
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
		r = sni_cache_lookup(c, "gone.example", &got);
	}
	CHECK(r == SNI_MISS && mono_ms() - start >= 150, "negative: expires after its TTL, not before");

	sni_cache_insert_negative(c, "n1.example");
	sni_cache_insert_negative(c, "n2.example");
	sni_cache_insert_negative(c, "n3.example");
	sni_cache_stats(c, &st);
	CHECK(st.negative_entries == 2, "negative: bounded by max_negative");
	CHECK(sni_cache_lookup(c, "n1.example", &got) == SNI_MISS &&
		      sni_cache_lookup(c, "n3.example", &got) == SNI_NEGATIVE,
	      "negative: oldest dropped first");

	CHECK(sni_cache_insert(c, "n3.example", 1, ctx_a(), 100, &e, &err) == 0 &&
		      sni_cache_lookup(c, "n3.example", &got) == SNI_HIT,
	      "negative: a certificate replaces a negative entry");
	cert_entry_release(got);
	cert_entry_release(e);
	sni_cache_insert_negative(c, "n3.example");
	CHECK(sni_cache_lookup(c, "n3.example", &got) == SNI_NEGATIVE, "negative: replaces a certificate");
	sni_cache_stats(c, &st);
	CHECK(st.entries == 0 && st.bytes == 0, "negative: replaced certificate no longer counted");
	sni_cache_free(c);
}

static void test_eviction(void)
{
	struct sni_cache_limits lim = {.max_entries = 3};
	struct sni_cache *c;
	struct cert_entry *e[5], *got;
	struct sni_cache_stats st;
	struct tt_err err;

	sni_cache_new(&lim, &c, &err);
	sni_cache_insert(c, "a", 1, ctx_a(), 10, &e[0], &err);
	sni_cache_insert(c, "b", 2, ctx_a(), 10, &e[1], &err);
	sni_cache_insert(c, "c", 3, ctx_a(), 10, &e[2], &err);
	CHECK(sni_cache_lookup(c, "a", &got) == SNI_HIT, "evict: a is hit (now most recent)");
	cert_entry_release(got);
	sni_cache_insert(c, "d", 4, ctx_a(), 10, &e[3], &err);
	sni_cache_stats(c, &st);
	CHECK(st.entries == 3 && st.evictions == 1, "evict: entry count held at max_entries");
	CHECK(sni_cache_lookup(c, "b", &got) == SNI_MISS, "evict: least recently used went first");
	CHECK(sni_cache_lookup(c, "a", &got) == SNI_HIT, "evict: recently used stays");
	cert_entry_release(got);
	/* b was evicted but is still held: its context must still work */
	WOLFSSL *ssl = wolfSSL_new(cert_entry_ctx(e[1]));
	CHECK(ssl != NULL && cert_entry_cert_id(e[1]) == 2, "evict: evicted entry usable until released");
	wolfSSL_free(ssl);
	for (int i = 0; i < 4; i++)
		cert_entry_release(e[i]);
	sni_cache_free(c);

	struct sni_cache_limits blim = {.max_entries = 100, .max_bytes = 3 * 1200};
	sni_cache_new(&blim, &c, &err);
	for (int i = 0; i < 5; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%d", i);
		sni_cache_insert(c, name, i, ctx_a(), 1000, &e[i], &err);
		cert_entry_release(e[i]);
	}
	sni_cache_stats(c, &st);
	CHECK(st.entries == 3 && st.evictions == 2 && st.bytes <= 3 * 1200, "evict: bytes held under max_bytes");
	CHECK(sni_cache_lookup(c, "n0", &got) == SNI_MISS && sni_cache_lookup(c, "n1", &got) == SNI_MISS,
	      "evict: oldest went for bytes");
	CHECK(sni_cache_lookup(c, "n4", &got) == SNI_HIT, "evict: newest stays");
	cert_entry_release(got);
	sni_cache_insert(c, "huge", 9, ctx_a(), 100000, &e[0], &err);
	CHECK(sni_cache_lookup(c, "huge", &got) == SNI_HIT, "evict: an entry larger than the budget is still served");
	cert_entry_release(got);
	cert_entry_release(e[0]);
	sni_cache_free(c);
}

static void test_stale_load(void)
{
	struct sni_cache_limits lim = {0};
	struct sni_cache *c;
	struct cert_entry *e, *got;
	struct tt_err err;

	sni_cache_new(&lim, &c, &err);
	uint64_t epoch = sni_cache_epoch(c, "s.example");
	sni_cache_invalidate(c, "s.example"); /* a NOTIFY arrives while the query runs */
	CHECK(sni_cache_insert_since(c, epoch, "s.example", 1, ctx_a(), 100, &e, &err) == 0 && e &&
		      cert_entry_ctx(e) != NULL,
	      "stale: the loader still gets its entry");
	CHECK(sni_cache_lookup(c, "s.example", &got) == SNI_MISS, "stale: but it is not cached");
	cert_entry_release(e);
	sni_cache_insert_negative_since(c, epoch, "s.example");
	CHECK(sni_cache_lookup(c, "s.example", &got) == SNI_MISS, "stale: nor a stale negative answer");
	epoch = sni_cache_epoch(c, "s.example");
	sni_cache_insert_since(c, epoch, "s.example", 2, ctx_a(), 100, &e, &err);
	CHECK(sni_cache_lookup(c, "s.example", &got) == SNI_HIT, "stale: a fresh load is cached");
	cert_entry_release(got);
	cert_entry_release(e);
	sni_cache_invalidate_all(c);
	CHECK(sni_cache_lookup(c, "s.example", &got) == SNI_MISS, "stale: invalidate_all empties the cache");
	sni_cache_free(c);
}

static void test_revalidation(void)
{
	struct sni_cache_limits lim = {.max_entries = 16};
	struct sni_cache *c;
	struct cert_entry *e, *got;
	struct tt_err err;
	char *names;
	size_t n, shards;

	sni_cache_new(&lim, &c, &err);
	sni_cache_insert(c, "r1.example", 1, ctx_a(), 100, &e, &err);
	cert_entry_release(e);
	sni_cache_insert(c, "we\"ird\\", 2, ctx_a(), 100, &e, &err);
	cert_entry_release(e);
	sni_cache_insert_negative(c, "neg.example");
	uint64_t epoch = sni_cache_epoch(c, "late.example");
	shards = sni_cache_begin_revalidation(c);
	CHECK(shards == 1 && sni_cache_lookup(c, "neg.example", &got) == SNI_MISS,
	      "revalidate: negative entries dropped");
	sni_cache_insert_since(c, epoch, "late.example", 3, ctx_a(), 100, &e, &err);
	CHECK(sni_cache_lookup(c, "late.example", &got) == SNI_MISS, "revalidate: loads begun before it are not cached");
	cert_entry_release(e);
	CHECK(sni_cache_shard_snapshot(c, 0, &names, &n) == 0 && n == 2 && names &&
		      strcmp(names, "{\"we\\\"ird\\\\\",\"r1.example\"}") == 0,
	      "revalidate: snapshot is a quoted, escaped array literal");
	printf("# snapshot %s\n", names ? names : "(null)");
	free(names);
	sni_cache_drop_unless(c, "r1.example", 1);
	CHECK(sni_cache_lookup(c, "r1.example", &got) == SNI_HIT, "revalidate: current certificate kept");
	cert_entry_release(got);
	sni_cache_drop_unless(c, "r1.example", 5);
	CHECK(sni_cache_lookup(c, "r1.example", &got) == SNI_MISS, "revalidate: changed certificate dropped");
	sni_cache_drop_unless(c, "we\"ird\\", -1);
	CHECK(sni_cache_lookup(c, "we\"ird\\", &got) == SNI_MISS, "revalidate: name without certificate dropped");
	CHECK(sni_cache_shard_snapshot(c, 0, &names, &n) == 0 && n == 0 && !names, "revalidate: empty shard, no array");
	sni_cache_free(c);
}

struct worker {
	struct sni_cache *c;
	WOLFSSL_CTX *proto;
	int id;
	long hits;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct tt_err err;
	unsigned seed = (unsigned)w->id;
	for (int i = 0; i < 20000; i++) {
		char name[32];
		struct cert_entry *e;
		snprintf(name, sizeof(name), "d%u.example", (unsigned)rand_r(&seed) % 200);
		switch (rand_r(&seed) % 8) {
		case 0:
			/* contexts are shared by reference so the stress stays in the cache, not in wolfSSL */
			wolfSSL_CTX_up_ref(w->proto);
			if (sni_cache_insert(w->c, name, i, w->proto, 3000, &e, &err) == 0)
				cert_entry_release(e);
			break;
		case 1:
			sni_cache_invalidate(w->c, name);
			break;
		case 2:
			sni_cache_insert_negative(w->c, name);
			break;
		default:
			if (sni_cache_lookup(w->c, name, &e) == SNI_HIT) {
				w->hits += cert_entry_ctx(e) == w->proto;
				cert_entry_release(e);
			}
		}
	}
	return NULL;
}

static void test_threads(void)
{
	struct sni_cache_limits lim = {.max_entries = 128, .max_negative = 50, .max_bytes = 200000};
	struct sni_cache *c;
	struct sni_cache_stats st;
	struct tt_err err;
	pthread_t t[4];
	struct worker w[4];
	WOLFSSL_CTX *proto = ctx_a();
	long hits = 0;

	sni_cache_new(&lim, &c, &err);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.c = c, .proto = proto, .id = i + 1};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		hits += w[i].hits;
	}
	sni_cache_stats(c, &st);
	CHECK(hits > 0 && st.hits == (uint64_t)hits, "threads: every hit counted and served a live context");
	CHECK(st.entries <= 128 && st.negative_entries <= 50 && st.bytes <= 200000,
	      "threads: limits held under concurrent inserts");
	sni_cache_free(c);
	wolfSSL_CTX_free(proto);
}

int main(void)
{
	char *dir = testcert_dir();
	wolfSSL_Init();
	if (!dir || testcert_make(dir, "a.example", false, &chain_a, &chain_a_len, &key_a, &key_a_len) < 0) {
		printf("FAIL: cannot make test certificates with openssl\n");
		return 1;
	}
	test_hit_miss_replace();
	test_negative();
	test_eviction();
	test_stale_load();
	test_revalidation();
	test_threads();
	free(chain_a);
	free(key_a);
	testcert_cleanup(dir);
	wolfSSL_Cleanup();
	CHECK_DONE();
}
