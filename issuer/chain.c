/* chain: checks a downloaded chain before anything is stored: every signature up to a trusted
 * root and every validity date (wolfSSL's certificate manager: no crypto of our own), then a leaf
 * that is what we asked for: the CSR's public key and exactly the ordered name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "issuer.h"

/* A CA's chain is the leaf and one or two intermediates; more is not a chain worth serving. */
#define CHAIN_MAX_CERTS 8

struct pem_block {
	const unsigned char *p;
	long len;
};

/* The certificate manager trusts the roots, then each intermediate that verifies, top down. A top
 * certificate that does not verify is skipped (a cross-sign towards an old root the store no
 * longer holds); once one verified, every one below it must. */
static int load_intermediates(WOLFSSL_CERT_MANAGER *cm, const struct pem_block *b, int n, struct tt_err *err)
{
	bool anchored = false;
	for (int i = n - 1; i >= 1; i--) {
		int rc = wolfSSL_CertManagerVerifyBuffer(cm, b[i].p, b[i].len, WOLFSSL_FILETYPE_PEM);
		if (rc != WOLFSSL_SUCCESS) {
			if (!anchored)
				continue;
			return tt_fail(err, "chain certificate %d does not verify: %s", i, wc_GetErrorString(rc));
		}
		WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_buffer(b[i].p, (int)b[i].len, WOLFSSL_FILETYPE_PEM);
		bool ca = x && wolfSSL_X509_get_isCA(x);
		wolfSSL_X509_free(x);
		if (!ca)
			return tt_fail(err, "chain certificate %d is not a CA certificate", i);
		if (wolfSSL_CertManagerLoadCABuffer(cm, b[i].p, b[i].len, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
			return tt_fail(err, "chain certificate %d cannot be used as an issuer", i);
		anchored = true;
	}
	return 0;
}

/* The DER SubjectPublicKeyInfo of a certificate or CSR (malloc'd by wolfSSL: XFREE), or -1. */
static int spki_of(WOLFSSL_X509 *x, unsigned char **der)
{
	WOLFSSL_EVP_PKEY *k = x ? wolfSSL_X509_get_pubkey(x) : NULL;
	int n = k ? wolfSSL_i2d_PUBKEY(k, der) : -1;
	wolfSSL_EVP_PKEY_free(k);
	return n;
}

/* 0 when the leaf's public key is the one in the CSR. */
static int key_matches_csr(const struct pem_block *leaf, const uint8_t *csr, size_t csr_len, struct tt_err *err)
{
	WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_buffer(leaf->p, (int)leaf->len, WOLFSSL_FILETYPE_PEM);
	WOLFSSL_X509 *req = wolfSSL_X509_REQ_d2i(NULL, csr, (int)csr_len);
	unsigned char *kx = NULL, *kr = NULL;
	int lx = spki_of(x, &kx), lr = spki_of(req, &kr), rc = -1;
	if (lx <= 0 || lr <= 0)
		tt_fail(err, "cannot read the public key of the leaf or the CSR");
	else if (lx != lr || memcmp(kx, kr, (size_t)lx) != 0)
		tt_fail(err, "the leaf's public key is not the one in our CSR");
	else
		rc = 0;
	XFREE(kx, NULL, DYNAMIC_TYPE_OPENSSL);
	XFREE(kr, NULL, DYNAMIC_TYPE_OPENSSL);
	wolfSSL_X509_free(x);
	wolfSSL_X509_free(req);
	return rc;
}

/* 0 when the leaf is valid at now and names exactly name. */
static int leaf_fits(const char *chain_pem, size_t len, const char *name, time_t now, struct tt_err *err)
{
	struct certinfo ci;
	if (certinfo_parse(chain_pem, len, &ci, err) < 0)
		return -1;
	int rc = 0;
	if (now < ci.not_before || now >= ci.not_after)
		rc = tt_fail(err, "the leaf is not valid now (valid %lld..%lld, now %lld)", (long long)ci.not_before,
			     (long long)ci.not_after, (long long)now);
	else if (ci.nsans == 0)
		rc = tt_fail(err, "the leaf names no DNS name");
	for (size_t i = 0; rc == 0 && i < ci.nsans; i++)
		if (strcmp(ci.sans[i], name) != 0)
			rc = tt_fail(err, "the leaf names %s, which we did not order (ordered %s)", ci.sans[i], name);
	certinfo_free(&ci);
	return rc;
}

int chain_verify(const char *trust_file, const char *chain_pem, size_t len, const char *name, const uint8_t *csr,
		 size_t csr_len, time_t now, struct tt_err *err)
{
	struct pem_block b[CHAIN_MAX_CERTS];
	int n = 0;
	const char *pos = chain_pem, *block;
	size_t block_len;
	while (tt_pem_next_cert(&pos, chain_pem + len, &block, &block_len)) {
		if (n == CHAIN_MAX_CERTS)
			return tt_fail(err, "the chain has more than %d certificates", CHAIN_MAX_CERTS);
		b[n++] = (struct pem_block){(const unsigned char *)block, (long)block_len};
	}
	if (n == 0)
		return tt_fail(err, "the chain holds no PEM certificate");
	if (leaf_fits(chain_pem, len, name, now, err) < 0 || key_matches_csr(&b[0], csr, csr_len, err) < 0)
		return -1;
	const char *roots = trust_file ? trust_file : CHAIN_SYSTEM_STORE;
	/* A context only to load the roots with flags: one root in the system store that wolfSSL cannot
	 * read must not cost all the others; a file the operator names is taken strictly. */
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
	if (!ctx)
		return tt_fail(err, "out of memory");
	int rc = -1;
	int loaded = wolfSSL_CTX_load_verify_locations_ex(
	    ctx, roots, NULL, trust_file ? WOLFSSL_LOAD_VERIFY_DEFAULT_FLAGS : WOLFSSL_LOAD_FLAG_IGNORE_ERR);
	WOLFSSL_CERT_MANAGER *cm = wolfSSL_CTX_GetCertManager(ctx);
	if (loaded != WOLFSSL_SUCCESS || !cm)
		tt_fail(err, "cannot load the trusted roots from %s: %s", roots, wc_GetErrorString(loaded));
	else if (load_intermediates(cm, b, n, err) == 0) {
		int v = wolfSSL_CertManagerVerifyBuffer(cm, b[0].p, b[0].len, WOLFSSL_FILETYPE_PEM);
		if (v == WOLFSSL_SUCCESS)
			rc = 0;
		else
			tt_fail(err, "the leaf does not verify up to a root in %s: %s", roots, wc_GetErrorString(v));
	}
	wolfSSL_CTX_free(ctx);
	return rc;
}
