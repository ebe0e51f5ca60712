/* keyring: the master key ring and the AES-256-GCM envelope that seals every private key at rest.
 * Only this file ever holds a master key; callers hand it plaintext to seal and get locked memory back. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common.h"

#define ENVELOPE_VERSION 1
#define NONCE_BYTES crypto_aead_aes256gcm_NPUBBYTES
#define HEADER_BYTES (1 + 4 + NONCE_BYTES) /* version, key id, nonce */
#define MAX_KEYS 256

/* A reload (SIGHUP in the terminator) changes a ring other threads are reading, without a lock:
 * a new key goes into a fresh slot that readers see only once count is published; a dropped key's
 * id turns 0 (retired) and its slot is wiped, never reused. */
struct tt_keyring {
	_Atomic size_t count;
	_Atomic uint32_t ids[MAX_KEYS]; /* 0: retired */
	/* sodium_malloc'd: locked, guarded, wiped on free */
	uint8_t *keys;
	crypto_aead_aes256gcm_state *states;
	char *path;
	/* The file as opened at load, kept so a process that has since become a user who may not open
	 * it (the terminator's --user) can still reread it when it is rewritten in place. */
	int fd;
};

static int crypto_ready(struct tt_err *err)
{
	if (sodium_init() < 0)
		return tt_fail(err, "libsodium failed to initialise");
	if (!crypto_aead_aes256gcm_is_available())
		return tt_fail(err, "this CPU lacks AES-NI/PCLMUL: libsodium offers no AES-256-GCM here");
	return 0;
}

void tt_keyring_free(struct tt_keyring *kr)
{
	if (!kr)
		return;
	sodium_free(kr->keys);
	sodium_free(kr->states);
	if (kr->fd >= 0)
		close(kr->fd);
	free(kr->path);
	free(kr);
}

uint32_t tt_keyring_newest_id(const struct tt_keyring *kr)
{
	uint32_t best = 0;
	size_t n = atomic_load_explicit(&kr->count, memory_order_acquire);
	for (size_t i = 0; i < n; i++) {
		uint32_t id = atomic_load_explicit(&kr->ids[i], memory_order_relaxed);
		if (id > best)
			best = id;
	}
	return best;
}

size_t tt_keyring_count(const struct tt_keyring *kr)
{
	size_t live = 0, n = atomic_load_explicit(&kr->count, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		live += atomic_load_explicit(&kr->ids[i], memory_order_relaxed) != 0;
	return live;
}

static int find_key(const struct tt_keyring *kr, uint32_t id)
{
	size_t n = atomic_load_explicit(&kr->count, memory_order_acquire);
	for (size_t i = 0; i < n; i++)
		if (atomic_load_explicit(&kr->ids[i], memory_order_relaxed) == id)
			return (int)i;
	return -1;
}

static int check_mode(int fd, const char *path, struct tt_err *err)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return tt_fail(err, "cannot stat master key file %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return tt_fail(err, "master key file %s is not a regular file", path);
	if (st.st_mode & 077)
		return tt_fail(
		    err, "master key file %s is readable or writable by group or others (mode %03o): chmod 600 it",
		    path, (unsigned)(st.st_mode & 0777));
	return 0;
}

/* read(2), not stdio: no stdio buffer may keep a copy of a secret file. */
int tt_read_fd(int fd, const char *path, size_t max, bool secret, char **out, size_t *outlen, struct tt_err *err)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return tt_fail(err, "cannot stat %s: %s", path, strerror(errno));
	if (st.st_size <= 0 || (size_t)st.st_size > max)
		return tt_fail(err, "%s is empty or larger than %zu bytes", path, max);
	size_t cap = (size_t)st.st_size + 1;
	char *buf = secret ? sodium_malloc(cap) : malloc(cap);
	if (!buf)
		return tt_fail(err, secret ? "out of locked memory" : "out of memory");
	size_t len = 0;
	while (len < cap - 1) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			secret ? sodium_free(buf) : free(buf);
			return tt_fail(err, "cannot read %s: %s", path, strerror(errno));
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

static int parse_ring(struct tt_keyring *kr, char *text, const char *path, struct tt_err *err)
{
	int lineno = 0;
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0' || *line == '#' || *line == '\r')
			continue;
		char *end;
		errno = 0;
		unsigned long id = strtoul(line, &end, 10);
		if (errno || end == line || id == 0 || id > UINT32_MAX || (*end != ' ' && *end != '\t'))
			return tt_fail(err, "%s:%d: expected 'ID HEXKEY' with a positive numeric id", path, lineno);
		while (*end == ' ' || *end == '\t')
			end++;
		size_t hexlen = strcspn(end, " \t\r#");
		size_t slot = atomic_load_explicit(&kr->count, memory_order_relaxed);
		if (slot == MAX_KEYS)
			return tt_fail(err, "%s: more than %d keys", path, MAX_KEYS);
		if (find_key(kr, (uint32_t)id) >= 0)
			return tt_fail(err, "%s:%d: key id %lu appears twice", path, lineno, id);
		uint8_t *key = kr->keys + slot * TT_MASTER_KEY_BYTES;
		size_t bin_len = 0;
		if (hexlen != 2 * TT_MASTER_KEY_BYTES ||
		    sodium_hex2bin(key, TT_MASTER_KEY_BYTES, end, hexlen, NULL, &bin_len, NULL) != 0 ||
		    bin_len != TT_MASTER_KEY_BYTES)
			return tt_fail(err, "%s:%d: key must be %d hex digits", path, lineno, 2 * TT_MASTER_KEY_BYTES);
		crypto_aead_aes256gcm_beforenm(&kr->states[slot], key);
		atomic_store_explicit(&kr->ids[slot], (uint32_t)id, memory_order_relaxed);
		atomic_store_explicit(&kr->count, slot + 1, memory_order_release);
	}
	if (atomic_load_explicit(&kr->count, memory_order_relaxed) == 0)
		return tt_fail(err, "%s holds no keys (create one with: issuer keys generate)", path);
	return 0;
}

static struct tt_keyring *ring_alloc(void)
{
	struct tt_keyring *kr = calloc(1, sizeof(*kr));
	if (!kr)
		return NULL;
	kr->fd = -1;
	kr->keys = sodium_malloc(MAX_KEYS * TT_MASTER_KEY_BYTES);
	kr->states = sodium_malloc(MAX_KEYS * sizeof(crypto_aead_aes256gcm_state));
	if (!kr->keys || !kr->states) {
		tt_keyring_free(kr);
		return NULL;
	}
	return kr;
}

/* The ring file's text (sodium_malloc'd). *fd is the descriptor it was read from: the caller's
 * to keep or close. */
static int read_ring_text(const char *path, int *fd, char **text, size_t *len, struct tt_err *err)
{
	*fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0) {
		int e = errno;
		tt_fail(err, "cannot open master key file %s: %s", path, strerror(e));
		errno = e; /* the caller tells EACCES apart */
		return -1;
	}
	if (check_mode(*fd, path, err) != 0 || tt_read_fd(*fd, path, 64 * 1024, true, text, len, err) != 0) {
		close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

/* Parses a ring file's text into a new ring (mapped read-only); frees the text. */
static int ring_from_text(char *text, const char *path, struct tt_keyring **out, struct tt_err *err)
{
	struct tt_keyring *kr = ring_alloc();
	if (!kr) {
		sodium_free(text);
		return tt_fail(err, "out of locked memory for the key ring");
	}
	int rc = parse_ring(kr, text, path, err);
	sodium_free(text);
	if (rc != 0) {
		tt_keyring_free(kr);
		return -1;
	}
	sodium_mprotect_readonly(kr->keys);
	sodium_mprotect_readonly(kr->states);
	*out = kr;
	return 0;
}

int tt_keyring_load(const char *path, struct tt_keyring **out, struct tt_err *err)
{
	if (!path || !*path)
		return tt_fail(err, "no master key file: give --master-key-file or TRACKTLS_MASTER_KEY_FILE");
	if (crypto_ready(err) != 0)
		return -1;
	int fd;
	char *text = NULL;
	size_t len = 0;
	if (read_ring_text(path, &fd, &text, &len, err) != 0)
		return -1;
	struct tt_keyring *kr;
	if (ring_from_text(text, path, &kr, err) != 0) {
		close(fd);
		return -1;
	}
	kr->fd = fd;
	kr->path = strdup(path);
	if (!kr->path) {
		tt_keyring_free(kr);
		return tt_fail(err, "out of memory");
	}
	*out = kr;
	return 0;
}

/* The file again: opened afresh when this process may, else through the descriptor kept from the
 * load, as long as the path still names that same file (rewritten in place, as keys generate
 * does: it appends). */
static int reread_ring(struct tt_keyring *kr, struct tt_keyring **out, struct tt_err *err)
{
	int fd;
	char *text = NULL;
	size_t len = 0;
	if (read_ring_text(kr->path, &fd, &text, &len, err) == 0) {
		if (kr->fd >= 0)
			close(kr->fd);
		kr->fd = fd;
	} else {
		struct stat now, kept;
		if (errno != EACCES || kr->fd < 0 || stat(kr->path, &now) != 0 || fstat(kr->fd, &kept) != 0 ||
		    now.st_dev != kept.st_dev || now.st_ino != kept.st_ino)
			return tt_fail(err,
				       "cannot open master key file %s as uid %u, and it is no longer the file read at "
				       "start: make it this user's (mode 0600), or restart",
				       kr->path, (unsigned)geteuid());
		if (lseek(kr->fd, 0, SEEK_SET) != 0 || check_mode(kr->fd, kr->path, err) != 0 ||
		    tt_read_fd(kr->fd, kr->path, 64 * 1024, true, &text, &len, err) != 0)
			return -1;
	}
	return ring_from_text(text, kr->path, out, err);
}

static size_t list_ids(char *buf, size_t size, const uint32_t *ids, size_t n)
{
	size_t len = 0;
	buf[0] = 0;
	for (size_t i = 0; i < n && len < size; i++) {
		int w = snprintf(buf + len, size - len, "%s%u", i ? "," : "", ids[i]);
		len += w > 0 ? (size_t)w : 0;
	}
	return len < size ? len : size - 1;
}

int tt_keyring_reload(struct tt_keyring *kr, tt_keyring_drop_check check, void *arg, struct tt_keyring_change *change,
		      struct tt_err *err)
{
	memset(change, 0, sizeof *change);
	if (!kr->path)
		return tt_fail(err, "this key ring was not loaded from a file");
	struct tt_keyring *next;
	if (reread_ring(kr, &next, err) != 0)
		return -1;
	uint32_t added[MAX_KEYS], dropped[MAX_KEYS];
	int added_at[MAX_KEYS];
	size_t nadded = 0, ndropped = 0, n = atomic_load_explicit(&kr->count, memory_order_relaxed);
	int rc = 0;
	for (size_t j = 0; j < next->count && rc == 0; j++) {
		int i = find_key(kr, next->ids[j]);
		if (i < 0) {
			added_at[nadded] = (int)j;
			added[nadded++] = next->ids[j];
		} else if (sodium_memcmp(kr->keys + (size_t)i * TT_MASTER_KEY_BYTES,
					 next->keys + j * TT_MASTER_KEY_BYTES, TT_MASTER_KEY_BYTES) != 0) {
			rc = tt_fail(err, "%s: key %u differs from the one loaded: a key id is never reused", kr->path,
				     next->ids[j]);
		}
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint32_t id = atomic_load_explicit(&kr->ids[i], memory_order_relaxed);
		if (id && find_key(next, id) < 0)
			dropped[ndropped++] = id;
	}
	if (rc == 0 && n + nadded > MAX_KEYS)
		rc = tt_fail(err, "more than %d keys added since start: restart to reload the key ring", MAX_KEYS);
	if (rc == 0 && ndropped && check(arg, dropped, ndropped, err) != 0)
		rc = -1;
	if (rc == 0) {
		sodium_mprotect_readwrite(kr->keys);
		sodium_mprotect_readwrite(kr->states);
		for (size_t a = 0; a < nadded; a++) {
			size_t from = (size_t)added_at[a], to = n + a;
			memcpy(kr->keys + to * TT_MASTER_KEY_BYTES, next->keys + from * TT_MASTER_KEY_BYTES,
			       TT_MASTER_KEY_BYTES);
			kr->states[to] = next->states[from];
			atomic_store_explicit(&kr->ids[to], added[a], memory_order_relaxed);
		}
		atomic_store_explicit(&kr->count, n + nadded, memory_order_release);
		for (size_t d = 0; d < ndropped; d++) {
			int i = find_key(kr, dropped[d]);
			atomic_store_explicit(&kr->ids[i], 0, memory_order_release);
			sodium_memzero(kr->keys + (size_t)i * TT_MASTER_KEY_BYTES, TT_MASTER_KEY_BYTES);
			sodium_memzero(&kr->states[i], sizeof kr->states[i]);
		}
		sodium_mprotect_readonly(kr->keys);
		sodium_mprotect_readonly(kr->states);
		list_ids(change->added, sizeof change->added, added, nadded);
		list_ids(change->dropped, sizeof change->dropped, dropped, ndropped);
	}
	tt_keyring_free(next);
	return rc;
}

int tt_keyring_generate(const char *path, uint32_t *new_id, struct tt_err *err)
{
	if (!path || !*path)
		return tt_fail(err, "no master key file: give --master-key-file or TRACKTLS_MASTER_KEY_FILE");
	if (crypto_ready(err) != 0)
		return -1;
	uint32_t id = 1;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST) {
		struct tt_keyring *kr;
		if (tt_keyring_load(path, &kr, err) != 0)
			return -1;
		id = tt_keyring_newest_id(kr) + 1;
		tt_keyring_free(kr);
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0)
		return tt_fail(err, "cannot write master key file %s: %s", path, strerror(errno));
	uint8_t *key = sodium_malloc(TT_MASTER_KEY_BYTES);
	char *line = sodium_malloc(32 + 2 * TT_MASTER_KEY_BYTES + 2);
	if (!key || !line) {
		sodium_free(key);
		sodium_free(line);
		close(fd);
		return tt_fail(err, "out of locked memory");
	}
	randombytes_buf(key, TT_MASTER_KEY_BYTES);
	int n = snprintf(line, 32, "%u ", id);
	sodium_bin2hex(line + n, 2 * TT_MASTER_KEY_BYTES + 1, key, TT_MASTER_KEY_BYTES);
	n += 2 * TT_MASTER_KEY_BYTES;
	line[n++] = '\n';
	ssize_t w = write(fd, line, (size_t)n);
	int werr = errno;
	sodium_free(key);
	sodium_free(line);
	if (w != n || fsync(fd) != 0) {
		close(fd);
		return tt_fail(err, "cannot write master key file %s: %s", path, strerror(werr));
	}
	close(fd);
	*new_id = id;
	return 0;
}

/* The AEAD's associated data: the blob's header (so neither key id nor nonce can be swapped),
 * then the caller's row binding. malloc'd. */
static uint8_t *envelope_ad(const uint8_t *header, const void *aad, size_t aadlen)
{
	uint8_t *ad = malloc(HEADER_BYTES + aadlen);
	if (ad) {
		memcpy(ad, header, HEADER_BYTES);
		memcpy(ad + HEADER_BYTES, aad, aadlen);
	}
	return ad;
}

int tt_envelope_seal(const struct tt_keyring *kr, const void *aad, size_t aadlen, const void *plain, size_t plainlen,
		     uint8_t **out, size_t *outlen, struct tt_err *err)
{
	uint32_t id = tt_keyring_newest_id(kr);
	int idx = find_key(kr, id);
	size_t len = TT_ENVELOPE_OVERHEAD + plainlen;
	uint8_t *blob = malloc(len);
	if (!blob)
		return tt_fail(err, "out of memory");
	blob[0] = ENVELOPE_VERSION;
	blob[1] = (uint8_t)(id >> 24);
	blob[2] = (uint8_t)(id >> 16);
	blob[3] = (uint8_t)(id >> 8);
	blob[4] = (uint8_t)id;
	uint8_t *nonce = blob + 5;
	randombytes_buf(nonce, NONCE_BYTES);
	unsigned long long clen = 0;
	uint8_t *ad = envelope_ad(blob, aad, aadlen);
	if (!ad) {
		free(blob);
		return tt_fail(err, "out of memory");
	}
	crypto_aead_aes256gcm_encrypt_afternm(blob + HEADER_BYTES, &clen, plain, plainlen, ad, HEADER_BYTES + aadlen,
					      NULL, nonce, &kr->states[idx]);
	free(ad);
	*out = blob;
	*outlen = HEADER_BYTES + (size_t)clen;
	return 0;
}

int64_t tt_envelope_key_id(const uint8_t *blob, size_t bloblen)
{
	if (bloblen < TT_ENVELOPE_OVERHEAD || blob[0] != ENVELOPE_VERSION)
		return -1;
	return ((int64_t)blob[1] << 24) | ((int64_t)blob[2] << 16) | ((int64_t)blob[3] << 8) | blob[4];
}

/* The blob's key, checked; its index in the ring, or -1 with err. */
static int envelope_key(const struct tt_keyring *kr, const uint8_t *blob, size_t bloblen, struct tt_err *err)
{
	int64_t id = tt_envelope_key_id(blob, bloblen);
	if (id < 0)
		return tt_fail(err, "sealed key is not a version-%d envelope (%zu bytes)", ENVELOPE_VERSION, bloblen);
	int idx = find_key(kr, (uint32_t)id);
	if (idx < 0)
		return tt_fail(err, "sealed under master key id %lld, which the key ring does not hold", (long long)id);
	return idx;
}

/* Decrypts a checked blob into plain (room for bloblen - TT_ENVELOPE_OVERHEAD bytes). */
static int envelope_decrypt(const struct tt_keyring *kr, int idx, const void *aad, size_t aadlen, const uint8_t *blob,
			    size_t bloblen, uint8_t *plain, size_t *outlen, struct tt_err *err)
{
	uint8_t *ad = envelope_ad(blob, aad, aadlen);
	if (!ad)
		return tt_fail(err, "out of memory");
	unsigned long long mlen = 0;
	int rc = crypto_aead_aes256gcm_decrypt_afternm(plain, &mlen, NULL, blob + HEADER_BYTES, bloblen - HEADER_BYTES,
						       ad, HEADER_BYTES + aadlen, blob + 5, &kr->states[idx]);
	free(ad);
	if (rc != 0)
		return tt_fail(err, "sealed key fails authentication (tampered, or bound to another row)");
	*outlen = (size_t)mlen;
	return 0;
}

int tt_envelope_open(const struct tt_keyring *kr, const void *aad, size_t aadlen, const uint8_t *blob, size_t bloblen,
		     uint8_t **out, size_t *outlen, struct tt_err *err)
{
	int idx = envelope_key(kr, blob, bloblen, err);
	if (idx < 0)
		return -1;
	size_t plen = bloblen - TT_ENVELOPE_OVERHEAD;
	uint8_t *plain = sodium_malloc(plen ? plen : 1);
	if (!plain)
		return tt_fail(err, "out of locked memory");
	if (envelope_decrypt(kr, idx, aad, aadlen, blob, bloblen, plain, outlen, err) < 0) {
		sodium_free(plain);
		return -1;
	}
	*out = plain;
	return 0;
}

int tt_envelope_open_reuse(const struct tt_keyring *kr, const void *aad, size_t aadlen, const uint8_t *blob,
			   size_t bloblen, struct tt_secret_buf *buf, size_t *outlen, struct tt_err *err)
{
	int idx = envelope_key(kr, blob, bloblen, err);
	if (idx < 0)
		return -1;
	size_t plen = bloblen - TT_ENVELOPE_OVERHEAD;
	/* Checked before the buffer grows, and so before the blob is authenticated: one oversized row
	 * must not leave every loading thread holding a buffer its size for the rest of its life. */
	if (plen > TT_PEM_FILE_MAX)
		return tt_fail(err, "sealed key of %zu bytes is larger than any key imported (%zu)", plen,
			       TT_PEM_FILE_MAX);
	if (!buf->p || plen > buf->cap) {
		size_t cap = buf->cap ? buf->cap : TT_SECRET_BUF_MIN;
		while (cap < plen)
			cap *= 2;
		uint8_t *p = sodium_malloc(cap);
		if (!p)
			return tt_fail(err, "out of locked memory");
		sodium_free(buf->p);
		buf->p = p;
		buf->cap = cap;
	}
	if (envelope_decrypt(kr, idx, aad, aadlen, blob, bloblen, buf->p, outlen, err) < 0) {
		/* libsodium zeroes what it decrypted when the tag fails; this does not depend on it */
		tt_secret_buf_wipe(buf);
		return -1;
	}
	return 0;
}

void tt_secret_buf_wipe(struct tt_secret_buf *buf)
{
	if (buf->p)
		sodium_memzero(buf->p, buf->cap);
}

void tt_secret_buf_free(struct tt_secret_buf *buf)
{
	sodium_free(buf->p); /* wipes the whole allocation */
	buf->p = NULL;
	buf->cap = 0;
}

void tt_secret_free(void *p, size_t len)
{
	(void)len; /* sodium_free wipes the whole allocation */
	sodium_free(p);
}

/* The length snprintf wrote into buf (size > 0), even when it truncated. */
static size_t written(int n, size_t size)
{
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

size_t tt_envelope_aad_cert(char *buf, size_t size, const char *domain, int64_t cert_id)
{
	return written(snprintf(buf, size, "tracktls/cert/%s/%lld", domain, (long long)cert_id), size);
}

size_t tt_envelope_aad_account(char *buf, size_t size, const char *directory_url)
{
	return written(snprintf(buf, size, "tracktls/account/%s", directory_url), size);
}

size_t tt_envelope_aad_ticket(char *buf, size_t size, int64_t ticket_key_id)
{
	return written(snprintf(buf, size, "tracktls/ticket/%lld", (long long)ticket_key_id), size);
}
