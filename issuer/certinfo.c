/* certinfo: reads certificates with wolfSSL (the one X.509 parser in the project): the leaf's
 * serial, validity, DNS names, whether a private key belongs to it, and when to renew it. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include "issuer.h"

static int tm_of(const WOLFSSL_ASN1_TIME *t, time_t *out)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS)
		return -1;
	*out = timegm(&tm);
	return 0;
}

/* RFC 9773 certificate id: base64url(authority key id) "." base64url(serial as a DER INTEGER body). */
static void ari_id(WOLFSSL_X509 *x, const unsigned char *serial, int slen, char *out, size_t size)
{
	unsigned char aki[64], body[65];
	int aki_len = sizeof(aki);
	out[0] = 0;
	if (!wolfSSL_X509_get_authorityKeyID(x, aki, &aki_len) || aki_len <= 0 || slen <= 0 || slen > 64)
		return;
	size_t blen = 0;
	if (serial[0] & 0x80)
		body[blen++] = 0;
	memcpy(body + blen, serial, (size_t)slen);
	blen += (size_t)slen;
	char *a = b64url(aki, (size_t)aki_len), *b = b64url(body, blen);
	if (a && b)
		snprintf(out, size, "%s.%s", a, b);
	free(a);
	free(b);
}

int certinfo_certs_only(const char *pem, size_t len, char **out, size_t *outlen, struct tt_err *err)
{
	char *buf = malloc(len + 2);
	size_t used = 0, n;
	const char *p = pem, *block;
	if (!buf)
		return tt_fail(err, "out of memory");
	while (tt_pem_next_cert(&p, pem + len, &block, &n)) {
		memcpy(buf + used, block, n);
		used += n;
		buf[used++] = '\n';
	}
	if (used == 0) {
		free(buf);
		return tt_fail(err, "no PEM certificate found");
	}
	buf[used] = '\0';
	*out = buf;
	*outlen = used;
	return 0;
}

int certinfo_parse(const char *chain_pem, size_t len, struct certinfo *out, struct tt_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *pos = chain_pem, *block;
	size_t block_len;
	if (!tt_pem_next_cert(&pos, chain_pem + len, &block, &block_len))
		return tt_fail(err, "no PEM certificate found");
	WOLFSSL_X509 *x =
	    wolfSSL_X509_load_certificate_buffer((const unsigned char *)chain_pem, (int)len, WOLFSSL_FILETYPE_PEM);
	if (!x)
		return tt_fail(err, "cannot parse the leaf certificate");
	int rc = -1;
	unsigned char serial[64];
	int slen = sizeof(serial);
	if (wolfSSL_X509_get_serial_number(x, serial, &slen) != WOLFSSL_SUCCESS || slen <= 0) {
		tt_fail(err, "certificate has no readable serial");
		goto out;
	}
	int first = 0;
	while (first < slen - 1 && serial[first] == 0)
		first++;
	for (int i = first; i < slen; i++)
		snprintf(out->serial + 2 * (i - first), 3, "%02x", serial[i]);
	ari_id(x, serial + first, slen - first, out->ari_id, sizeof(out->ari_id));
	if (tm_of(wolfSSL_X509_get_notBefore(x), &out->not_before) < 0 ||
	    tm_of(wolfSSL_X509_get_notAfter(x), &out->not_after) < 0) {
		tt_fail(err, "certificate has unreadable validity dates");
		goto out;
	}
	for (char *n; (n = wolfSSL_X509_get_next_altname(x));) {
		char **grown = realloc(out->sans, (out->nsans + 1) * sizeof(*grown));
		if (!grown) {
			tt_fail(err, "out of memory");
			goto out;
		}
		out->sans = grown;
		out->sans[out->nsans] = strdup(n);
		if (!out->sans[out->nsans]) {
			tt_fail(err, "out of memory");
			goto out;
		}
		for (char *c = out->sans[out->nsans]; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		out->nsans++;
	}
	rc = 0;
out:
	wolfSSL_X509_free(x);
	if (rc < 0)
		certinfo_free(out);
	return rc;
}

void certinfo_free(struct certinfo *ci)
{
	for (size_t i = 0; i < ci->nsans; i++)
		free(ci->sans[i]);
	free(ci->sans);
	ci->sans = NULL;
	ci->nsans = 0;
}

bool certinfo_covers(const struct certinfo *ci, const char *name)
{
	for (size_t i = 0; i < ci->nsans; i++) {
		const char *s = ci->sans[i];
		if (strcmp(s, name) == 0)
			return true;
		/* *.example.com covers exactly one more label */
		const char *dot = strchr(name, '.');
		if (s[0] == '*' && s[1] == '.' && dot && dot != name && strcmp(s + 1, dot) == 0)
			return true;
	}
	return false;
}

int certinfo_key_matches(const char *chain_pem, size_t chain_len, const uint8_t *key_pem, size_t key_len,
			 struct tt_err *err)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!ctx)
		return tt_fail(err, "wolfSSL_CTX_new failed");
	int rc = -1;
	if (wolfSSL_CTX_use_certificate_buffer(ctx, (const unsigned char *)chain_pem, (long)chain_len,
					       WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
		tt_fail(err, "cannot load the leaf certificate");
	else if (wolfSSL_CTX_use_PrivateKey_buffer(ctx, key_pem, (long)key_len, WOLFSSL_FILETYPE_PEM) !=
		 WOLFSSL_SUCCESS)
		tt_fail(err, "cannot load the private key (PEM expected)");
	else if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS)
		tt_fail(err, "the private key does not belong to the certificate");
	else
		rc = 0;
	wolfSSL_CTX_free(ctx);
	return rc;
}

int certinfo_key_type(const uint8_t *key_pem, size_t key_len, char *out, size_t size, struct tt_err *err)
{
	DerBuffer *der = NULL;
	if (wc_PemToDer(key_pem, (long)key_len, PRIVATEKEY_TYPE, &der, NULL, NULL, NULL) != 0 || !der)
		return tt_fail(err, "cannot read the PEM private key");
	int rc = -1;
	word32 idx = 0;
	int off = wc_GetPkcs8TraditionalOffset(der->buffer, &idx, der->length);
	idx = off > 0 ? (word32)off : 0;
	word32 start = idx;
	ecc_key ecc;
	RsaKey rsa;
	if (wc_ecc_init(&ecc) == 0) {
		if (wc_EccPrivateKeyDecode(der->buffer, &idx, &ecc, der->length) == 0) {
			snprintf(out, size, "ecdsa-p%d", wc_ecc_size(&ecc) * 8);
			rc = 0;
		}
		wc_ecc_free(&ecc);
	}
	idx = start;
	if (rc < 0 && wc_InitRsaKey(&rsa, NULL) == 0) {
		if (wc_RsaPrivateKeyDecode(der->buffer, &idx, &rsa, der->length) == 0) {
			snprintf(out, size, "rsa-%d", wc_RsaEncryptSize(&rsa) * 8);
			rc = 0;
		}
		wc_FreeRsaKey(&rsa);
	}
	wc_FreeDer(&der);
	return rc < 0 ? tt_fail(err, "unsupported private key type (ECDSA or RSA expected)") : 0;
}

time_t certinfo_renew_at(time_t not_before, time_t not_after)
{
	int64_t life = (int64_t)not_after - (int64_t)not_before;
	if (life <= 0)
		return not_after;
	int64_t window = life < 10 * DAY_S ? life / 2 : life / 3;
	int64_t spread = window / 3;
	if (sodium_init() < 0 || spread <= 0)
		return (time_t)(not_after - window);
	uint32_t r = spread > UINT32_MAX ? randombytes_random() : randombytes_uniform((uint32_t)spread);
	return (time_t)(not_after - window + (int64_t)r % (spread + 1));
}
