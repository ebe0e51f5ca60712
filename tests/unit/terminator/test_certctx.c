/* certctx: what a context accepts (PEM and DER keys, chains, mismatched keys) and the policy a
 * real wolfSSL client meets in a handshake run over memory: versions, suites, groups, ALPN. */
#include "check.h"
#include "terminator.h"
#include "testcert.h"

struct pipe {
	uint8_t buf[1 << 16];
	size_t len;
};
struct end {
	struct pipe *in, *out;
};

static int mem_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct end *e = arg;
	size_t n = e->in->len < (size_t)sz ? e->in->len : (size_t)sz;
	if (n == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	memcpy(buf, e->in->buf, n);
	memmove(e->in->buf, e->in->buf + n, e->in->len - n);
	e->in->len -= n;
	return (int)n;
}

static int mem_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct end *e = arg;
	if (e->out->len + (size_t)sz > sizeof(e->out->buf))
		return WOLFSSL_CBIO_ERR_WANT_WRITE;
	memcpy(e->out->buf + e->out->len, buf, (size_t)sz);
	e->out->len += (size_t)sz;
	return sz;
}

struct result {
	bool ok;
	char version[16];
	char cipher[64];
	char alpn[32];
};

/* Deepest chain position the client's verify callback was shown: 1 means leaf plus one more. */
static int deepest_seen;
static int count_depth(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	(void)preverify;
	if (store->error_depth > deepest_seen)
		deepest_seen = store->error_depth;
	return 1;
}

/* One handshake between a fresh session of server_ctx and a client set up by the caller. */
static struct result handshake(WOLFSSL_CTX *server_ctx, WOLFSSL_CTX *client_ctx, const char *client_alpn,
			       const char *client_ciphers, int client_group)
{
	static struct pipe c2s, s2c;
	struct end cend = {&s2c, &c2s}, send_ = {&c2s, &s2c};
	struct result r = {0};
	WOLFSSL *srv = wolfSSL_new(server_ctx), *cli = wolfSSL_new(client_ctx);
	c2s.len = s2c.len = 0;
	certctx_session_init(srv);
	wolfSSL_SSLSetIORecv(srv, mem_recv);
	wolfSSL_SSLSetIOSend(srv, mem_send);
	wolfSSL_SetIOReadCtx(srv, &send_);
	wolfSSL_SetIOWriteCtx(srv, &send_);
	wolfSSL_SSLSetIORecv(cli, mem_recv);
	wolfSSL_SSLSetIOSend(cli, mem_send);
	wolfSSL_SetIOReadCtx(cli, &cend);
	wolfSSL_SetIOWriteCtx(cli, &cend);
	if (client_alpn) {
		char list[64];
		snprintf(list, sizeof(list), "%s", client_alpn);
		wolfSSL_UseALPN(cli, list, (unsigned)strlen(list), WOLFSSL_ALPN_FAILED_ON_MISMATCH);
	}
	if (client_ciphers)
		wolfSSL_set_cipher_list(cli, client_ciphers);
	if (client_group)
		wolfSSL_UseKeyShare(cli, (word16)client_group), wolfSSL_UseSupportedCurve(cli, (word16)client_group);
	int cdone = 0, sdone = 0;
	for (int i = 0; i < 50 && !(cdone && sdone); i++) {
		if (!cdone) {
			int rc = wolfSSL_connect(cli);
			int e = wolfSSL_get_error(cli, rc);
			if (rc == WOLFSSL_SUCCESS)
				cdone = 1;
			else if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE) {
				printf("# client handshake error %d\n", e);
				break;
			}
		}
		if (!sdone) {
			int rc = wolfSSL_accept(srv);
			int e = wolfSSL_get_error(srv, rc);
			if (rc == WOLFSSL_SUCCESS)
				sdone = 1;
			else if (e != WOLFSSL_ERROR_WANT_READ && e != WOLFSSL_ERROR_WANT_WRITE)
				break;
		}
	}
	r.ok = cdone && sdone;
	if (r.ok) {
		char *name = NULL;
		unsigned short len = 0;
		snprintf(r.version, sizeof(r.version), "%s", wolfSSL_get_version(srv));
		snprintf(r.cipher, sizeof(r.cipher), "%s", wolfSSL_get_cipher_name(srv));
		if (wolfSSL_ALPN_GetProtocol(srv, &name, &len) == WOLFSSL_SUCCESS)
			snprintf(r.alpn, sizeof(r.alpn), "%.*s", (int)len, name);
	}
	wolfSSL_free(srv);
	wolfSSL_free(cli);
	return r;
}

int main(void)
{
	char *dir = testcert_dir(), *chain, *chain_b, *ca, *leaf, *full;
	uint8_t *key, *key_der, *key_b, *leaf_key;
	size_t chain_len, chain_b_len, key_len, key_der_len, key_b_len, ca_len, leaf_len, leaf_key_len;
	WOLFSSL_CTX *ctx = NULL, *client;
	struct tt_err err;
	char cmd[2048];

	wolfSSL_Init();
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout root.key "
		 "-out root.pem -subj /CN=TestRoot -days 2 2>/dev/null && "
		 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.csr "
		 "-subj /CN=TestIntermediate 2>/dev/null && printf 'basicConstraints=critical,CA:true\\n' > caext && "
		 "openssl x509 -req -in ca.csr -CA root.pem -CAkey root.key -CAcreateserial -days 2 -extfile caext "
		 "-out ca.pem 2>/dev/null && "
		 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr "
		 "-subj /CN=c.example 2>/dev/null && printf 'subjectAltName=DNS:c.example\\n' > ext && "
		 "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext "
		 "-out leaf.pem 2>/dev/null",
		 dir ? dir : "/nonexistent");
	if (!dir || testcert_make(dir, "a.example", false, &chain, &chain_len, &key, &key_len) < 0 ||
	    testcert_read_in(dir, "a.example.key.der", (char **)&key_der, &key_der_len) < 0 ||
	    testcert_make(dir, "b.example", false, &chain_b, &chain_b_len, &key_b, &key_b_len) < 0 ||
	    system(cmd) != 0 || testcert_read_in(dir, "ca.pem", &ca, &ca_len) < 0 ||
	    testcert_read_in(dir, "leaf.pem", &leaf, &leaf_len) < 0 ||
	    testcert_read_in(dir, "leaf.key", (char **)&leaf_key, &leaf_key_len) < 0) {
		printf("FAIL: cannot make test certificates with openssl\n");
		return 1;
	}

	CHECK(certctx_new(chain, chain_len, key_der, key_der_len, &ctx, &err) == 0 && ctx, "keys: PKCS#8 DER key loads");
	wolfSSL_CTX_free(ctx);
	ctx = NULL;
	CHECK(certctx_new(chain, chain_len, key_b, key_b_len, &ctx, &err) < 0 && !ctx && strstr(err.msg, "does not match"),
	      "keys: the key of another certificate is refused");
	CHECK(certctx_new("garbage", 7, key, key_len, &ctx, &err) < 0 && !ctx, "keys: a chain without PEM is refused");
	CHECK(certctx_new(chain, chain_len, (const uint8_t *)"junk", 4, &ctx, &err) < 0 && !ctx,
	      "keys: a garbage key is refused");
	/* a truncated certificate body must fail, not read past the buffer */
	CHECK(certctx_new(chain, chain_len / 2, key, key_len, &ctx, &err) < 0 && !ctx, "keys: a truncated chain is refused");

	full = malloc(leaf_len + ca_len + 1);
	memcpy(full, leaf, leaf_len);
	memcpy(full + leaf_len, ca, ca_len);
	CHECK(certctx_new(full, leaf_len + ca_len, leaf_key, leaf_key_len, &ctx, &err) == 0,
	      "chain: leaf plus intermediate loads");

	client = wolfSSL_CTX_new(wolfSSLv23_client_method());
	wolfSSL_CTX_set_verify(client, WOLFSSL_VERIFY_NONE, NULL);
	struct result r = handshake(ctx, client, "h2,http/1.1", NULL, 0);
	CHECK(r.ok && strcmp(r.version, "TLSv1.3") == 0, "handshake: TLS 1.3 by default");
	CHECK(strcmp(r.alpn, "http/1.1") == 0, "handshake: ALPN http/1.1 selected over h2");
	printf("# %s %s alpn=%s\n", r.version, r.cipher, r.alpn);
	wolfSSL_CTX_free(client);
	client = wolfSSL_CTX_new(wolfSSLv23_client_method());
	wolfSSL_CTX_set_verify(client, WOLFSSL_VERIFY_PEER, count_depth);
	deepest_seen = -1;
	r = handshake(ctx, client, NULL, NULL, 0);
	CHECK(r.ok && deepest_seen == 1, "handshake: the intermediate is sent after the leaf");
	wolfSSL_CTX_free(client);
	client = wolfSSL_CTX_new(wolfSSLv23_client_method());
	wolfSSL_CTX_set_verify(client, WOLFSSL_VERIFY_NONE, NULL);
	r = handshake(ctx, client, NULL, NULL, 0);
	CHECK(r.ok && r.alpn[0] == '\0', "handshake: a client without ALPN is served");
	r = handshake(ctx, client, "h2", NULL, 0);
	CHECK(r.ok, "handshake: a client offering only h2 continues without ALPN");
	r = handshake(ctx, client, NULL, NULL, WOLFSSL_ECC_SECP384R1);
	CHECK(!r.ok, "handshake: P-384 only is refused (X25519 and P-256 only)");
	r = handshake(ctx, client, NULL, NULL, WOLFSSL_ECC_X25519);
	CHECK(r.ok, "handshake: X25519 accepted");
	wolfSSL_CTX_free(client);

	client = wolfSSL_CTX_new(wolfTLSv1_2_client_method());
	wolfSSL_CTX_set_verify(client, WOLFSSL_VERIFY_NONE, NULL);
	r = handshake(ctx, client, NULL, NULL, 0);
	CHECK(r.ok && strcmp(r.version, "TLSv1.2") == 0 && strstr(r.cipher, "GCM") != NULL,
	      "handshake: TLS 1.2 gets an AEAD suite");
	printf("# %s %s\n", r.version, r.cipher);
	r = handshake(ctx, client, NULL, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA", 0);
	CHECK(!r.ok, "handshake: CBC-only TLS 1.2 client refused");
	wolfSSL_CTX_free(client);
	wolfSSL_CTX_free(ctx);

	free(full);
	free(chain);
	free(chain_b);
	free(key);
	free(key_der);
	free(key_b);
	free(ca);
	free(leaf);
	free(leaf_key);
	testcert_cleanup(dir);
	wolfSSL_Cleanup();
	CHECK_DONE();
}
