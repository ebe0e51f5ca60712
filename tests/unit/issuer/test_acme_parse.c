/* acme_parse.c: what the issuer accepts from a CA outside JSON: challenge tokens and URLs. */
#include <string.h>

#include "check.h"
#include "issuer.h"

#define DIR "https://ca.example:14000/dir"

static bool url_ok(const char *url)
{
	char why[300];
	return acme_url_check(DIR, url, why, sizeof(why)) == 0;
}

int main(void)
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
	CHECK_DONE();
}
