/* Fuzzes the CAA issue-value parser and the record-set verdict with bytes from the network. */
// fuzz-sources: issuer/caa.c
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct caa_issue is;
	caa_parse_issue((const char *)data, size, &is);
	/* the first byte picks flags and where the tag ends: a set of two records from the rest */
	if (size < 2)
		return 0;
	size_t cut = data[0] % size;
	struct caa_record rs[2] = {
	    {.critical = data[0] & 0x80, .tag = "issue", .tag_len = 5, .value = (const char *)data + 1, .value_len = cut ? cut - 1 : 0},
	    {.critical = data[0] & 0x40, .tag = (const char *)data + 1, .tag_len = size - 1, .value = (const char *)data, .value_len = size},
	};
	struct caa_issuer who = {.identity = "letsencrypt.org", .account_uri = "https://acme.example/acct/1"};
	char why[600];
	caa_evaluate(rs, 2, data[0] & 1, &who, why, sizeof(why));
	return 0;
}
