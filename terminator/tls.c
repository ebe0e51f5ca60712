/* tls: TLS without I/O. Before a session exists: whether the ClientHello's record is complete, its
 * server name, and the raw alerts that refuse a name. Then wolfSSL sessions: wolfSSL reads
 * ciphertext from the bytes a receive just delivered (or the connection buffered) and writes
 * ciphertext into the connection's output buffer; conn.c moves bytes through the ring. Everything
 * that drives a session (handshake, reads, writes, close_notify) is here. */
#include <string.h>

#include "terminator.h"

#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX (16384 + 2048)
/* Plaintext handed to one wolfSSL_write. */
#define TLS_WRITE_CHUNK 65536

const uint8_t tls_alert_unrecognized_name[7] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70};
const uint8_t tls_alert_internal_error[7] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x50};

static int tls_recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct tls_io *io = ctx;
	if (io->src_len == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = (size_t)sz < io->src_len ? (size_t)sz : io->src_len;
	memcpy(buf, io->src, n);
	io->src += n;
	io->src_len -= n;
	return (int)n;
}

static int tls_send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct tls_io *io = ctx;
	if (buf_append(io->out, buf, (size_t)sz) < 0) {
		io->failed = true;
		return WOLFSSL_CBIO_ERR_GENERAL;
	}
	return sz;
}

int tls_hello_complete(const uint8_t *p, size_t len)
{
	if (len >= 1 && p[0] != 0x16)
		return -1;
	if (len < TLS_RECORD_HEADER)
		return 0;
	size_t rec = (size_t)p[3] << 8 | p[4];
	if (rec == 0 || rec > TLS_RECORD_MAX)
		return -1;
	return len >= TLS_RECORD_HEADER + rec;
}

int tls_hello_sni(const uint8_t *p, size_t len, char name[TT_NAME_MAX])
{
	unsigned char raw[256];
	unsigned int sz = sizeof raw - 1;
	int rc = wolfSSL_SNI_GetFromBuffer(p, (unsigned int)len, WOLFSSL_SNI_HOST_NAME, raw, &sz);
	if (rc == 0)
		return 0;
	if (rc != WOLFSSL_SUCCESS)
		return -1;
	raw[sz] = 0;
	if (strlen((char *)raw) != sz)
		return -1;
	struct tt_err err;
	if (tt_name_normalize((char *)raw, name, &err) < 0)
		return -1;
	return 1;
}

static WOLFSSL *tls_session_new(WOLFSSL_CTX *ctx, struct tls_io *io)
{
	WOLFSSL *ssl = wolfSSL_new(ctx);
	if (!ssl)
		return NULL;
	if (certctx_session_init(ssl) < 0) {
		wolfSSL_free(ssl);
		return NULL;
	}
	wolfSSL_SSLSetIORecv(ssl, tls_recv_cb);
	wolfSSL_SSLSetIOSend(ssl, tls_send_cb);
	wolfSSL_SetIOReadCtx(ssl, io);
	wolfSSL_SetIOWriteCtx(ssl, io);
	return ssl;
}

int tls_conn_start(struct tls_conn *t, WOLFSSL_CTX *ctx, const char *server_name, struct buf *out)
{
	t->io.out = out;
	t->io.server_name = server_name;
	t->ssl = tls_session_new(ctx, &t->io);
	return t->ssl ? 0 : -1;
}

/* Plaintext from wolfSSL into plain while it holds less than limit; what it holds beyond waits in
 * the session (stalled) until the caller drained plain and drives again. */
static enum tls_result tls_conn_read(struct tls_conn *t, struct buf *plain, size_t limit)
{
	t->stalled = false;
	for (;;) {
		if (buf_size(plain) >= limit) {
			t->stalled = true;
			return TLS_OK;
		}
		if (buf_reserve(plain, 4096) < 0)
			return TLS_NOMEM;
		int room = (int)(plain->cap - plain->len);
		int n = wolfSSL_read(t->ssl, plain->data + plain->len, room);
		if (n > 0) {
			plain->len += (size_t)n;
			continue;
		}
		int e = wolfSSL_get_error(t->ssl, n);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return TLS_OK;
		return e == WOLFSSL_ERROR_ZERO_RETURN ? TLS_CLOSED : TLS_BROKEN;
	}
}

enum tls_result tls_conn_feed(struct tls_conn *t, const uint8_t *p, size_t len, struct buf *plain, size_t limit,
			      bool *established)
{
	*established = false;
	bool from_in = buf_size(&t->in) > 0;
	if (from_in) {
		if (len && buf_append(&t->in, p, len) < 0)
			return TLS_NOMEM;
		p = buf_head(&t->in);
		len = buf_size(&t->in);
	}
	t->io.src = p;
	t->io.src_len = len;
	enum tls_result rc = TLS_OK;
	if (!wolfSSL_is_init_finished(t->ssl)) {
		int r = wolfSSL_accept(t->ssl);
		if (r != WOLFSSL_SUCCESS) {
			int e = wolfSSL_get_error(t->ssl, r);
			rc = e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE ? TLS_HANDSHAKING
											   : TLS_HANDSHAKE_FAILED;
		} else {
			*established = true;
		}
	}
	if (rc == TLS_OK)
		rc = tls_conn_read(t, plain, limit);
	size_t left = t->io.src_len;
	t->io.src = NULL;
	t->io.src_len = 0;
	if (from_in)
		buf_consume(&t->in, len - left);
	else if (left && buf_append(&t->in, p + len - left, left) < 0)
		return TLS_NOMEM;
	if (t->io.failed)
		return TLS_NOMEM;
	return rc;
}

int tls_conn_write(struct tls_conn *t, const void *p, size_t n)
{
	const uint8_t *q = p;
	while (n) {
		int chunk = n > TLS_WRITE_CHUNK ? TLS_WRITE_CHUNK : (int)n;
		int rc = wolfSSL_write(t->ssl, q, chunk);
		if (rc <= 0 || t->io.failed)
			return -1;
		q += rc;
		n -= (size_t)rc;
	}
	return 0;
}

void tls_conn_close_notify(struct tls_conn *t)
{
	if (t->ssl && wolfSSL_is_init_finished(t->ssl))
		wolfSSL_shutdown(t->ssl);
}

const char *tls_conn_alpn(struct tls_conn *t, char *out, size_t outsize)
{
	char *proto;
	unsigned short plen;
	out[0] = 0;
	if (wolfSSL_ALPN_GetProtocol(t->ssl, &proto, &plen) == WOLFSSL_SUCCESS && plen < outsize) {
		memcpy(out, proto, plen);
		out[plen] = 0;
	}
	return out;
}

void tls_conn_free(struct tls_conn *t)
{
	if (t->ssl)
		wolfSSL_free(t->ssl);
	t->ssl = NULL;
	buf_release(&t->in);
}
