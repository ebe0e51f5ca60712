/* acme_parse.c: what the issuer accepts from a CA outside JSON (challenge tokens, URLs) and the values
 * its hand-written parsers return (header lines, Retry-After, RFC 3339). */
#include <string.h>
#include <time.h>

#include "check.h"
#include "issuer.h"

/* 2026-11-30T12:34:56Z */
#define T_2026_11_30_123456 ((time_t)1796042096)

#define DIR "https://ca.example:14000/dir"

static bool url_ok(const char *url)
{
	char why[300];
	return acme_url_check(DIR, url, why, sizeof(why)) == 0;
}

static void tokens_and_urls(void)
{
	CHECK(acme_token_valid("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"), "a base64url token is accepted");
	CHECK(acme_token_valid("a") && acme_token_valid("_-_-"), "one character and _ - are accepted");
	char t[ACME_TOKEN_MAX + 2];
	memset(t, 'A', ACME_TOKEN_MAX);
	t[ACME_TOKEN_MAX] = 0;
	CHECK(acme_token_valid(t), "128 characters are accepted");
	t[ACME_TOKEN_MAX] = 'A';
	t[ACME_TOKEN_MAX + 1] = 0;
	CHECK(!acme_token_valid(t), "129 characters are refused");
	CHECK(!acme_token_valid("") && !acme_token_valid(NULL), "an empty token is refused");
	CHECK(!acme_token_valid("../../etc/passwd") && !acme_token_valid("a/b") && !acme_token_valid("a.b"),
	      "path characters are refused");
	CHECK(!acme_token_valid("abc def") && !acme_token_valid("abc\r\nX: y") && !acme_token_valid("abc%2f") &&
		  !acme_token_valid("abc=") && !acme_token_valid("ab+c"),
	      "space, CRLF, percent, padding and '+' are refused");
	CHECK(!acme_token_valid("abc\xc3\xa9"), "non-ASCII is refused");

	CHECK(url_ok("https://ca.example:14000/acme/order/1"), "same scheme, host and port: accepted");
	CHECK(url_ok("https://CA.Example:14000/x"), "host compared without case");
	CHECK(acme_url_check("https://ca.example/dir", "https://ca.example:443/x", (char[80]){0}, 80) == 0,
	      "the default port written out or not is the same origin");
	CHECK(!url_ok("http://ca.example:14000/acme/order/1"), "plain http is refused");
	CHECK(!url_ok("https://ca.example:14001/acme/order/1"), "another port is refused");
	CHECK(!url_ok("https://ca.example/acme/order/1"), "the default port is another port than 14000");
	CHECK(!url_ok("https://other.example:14000/x") && !url_ok("https://127.0.0.1:14000/x"),
	      "another host is refused");
	CHECK(!url_ok("https://ca.example:14000.evil.example/x") && !url_ok("https://ca.example.evil:14000/x"),
	      "look-alike hosts are refused");
	CHECK(!url_ok("https://user:pw@ca.example:14000/x") && !url_ok("https://ca.example:14000@evil.example/x"),
	      "credentials in the URL are refused");
	CHECK(!url_ok("/acme/order/1") && !url_ok("") && !url_ok("ca.example:14000/x") && !url_ok("file:///etc/passwd"),
	      "relative, empty, scheme-less and file URLs are refused");
	CHECK(!url_ok("https://ca.example:14000/a b") && !url_ok("https://ca.example:14000/a\r\nHost: x"),
	      "spaces and control characters are refused");
	char why[300];
	CHECK(acme_url_check(DIR, "https://evil.example/x", why, sizeof(why)) < 0 && strstr(why, "evil.example:443") &&
		  strstr(why, "ca.example:14000"),
	      "the reason names both origins");
	CHECK(acme_url_check("http://ca.example/dir", "http://ca.example/x", why, sizeof(why)) < 0 &&
		  strstr(why, "directory"),
	      "an http directory is refused too, saying so");
	CHECK(acme_url_check("https://[::1]:14000/dir", "https://[::1]:14000/x", why, sizeof(why)) == 0,
	      "IPv6 literal origins work");
}

static time_t parsed(const char *s)
{
	time_t t = 0;
	return acme_parse_rfc3339(s, &t) == 0 ? t : (time_t)-1;
}

int main(void)
{
	char out[64];
	const char line[] = "Retry-After:   120  \r\n";
	CHECK(acme_header_value(line, strlen(line), "retry-after:", out, sizeof(out)) && strcmp(out, "120") == 0,
	      "header value: name matched without case, value trimmed");
	CHECK(!acme_header_value(line, strlen(line), "replay-nonce:", out, sizeof(out)), "another header: no value");
	CHECK(acme_header_value(line, strlen(line), "retry-after:", out, 3) && strcmp(out, "12") == 0,
	      "a value longer than the buffer is cut and terminated");
	CHECK(!acme_header_value("Retry-After:", 12, "retry-after:", out, sizeof(out)),
	      "a header with nothing after the name has no value");

	CHECK(acme_error_is("urn:ietf:params:acme:error:caa", "caa") &&
		      acme_error_is("urn:ietf:params:acme:error:rejectedIdentifier", "rejectedIdentifier"),
	      "problem type: RFC 8555's error of that name");
	CHECK(!acme_error_is("urn:ietf:params:acme:error:caaX", "caa") &&
		      !acme_error_is("urn:ietf:params:acme:error:badCaa", "caa") &&
		      !acme_error_is("urn:example:error:caa", "caa") && !acme_error_is("caa", "caa") &&
		      !acme_error_is("urn:ietf:params:acme:error:", "caa") && !acme_error_is(NULL, "caa"),
	      "problem type: one that only contains the name, another namespace, a bare word or none is not it");
	CHECK(acme_parse_retry_after("120") == 120, "Retry-After seconds");
	CHECK(acme_parse_retry_after("0") == 0, "Retry-After 0");
	CHECK(acme_parse_retry_after("86401") == 86400, "Retry-After over a day is a day");
	CHECK(acme_parse_retry_after("99999999999999999999") == 86400, "Retry-After with many digits is a day");
	CHECK(acme_parse_retry_after("12a") == -1, "Retry-After with trailing junk is refused");
	CHECK(acme_parse_retry_after("-5") == -1, "a negative Retry-After is refused");
	CHECK(acme_parse_retry_after("") == -1 && acme_parse_retry_after(NULL) == -1, "an empty Retry-After is refused");
	CHECK(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0, "an HTTP date in the past means now");
	char future[64];
	time_t in_an_hour = time(NULL) + 3600;
	struct tm tm;
	gmtime_r(&in_an_hour, &tm);
	strftime(future, sizeof(future), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	int64_t d = acme_parse_retry_after(future);
	CHECK(d >= 3590 && d <= 3600, "an HTTP date an hour ahead is about 3600 s");
	CHECK(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 CET") == -1, "an HTTP date not in GMT is refused");

	CHECK(parsed("2026-11-30T12:34:56Z") == T_2026_11_30_123456, "RFC 3339 in UTC");
	CHECK(parsed("2026-11-30t12:34:56z") == T_2026_11_30_123456, "RFC 3339 lower-case t and z");
	CHECK(parsed("2026-11-30T12:34:56.123456789Z") == T_2026_11_30_123456, "fractional seconds are dropped");
	CHECK(parsed("2026-11-30T14:34:56+02:00") == T_2026_11_30_123456, "a positive offset is subtracted");
	CHECK(parsed("2026-11-30T10:04:56-02:30") == T_2026_11_30_123456, "a negative offset is added");
	CHECK(parsed("1970-01-01T00:00:00Z") == 0, "the epoch");
	CHECK(parsed("2026-11-30T12:34:56") == -1, "no zone is refused");
	CHECK(parsed("2026-13-01T00:00:00Z") == -1, "month 13 is refused");
	CHECK(parsed("2026-11-30T24:00:00Z") == -1, "hour 24 is refused");
	CHECK(parsed("1969-12-31T23:59:59Z") == -1, "before the epoch is refused");
	CHECK(parsed("2026-11-30T12:34:56+25:00") == -1, "an offset of 25 hours is refused");
	CHECK(parsed("not a date") == -1 && parsed("") == -1, "junk is refused");
	tokens_and_urls();
	CHECK_DONE();
}
