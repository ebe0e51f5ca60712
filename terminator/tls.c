/* tls: wolfSSL sessions over the ring. wolfSSL reads ciphertext from the bytes a receive just
 * delivered and writes ciphertext into the connection's output buffer; the loop does the I/O. */
#include <string.h>

#include "terminator.h"

#define TLS_RECORD_HEADER 5
#define TLS_RECORD_MAX (16384 + 2048)

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

WOLFSSL *tls_session_new(WOLFSSL_CTX *ctx, struct tls_io *io)
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
