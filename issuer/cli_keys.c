/* cli_keys: the master key ring: `keys generate` adds a key, `keys rotate` re-seals every stored
 * private key under the newest one, in small transactions so an interrupted rotation resumes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "issuer.h"

int cli_keys_generate(struct issuer_ctx *ctx)
{
	struct tt_err err = {{0}};
	const char *path = issuer_opt(ctx, "master-key-file");
	if (!path) {
		fprintf(stderr, "issuer: keys generate needs --master-key-file or TRACKTLS_MASTER_KEY_FILE\n");
		return 2;
	}
	uint32_t id;
	if (tt_keyring_generate(path, &id, &err) < 0) {
		fprintf(stderr, "issuer: %s\n", err.msg);
		return 2;
	}
	printf("master key %u added to %s\n", id, path);
	return 0;
}
