/* certctx: turns one certificate chain and its clear private key into a ready WOLFSSL_CTX that
 * carries the terminator's TLS policy. */
#include <string.h>

#include <wolfssl/ssl.h>

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

int certctx_new(const char *chain_pem, size_t chain_len, const uint8_t *key, size_t key_len, WOLFSSL_CTX **out,
		struct tt_err *err)
{
	int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
	WOLFSSL_CTX *ctx;
	int rc;

	*out = NULL;
	if (chain_len == 0 || key_len == 0 || chain_len > INT32_MAX || key_len > INT32_MAX)
		return tt_fail(err, "empty or oversized certificate or key");
	ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
	if (!ctx)
		return tt_fail(err, "wolfSSL_CTX_new failed");
	if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		tt_fail(err, "cannot set the minimum TLS version");
		goto fail;
	}
	if (wolfSSL_CTX_set_cipher_list(ctx, cipher_list) != WOLFSSL_SUCCESS) {
		tt_fail(err, "cannot set the cipher list");
		goto fail;
	}
	if (wolfSSL_CTX_set_groups(ctx, groups, (int)(sizeof(groups) / sizeof(groups[0]))) != WOLFSSL_SUCCESS) {
		tt_fail(err, "cannot set the key exchange groups");
		goto fail;
	}
	/* wolfSSL here is built without zlib and without secure renegotiation, so neither can be
	 * negotiated; the option states the policy should the build ever change. */
	wolfSSL_CTX_set_options(ctx, WOLFSSL_OP_NO_COMPRESSION);
	rc = wolfSSL_CTX_use_certificate_chain_buffer(ctx, (const unsigned char *)chain_pem, (long)chain_len);
	if (rc != WOLFSSL_SUCCESS) {
		tt_fail(err, "certificate chain does not parse (wolfSSL error %d)", rc);
		goto fail;
	}
	rc = wolfSSL_CTX_use_PrivateKey_buffer(ctx, key, (long)key_len,
					       is_pem(key, key_len) ? WOLFSSL_FILETYPE_PEM : WOLFSSL_FILETYPE_ASN1);
	if (rc != WOLFSSL_SUCCESS) {
		tt_fail(err, "private key does not parse (wolfSSL error %d)", rc);
		goto fail;
	}
	if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
		tt_fail(err, "private key does not match the certificate");
		goto fail;
	}
	*out = ctx;
	return 0;
fail:
	/* Frees the key copy with ForceZero (wolfcrypt FreeDer on PRIVATEKEY_TYPE). */
	wolfSSL_CTX_free(ctx);
	return -1;
}

int certctx_session_init(WOLFSSL *ssl)
{
	char alpn[] = "http/1.1";
	int rc = wolfSSL_UseALPN(ssl, alpn, sizeof(alpn) - 1, WOLFSSL_ALPN_CONTINUE_ON_MISMATCH);
	return rc == WOLFSSL_SUCCESS ? 0 : -1;
}
