/* caa.c: issue values (RFC 8659 grammar, RFC 8657 parameters) and record sets, as a CA reads them. */
#include <string.h>

#include "check.h"
#include "issuer.h"

#define REC(crit, t, v) {.critical = crit, .tag = t, .tag_len = sizeof(t) - 1, .value = v, .value_len = sizeof(v) - 1}

static bool permits(const struct caa_record *rs, size_t n, bool wildcard, const struct caa_issuer *who)
{
	char why[600];
	return caa_evaluate(rs, n, wildcard, who, why, sizeof(why)) == CAA_PERMITS;
}

int main(void)
{
	struct caa_issue is;
	CHECK(caa_parse_issue("letsencrypt.org", 15, &is) == 0 && strcmp(is.domain, "letsencrypt.org") == 0 &&
		  !is.has_accounturi && !is.has_methods,
	      "a bare issuer domain name");
	const char *v = "  letsencrypt.org ; accounturi=https://acme.example/acct/1;validationmethods=http-01,dns-01 ";
	CHECK(caa_parse_issue(v, strlen(v), &is) == 0 && strcmp(is.domain, "letsencrypt.org") == 0 &&
		  strcmp(is.accounturi, "https://acme.example/acct/1") == 0 &&
		  strcmp(is.methods, "http-01,dns-01") == 0,
	      "parameters around blanks and semicolons");
	CHECK(caa_parse_issue(";", 1, &is) == 0 && is.domain[0] == '\0', "\";\" names no CA");
	CHECK(caa_parse_issue("", 0, &is) == 0 && is.domain[0] == '\0', "an empty value names no CA");
	CHECK(caa_parse_issue("ca.example; foo = bar", 21, &is) == 0 && strcmp(is.domain, "ca.example") == 0,
	      "unknown parameters are ignored");
	CHECK(caa_parse_issue("ca..example", 11, &is) < 0, "an empty label is malformed");
	CHECK(caa_parse_issue("ca.example.", 11, &is) < 0, "a trailing dot is malformed");
	CHECK(caa_parse_issue("-ca.example", 11, &is) < 0, "a label starting with '-' is malformed");
	CHECK(caa_parse_issue("ca.example; accounturi", 22, &is) < 0, "a parameter without '=' is malformed");
	CHECK(caa_parse_issue("ca.example; accounturi=a; accounturi=b", 38, &is) < 0,
	      "two accounturi parameters are malformed");
	CHECK(caa_parse_issue("ca.example x", 12, &is) < 0, "text after the name is malformed");
	CHECK(caa_parse_issue("ca.exa\0mple", 11, &is) < 0, "a NUL inside is malformed");

	struct caa_issuer le = {.identity = "letsencrypt.org", .account_uri = "https://acme.example/acct/1"};
	struct caa_issuer other = {.identity = "ca.example"};
	struct caa_record allow_le[] = {REC(false, "issue", "letsencrypt.org"), REC(false, "iodef", "mailto:x@y")};
	CHECK(permits(allow_le, 2, false, &le), "issue naming the CA permits it");
	CHECK(!permits(allow_le, 2, false, &other), "  ... and forbids another CA");
	struct caa_record upper[] = {REC(false, "ISSUE", "LetsEncrypt.ORG")};
	CHECK(permits(upper, 1, false, &le), "tags and domain names compare without case");
	struct caa_record none[] = {REC(false, "issue", ";")};
	CHECK(!permits(none, 1, false, &le), "issue \";\" forbids every CA");
	struct caa_record iodef_only[] = {REC(false, "iodef", "mailto:x@y")};
	CHECK(permits(iodef_only, 1, false, &other), "a set without issue permits any CA");
	struct caa_record crit[] = {REC(true, "tbs", "x"), REC(false, "issue", "letsencrypt.org")};
	CHECK(!permits(crit, 2, false, &le), "an unknown property with the critical flag forbids");
	struct caa_record noncrit[] = {REC(false, "tbs", "x"), REC(false, "issue", "letsencrypt.org")};
	CHECK(permits(noncrit, 2, false, &le), "  ... without the flag it is ignored");
	struct caa_record crit_known[] = {REC(true, "issue", "letsencrypt.org")};
	CHECK(permits(crit_known, 1, false, &le), "the critical flag on a known property changes nothing");

	struct caa_record wild[] = {REC(false, "issue", "ca.example"), REC(false, "issuewild", "letsencrypt.org")};
	CHECK(!permits(wild, 2, false, &le), "issuewild does not govern a non-wildcard name");
	CHECK(permits(wild, 2, true, &le), "  ... it governs a wildcard name");
	struct caa_record wild_none[] = {REC(false, "issuewild", "letsencrypt.org")};
	CHECK(permits(wild_none, 1, false, &other), "a set with only issuewild leaves non-wildcard names open");

	struct caa_record acct_ok[] = {REC(false, "issue", "letsencrypt.org; accounturi=https://acme.example/acct/1")};
	struct caa_record acct_bad[] = {REC(false, "issue", "letsencrypt.org; accounturi=https://acme.example/acct/2")};
	CHECK(permits(acct_ok, 1, false, &le), "accounturi naming our account permits");
	CHECK(!permits(acct_bad, 1, false, &le), "accounturi naming another account forbids");
	struct caa_issuer le_noacct = {.identity = "letsencrypt.org"};
	CHECK(!permits(acct_ok, 1, false, &le_noacct), "accounturi forbids while we have no account there");
	struct caa_record m_ok[] = {REC(false, "issue", "letsencrypt.org; validationmethods=dns-01,http-01")};
	struct caa_record m_bad[] = {REC(false, "issue", "letsencrypt.org; validationmethods=dns-01,tls-alpn-01")};
	struct caa_record m_prefix[] = {REC(false, "issue", "letsencrypt.org; validationmethods=http-01x")};
	CHECK(permits(m_ok, 1, false, &le), "validationmethods listing http-01 permits");
	CHECK(!permits(m_bad, 1, false, &le), "validationmethods without http-01 forbids");
	CHECK(!permits(m_prefix, 1, false, &le), "validationmethods matches whole method names");
	struct caa_record mixed[] = {REC(false, "issue", "letsencrypt.org; accounturi=https://acme.example/acct/2"),
				     REC(false, "issue", "letsencrypt.org; validationmethods=http-01")};
	CHECK(permits(mixed, 2, false, &le), "one permitting issue property among several is enough");
	struct caa_record malformed[] = {REC(false, "issue", "letsencrypt.org x")};
	CHECK(!permits(malformed, 1, false, &le), "a malformed issue property permits no one");
	CHECK_DONE();
}
