/* The account key's clear copies are wiped before wolfSSL frees them: every block wolfSSL frees
 * while a key is loaded and used is searched for the key's private scalar. */
#include <string.h>

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/memory.h>

#include "check.h"
#include "issuer.h"

/* wolfSSL's allocations carry their size in front, so a free can look inside the block. */
#define HDR (2 * sizeof(size_t))
static uint8_t secret[32];
static bool watching;
static int freed_with_secret;

static void *t_malloc(size_t n)
{
	size_t *p = malloc(n + HDR);
	if (!p)
		return NULL;
	p[0] = n;
	return (uint8_t *)p + HDR;
}

static void t_free(void *ptr)
{
	if (!ptr)
		return;
	size_t *p = (size_t *)((uint8_t *)ptr - HDR);
	if (watching && memmem(ptr, p[0], secret, sizeof(secret)))
		freed_with_secret++;
	free(p);
}

static void *t_realloc(void *ptr, size_t n)
{
	void *q = t_malloc(n);
	if (q && ptr) {
		size_t old = *(size_t *)((uint8_t *)ptr - HDR);
		memcpy(q, ptr, old < n ? old : n);
		t_free(ptr);
	}
	return q;
}

/* The private scalar of a PEM P-256 key, read while nothing is watched. */
static int scalar_of(const uint8_t *pem, size_t len)
{
	DerBuffer *der = NULL;
	ecc_key k;
	word32 idx = 0, sl = sizeof(secret);
	int rc = -1;
	if (wc_PemToDer(pem, (long)len, ECC_PRIVATEKEY_TYPE, &der, NULL, NULL, NULL) != 0 || wc_ecc_init(&k) != 0)
		return -1;
	if (wc_EccPrivateKeyDecode(der->buffer, &idx, &k, der->length) == 0 &&
	    wc_ecc_export_private_only(&k, secret, &sl) == 0 && sl == sizeof(secret))
		rc = 0;
	wc_ecc_free(&k);
	wc_FreeDer(&der);
	return rc;
}

int main(void)
{
	if (wolfSSL_SetAllocators(t_malloc, t_free, t_realloc) != 0) {
		CHECK(0, "wolfSSL takes our allocators");
		CHECK_DONE();
	}
	struct tt_err err = {{0}};
	uint8_t *pem = NULL;
	size_t pem_len = 0;
	CHECK(keygen_account(&pem, &pem_len, &err) == 0 && scalar_of(pem, pem_len) == 0, "an account key to watch");

	watching = true;
	struct jws_key *k = NULL;
	int loaded = jws_key_load(pem, pem_len, &k, &err);
	jws_key_free(k);
	watching = false;
	CHECK(loaded == 0, "the account key loads");
	CHECK(freed_with_secret == 0, "loading the account key frees no block holding its private scalar");

	freed_with_secret = 0;
	watching = true;
	char type[32];
	int typed = certinfo_key_type(pem, pem_len, type, sizeof(type), &err);
	watching = false;
	CHECK(typed == 0 && strcmp(type, "ecdsa-p256") == 0, "its type reads as ecdsa-p256");
	CHECK(freed_with_secret == 0, "reading a key's type frees no block holding its private scalar");

	freed_with_secret = 0;
	watching = true;
	CHECK(jws_key_load((const uint8_t *)"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", 62,
			   &k, &err) < 0,
	      "a broken key is refused");
	watching = false;
	tt_secret_free(pem, pem_len);
	CHECK_DONE();
}
