/* Fuzzes the issuer's parsers of CA responses: header lines, Retry-After, RFC 3339, tokens, URLs. */
// fuzz-sources: issuer/acme_parse.c
// fuzz-libs: -lcurl
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	char out[64];
	if (acme_header_value(s, size, "retry-after:", out, sizeof(out)))
		acme_parse_retry_after(out);
	acme_header_value(s, size, "replay-nonce:", out, 1);
	acme_parse_retry_after(s);
	time_t t;
	acme_parse_rfc3339(s, &t);
	acme_token_valid(s);
	char why[128];
	acme_url_check("https://ca.example:14000/dir", s, why, sizeof(why));
	acme_url_check(s, "https://ca.example:14000/x", why, sizeof(why));
	free(s);
	return 0;
}
