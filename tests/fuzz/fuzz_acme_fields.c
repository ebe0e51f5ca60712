/* Fuzzes the issuer's parsers of CA responses: header lines, Retry-After, RFC 3339, tokens, URLs,
 * and checks the promises their callers rely on. */
// fuzz-sources: issuer/acme_parse.c
// fuzz-libs: -lcurl
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

/* The parser accepts years 1970-9999 and offsets under a day. */
#define YEAR_10000_UTC ((time_t)253402300800LL)
#define ONE_DAY_S 86400

static void retry_after_in_range(const char *v)
{
	int64_t d = acme_parse_retry_after(v);
	if (d < -1 || d > ONE_DAY_S)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	char out[64];
	memset(out, 'x', sizeof(out));
	if (acme_header_value(s, size, "retry-after:", out, sizeof(out))) {
		if (memchr(out, 0, sizeof(out)) == NULL)
			abort();
		retry_after_in_range(out);
	}
	char one[1] = {'x'};
	if (acme_header_value(s, size, "replay-nonce:", one, sizeof(one)) && one[0] != 0)
		abort();
	retry_after_in_range(s);
	time_t t = 0;
	if (acme_parse_rfc3339(s, &t) == 0 && (t < -ONE_DAY_S || t >= YEAR_10000_UTC + ONE_DAY_S))
		abort();
	acme_token_valid(s);
	char why[128];
	acme_url_check("https://ca.example:14000/dir", s, why, sizeof(why));
	acme_url_check(s, "https://ca.example:14000/x", why, sizeof(why));
	free(s);
	return 0;
}
