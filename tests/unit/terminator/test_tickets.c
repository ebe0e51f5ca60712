/* Tests terminator/tickets.c with real TLS 1.3 handshakes in memory: a ticket issued under the
 * fleet's keys resumes on another process's store holding the same keys, and only there. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "terminator.h"

struct pipe_buf {
	unsigned char data[65536];
	int len;
};
/* Begins with the struct tls_io tickets.c reads the server name from (none here). */
struct wire {
	struct tls_io io;
	struct pipe_buf c2s, s2c;
};

static int io_recv(struct pipe_buf *b, char *buf, int sz)
{
	if (b->len == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	int n = sz < b->len ? sz : b->len;
	memcpy(buf, b->data, (size_t)n);
	memmove(b->data, b->data + n, (size_t)(b->len - n));
	b->len -= n;
	return n;
}

static int io_send(struct pipe_buf *b, const char *buf, int sz)
{
	if (b->len + sz > (int)sizeof(b->data))
		return WOLFSSL_CBIO_ERR_WANT_WRITE;
	memcpy(b->data + b->len, buf, (size_t)sz);
	b->len += sz;
	return sz;
}

static int srv_recv(WOLFSSL *s, char *buf, int sz, void *ctx) { (void)s; return io_recv(&((struct wire *)ctx)->c2s, buf, sz); }
static int srv_send(WOLFSSL *s, char *buf, int sz, void *ctx) { (void)s; return io_send(&((struct wire *)ctx)->s2c, buf, sz); }
static int cli_recv(WOLFSSL *s, char *buf, int sz, void *ctx) { (void)s; return io_recv(&((struct wire *)ctx)->s2c, buf, sz); }
static int cli_send(WOLFSSL *s, char *buf, int sz, void *ctx) { (void)s; return io_send(&((struct wire *)ctx)->c2s, buf, sz); }

static WOLFSSL_CTX *server_ctx(struct tickets *t)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method());
	if (wolfSSL_CTX_use_certificate_chain_file(ctx, "/tmp/tt-tickets-test.pem") != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_use_PrivateKey_file(ctx, "/tmp/tt-tickets-test.key", WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS)
		return NULL;
	wolfSSL_CTX_SetIORecv(ctx, srv_recv);
	wolfSSL_CTX_SetIOSend(ctx, srv_send);
	tickets_attach(t, ctx);
	return ctx;
}

/* One connection; returns 1 if it resumed, 0 for a full handshake, -1 on failure. *session gets
 * the ticket the server sent. */
static int connect_once(WOLFSSL_CTX *sctx, WOLFSSL_CTX *cctx, WOLFSSL_SESSION **session)
{
	static struct wire w;
	memset(&w, 0, sizeof(w));
	WOLFSSL *s = wolfSSL_new(sctx), *c = wolfSSL_new(cctx);
	wolfSSL_SetIOReadCtx(s, &w);
	wolfSSL_SetIOWriteCtx(s, &w);
	wolfSSL_SetIOReadCtx(c, &w);
	wolfSSL_SetIOWriteCtx(c, &w);
	if (*session)
		wolfSSL_set_session(c, *session);
	int cdone = 0, sdone = 0;
	for (int i = 0; i < 50 && !(cdone && sdone); i++) {
		if (!cdone && wolfSSL_connect(c) == WOLFSSL_SUCCESS)
			cdone = 1;
		if (!sdone && wolfSSL_accept(s) == WOLFSSL_SUCCESS)
			sdone = 1;
	}
	int rc = -1;
	if (cdone && sdone) {
		char buf[16];
		/* The NewSessionTicket arrives after the handshake: a read processes it. */
		wolfSSL_write(s, "x", 1);
		wolfSSL_read(c, buf, sizeof(buf));
		rc = wolfSSL_session_reused(c) ? 1 : 0;
		if (*session)
			wolfSSL_SESSION_free(*session);
		*session = wolfSSL_get1_session(c);
	}
	wolfSSL_free(s);
	wolfSSL_free(c);
	return rc;
}

static void fleet_key(struct tt_ticket_key *k, unsigned char fill, int64_t start)
{
	memset(k, 0, sizeof(*k));
	k->id = fill;
	memset(k->name, fill, sizeof(k->name));
	memset(k->secret, fill ^ 0x5a, sizeof(k->secret));
	k->start = start;
	k->encrypt_until = start + 3600;
	k->decrypt_until = start + 7200;
}

int main(void)
{
	struct tt_err err;
	if (system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=t.example "
		   "-keyout /tmp/tt-tickets-test.key -out /tmp/tt-tickets-test.pem 2>/dev/null") != 0) {
		printf("FAIL: openssl could not make a test certificate\n");
		return 1;
	}
	wolfSSL_Init();
	struct tickets *a = NULL, *b = NULL, *other = NULL;
	CHECK(tickets_new(&a, &err) == 0 && tickets_new(&b, &err) == 0 && tickets_new(&other, &err) == 0, "stores");
	int64_t now = time(NULL);
	struct tt_ticket_key keys[2];
	fleet_key(&keys[0], 1, now - 100);
	tickets_set(a, keys, 1);
	tickets_set(b, keys, 1);
	fleet_key(&keys[1], 9, now - 100);
	tickets_set(other, &keys[1], 1);

	WOLFSSL_CTX *sa = server_ctx(a), *sb = server_ctx(b), *so = server_ctx(other);
	WOLFSSL_CTX *cctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
	wolfSSL_CTX_set_verify(cctx, WOLFSSL_VERIFY_NONE, NULL);
	wolfSSL_CTX_SetIORecv(cctx, cli_recv);
	wolfSSL_CTX_SetIOSend(cctx, cli_send);
	CHECK(sa && sb && so, "server contexts with the test certificate");

	WOLFSSL_SESSION *sess = NULL;
	CHECK(connect_once(sa, cctx, &sess) == 0, "first connection is a full handshake");
	struct tickets_stats st;
	tickets_stats(a, &st);
	CHECK(st.issued >= 1 && st.keys == 1, "the server issued a ticket under the fleet key");
	WOLFSSL_SESSION *copy = wolfSSL_SESSION_dup(sess);
	CHECK(connect_once(sb, cctx, &sess) == 1, "the ticket resumes on another process holding the same keys");
	tickets_stats(b, &st);
	CHECK(st.resumed >= 1, "the other process counted a resumption");
	CHECK(connect_once(so, cctx, &copy) == 0, "a store without that key falls back to a full handshake");
	tickets_stats(other, &st);
	CHECK(st.rejected >= 1, "the unknown key was counted as rejected");

	/* Rotation: a newer key takes over encryption; a ticket under the older key still resumes. */
	WOLFSSL_SESSION *old = NULL;
	CHECK(connect_once(sa, cctx, &old) >= 0, "a ticket under key 1");
	fleet_key(&keys[1], 2, now - 10);
	tickets_set(a, keys, 2);
	CHECK(connect_once(sa, cctx, &old) == 1, "after rotation a ticket under the previous key still resumes");
	tickets_stats(a, &st);
	CHECK(st.renewed >= 1, "and the client was handed a ticket under the new key");
	fleet_key(&keys[0], 3, now - 10);
	tickets_set(b, &keys[0], 1);
	CHECK(connect_once(sb, cctx, &old) == 0, "a ticket whose key was retired falls back to a full handshake");

	wolfSSL_SESSION_free(sess);
	wolfSSL_SESSION_free(copy);
	wolfSSL_SESSION_free(old);
	wolfSSL_CTX_free(sa);
	wolfSSL_CTX_free(sb);
	wolfSSL_CTX_free(so);
	wolfSSL_CTX_free(cctx);
	tickets_free(a);
	tickets_free(b);
	tickets_free(other);
	wolfSSL_Cleanup();
	unlink("/tmp/tt-tickets-test.key");
	unlink("/tmp/tt-tickets-test.pem");
	CHECK_DONE();
}
