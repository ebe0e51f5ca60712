/* name: the one definition of a valid tracking domain name, shared by issuer input and terminator SNI. */
#include <string.h>

#include <sodium.h>

#include "common.h"

int tt_name_normalize(const char *in, char out[TT_NAME_MAX], struct tt_err *err)
{
	size_t len = strlen(in);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0)
		return tt_fail(err, "empty name");
	if (len > 253)
		return tt_fail(err, "name longer than 253 characters");
	bool all_numeric_last = true;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0)
				return tt_fail(err, "empty label in name");
			if (out[i - 1] == '-')
				return tt_fail(err, "label ends with a hyphen");
			label = 0;
			all_numeric_last = true;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			if (c == '-' && label == 0)
				return tt_fail(err, "label starts with a hyphen");
			if (++label > 63)
				return tt_fail(err, "label longer than 63 characters");
			if (!(c >= '0' && c <= '9'))
				all_numeric_last = false;
		} else if (c == '*') {
			return tt_fail(err, "wildcard names are not supported");
		} else if (c == ':' || c == '[') {
			return tt_fail(err, "IP addresses are not names");
		} else {
			return tt_fail(err, "invalid character 0x%02x in name (use IDNA A-labels)", (unsigned char)c);
		}
		out[i] = c;
	}
	if (out[len - 1] == '-')
		return tt_fail(err, "label ends with a hyphen");
	/* A last label of digits only is an IPv4 literal (or no public name at all). */
	if (all_numeric_last)
		return tt_fail(err, "IP addresses are not names");
	if (memchr(out, '.', len) == NULL)
		return tt_fail(err, "a tracking domain needs at least two labels");
	out[len] = '\0';
	return 0;
}

_Static_assert(TT_HASH_KEY_BYTES == crypto_shorthash_KEYBYTES, "tt_hash_key fits SipHash-2-4");
_Static_assert(TT_HASH_KEY_BYTES == crypto_shorthash_siphashx24_KEYBYTES, "tt_hash_key fits SipHash-2-4-128");

int tt_hash_key_random(struct tt_hash_key *key, struct tt_err *err)
{
	if (sodium_init() < 0)
		return tt_fail(err, "libsodium failed to initialise");
	randombytes_buf(key->bytes, sizeof key->bytes);
	return 0;
}

uint64_t tt_name_hash(const struct tt_hash_key *key, const char *name, size_t len)
{
	unsigned char h[crypto_shorthash_BYTES];
	crypto_shorthash(h, (const unsigned char *)name, len, key->bytes);
	uint64_t v;
	memcpy(&v, h, sizeof v);
	return v;
}

void tt_name_hash2(const struct tt_hash_key *key, const char *name, size_t len, uint64_t out[2])
{
	unsigned char h[crypto_shorthash_siphashx24_BYTES];
	crypto_shorthash_siphashx24(h, (const unsigned char *)name, len, key->bytes);
	memcpy(out, h, sizeof h);
}
