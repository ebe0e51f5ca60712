/* keyring: the master key ring and the AES-256-GCM envelope that seals every private key at rest.
 * Only this file ever holds a master key; callers hand it plaintext to seal and get locked memory back. */
#include <errno.h>
#include <fcntl.h>
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

struct tt_keyring {
	size_t count;
	uint32_t ids[MAX_KEYS];
	/* sodium_malloc'd: locked, guarded, wiped on free */
	uint8_t *keys;
	crypto_aead_aes256gcm_state *states;
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
	free(kr);
}

uint32_t tt_keyring_newest_id(const struct tt_keyring *kr)
{
	uint32_t best = 0;
	for (size_t i = 0; i < kr->count; i++)
		if (kr->ids[i] > best)
			best = kr->ids[i];
	return best;
}

static int find_key(const struct tt_keyring *kr, uint32_t id)
{
	for (size_t i = 0; i < kr->count; i++)
		if (kr->ids[i] == id)
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
		if (kr->count == MAX_KEYS)
			return tt_fail(err, "%s: more than %d keys", path, MAX_KEYS);
		if (find_key(kr, (uint32_t)id) >= 0)
			return tt_fail(err, "%s:%d: key id %lu appears twice", path, lineno, id);
		uint8_t *key = kr->keys + kr->count * TT_MASTER_KEY_BYTES;
		size_t bin_len = 0;
		if (hexlen != 2 * TT_MASTER_KEY_BYTES ||
		    sodium_hex2bin(key, TT_MASTER_KEY_BYTES, end, hexlen, NULL, &bin_len, NULL) != 0 ||
		    bin_len != TT_MASTER_KEY_BYTES)
			return tt_fail(err, "%s:%d: key must be %d hex digits", path, lineno, 2 * TT_MASTER_KEY_BYTES);
		crypto_aead_aes256gcm_beforenm(&kr->states[kr->count], key);
		kr->ids[kr->count++] = (uint32_t)id;
	}
	if (kr->count == 0)
		return tt_fail(err, "%s holds no keys (create one with: issuer keys generate)", path);
	return 0;
}

int tt_keyring_load(const char *path, struct tt_keyring **out, struct tt_err *err)
{
	if (!path || !*path)
		return tt_fail(err, "no master key file: give --master-key-file or TRACKTLS_MASTER_KEY_FILE");
	if (crypto_ready(err) != 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return tt_fail(err, "cannot open master key file %s: %s", path, strerror(errno));
	char *text = NULL;
	size_t len = 0;
	if (check_mode(fd, path, err) != 0 || tt_read_fd(fd, path, 64 * 1024, true, &text, &len, err) != 0) {
		close(fd);
		return -1;
	}
	close(fd);
	struct tt_keyring *kr = calloc(1, sizeof(*kr));
	if (kr) {
		kr->keys = sodium_malloc(MAX_KEYS * TT_MASTER_KEY_BYTES);
		kr->states = sodium_malloc(MAX_KEYS * sizeof(crypto_aead_aes256gcm_state));
	}
	if (!kr || !kr->keys || !kr->states) {
		tt_keyring_free(kr);
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

int tt_envelope_open(const struct tt_keyring *kr, const void *aad, size_t aadlen, const uint8_t *blob, size_t bloblen,
		     uint8_t **out, size_t *outlen, struct tt_err *err)
{
	int64_t id = tt_envelope_key_id(blob, bloblen);
	if (id < 0)
		return tt_fail(err, "sealed key is not a version-%d envelope (%zu bytes)", ENVELOPE_VERSION, bloblen);
	int idx = find_key(kr, (uint32_t)id);
	if (idx < 0)
		return tt_fail(err, "sealed under master key id %lld, which the key ring does not hold", (long long)id);
	size_t plen = bloblen - TT_ENVELOPE_OVERHEAD;
	uint8_t *plain = sodium_malloc(plen ? plen : 1);
	uint8_t *ad = envelope_ad(blob, aad, aadlen);
	if (!plain || !ad) {
		sodium_free(plain);
		free(ad);
		return tt_fail(err, "out of memory");
	}
	unsigned long long mlen = 0;
	int rc = crypto_aead_aes256gcm_decrypt_afternm(plain, &mlen, NULL, blob + HEADER_BYTES, bloblen - HEADER_BYTES,
						       ad, HEADER_BYTES + aadlen, blob + 5, &kr->states[idx]);
	free(ad);
	if (rc != 0) {
		sodium_free(plain);
		return tt_fail(err, "sealed key fails authentication (tampered, or bound to another row)");
	}
	*out = plain;
	*outlen = (size_t)mlen;
	return 0;
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
