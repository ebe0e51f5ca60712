/* tickets: TLS session-ticket encryption with the fleet's shared keys, so a ticket issued by one
 * edge host resumes on any other. A refresher thread (not a core) reloads keys on NOTIFY and on a timer. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "terminator.h"

#define NONCE_BYTES crypto_aead_aes256gcm_NPUBBYTES
#define TAG_BYTES crypto_aead_aes256gcm_ABYTES
/* The refresher's retries while the database is unreachable: soon after a blip, doubling up to a
 * pace that keeps an outage's log short (the keys in hand keep working meanwhile). */
#define RETRY_MIN_MS 500
#define RETRY_MAX_MS 30000

struct ticket_slot {
	struct tt_ticket_key key;
	crypto_aead_aes256gcm_state state;
};

struct tickets {
	pthread_rwlock_t lock;	   /* held for one ticket's AES-GCM, never across I/O */
	struct ticket_slot *slots; /* sodium_malloc'd */
	size_t count;
	/* Used only while the database holds no key for now: resumption then works on this process
	 * alone, but a handshake never fails for want of a ticket key. */
	struct ticket_slot *local;
	_Atomic uint64_t issued, resumed, renewed, rejected, reloads, reload_errors;
	const char *conninfo;
	const struct tt_keyring *kr;
	int64_t interval_ms;
	int wake_fd;
	/* A wake-up with this set asks for a reload (SIGHUP); without it, for the thread to end. */
	_Atomic bool reload_asked;
	pthread_t thread;
	bool running;
};

static void slot_init(struct ticket_slot *s, const struct tt_ticket_key *k)
{
	s->key = *k;
	crypto_aead_aes256gcm_beforenm(&s->state, k->secret);
}

int tickets_new(struct tickets **out, struct tt_err *err)
{
	if (sodium_init() < 0 || !crypto_aead_aes256gcm_is_available())
		return tt_fail(err, "no AES-256-GCM on this CPU for session tickets");
	struct tickets *t = calloc(1, sizeof(*t));
	if (!t)
		return tt_fail(err, "out of memory");
	t->local = sodium_malloc(sizeof(*t->local));
	if (!t->local) {
		free(t);
		return tt_fail(err, "out of locked memory");
	}
	struct tt_ticket_key k = {.id = 0, .start = 0, .encrypt_until = INT64_MAX, .decrypt_until = INT64_MAX};
	randombytes_buf(k.name, sizeof(k.name));
	randombytes_buf(k.secret, sizeof(k.secret));
	slot_init(t->local, &k);
	sodium_memzero(&k, sizeof(k));
	pthread_rwlock_init(&t->lock, NULL);
	t->wake_fd = -1;
	*out = t;
	return 0;
}

int tickets_set(struct tickets *t, const struct tt_ticket_key *keys, size_t n)
{
	struct ticket_slot *slots = n ? sodium_malloc(n * sizeof(*slots)) : NULL;
	if (n && !slots)
		return -1;
	for (size_t i = 0; i < n; i++)
		slot_init(&slots[i], &keys[i]);
	pthread_rwlock_wrlock(&t->lock);
	struct ticket_slot *old = t->slots;
	t->slots = slots;
	t->count = n;
	pthread_rwlock_unlock(&t->lock);
	sodium_free(old);
	return 0;
}

/* Callers hold the read lock. The encrypting key is the latest one whose time has come. */
static const struct ticket_slot *current_slot(const struct tickets *t, int64_t now)
{
	const struct ticket_slot *best = NULL;
	for (size_t i = 0; i < t->count; i++) {
		const struct tt_ticket_key *k = &t->slots[i].key;
		if (k->start <= now && now < k->encrypt_until && (!best || k->start > best->key.start))
			best = &t->slots[i];
	}
	return best ? best : t->local;
}

static const struct ticket_slot *find_slot(const struct tickets *t, const unsigned char *name, int64_t now)
{
	for (size_t i = 0; i < t->count; i++)
		if (memcmp(t->slots[i].key.name, name, TT_TICKET_NAME_BYTES) == 0)
			return now < t->slots[i].key.decrypt_until ? &t->slots[i] : NULL;
	if (memcmp(t->local->key.name, name, TT_TICKET_NAME_BYTES) == 0)
		return t->local;
	return NULL;
}

#define AAD_FIXED (WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2)

/* The ticket's key name, IV and length, and the server name of the session: a ticket decrypts only
 * under the name it was issued for, since every certificate's context shares the keys. */
static size_t make_aad(unsigned char *aad, const unsigned char *name, const unsigned char *iv, int len, WOLFSSL *ssl)
{
	memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
	memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
	aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ] = (unsigned char)(len >> 8);
	aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 1] = (unsigned char)len;
	const struct tls_io *io = wolfSSL_GetIOReadCtx(ssl);
	const char *server_name = io ? io->server_name : NULL;
	if (!server_name)
		return AAD_FIXED;
	size_t n = strnlen(server_name, TT_NAME_MAX - 1);
	memcpy(aad + AAD_FIXED, server_name, n);
	return AAD_FIXED + n;
}

static int ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
		     unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc,
		     unsigned char *ticket, int len, int *out_len, void *arg)
{
	struct tickets *t = arg;
	int64_t now = (int64_t)time(NULL);
	unsigned char aad[AAD_FIXED + TT_NAME_MAX];
	size_t aad_len;
	int rc = WOLFSSL_TICKET_RET_REJECT;
	pthread_rwlock_rdlock(&t->lock);
	if (enc) {
		const struct ticket_slot *s = current_slot(t, now);
		memcpy(key_name, s->key.name, WOLFSSL_TICKET_NAME_SZ);
		randombytes_buf(iv, WOLFSSL_TICKET_IV_SZ);
		aad_len = make_aad(aad, key_name, iv, len, ssl);
		unsigned long long taglen = 0;
		memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
		crypto_aead_aes256gcm_encrypt_detached_afternm(ticket, mac, &taglen, ticket, (unsigned long long)len,
							       aad, aad_len, NULL, iv, &s->state);
		*out_len = len;
		atomic_fetch_add_explicit(&t->issued, 1, memory_order_relaxed);
		rc = WOLFSSL_TICKET_RET_OK;
	} else {
		const struct ticket_slot *s = find_slot(t, key_name, now);
		if (s) {
			aad_len = make_aad(aad, key_name, iv, len, ssl);
			if (crypto_aead_aes256gcm_decrypt_detached_afternm(
				ticket, NULL, ticket, (unsigned long long)len, mac, aad, aad_len, iv, &s->state) == 0) {
				*out_len = len;
				/* A ticket under an older key resumes; the client gets one under the current key. */
				rc = s == current_slot(t, now) ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
			}
		}
		atomic_fetch_add_explicit(rc == WOLFSSL_TICKET_RET_OK	    ? &t->resumed
					  : rc == WOLFSSL_TICKET_RET_CREATE ? &t->renewed
									    : &t->rejected,
					  1, memory_order_relaxed);
	}
	pthread_rwlock_unlock(&t->lock);
	return rc;
}

int tickets_attach(struct tickets *t, WOLFSSL_CTX *ctx)
{
	if (wolfSSL_CTX_set_TicketEncCb(ctx, ticket_cb) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_set_TicketEncCtx(ctx, t) != WOLFSSL_SUCCESS)
		return -1;
	return 0;
}

int tickets_reload(struct tickets *t, PGconn *conn, const struct tt_keyring *kr, struct tt_err *err)
{
	struct tt_ticket_key *keys = NULL;
	size_t n = 0;
	int rc = tt_ticket_keys_load(conn, kr, &keys, &n, err) != 0 ? -1 : 0;
	if (rc == 0 && tickets_set(t, keys, n) < 0)
		rc = tt_fail(err, "out of locked memory for %zu ticket keys: the old ones stay", n);
	tt_ticket_keys_free(keys, n);
	atomic_fetch_add_explicit(rc == 0 ? &t->reloads : &t->reload_errors, 1, memory_order_relaxed);
	return rc;
}

/* The refresher: blocking PostgreSQL is fine here, this thread serves no connection. */
static void *refresher(void *arg)
{
	struct tickets *t = arg;
	PGconn *conn = NULL;
	int64_t backoff_ms = RETRY_MIN_MS;
	char q[TT_LOG_QUOTED_MAX];
	for (;;) {
		struct tt_err err;
		if (!conn) {
			if (tt_db_connect(t->conninfo, &conn, &err) != 0 ||
			    tt_db_run(conn, &err, "LISTEN " TT_CHANNEL_TICKET, 0, NULL) != 0 ||
			    tickets_reload(t, conn, t->kr, &err) != 0) {
				tt_log(TT_WARN, "ticket_keys_reload_failed", "error=%s retry_ms=%lld",
				       tt_log_quote(q, sizeof(q), err.msg), (long long)backoff_ms);
				if (conn)
					PQfinish(conn);
				conn = NULL;
			} else {
				backoff_ms = RETRY_MIN_MS;
			}
		}
		struct pollfd pf[2] = {{.fd = t->wake_fd, .events = POLLIN},
				       {.fd = conn ? PQsocket(conn) : -1, .events = POLLIN}};
		int r = poll(pf, 2, (int)(conn ? t->interval_ms : backoff_ms));
		if (!conn && backoff_ms < RETRY_MAX_MS)
			backoff_ms *= 2;
		if (r < 0 && errno != EINTR)
			break;
		bool asked = false;
		if (pf[0].revents & POLLIN) {
			uint64_t v;
			ssize_t rd = read(t->wake_fd, &v, sizeof(v));
			(void)rd;
			if (!atomic_exchange(&t->reload_asked, false))
				break;
			asked = true;
		}
		if (!conn)
			continue;
		bool reload = r == 0 || asked;
		if (pf[1].revents) {
			if (!PQconsumeInput(conn)) {
				tt_log(TT_WARN, "ticket_keys_connection_lost", "error=%s",
				       tt_log_quote(q, sizeof(q), PQerrorMessage(conn)));
				PQfinish(conn);
				conn = NULL;
				continue;
			}
			PGnotify *n;
			while ((n = PQnotifies(conn))) {
				reload = true;
				PQfreemem(n);
			}
		}
		if (reload && tickets_reload(t, conn, t->kr, &err) != 0) {
			tt_log(TT_WARN, "ticket_keys_reload_failed", "error=%s", tt_log_quote(q, sizeof(q), err.msg));
			PQfinish(conn);
			conn = NULL;
		}
	}
	if (conn)
		PQfinish(conn);
	return NULL;
}

int tickets_start_refresher(struct tickets *t, const char *conninfo, const struct tt_keyring *kr, int64_t interval_ms,
			    struct tt_err *err)
{
	t->conninfo = conninfo;
	t->kr = kr;
	t->interval_ms = interval_ms;
	t->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (t->wake_fd < 0)
		return tt_fail(err, "eventfd: %s", strerror(errno));
	if (pthread_create(&t->thread, NULL, refresher, t) != 0)
		return tt_fail(err, "cannot start the ticket key refresher thread");
	t->running = true;
	return 0;
}

/* Wakes the refresher: to reload now, or (reload false) to end. */
static void wake_refresher(struct tickets *t, bool reload)
{
	atomic_store(&t->reload_asked, reload);
	uint64_t one = 1;
	ssize_t w = write(t->wake_fd, &one, sizeof(one));
	(void)w;
}

void tickets_reload_soon(struct tickets *t)
{
	if (t->running)
		wake_refresher(t, true);
}

void tickets_free(struct tickets *t)
{
	if (!t)
		return;
	if (t->running) {
		wake_refresher(t, false);
		pthread_join(t->thread, NULL);
	}
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	pthread_rwlock_destroy(&t->lock);
	sodium_free(t->slots);
	sodium_free(t->local);
	free(t);
}

void tickets_stats(struct tickets *t, struct tickets_stats *out)
{
	out->issued = atomic_load_explicit(&t->issued, memory_order_relaxed);
	out->resumed = atomic_load_explicit(&t->resumed, memory_order_relaxed);
	out->renewed = atomic_load_explicit(&t->renewed, memory_order_relaxed);
	out->rejected = atomic_load_explicit(&t->rejected, memory_order_relaxed);
	out->reloads = atomic_load_explicit(&t->reloads, memory_order_relaxed);
	out->reload_errors = atomic_load_explicit(&t->reload_errors, memory_order_relaxed);
	pthread_rwlock_rdlock(&t->lock);
	out->keys = t->count;
	out->newest_start = 0;
	for (size_t i = 0; i < t->count; i++)
		if (t->slots[i].key.start > out->newest_start)
			out->newest_start = t->slots[i].key.start;
	pthread_rwlock_unlock(&t->lock);
}
