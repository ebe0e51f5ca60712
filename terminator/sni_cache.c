/* sni_cache: the certificate contexts every thread serves from, sharded by name hash, with
 * reference-counted entries, LRU eviction by entries and bytes, and short-lived negative entries. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "terminator.h"

#define DEFAULT_MAX_ENTRIES 100000
#define DEFAULT_MAX_BYTES ((size_t)1 << 30)
#define DEFAULT_NEGATIVE_TTL_MS 10000
#define MAX_SHARDS 64
/* Fewer shards than this many entries each would make per-shard limits too coarse. */
#define MIN_ENTRIES_PER_SHARD 64

struct cert_entry {
	struct cert_entry *chain;	/* hash bucket */
	struct cert_entry *prev, *next; /* LRU (positive) or FIFO (negative) list, head = newest */
	atomic_uint refs;
	bool negative;
	uint64_t hash;
	WOLFSSL_CTX *ctx;
	int64_t cert_id;
	int64_t expires_ms; /* negative entries */
	size_t bytes;	    /* accounted against max_bytes (positive entries only) */
	uint32_t hits;	    /* lookups answered, halved at each hot-names snapshot */
	char name[];
};

struct list {
	struct cert_entry *head, *tail;
	size_t count;
};

struct shard {
	pthread_mutex_t lock;
	struct cert_entry **buckets;
	struct list lru, negatives;
	size_t bytes; /* positive entries */
	/* Bumped by every invalidation in this shard: a load that started before it is stale. */
	uint64_t epoch;
	uint64_t hits, misses, negative_hits, filtered, evictions;
} __attribute__((aligned(64)));

struct sni_cache {
	struct tt_hash_key key; /* secret: SNI names are chosen by clients, who must not aim at one bucket */
	unsigned shard_bits;
	size_t nbuckets; /* per shard, power of two */
	/* Atomic because SIGHUP may change them while shards use them. */
	_Atomic size_t shard_max_entries, shard_max_bytes, shard_max_negative;
	_Atomic int64_t negative_ttl_ms;
	struct name_filter *filter; /* NULL: every miss may exist */
	struct shard *shards;
};

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

void sni_cache_set_limits(struct sni_cache *c, const struct sni_cache_limits *limits)
{
	size_t nshards = (size_t)1 << c->shard_bits;
	size_t max_entries = limits->max_entries ? limits->max_entries : DEFAULT_MAX_ENTRIES;
	size_t max_bytes = limits->max_bytes ? limits->max_bytes : DEFAULT_MAX_BYTES;
	size_t max_negative = limits->max_negative ? limits->max_negative : max_entries;
	c->shard_max_entries = (max_entries + nshards - 1) / nshards;
	c->shard_max_bytes = (max_bytes + nshards - 1) / nshards;
	c->shard_max_negative = (max_negative + nshards - 1) / nshards;
	c->negative_ttl_ms = limits->negative_ttl_ms > 0 ? limits->negative_ttl_ms : DEFAULT_NEGATIVE_TTL_MS;
}

int sni_cache_new(const struct sni_cache_limits *limits, struct sni_cache **out, struct tt_err *err)
{
	size_t max_entries = limits->max_entries ? limits->max_entries : DEFAULT_MAX_ENTRIES;
	size_t nshards = 1;
	struct sni_cache *c;

	*out = NULL;
	while (nshards < MAX_SHARDS && max_entries / (nshards * 2) >= MIN_ENTRIES_PER_SHARD)
		nshards *= 2;
	c = calloc(1, sizeof(*c));
	if (!c)
		return tt_fail(err, "out of memory");
	while (((size_t)1 << c->shard_bits) < nshards)
		c->shard_bits++;
	if (tt_hash_key_random(&c->key, err) < 0) {
		free(c);
		return -1;
	}
	sni_cache_set_limits(c, limits);
	c->nbuckets = pow2_at_least(c->shard_max_entries + c->shard_max_negative);
	c->shards = aligned_alloc(64, nshards * sizeof(struct shard));
	if (!c->shards) {
		free(c);
		return tt_fail(err, "out of memory");
	}
	memset(c->shards, 0, nshards * sizeof(struct shard));
	for (size_t i = 0; i < nshards; i++) {
		struct shard *s = &c->shards[i];
		pthread_mutex_init(&s->lock, NULL);
		s->buckets = calloc(c->nbuckets, sizeof(*s->buckets));
		if (!s->buckets) {
			for (size_t j = 0; j <= i; j++) {
				free(c->shards[j].buckets);
				pthread_mutex_destroy(&c->shards[j].lock);
			}
			free(c->shards);
			free(c);
			return tt_fail(err, "out of memory for the cache's hash buckets");
		}
	}
	*out = c;
	return 0;
}

static void entry_free(struct cert_entry *e)
{
	/* wolfSSL_CTX_free drops the CTX's own reference; sessions still using it hold theirs, and the
	 * last one frees the key with ForceZero (wolfcrypt FreeDer on PRIVATEKEY_TYPE). */
	if (e->ctx)
		wolfSSL_CTX_free(e->ctx);
	free(e);
}

struct cert_entry *cert_entry_ref(struct cert_entry *entry)
{
	atomic_fetch_add_explicit(&entry->refs, 1, memory_order_relaxed);
	return entry;
}

void cert_entry_release(struct cert_entry *entry)
{
	if (entry && atomic_fetch_sub_explicit(&entry->refs, 1, memory_order_acq_rel) == 1)
		entry_free(entry);
}

WOLFSSL_CTX *cert_entry_ctx(const struct cert_entry *entry)
{
	return entry->ctx;
}

int64_t cert_entry_cert_id(const struct cert_entry *entry)
{
	return entry->cert_id;
}

/* Keyed, so that clients choosing names cannot aim them at one bucket. */
static uint64_t name_hash(const struct sni_cache *c, const char *name)
{
	return tt_name_hash(&c->key, name, strlen(name));
}

static size_t nshards_of(const struct sni_cache *c)
{
	return (size_t)1 << c->shard_bits;
}

static struct shard *shard_of(struct sni_cache *c, uint64_t hash)
{
	return &c->shards[hash & (nshards_of(c) - 1)];
}

static struct cert_entry **bucket_of(struct sni_cache *c, struct shard *s, uint64_t hash)
{
	return &s->buckets[(hash >> c->shard_bits) & (c->nbuckets - 1)];
}

static void list_push(struct list *l, struct cert_entry *e)
{
	e->prev = NULL;
	e->next = l->head;
	if (l->head)
		l->head->prev = e;
	else
		l->tail = e;
	l->head = e;
	l->count++;
}

static void list_remove(struct list *l, struct cert_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	e->prev = e->next = NULL;
	l->count--;
}

/* Unlinks e from its shard; the table's reference moves onto the caller's release list. */
static void unlink_entry(struct sni_cache *c, struct shard *s, struct cert_entry *e, struct cert_entry **dead)
{
	struct cert_entry **pp = bucket_of(c, s, e->hash);
	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	list_remove(e->negative ? &s->negatives : &s->lru, e);
	if (!e->negative)
		s->bytes -= e->bytes;
	e->chain = *dead;
	*dead = e;
}

static void release_dead(struct cert_entry *dead)
{
	while (dead) {
		struct cert_entry *next = dead->chain;
		cert_entry_release(dead);
		dead = next;
	}
}

static struct cert_entry *find(struct sni_cache *c, struct shard *s, uint64_t hash, const char *name)
{
	for (struct cert_entry *e = *bucket_of(c, s, hash); e; e = e->chain)
		if (e->hash == hash && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

enum sni_result sni_cache_lookup(struct sni_cache *cache, const char *name, struct cert_entry **out)
{
	uint64_t hash = name_hash(cache, name);
	struct shard *s = shard_of(cache, hash);
	struct cert_entry *e, *dead = NULL;
	enum sni_result r = SNI_MISS;

	*out = NULL;
	pthread_mutex_lock(&s->lock);
	e = find(cache, s, hash, name);
	if (e && e->negative) {
		if (tt_now_ms() < e->expires_ms) {
			r = SNI_NEGATIVE;
			s->negative_hits++;
		} else {
			unlink_entry(cache, s, e, &dead);
		}
	} else if (e) {
		list_remove(&s->lru, e);
		list_push(&s->lru, e);
		*out = cert_entry_ref(e);
		r = SNI_HIT;
		s->hits++;
		if (e->hits < UINT32_MAX)
			e->hits++;
	}
	/* Not cached: a name the database cannot serve is answered here, not by a query. Not made a
	 * negative entry: other threads add names to the filter as the database notifies them. */
	if (r == SNI_MISS && cache->filter && !name_filter_may_exist(cache->filter, name)) {
		r = SNI_NEGATIVE;
		s->filtered++;
	} else if (r == SNI_MISS) {
		s->misses++;
	}
	pthread_mutex_unlock(&s->lock);
	release_dead(dead);
	return r;
}

uint64_t sni_cache_epoch(struct sni_cache *cache, const char *name)
{
	struct shard *s = shard_of(cache, name_hash(cache, name));
	uint64_t epoch;
	pthread_mutex_lock(&s->lock);
	epoch = s->epoch;
	pthread_mutex_unlock(&s->lock);
	return epoch;
}

static struct cert_entry *entry_new(const char *name, uint64_t hash)
{
	size_t len = strlen(name);
	struct cert_entry *e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->name, name, len + 1);
	e->hash = hash;
	e->bytes = sizeof(*e) + len + 1;
	atomic_init(&e->refs, 1);
	return e;
}

/* Links e (whose one reference becomes the table's) unless the shard was invalidated since
 * epoch; replaces any entry for the same name, then evicts what is over the limits. */
static bool link_entry(struct sni_cache *c, struct shard *s, struct cert_entry *e, bool check_epoch, uint64_t epoch,
		       struct cert_entry **dead)
{
	struct cert_entry *old;
	struct list *l = e->negative ? &s->negatives : &s->lru;
	size_t max = e->negative ? c->shard_max_negative : c->shard_max_entries;

	if (check_epoch && s->epoch != epoch)
		return false;
	old = find(c, s, e->hash, e->name);
	if (old)
		unlink_entry(c, s, old, dead);
	e->chain = *bucket_of(c, s, e->hash);
	*bucket_of(c, s, e->hash) = e;
	list_push(l, e);
	if (!e->negative)
		s->bytes += e->bytes;
	/* The newest entry stays even if it alone exceeds the byte budget: a caller is using it. */
	while (l->count > 1 && (l->count > max || (!e->negative && s->bytes > c->shard_max_bytes))) {
		if (!l->tail->negative)
			s->evictions++;
		unlink_entry(c, s, l->tail, dead);
	}
	return true;
}

int sni_cache_insert_since(struct sni_cache *cache, uint64_t epoch, const char *name, int64_t cert_id, WOLFSSL_CTX *ctx,
			   size_t bytes, struct cert_entry **out, struct tt_err *err)
{
	uint64_t hash = name_hash(cache, name);
	struct shard *s = shard_of(cache, hash);
	struct cert_entry *e = entry_new(name, hash), *dead = NULL;

	*out = NULL;
	if (!e) {
		wolfSSL_CTX_free(ctx);
		return tt_fail(err, "out of memory");
	}
	e->ctx = ctx;
	e->cert_id = cert_id;
	e->bytes += bytes;
	cert_entry_ref(e); /* the caller's */
	pthread_mutex_lock(&s->lock);
	if (!link_entry(cache, s, e, epoch != SNI_EPOCH_ANY, epoch, &dead))
		cert_entry_release(e); /* stale: the caller gets a private entry, the table nothing */
	pthread_mutex_unlock(&s->lock);
	release_dead(dead);
	*out = e;
	return 0;
}

int sni_cache_insert(struct sni_cache *cache, const char *name, int64_t cert_id, WOLFSSL_CTX *ctx, size_t bytes,
		     struct cert_entry **out, struct tt_err *err)
{
	return sni_cache_insert_since(cache, SNI_EPOCH_ANY, name, cert_id, ctx, bytes, out, err);
}

void sni_cache_insert_negative_since(struct sni_cache *cache, uint64_t epoch, const char *name)
{
	uint64_t hash = name_hash(cache, name);
	struct shard *s = shard_of(cache, hash);
	struct cert_entry *e = entry_new(name, hash), *dead = NULL;
	int64_t now = tt_now_ms();

	if (!e)
		return; /* the next miss queries again: slower, not wrong */
	e->negative = true;
	e->expires_ms = now + cache->negative_ttl_ms;
	pthread_mutex_lock(&s->lock);
	while (s->negatives.tail && s->negatives.tail->expires_ms <= now)
		unlink_entry(cache, s, s->negatives.tail, &dead);
	if (!link_entry(cache, s, e, epoch != SNI_EPOCH_ANY, epoch, &dead)) {
		e->chain = dead;
		dead = e;
	}
	pthread_mutex_unlock(&s->lock);
	release_dead(dead);
}

void sni_cache_insert_negative(struct sni_cache *cache, const char *name)
{
	sni_cache_insert_negative_since(cache, SNI_EPOCH_ANY, name);
}

void sni_cache_set_filter(struct sni_cache *cache, struct name_filter *filter)
{
	cache->filter = filter;
}

void sni_cache_listener_lost(struct sni_cache *cache)
{
	if (cache->filter)
		name_filter_distrust(cache->filter);
}

bool sni_cache_invalidate(struct sni_cache *cache, const char *name)
{
	uint64_t hash = name_hash(cache, name);
	struct shard *s = shard_of(cache, hash);
	struct cert_entry *e, *dead = NULL;
	bool positive = false;

	/* The name changed: it may have a certificate now. */
	if (cache->filter)
		name_filter_add(cache->filter, name);
	pthread_mutex_lock(&s->lock);
	s->epoch++;
	e = find(cache, s, hash, name);
	if (e) {
		positive = !e->negative;
		unlink_entry(cache, s, e, &dead);
	}
	pthread_mutex_unlock(&s->lock);
	release_dead(dead);
	return positive;
}

static void drain_shard(struct sni_cache *c, struct shard *s, bool certificates, struct cert_entry **dead)
{
	while (certificates && s->lru.tail)
		unlink_entry(c, s, s->lru.tail, dead);
	while (s->negatives.tail)
		unlink_entry(c, s, s->negatives.tail, dead);
}

/* Every load in flight becomes stale; negative entries go, and the certificates too if asked. */
static void invalidate_shards(struct sni_cache *cache, bool certificates)
{
	for (size_t i = 0; i < nshards_of(cache); i++) {
		struct shard *s = &cache->shards[i];
		struct cert_entry *dead = NULL;
		pthread_mutex_lock(&s->lock);
		s->epoch++;
		drain_shard(cache, s, certificates, &dead);
		pthread_mutex_unlock(&s->lock);
		release_dead(dead);
	}
}

void sni_cache_invalidate_all(struct sni_cache *cache)
{
	invalidate_shards(cache, true);
}

size_t sni_cache_begin_revalidation(struct sni_cache *cache)
{
	invalidate_shards(cache, false);
	/* LISTEN is in place again: a scan that starts now misses nothing. */
	if (cache->filter)
		name_filter_request_rebuild(cache->filter);
	return nshards_of(cache);
}

/* Appends name to a PostgreSQL array literal, quoted and escaped. */
static char *append_element(char *p, const char *name)
{
	*p++ = '"';
	for (; *name; name++) {
		if (*name == '"' || *name == '\\')
			*p++ = '\\';
		*p++ = *name;
	}
	*p++ = '"';
	return p;
}

int sni_cache_shard_snapshot(struct sni_cache *cache, size_t shard, char **names, size_t *n)
{
	struct shard *s = &cache->shards[shard];
	size_t size = 3;
	char *buf, *p;

	*names = NULL;
	*n = 0;
	pthread_mutex_lock(&s->lock);
	for (struct cert_entry *e = s->lru.head; e; e = e->next)
		size += 2 * strlen(e->name) + 3;
	buf = s->lru.count ? malloc(size) : NULL;
	if (buf) {
		p = buf;
		*p++ = '{';
		for (struct cert_entry *e = s->lru.head; e; e = e->next) {
			if (e != s->lru.head)
				*p++ = ',';
			p = append_element(p, e->name);
		}
		*p++ = '}';
		*p = '\0';
		*n = s->lru.count;
	}
	pthread_mutex_unlock(&s->lock);
	if (*n && !buf)
		return -1;
	*names = buf;
	return 0;
}

bool sni_cache_holds(struct sni_cache *cache, const char *name)
{
	uint64_t hash = name_hash(cache, name);
	struct shard *s = shard_of(cache, hash);
	pthread_mutex_lock(&s->lock);
	struct cert_entry *e = find(cache, s, hash, name);
	bool held = e && !e->negative;
	pthread_mutex_unlock(&s->lock);
	return held;
}

struct hot {
	uint32_t hits;
	char *name;
};

static int hotter_first(const void *a, const void *b)
{
	const struct hot *x = a, *y = b;
	return x->hits < y->hits ? 1 : x->hits > y->hits ? -1 : strcmp(x->name, y->name);
}

int sni_cache_hot_names(struct sni_cache *cache, char **text, size_t *len, size_t *n)
{
	struct hot *hot = NULL;
	size_t count = 0, cap = 0, size = 1;
	int rc = 0;

	*text = NULL;
	*len = *n = 0;
	for (size_t i = 0; i < nshards_of(cache) && rc == 0; i++) {
		struct shard *s = &cache->shards[i];
		pthread_mutex_lock(&s->lock);
		for (struct cert_entry *e = s->lru.head; e; e = e->next) {
			if (count == cap) {
				size_t ncap = cap ? 2 * cap : 1024;
				struct hot *h = realloc(hot, ncap * sizeof(*h));
				if (!h) {
					rc = -1;
					break;
				}
				hot = h;
				cap = ncap;
			}
			if (!(hot[count].name = strdup(e->name))) {
				rc = -1;
				break;
			}
			hot[count++].hits = e->hits;
			size += strlen(e->name) + 1;
			e->hits /= 2; /* so the order follows what is hot now, not since start */
		}
		pthread_mutex_unlock(&s->lock);
	}
	char *p = rc == 0 ? malloc(size) : NULL;
	if (p) {
		if (count) /* an empty cache has no array to sort (qsort's base must not be NULL) */
			qsort(hot, count, sizeof(*hot), hotter_first);
		*text = p;
		for (size_t i = 0; i < count; i++)
			p += sprintf(p, "%s\n", hot[i].name);
		*len = (size_t)(p - *text);
		*n = count;
	} else {
		rc = -1;
	}
	for (size_t i = 0; i < count; i++)
		free(hot[i].name);
	free(hot);
	return rc;
}

void sni_cache_drop_unless(struct sni_cache *cache, const char *name, int64_t current_id)
{
	uint64_t hash = name_hash(cache, name);
	struct shard *s = shard_of(cache, hash);
	struct cert_entry *e, *dead = NULL;

	pthread_mutex_lock(&s->lock);
	e = find(cache, s, hash, name);
	if (e && !e->negative && e->cert_id != current_id)
		unlink_entry(cache, s, e, &dead);
	pthread_mutex_unlock(&s->lock);
	release_dead(dead);
}

void sni_cache_stats(struct sni_cache *cache, struct sni_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < nshards_of(cache); i++) {
		struct shard *s = &cache->shards[i];
		pthread_mutex_lock(&s->lock);
		out->hits += s->hits;
		out->misses += s->misses;
		out->negative_hits += s->negative_hits;
		out->filtered += s->filtered;
		out->evictions += s->evictions;
		out->entries += s->lru.count;
		out->negative_entries += s->negatives.count;
		out->bytes += s->bytes;
		pthread_mutex_unlock(&s->lock);
	}
}

void sni_cache_free(struct sni_cache *cache)
{
	if (!cache)
		return;
	for (size_t i = 0; i < nshards_of(cache); i++) {
		struct shard *s = &cache->shards[i];
		struct cert_entry *dead = NULL;
		drain_shard(cache, s, true, &dead);
		release_dead(dead);
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(cache->shards);
	free(cache);
}
