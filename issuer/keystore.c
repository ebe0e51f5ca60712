/* keystore: the only module that holds the master key ring's secrets in use. Everything else hands
 * it clear keys to seal or blobs to open; the AAD binds each blob to its row. */
#include <stdio.h>

#include "issuer.h"

int keystore_seal_cert(const struct tt_keyring *kr, const char *name, int64_t cert_id, const uint8_t *key,
		       size_t key_len, uint8_t **blob, size_t *blob_len, struct tt_err *err)
{
	char aad[400];
	size_t n = tt_envelope_aad_cert(aad, sizeof(aad), name, cert_id);
	return tt_envelope_seal(kr, aad, n, key, key_len, blob, blob_len, err);
}

int keystore_seal_account(const struct tt_keyring *kr, const char *directory, const uint8_t *key, size_t key_len,
			  uint8_t **blob, size_t *blob_len, struct tt_err *err)
{
	char aad[2200];
	size_t n = tt_envelope_aad_account(aad, sizeof(aad), directory);
	return tt_envelope_seal(kr, aad, n, key, key_len, blob, blob_len, err);
}

int keystore_open_account(const struct tt_keyring *kr, const char *directory, const uint8_t *blob, size_t blob_len,
			  uint8_t **key, size_t *key_len, struct tt_err *err)
{
	char aad[2200];
	size_t n = tt_envelope_aad_account(aad, sizeof(aad), directory);
	return tt_envelope_open(kr, aad, n, blob, blob_len, key, key_len, err);
}

int keystore_reseal(const struct tt_keyring *kr, enum keystore_kind kind, const char *label, int64_t id,
		    const uint8_t *blob, size_t blob_len, uint8_t **out, size_t *out_len, struct tt_err *err)
{
	char aad[2200];
	size_t n = kind == KEYSTORE_CERT      ? tt_envelope_aad_cert(aad, sizeof(aad), label, id)
		   : kind == KEYSTORE_ACCOUNT ? tt_envelope_aad_account(aad, sizeof(aad), label)
					      : tt_envelope_aad_ticket(aad, sizeof(aad), id);
	uint8_t *clear;
	size_t clear_len;
	if (tt_envelope_open(kr, aad, n, blob, blob_len, &clear, &clear_len, err) < 0)
		return -1;
	int rc = tt_envelope_seal(kr, aad, n, clear, clear_len, out, out_len, err);
	tt_secret_free(clear, clear_len);
	return rc;
}

uint32_t keystore_newest_id(const struct tt_keyring *kr)
{
	return tt_keyring_newest_id(kr);
}
