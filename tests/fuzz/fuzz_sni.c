// fuzz-sources: terminator/tls.c terminator/buf.c terminator/certctx.c common/pem.c terminator/sni_cache.c terminator/name_filter.c common/name.c common/err.c common/db.c common/log.c common/clock.c
// fuzz-libs: $(WOLFSSL_LIBS) -lpq -lsodium -lpthread -lm
/* Fuzzes the path a ClientHello takes before any TLS session exists: record framing, the server
 * name extension (wolfSSL_SNI_GetFromBuffer), normalization, then the shared cache lookup and
 * negative insert. Beyond not crashing: a name that comes out is already normalized, and the
 * cache answers it consistently with what it was just told. */
#include <stdlib.h>
#include <string.h>

#include "terminator.h"

static struct sni_cache *cache;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sni_cache_limits lim = {.max_entries = 64, .max_negative = 64, .negative_ttl_ms = 60000};
	struct tt_err err;
	struct cert_entry *e;
	if (sni_cache_new(&lim, &cache, &err) < 0)
		abort();
	/* a few names with entries, so lookups hit positive and negative ones too */
	if (sni_cache_insert(cache, "www.example.com", 1, NULL, 0, &e, &err) < 0)
		abort();
	cert_entry_release(e);
	sni_cache_insert_negative(cache, "unknown.example.com");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[TT_NAME_MAX], again[TT_NAME_MAX];
	struct cert_entry *e;
	struct tt_err err;
	int complete = tls_hello_complete(data, size);
	int rc = tls_hello_sni(data, size, name);

	if (complete < -1 || complete > 1 || rc < -1 || rc > 1)
		abort();
	if (rc != 1)
		return 0;
	size_t len = strlen(name);
	if (len == 0 || len > 253 || name[len - 1] == '.')
		abort();
	if (tt_name_normalize(name, again, &err) < 0 || strcmp(name, again) != 0)
		abort();
	for (size_t i = 0; i < len; i++)
		if (name[i] >= 'A' && name[i] <= 'Z')
			abort();
	enum sni_result r = sni_cache_lookup(cache, name, &e);
	if (r == SNI_HIT) {
		if (strcmp(name, "www.example.com") != 0 || cert_entry_cert_id(e) != 1)
			abort();
		cert_entry_release(e);
	} else if (r == SNI_MISS && strcmp(name, "www.example.com") != 0) {
		sni_cache_insert_negative(cache, name);
		if (sni_cache_lookup(cache, name, &e) != SNI_NEGATIVE)
			abort();
		sni_cache_invalidate(cache, name);
	}
	return 0;
}
