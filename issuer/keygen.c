/* keygen: fresh private keys (ECDSA P-256 by default, RSA-2048 on request) and the DER CSR that
 * asks for one name. The CSR is encoded here because this wolfSSL build has no SAN support in its
 * request writer (WOLFSSL_ALT_NAMES is off). */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "issuer.h"

int key_type_parse(const char *s, enum key_type *out, struct tt_err *err)
{
	if (!s || strcmp(s, "ecdsa") == 0 || strcmp(s, "ecdsa-p256") == 0 || strcmp(s, "p256") == 0)
		*out = KEY_ECDSA_P256;
	else if (strcmp(s, "rsa") == 0 || strcmp(s, "rsa-2048") == 0 || strcmp(s, "rsa2048") == 0)
		*out = KEY_RSA_2048;
	else
		return tt_fail(err, "--key-type: expected ecdsa or rsa, got '%s'", s);
	return 0;
}

const char *key_type_name(enum key_type t)
{
	return t == KEY_RSA_2048 ? "rsa-2048" : "ecdsa-p256";
}

/* A growing DER buffer written front to back. */
struct der {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

static void der_put(struct der *d, const void *src, size_t n)
{
	if (d->failed || n == 0)
		return;
	if (d->len + n > d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		while (cap < d->len + n)
			cap *= 2;
		uint8_t *np = realloc(d->p, cap);
		if (!np) {
			d->failed = true;
			return;
		}
		d->p = np;
		d->cap = cap;
	}
	memcpy(d->p + d->len, src, n);
	d->len += n;
}

static void der_tlv(struct der *d, uint8_t tag, const void *content, size_t n)
{
	uint8_t hdr[6];
	size_t h = 0;
	hdr[h++] = tag;
	if (n < 0x80) {
		hdr[h++] = (uint8_t)n;
	} else if (n < 0x100) {
		hdr[h++] = 0x81;
		hdr[h++] = (uint8_t)n;
	} else if (n < 0x10000) {
		hdr[h++] = 0x82;
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	} else {
		hdr[h++] = 0x83;
		hdr[h++] = (uint8_t)(n >> 16);
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	}
	der_put(d, hdr, h);
	der_put(d, content, n);
}

/* Wraps everything in inner as the content of one TLV appended to outer, then frees inner. */
static void der_wrap(struct der *outer, uint8_t tag, struct der *inner)
{
	if (inner->failed)
		outer->failed = true;
	else
		der_tlv(outer, tag, inner->p, inner->len);
	free(inner->p);
	*inner = (struct der){0};
}

static const uint8_t OID_EXT_REQUEST[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e};
static const uint8_t OID_SAN[] = {0x55, 0x1d, 0x11};
static const uint8_t OID_ECDSA_SHA256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const uint8_t OID_RSA_SHA256[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};

/* CertificationRequestInfo (RFC 2986) with an empty subject and one dNSName SAN. */
static void csr_info(struct der *out, const char *name, const uint8_t *spki, size_t spki_len)
{
	struct der body = {0}, t1 = {0}, t2 = {0}, t3 = {0}, t4 = {0};
	static const uint8_t version0[] = {0x00};
	der_tlv(&body, 0x02, version0, 1);
	der_tlv(&body, 0x30, NULL, 0);
	der_put(&body, spki, spki_len);

	der_tlv(&t1, 0x82, name, strlen(name)); /* GeneralName dNSName */
	der_wrap(&t2, 0x30, &t1);		/* GeneralNames */
	der_tlv(&t3, 0x06, OID_SAN, sizeof(OID_SAN));
	der_wrap(&t3, 0x04, &t2); /* extnValue */
	der_wrap(&t1, 0x30, &t3); /* Extension */
	der_wrap(&t2, 0x30, &t1); /* Extensions */
	der_tlv(&t4, 0x06, OID_EXT_REQUEST, sizeof(OID_EXT_REQUEST));
	der_wrap(&t4, 0x31, &t2); /* attribute values */
	der_wrap(&t1, 0x30, &t4); /* Attribute */
	der_wrap(&body, 0xa0, &t1);
	der_wrap(out, 0x30, &body);
}

static int make_csr(enum key_type type, void *key, WC_RNG *rng, const char *name, uint8_t **csr, size_t *csr_len,
		    struct tt_err *err)
{
	uint8_t spki[600];
	int spki_len = type == KEY_RSA_2048 ? wc_RsaKeyToPublicDer(key, spki, sizeof(spki))
					    : wc_EccPublicKeyToDer(key, spki, sizeof(spki), 1);
	if (spki_len <= 0)
		return tt_fail(err, "cannot encode the public key (%d)", spki_len);
	struct der info = {0}, alg = {0}, whole = {0};
	csr_info(&info, name, spki, (size_t)spki_len);
	if (info.failed)
		return tt_fail(err, "out of memory");
	uint8_t hash[WC_SHA256_DIGEST_SIZE];
	wc_Sha256Hash(info.p, (word32)info.len, hash);
	uint8_t sig[1 + 512];
	word32 sig_len = sizeof(sig) - 1;
	int rc;
	sig[0] = 0; /* BIT STRING: no unused bits */
	if (type == KEY_RSA_2048) {
		uint8_t digest_info[64];
		word32 di_len = wc_EncodeSignature(digest_info, hash, sizeof(hash), SHA256h);
		rc = wc_RsaSSL_Sign(digest_info, di_len, sig + 1, sig_len, key, rng);
		sig_len = rc > 0 ? (word32)rc : 0;
		rc = rc > 0 ? 0 : rc;
		der_tlv(&alg, 0x06, OID_RSA_SHA256, sizeof(OID_RSA_SHA256));
		der_tlv(&alg, 0x05, NULL, 0);
	} else {
		rc = wc_ecc_sign_hash(hash, sizeof(hash), sig + 1, &sig_len, rng, key);
		der_tlv(&alg, 0x06, OID_ECDSA_SHA256, sizeof(OID_ECDSA_SHA256));
	}
	if (rc != 0) {
		free(info.p);
		free(alg.p);
		return tt_fail(err, "cannot sign the CSR (%d)", rc);
	}
	struct der body = info;
	der_wrap(&body, 0x30, &alg);
	der_tlv(&body, 0x03, sig, sig_len + 1);
	der_wrap(&whole, 0x30, &body);
	if (whole.failed) {
		free(whole.p);
		return tt_fail(err, "out of memory");
	}
	*csr = whole.p;
	*csr_len = whole.len;
	return 0;
}

/* Copies a PEM from a stack buffer into locked memory and wipes the stack copy. */
static int secret_pem(uint8_t *der, int der_len, int pem_type, uint8_t **out, size_t *out_len, struct tt_err *err)
{
	uint8_t pem[4096];
	int n = wc_DerToPem(der, (word32)der_len, pem, sizeof(pem), pem_type);
	sodium_memzero(der, (size_t)der_len);
	if (n <= 0)
		return tt_fail(err, "cannot encode the key as PEM (%d)", n);
	*out = sodium_malloc((size_t)n);
	if (!*out) {
		sodium_memzero(pem, sizeof(pem));
		return tt_fail(err, "out of memory");
	}
	memcpy(*out, pem, (size_t)n);
	*out_len = (size_t)n;
	sodium_memzero(pem, sizeof(pem));
	return 0;
}

int keygen_domain(enum key_type type, const char *name, uint8_t **key_pem, size_t *key_len, uint8_t **csr,
		  size_t *csr_len, struct tt_err *err)
{
	if (sodium_init() < 0)
		return tt_fail(err, "libsodium init failed");
	WC_RNG rng;
	if (wc_InitRng(&rng) != 0)
		return tt_fail(err, "cannot seed the random generator");
	int rc = -1;
	uint8_t der[2048];
	if (type == KEY_RSA_2048) {
		RsaKey rsa;
		if (wc_InitRsaKey(&rsa, NULL) != 0) {
			tt_fail(err, "wc_InitRsaKey failed");
			goto out;
		}
		int n;
		if (wc_MakeRsaKey(&rsa, 2048, WC_RSA_EXPONENT, &rng) != 0)
			tt_fail(err, "RSA key generation failed");
		else if ((n = wc_RsaKeyToDer(&rsa, der, sizeof(der))) <= 0)
			tt_fail(err, "cannot encode the RSA key (%d)", n);
		else if (secret_pem(der, n, PRIVATEKEY_TYPE, key_pem, key_len, err) == 0) {
			if (make_csr(type, &rsa, &rng, name, csr, csr_len, err) == 0)
				rc = 0;
			else
				tt_secret_free(*key_pem, *key_len);
		}
		wc_FreeRsaKey(&rsa);
	} else {
		ecc_key ecc;
		if (wc_ecc_init(&ecc) != 0) {
			tt_fail(err, "wc_ecc_init failed");
			goto out;
		}
		int n;
		if (wc_ecc_make_key_ex(&rng, 32, &ecc, ECC_SECP256R1) != 0)
			tt_fail(err, "P-256 key generation failed");
		else if ((n = wc_EccKeyToDer(&ecc, der, sizeof(der))) <= 0)
			tt_fail(err, "cannot encode the P-256 key (%d)", n);
		else if (secret_pem(der, n, ECC_PRIVATEKEY_TYPE, key_pem, key_len, err) == 0) {
			if (!name || make_csr(type, &ecc, &rng, name, csr, csr_len, err) == 0)
				rc = 0;
			else
				tt_secret_free(*key_pem, *key_len);
		}
		wc_ecc_free(&ecc);
	}
out:
	wc_FreeRng(&rng);
	return rc;
}

int keygen_account(uint8_t **key_pem, size_t *key_len, struct tt_err *err)
{
	return keygen_domain(KEY_ECDSA_P256, NULL, key_pem, key_len, NULL, NULL, err);
}
