/* certctx: turns one certificate chain and its clear private key into a ready WOLFSSL_CTX that
 * carries the terminator's TLS policy. */
#include <stdlib.h>
#include <string.h>

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include "terminator.h"

/* AEAD only, forward secret only; TLS 1.3 suites first so 1.3 clients never see a 1.2 choice. */
static const char cipher_list[] = "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
				  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
				  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static bool is_pem(const uint8_t *buf, size_t len)
{
	static const char marker[] = "-----BEGIN";
	return len >= sizeof(marker) - 1 && memmem(buf, len, marker, sizeof(marker) - 1) != NULL;
}

/* PEM blocks become one buffer of concatenated DER: wolfSSL sizes its copies from DER input
 * exactly, while from PEM it keeps base64-sized buffers (about 170 bytes more per certificate). */
static int chain_to_der(const char *pem, size_t len, uint8_t **out, size_t *outlen, struct tt_err *err)
{
	uint8_t *der = malloc(len);
	size_t used = 0, blen;
	const char *p = pem, *block;

	if (!der)
		return tt_fail(err, "out of memory");
	while (tt_pem_next_cert(&p, pem + len, &block, &blen)) {
		int n =
		    wc_CertPemToDer((const unsigned char *)block, (int)blen, der + used, (int)(len - used), CERT_TYPE);
		if (n <= 0) {
			free(der);
			return tt_fail(err, "certificate %s in the chain does not decode",
				       used ? "after the first" : "1");
		}
		used += (size_t)n;
	}
	if (used == 0) {
		free(der);
		return tt_fail(err, "no PEM certificate in the chain");
	}
	*out = der;
	*outlen = used;
	return 0;
}

static void wipe_free(uint8_t *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

int certctx_new(const char *chain_pem, size_t chain_len, const uint8_t *key, size_t key_len, WOLFSSL_CTX **out,
		struct tt_err *err)
{
	WOLFSSL_CTX *ctx;
	uint8_t *der = NULL, *key_der = NULL;
	size_t der_len = 0, key_der_cap = key_len;
	int rc;

	*out = NULL;
	if (chain_len == 0 || key_len == 0 || chain_len > INT32_MAX || key_len > INT32_MAX)
		return tt_fail(err, "empty or oversized certificate or key");
	if (chain_to_der(chain_pem, chain_len, &der, &der_len, err) < 0)
		return -1;
	ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!ctx) {
		free(der);
		return tt_fail(err, "wolfSSL_CTX_new failed");
	}
	if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		tt_fail(err, "cannot set the minimum TLS version");
		goto fail;
	}
	if (wolfSSL_CTX_set_cipher_list(ctx, cipher_list) != WOLFSSL_SUCCESS) {
		tt_fail(err, "cannot set the cipher list");
		goto fail;
	}
	/* wolfSSL here is built without zlib and without secure renegotiation, so neither can be
	 * negotiated; the option states the policy should the build ever change. */
	wolfSSL_CTX_set_options(ctx, WOLFSSL_OP_NO_COMPRESSION);
	rc = wolfSSL_CTX_use_certificate_chain_buffer_format(ctx, der, (long)der_len, WOLFSSL_FILETYPE_ASN1);
	if (rc != WOLFSSL_SUCCESS) {
		tt_fail(err, "certificate chain does not parse (wolfSSL error %d)", rc);
		goto fail;
	}
	if (is_pem(key, key_len)) {
		/* converted here for the same reason as the chain; this copy is wiped below */
		key_der = malloc(key_der_cap);
		if (!key_der) {
			tt_fail(err, "out of memory");
			goto fail;
		}
		rc = wc_KeyPemToDer(key, (int)key_len, key_der, (int)key_der_cap, NULL);
		if (rc <= 0) {
			tt_fail(err, "private key PEM does not decode (wolfSSL error %d)", rc);
			goto fail;
		}
		key = key_der;
		key_len = (size_t)rc;
	}
	rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len, WOLFSSL_FILETYPE_ASN1);
	if (rc != WOLFSSL_SUCCESS) {
		tt_fail(err, "private key does not parse (wolfSSL error %d)", rc);
		goto fail;
	}
	if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
		tt_fail(err, "private key does not match the certificate");
		goto fail;
	}
	free(der);
	wipe_free(key_der, key_der_cap);
	*out = ctx;
	return 0;
fail:
	free(der);
	wipe_free(key_der, key_der_cap);
	/* Frees the key copy with ForceZero (wolfcrypt FreeDer on PRIVATEKEY_TYPE). */
	wolfSSL_CTX_free(ctx);
	return -1;
}

/* Groups are set here rather than on the CTX: a CTX stays cached for every domain (their list
 * costs about 100 bytes each there), while a session lives for one connection. */
int certctx_session_init(WOLFSSL *ssl)
{
	int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
	char alpn[] = "http/1.1";
	if (wolfSSL_set_groups(ssl, groups, (int)(sizeof(groups) / sizeof(groups[0]))) != WOLFSSL_SUCCESS)
		return -1;
	int rc = wolfSSL_UseALPN(ssl, alpn, sizeof(alpn) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
	return rc == WOLFSSL_SUCCESS ? 0 : -1;
}
