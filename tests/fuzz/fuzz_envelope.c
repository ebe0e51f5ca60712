// fuzz-sources: common/keyring.c common/err.c common/log.c
// fuzz-libs: -lsodium
/* Fuzzes the key-envelope opener with blobs as they come out of the database: any bytes must be
 * refused cleanly unless they are a real envelope for this row, and a real envelope with any byte
 * changed must never open. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static struct tt_keyring *kr;
static uint8_t *good;
static size_t goodlen;
static const char aad[] = "tracktls/cert/click.shop.example/7";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/tt-fuzz-ring-XXXXXX";
	int fd = mkstemp(path);
	struct tt_err err;
	uint32_t id;
	close(fd);
	unlink(path);
	if (tt_keyring_generate(path, &id, &err) != 0 || tt_keyring_generate(path, &id, &err) != 0 ||
	    tt_keyring_load(path, &kr, &err) != 0)
		abort();
	unlink(path);
	if (tt_envelope_seal(kr, aad, sizeof(aad) - 1, "secret key bytes", 16, &good, &goodlen, &err) != 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tt_err err;
	uint8_t *plain = NULL;
	size_t plainlen = 0;
	/* Arbitrary bytes as a blob. */
	if (tt_envelope_open(kr, aad, sizeof(aad) - 1, data, size, &plain, &plainlen, &err) == 0) {
		if (size != goodlen || memcmp(data, good, size) != 0)
			abort(); /* forged an envelope */
		tt_secret_free(plain, plainlen);
	}
	/* The real blob with the input XORed over it: opens only when nothing changed. */
	uint8_t *blob = malloc(goodlen);
	memcpy(blob, good, goodlen);
	bool changed = false;
	for (size_t i = 0; i < size && i < goodlen; i++) {
		blob[i] ^= data[i];
		changed |= data[i] != 0;
	}
	int rc = tt_envelope_open(kr, aad, sizeof(aad) - 1, blob, goodlen, &plain, &plainlen, &err);
	if (rc == 0) {
		if (changed)
			abort();
		tt_secret_free(plain, plainlen);
	}
	free(blob);
	return 0;
}
