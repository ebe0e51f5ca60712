/* Tests common/keyring.c: the key ring file and the AES-256-GCM envelope. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "common.h"

static char dir[] = "/tmp/tt-keyring-XXXXXX";

static void path_in(char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
}

/* What the terminator's check asks the database; here: whether the test lets a drop through. */
static int allow_drop(void *arg, const uint32_t *ids, size_t n, struct tt_err *err)
{
	if (*(const bool *)arg)
		return 0;
	return tt_fail(err, "key %u is in use", ids[0]);
}

static int write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, text, strlen(text));
	fchmod(fd, mode);
	close(fd);
	return w == (ssize_t)strlen(text) ? 0 : -1;
}

int main(void)
{
	struct tt_err err = {{0}};
	char ring[256], aad[256], aad2[256];
	if (!mkdtemp(dir))
		return 1;
	path_in(ring, sizeof(ring), "ring");

	uint32_t id = 0;
	CHECK(tt_keyring_generate(ring, &id, &err) == 0 && id == 1, "generate creates a ring with key id 1");
	struct stat st;
	CHECK(stat(ring, &st) == 0 && (st.st_mode & 0777) == 0600, "generated ring is mode 0600");

	struct tt_keyring *kr1 = NULL;
	CHECK(tt_keyring_load(ring, &kr1, &err) == 0 && tt_keyring_newest_id(kr1) == 1, "load a one-key ring");

	const char secret[] = "-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n";
	size_t al = tt_envelope_aad_cert(aad, sizeof(aad), "click.shop.example", 42);
	uint8_t *blob = NULL, *plain = NULL;
	size_t bloblen = 0, plainlen = 0;
	CHECK(tt_envelope_seal(kr1, aad, al, secret, sizeof(secret), &blob, &bloblen, &err) == 0 &&
		      bloblen == sizeof(secret) + TT_ENVELOPE_OVERHEAD,
	      "seal adds exactly the envelope overhead");
	CHECK(memmem(blob, bloblen, "BEGIN", 5) == NULL, "sealed blob holds no clear text");
	CHECK(tt_envelope_key_id(blob, bloblen) == 1, "blob records the sealing key id");
	CHECK(tt_envelope_open(kr1, aad, al, blob, bloblen, &plain, &plainlen, &err) == 0 &&
		      plainlen == sizeof(secret) && memcmp(plain, secret, plainlen) == 0,
	      "round trip");
	tt_secret_free(plain, plainlen);

	uint8_t *blob2 = NULL;
	size_t blob2len = 0;
	tt_envelope_seal(kr1, aad, al, secret, sizeof(secret), &blob2, &blob2len, &err);
	CHECK(blob2len == bloblen && memcmp(blob, blob2, bloblen) != 0, "two seals of one key differ (fresh nonce)");
	free(blob2);

	size_t al2 = tt_envelope_aad_cert(aad2, sizeof(aad2), "click.other.example", 42);
	CHECK(tt_envelope_open(kr1, aad2, al2, blob, bloblen, &plain, &plainlen, &err) != 0 &&
		      strstr(err.msg, "another row"),
	      "blob moved to another domain's row fails to open");
	al2 = tt_envelope_aad_cert(aad2, sizeof(aad2), "click.shop.example", 43);
	CHECK(tt_envelope_open(kr1, aad2, al2, blob, bloblen, &plain, &plainlen, &err) != 0,
	      "blob moved to another certificate id fails to open");

	size_t accepted = 0;
	for (size_t i = 0; i < bloblen; i++) {
		blob[i] ^= 0x01;
		if (tt_envelope_open(kr1, aad, al, blob, bloblen, &plain, &plainlen, &err) == 0) {
			tt_secret_free(plain, plainlen);
			accepted++;
		}
		blob[i] ^= 0x01;
	}
	CHECK(accepted == 0, "a flipped bit anywhere in the blob is rejected");
	CHECK(tt_envelope_open(kr1, aad, al, blob, 10, &plain, &plainlen, &err) != 0, "truncated blob is rejected");

	/* The reused buffer (one per loading thread): same answers, grows for a larger key up to the
	 * import limit and no further, and is wiped whole. */
	struct tt_secret_buf kb = {0};
	CHECK(tt_envelope_open_reuse(kr1, aad, al, blob, bloblen, &kb, &plainlen, &err) == 0 &&
		      plainlen == sizeof(secret) && memcmp(kb.p, secret, plainlen) == 0 && kb.cap == TT_SECRET_BUF_MIN,
	      "reused buffer: round trip into a buffer of the minimum size");
	uint8_t *first = kb.p;
	tt_secret_buf_wipe(&kb);
	CHECK(sodium_is_zero(kb.p, kb.cap), "reused buffer: wiped whole after use");
	CHECK(tt_envelope_open_reuse(kr1, aad, al, blob, bloblen, &kb, &plainlen, &err) == 0 && kb.p == first,
	      "reused buffer: a second open reuses the same allocation");
	tt_secret_buf_wipe(&kb);
	size_t biglen = 3 * TT_SECRET_BUF_MIN + 5;
	char *big = malloc(TT_PEM_FILE_MAX + 1);
	memset(big, 'K', TT_PEM_FILE_MAX + 1);
	uint8_t *bigblob = NULL;
	size_t bigbloblen = 0;
	CHECK(tt_envelope_seal(kr1, aad, al, big, biglen, &bigblob, &bigbloblen, &err) == 0 &&
		      tt_envelope_open_reuse(kr1, aad, al, bigblob, bigbloblen, &kb, &plainlen, &err) == 0 &&
		      plainlen == biglen && memcmp(kb.p, big, biglen) == 0 && kb.cap >= biglen,
	      "reused buffer: grows for a key larger than it");
	tt_secret_buf_wipe(&kb);
	bigblob[bigbloblen - 1] ^= 0x01;
	CHECK(tt_envelope_open_reuse(kr1, aad, al, bigblob, bigbloblen, &kb, &plainlen, &err) != 0 &&
		      strstr(err.msg, "authentication"),
	      "reused buffer: a tampered blob is refused");
	free(bigblob);
	size_t cap_before = kb.cap;
	CHECK(tt_envelope_seal(kr1, aad, al, big, TT_PEM_FILE_MAX + 1, &bigblob, &bigbloblen, &err) == 0 &&
		      tt_envelope_open_reuse(kr1, aad, al, bigblob, bigbloblen, &kb, &plainlen, &err) != 0 &&
		      strstr(err.msg, "larger than any key") && kb.cap == cap_before,
	      "reused buffer: a blob larger than any importable key is refused before the buffer grows");
	CHECK(tt_envelope_open_reuse(kr1, aad, al, blob, 10, &kb, &plainlen, &err) != 0 &&
		      strstr(err.msg, "envelope"),
	      "reused buffer: a truncated blob is refused");
	tt_secret_buf_free(&kb);
	CHECK(kb.p == NULL && kb.cap == 0, "reused buffer: freed back to empty");
	uint8_t *empty = NULL;
	size_t emptylen = 0;
	CHECK(tt_envelope_seal(kr1, aad, al, "", 0, &empty, &emptylen, &err) == 0 &&
		      tt_envelope_open_reuse(kr1, aad, al, empty, emptylen, &kb, &plainlen, &err) == 0 && plainlen == 0 &&
		      kb.p != NULL,
	      "reused buffer: an empty key opens into an allocated buffer");
	tt_secret_buf_free(&kb);
	tt_secret_buf_free(&kb);
	CHECK(kb.p == NULL, "reused buffer: freeing an empty one is harmless");
	free(empty);
	free(bigblob);
	free(big);

	CHECK(tt_keyring_generate(ring, &id, &err) == 0 && id == 2, "generate appends key id 2");
	struct tt_keyring *kr2 = NULL;
	CHECK(tt_keyring_load(ring, &kr2, &err) == 0 && tt_keyring_newest_id(kr2) == 2, "ring now seals with id 2");
	CHECK(tt_envelope_open(kr2, aad, al, blob, bloblen, &plain, &plainlen, &err) == 0, "old blob opens with the grown ring");
	tt_secret_free(plain, plainlen);
	uint8_t *blob3 = NULL;
	size_t blob3len = 0;
	tt_envelope_seal(kr2, aad, al, secret, sizeof(secret), &blob3, &blob3len, &err);
	CHECK(tt_envelope_key_id(blob3, blob3len) == 2, "new seals use the newest key");
	CHECK(tt_envelope_open(kr1, aad, al, blob3, blob3len, &plain, &plainlen, &err) != 0 &&
		      strstr(err.msg, "does not hold"),
	      "wrong key id: ring without that key refuses with a clear message");
	free(blob3);
	free(blob);

	/* Reload in place (SIGHUP): the ring object the other threads hold gains and loses keys. */
	char rr[256], text[4096];
	path_in(rr, sizeof(rr), "reload");
	struct tt_keyring *live = NULL;
	struct tt_keyring_change ch;
	bool allow = false;
	CHECK(tt_keyring_generate(rr, &id, &err) == 0 && tt_keyring_load(rr, &live, &err) == 0, "a ring to reload");
	uint8_t *b1 = NULL, *b2 = NULL;
	size_t b1len = 0, b2len = 0;
	tt_envelope_seal(live, aad, al, secret, sizeof(secret), &b1, &b1len, &err);
	CHECK(tt_keyring_reload(live, allow_drop, &allow, &ch, &err) == 0 && !ch.added[0] && !ch.dropped[0],
	      "reloading an unchanged file changes nothing");
	CHECK(tt_keyring_generate(rr, &id, &err) == 0 && id == 2, "keys generate appends key 2 to the live file");
	CHECK(tt_keyring_reload(live, allow_drop, &allow, &ch, &err) == 0 && strcmp(ch.added, "2") == 0 &&
		  !ch.dropped[0] && tt_keyring_newest_id(live) == 2 && tt_keyring_count(live) == 2,
	      "reload adds key 2 and seals with it");
	tt_envelope_seal(live, aad, al, secret, sizeof(secret), &b2, &b2len, &err);
	CHECK(tt_envelope_key_id(b2, b2len) == 2 &&
		  tt_envelope_open(live, aad, al, b2, b2len, &plain, &plainlen, &err) == 0,
	      "a blob sealed under the added key opens");
	tt_secret_free(plain, plainlen);
	/* The file without key 1 (rewritten in place, as copying over it does). */
	int fd = open(rr, O_RDONLY);
	ssize_t tl = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[tl > 0 ? tl : 0] = 0;
	char *line2 = strstr(text, "\n2 ");
	CHECK(line2 && write_file(rr, line2 + 1, 0600) == 0, "key 1 removed from the file");
	CHECK(tt_keyring_reload(live, allow_drop, &allow, &ch, &err) != 0 && strstr(err.msg, "key 1 is in use"),
	      "a reload dropping a key in use is refused, saying why");
	CHECK(tt_envelope_open(live, aad, al, b1, b1len, &plain, &plainlen, &err) == 0 && tt_keyring_count(live) == 2,
	      "  ... and the key stays usable");
	tt_secret_free(plain, plainlen);
	allow = true;
	CHECK(tt_keyring_reload(live, allow_drop, &allow, &ch, &err) == 0 && strcmp(ch.dropped, "1") == 0 &&
		  tt_keyring_count(live) == 1,
	      "a reload dropping a key nothing uses is taken");
	CHECK(tt_envelope_open(live, aad, al, b1, b1len, &plain, &plainlen, &err) != 0 && strstr(err.msg, "does not hold"),
	      "  ... and the dropped key opens nothing");
	CHECK(tt_envelope_open(live, aad, al, b2, b2len, &plain, &plainlen, &err) == 0, "  ... key 2 still does");
	tt_secret_free(plain, plainlen);
	write_file(rr, "2 1111111111111111111111111111111111111111111111111111111111111111\n", 0600);
	CHECK(tt_keyring_reload(live, allow_drop, &allow, &ch, &err) != 0 && strstr(err.msg, "never reused"),
	      "a file giving a loaded id other bytes is refused");
	CHECK(tt_envelope_open(live, aad, al, b2, b2len, &plain, &plainlen, &err) == 0, "  ... and the ring is unchanged");
	tt_secret_free(plain, plainlen);
	write_file(rr, "# nothing\n", 0600);
	CHECK(tt_keyring_reload(live, allow_drop, &allow, &ch, &err) != 0 && strstr(err.msg, "no keys"),
	      "a broken file is refused");
	free(b1);
	free(b2);
	tt_keyring_free(live);

	char bad[256];
	path_in(bad, sizeof(bad), "open");
	write_file(bad, "1 0000000000000000000000000000000000000000000000000000000000000000\n", 0644);
	CHECK(tt_keyring_load(bad, &kr2, &err) != 0 && strstr(err.msg, "chmod 600"),
	      "group/other-readable ring is refused");
	path_in(bad, sizeof(bad), "short");
	write_file(bad, "1 abcd\n", 0600);
	CHECK(tt_keyring_load(bad, &kr2, &err) != 0 && strstr(err.msg, "hex digits"), "malformed key is refused");
	path_in(bad, sizeof(bad), "dup");
	write_file(bad,
		   "1 0000000000000000000000000000000000000000000000000000000000000000\n"
		   "1 1111111111111111111111111111111111111111111111111111111111111111\n",
		   0600);
	CHECK(tt_keyring_load(bad, &kr2, &err) != 0 && strstr(err.msg, "twice"), "duplicate key id is refused");
	path_in(bad, sizeof(bad), "empty");
	write_file(bad, "# nothing\n", 0600);
	CHECK(tt_keyring_load(bad, &kr2, &err) != 0 && strstr(err.msg, "no keys"), "empty ring is refused");
	CHECK(tt_keyring_load("/nonexistent/ring", &kr2, &err) != 0, "missing ring is refused");

	tt_keyring_free(kr1);
	tt_keyring_free(kr2);
	CHECK_DONE();
}
