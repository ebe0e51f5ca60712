/* jws: JSON Web Signatures for ACME (RFC 7515/8555): ES256 with the account key, HS256 for
 * external account binding, base64url and the JWK thumbprint (RFC 7638). */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "issuer.h"

struct jws_key {
	ecc_key ecc;
	WC_RNG rng;
	char x[48], y[48]; /* base64url coordinates */
	char thumbprint[48];
};

char *b64url(const void *data, size_t len)
{
	size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = malloc(n);
	if (out)
		sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

int b64url_decode(const char *s, uint8_t **out, size_t *len)
{
	size_t cap = strlen(s) * 3 / 4 + 4;
	*out = malloc(cap);
	if (!*out)
		return -1;
	/* EAB keys are often handed out with padding or in the standard alphabet: accept both. */
	if (sodium_base642bin(*out, cap, s, strlen(s), "=", len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 &&
	    sodium_base642bin(*out, cap, s, strlen(s), "=", len, NULL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING) !=
		0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

static void b64url_to(char *out, size_t size, const uint8_t *data, size_t len)
{
	sodium_bin2base64(out, size, data, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* wc_FreeDer wipes only PRIVATEKEY_TYPE buffers, not the ECC_PRIVATEKEY_TYPE DER of the account key. */
static void free_secret_der(DerBuffer **der)
{
	sodium_memzero((*der)->buffer, (*der)->length);
	wc_FreeDer(der);
}

int jws_key_load(const uint8_t *pem, size_t pem_len, struct jws_key **out, struct tt_err *err)
{
	if (sodium_init() < 0)
		return tt_fail(err, "libsodium init failed");
	DerBuffer *der = NULL;
	if (wc_PemToDer(pem, (long)pem_len, ECC_PRIVATEKEY_TYPE, &der, NULL, NULL, NULL) != 0 || !der)
		return tt_fail(err, "account key is not a PEM EC private key");
	struct jws_key *k = calloc(1, sizeof(*k));
	if (!k) {
		free_secret_der(&der);
		return tt_fail(err, "out of memory");
	}
	word32 idx = 0;
	int rc = -1;
	if (wc_ecc_init(&k->ecc) != 0 || wc_InitRng(&k->rng) != 0) {
		free_secret_der(&der);
		free(k);
		return tt_fail(err, "cannot initialise the account key");
	}
	uint8_t qx[32], qy[32];
	word32 qxl = sizeof(qx), qyl = sizeof(qy);
	if (wc_EccPrivateKeyDecode(der->buffer, &idx, &k->ecc, der->length) != 0)
		tt_fail(err, "cannot decode the account key");
	else if (wc_ecc_get_curve_id(k->ecc.idx) != ECC_SECP256R1)
		tt_fail(err, "the account key must be P-256");
	else if (wc_ecc_export_public_raw(&k->ecc, qx, &qxl, qy, &qyl) != 0 &&
		 (wc_ecc_make_pub(&k->ecc, NULL) != 0 || wc_ecc_export_public_raw(&k->ecc, qx, &qxl, qy, &qyl) != 0))
		tt_fail(err, "cannot export the account public key");
	else
		rc = 0;
	free_secret_der(&der);
	if (rc < 0) {
		jws_key_free(k);
		return -1;
	}
	b64url_to(k->x, sizeof(k->x), qx, qxl);
	b64url_to(k->y, sizeof(k->y), qy, qyl);
	char canon[200];
	int n =
	    snprintf(canon, sizeof(canon), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", k->x, k->y);
	uint8_t h[WC_SHA256_DIGEST_SIZE];
	wc_Sha256Hash((const uint8_t *)canon, (word32)n, h);
	b64url_to(k->thumbprint, sizeof(k->thumbprint), h, sizeof(h));
	*out = k;
	return 0;
}

void jws_key_free(struct jws_key *k)
{
	if (!k)
		return;
	wc_ecc_free(&k->ecc);
	wc_FreeRng(&k->rng);
	sodium_memzero(k, sizeof(*k));
	free(k);
}

json_t *jws_key_jwk(const struct jws_key *k)
{
	return json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC", "x", k->x, "y", k->y);
}

const char *jws_key_thumbprint(const struct jws_key *k)
{
	return k->thumbprint;
}

/* Flattened JSON serialization; signature input is BASE64URL(protected) "." BASE64URL(payload). */
static json_t *flatten(const char *prot, const char *payload, const uint8_t *sig, size_t sig_len)
{
	char *s = b64url(sig, sig_len);
	json_t *out = s ? json_pack("{s:s, s:s, s:s}", "protected", prot, "payload", payload, "signature", s) : NULL;
	free(s);
	return out;
}

static char *signing_input(json_t *protected, const char *payload, char **prot_b64, char **payload_b64)
{
	char *prot = json_dumps(protected, JSON_COMPACT | JSON_SORT_KEYS);
	*prot_b64 = prot ? b64url(prot, strlen(prot)) : NULL;
	*payload_b64 = b64url(payload, strlen(payload));
	free(prot);
	if (!*prot_b64 || !*payload_b64)
		return NULL;
	size_t n = strlen(*prot_b64) + strlen(*payload_b64) + 2;
	char *in = malloc(n);
	if (in)
		snprintf(in, n, "%s.%s", *prot_b64, *payload_b64);
	return in;
}

json_t *jws_sign(struct jws_key *k, json_t *protected, const char *payload, struct tt_err *err)
{
	json_object_set_new(protected, "alg", json_string("ES256"));
	char *prot_b64 = NULL, *payload_b64 = NULL;
	char *in = signing_input(protected, payload, &prot_b64, &payload_b64);
	json_t *out = NULL;
	if (!in) {
		tt_fail(err, "out of memory");
		goto done;
	}
	uint8_t h[WC_SHA256_DIGEST_SIZE], der[80], rs[64];
	wc_Sha256Hash((const uint8_t *)in, (word32)strlen(in), h);
	word32 der_len = sizeof(der), rl = 32, sl = 32;
	uint8_t r[32], s[32];
	if (wc_ecc_sign_hash(h, sizeof(h), der, &der_len, &k->rng, &k->ecc) != 0 ||
	    wc_ecc_sig_to_rs(der, der_len, r, &rl, s, &sl) != 0) {
		tt_fail(err, "ES256 signing failed");
		goto done;
	}
	/* JWS wants r and s as fixed 32-byte big-endian integers */
	memset(rs, 0, sizeof(rs));
	memcpy(rs + 32 - rl, r, rl);
	memcpy(rs + 64 - sl, s, sl);
	out = flatten(prot_b64, payload_b64, rs, sizeof(rs));
	if (!out)
		tt_fail(err, "out of memory");
done:
	free(in);
	free(prot_b64);
	free(payload_b64);
	return out;
}

json_t *jws_eab(const char *kid, const char *hmac_b64, const char *url, const struct jws_key *account,
		struct tt_err *err)
{
	uint8_t *key = NULL;
	size_t key_len = 0;
	if (b64url_decode(hmac_b64, &key, &key_len) < 0) {
		tt_fail(err, "--eab-hmac-key is not base64url");
		return NULL;
	}
	json_t *prot = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", kid, "url", url);
	json_t *jwk = jws_key_jwk(account);
	char *jwk_s = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	char *prot_b64 = NULL, *payload_b64 = NULL;
	char *in = jwk_s ? signing_input(prot, jwk_s, &prot_b64, &payload_b64) : NULL;
	json_t *out = NULL;
	Hmac hmac;
	uint8_t mac[WC_SHA256_DIGEST_SIZE];
	if (!in)
		tt_fail(err, "out of memory");
	else if (wc_HmacInit(&hmac, NULL, INVALID_DEVID) != 0 ||
		 wc_HmacSetKey(&hmac, WC_SHA256, key, (word32)key_len) != 0 ||
		 wc_HmacUpdate(&hmac, (const uint8_t *)in, (word32)strlen(in)) != 0 || wc_HmacFinal(&hmac, mac) != 0)
		tt_fail(err, "HS256 failed for the external account binding");
	else if (!(out = flatten(prot_b64, payload_b64, mac, sizeof(mac))))
		tt_fail(err, "out of memory");
	wc_HmacFree(&hmac);
	sodium_memzero(key, key_len);
	free(key);
	free(in);
	free(prot_b64);
	free(payload_b64);
	free(jwk_s);
	json_decref(jwk);
	json_decref(prot);
	return out;
}
