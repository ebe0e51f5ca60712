/* Tests common/name.c: which names are tracking domains and how they are normalized. */
#include "check.h"
#include "common.h"

static int norm(const char *in, const char *want)
{
	char out[TT_NAME_MAX];
	struct tt_err err;
	if (tt_name_normalize(in, out, &err) != 0)
		return want == NULL;
	return want && strcmp(out, want) == 0;
}

int main(void)
{
	CHECK(norm("Click.Shop.Example", "click.shop.example"), "lowercased");
	CHECK(norm("click.shop.example.", "click.shop.example"), "trailing dot stripped");
	CHECK(norm("xn--bcher-kva.example", "xn--bcher-kva.example"), "A-labels accepted");
	CHECK(norm("a-b.c-d.example", "a-b.c-d.example"), "inner hyphens accepted");
	CHECK(norm("*.shop.example", NULL), "wildcard refused");
	CHECK(norm("192.0.2.1", NULL), "IPv4 literal refused");
	CHECK(norm("[::1]", NULL), "IPv6 literal refused");
	CHECK(norm("localhost", NULL), "single label refused");
	CHECK(norm("", NULL), "empty refused");
	CHECK(norm(".", NULL), "root refused");
	CHECK(norm("a..example", NULL), "empty label refused");
	CHECK(norm("-a.example", NULL), "leading hyphen refused");
	CHECK(norm("a-.example", NULL), "trailing hyphen refused");
	CHECK(norm("bücher.example", NULL), "U-labels refused (convert to A-labels first)");
	CHECK(norm("a b.example", NULL), "space refused");
	char label[80];
	memset(label, 'a', 64);
	strcpy(label + 64, ".example");
	CHECK(norm(label, NULL), "64-character label refused");
	memset(label, 'a', 63);
	strcpy(label + 63, ".example");
	CHECK(norm(label, label), "63-character label accepted");
	/* SipHash-2-4's reference vectors (key 00..0f; messages 00, 00 01, ... of length 0 and 15). */
	struct tt_hash_key ref;
	for (int i = 0; i < TT_HASH_KEY_BYTES; i++)
		ref.bytes[i] = (unsigned char)i;
	char msg[15];
	for (int i = 0; i < 15; i++)
		msg[i] = (char)i;
	CHECK(tt_name_hash(&ref, msg, 0) == 0x726fdb47dd0e0e31ULL, "the name hash is SipHash-2-4 (empty message)");
	CHECK(tt_name_hash(&ref, msg, 15) == 0xa129ca6149be45e5ULL, "the name hash is SipHash-2-4 (15 bytes)");
	uint64_t two[2], two_again[2];
	tt_name_hash2(&ref, "a.example", 9, two);
	tt_name_hash2(&ref, "a.example", 9, two_again);
	CHECK(two[0] == two_again[0] && two[1] == two_again[1] && two[0] != two[1], "two hashes, stable, distinct");
	struct tt_hash_key k1, k2;
	struct tt_err err;
	CHECK(tt_hash_key_random(&k1, &err) == 0 && tt_hash_key_random(&k2, &err) == 0, "random keys");
	CHECK(memcmp(k1.bytes, k2.bytes, sizeof k1.bytes) != 0, "each key is its own");
	CHECK(tt_name_hash(&k1, "a.example", 9) == tt_name_hash(&k1, "a.example", 9), "a key hashes a name stably");
	CHECK(tt_name_hash(&k1, "a.example", 9) != tt_name_hash(&k1, "b.example", 9), "hash separates names");
	CHECK(tt_name_hash(&k1, "a.example", 9) != tt_name_hash(&k2, "a.example", 9),
	      "another key, another hash: the key is in the hash, not mixed in afterwards");
	/* An unkeyed hash with a seed XORed in afterwards keeps the difference of two names' hashes
	 * the same under every seed, so collisions found offline hold everywhere; a keyed one not. */
	CHECK((tt_name_hash(&k1, "a.example", 9) ^ tt_name_hash(&k1, "b.example", 9)) !=
		  (tt_name_hash(&k2, "a.example", 9) ^ tt_name_hash(&k2, "b.example", 9)),
	      "the difference of two names' hashes depends on the key");
	CHECK_DONE();
}
