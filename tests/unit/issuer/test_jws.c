/* jws.c: base64url, and ES256 signatures that verify with the key's public half. */
#include <sodium.h>
#include <string.h>

#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "check.h"
#include "issuer.h"

int main(void)
{
	struct tt_err err = {{0}};
	char *e = b64url("\xfb\xff\xfe", 3);
	CHECK(e && strcmp(e, "-__-") == 0, "base64url alphabet, no padding");
	uint8_t *d;
	size_t dl;
	CHECK(b64url_decode("-__-", &d, &dl) == 0 && dl == 3 && memcmp(d, "\xfb\xff\xfe", 3) == 0, "and back");
	free(e);
	free(d);

	uint8_t *pem;
	size_t pem_len;
	struct jws_key *k = NULL;
	if (keygen_account(&pem, &pem_len, &err) < 0 || jws_key_load(pem, pem_len, &k, &err) < 0) {
		CHECK(0, "account key");
		CHECK_DONE();
	}
	json_t *prot = json_pack("{s:s, s:s}", "nonce", "n1", "url", "https://ca.example/new-order");
	json_t *jws = jws_sign(k, prot, "{\"x\":1}", &err);
	CHECK(jws != NULL, "ES256 signs");
	const char *p64 = json_string_value(json_object_get(jws, "protected"));
	const char *b64 = json_string_value(json_object_get(jws, "payload"));
	const char *s64 = json_string_value(json_object_get(jws, "signature"));
	uint8_t *ph, *sig;
	size_t phl, sigl;
	CHECK(b64url_decode(p64, &ph, &phl) == 0 && strstr((char *)ph, "\"alg\":\"ES256\"") &&
		  strstr((char *)ph, "\"nonce\":\"n1\""),
	      "protected header carries alg and nonce");
	CHECK(b64url_decode(s64, &sig, &sigl) == 0 && sigl == 64, "signature is r||s, 64 bytes");

	/* verify with the public key taken from the JWK */
	json_t *jwk = jws_key_jwk(k);
	uint8_t *x, *y;
	size_t xl, yl;
	b64url_decode(json_string_value(json_object_get(jwk, "x")), &x, &xl);
	b64url_decode(json_string_value(json_object_get(jwk, "y")), &y, &yl);
	char xhex[65], yhex[65], rhex[65], shex[65];
	sodium_bin2hex(xhex, sizeof(xhex), x, 32);
	sodium_bin2hex(yhex, sizeof(yhex), y, 32);
	sodium_bin2hex(rhex, sizeof(rhex), sig, 32);
	sodium_bin2hex(shex, sizeof(shex), sig + 32, 32);
	ecc_key pub;
	wc_ecc_init(&pub);
	int ok = wc_ecc_import_raw(&pub, xhex, yhex, NULL, "SECP256R1") == 0;
	uint8_t der[80];
	word32 der_len = sizeof(der);
	ok = ok && wc_ecc_rs_to_sig(rhex, shex, der, &der_len) == 0;
	char input[1024];
	snprintf(input, sizeof(input), "%s.%s", p64, b64);
	uint8_t h[WC_SHA256_DIGEST_SIZE];
	wc_Sha256Hash((uint8_t *)input, (word32)strlen(input), h);
	int verified = 0;
	ok = ok && wc_ecc_verify_hash(der, der_len, h, sizeof(h), &verified, &pub) == 0;
	CHECK(ok && verified == 1, "the signature verifies over protected.payload");
	h[0] ^= 1;
	verified = 0;
	wc_ecc_verify_hash(der, der_len, h, sizeof(h), &verified, &pub);
	CHECK(verified == 0, "and not over anything else");

	json_t *eab =
	    jws_eab("kid-1", "c2VjcmV0LWtleS1mb3ItdGVzdGluZy0xMjM0NTY3OA", "https://ca.example/acct", k, &err);
	uint8_t *eh;
	size_t ehl;
	CHECK(eab && b64url_decode(json_string_value(json_object_get(eab, "protected")), &eh, &ehl) == 0 &&
		  strstr((char *)eh, "\"alg\":\"HS256\"") && strstr((char *)eh, "\"kid\":\"kid-1\""),
	      "EAB is HS256 with the EAB key id");
	free(eh);
	wc_ecc_free(&pub);
	free(x);
	free(y);
	free(ph);
	free(sig);
	json_decref(jwk);
	json_decref(jws);
	json_decref(prot);
	json_decref(eab);
	jws_key_free(k);
	tt_secret_free(pem, pem_len);
	CHECK_DONE();
}
