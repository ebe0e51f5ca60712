/* caa: does a CAA record set (RFC 8659) permit our CA to issue for a name? Parses the issue and
 * issuewild values by hand, with the RFC 8657 accounturi and validationmethods parameters:
 * network input, fuzzed (tests/fuzz/fuzz_caa.c). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "issuer.h"

/* The property tags a CA knows besides issue/issuewild (RFC 8659 iodef, CA/Browser Forum contact
 * tags, RFC 9495 issuemail, BIMI issuevmc): with the critical flag they forbid nothing. */
static const char *const known_tags[] = {"issue",	 "issuewild", "iodef",	 "contactemail",
					 "contactphone", "issuemail", "issuevmc"};

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_alnum(char c)
{
	return isascii((unsigned char)c) && isalnum((unsigned char)c);
}

/* label = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT)): the length of one at s, 0 if none. */
static size_t label_len(const char *s, const char *end)
{
	if (s >= end || !is_alnum(*s))
		return 0;
	const char *p = s + 1;
	while (p < end) {
		const char *q = p;
		while (q < end && *q == '-')
			q++;
		if (q < end && is_alnum(*q))
			p = q + 1;
		else
			break;
	}
	return (size_t)(p - s);
}

static const char *skip_wsp(const char *p, const char *end)
{
	while (p < end && is_wsp(*p))
		p++;
	return p;
}

static int copy_field(char *dst, size_t size, const char *s, size_t len)
{
	if (len >= size)
		return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

/* Reads `tag *WSP "=" *WSP value` at *pp into the matching field of out. */
static int parse_parameter(const char **pp, const char *end, struct caa_issue *out)
{
	const char *p = *pp;
	size_t tl = label_len(p, end);
	if (!tl)
		return -1;
	const char *tag = p;
	p = skip_wsp(p + tl, end);
	if (p >= end || *p != '=')
		return -1;
	p = skip_wsp(p + 1, end);
	const char *v = p;
	while (p < end && *p >= 0x21 && *p <= 0x7e && *p != ';')
		p++;
	size_t vl = (size_t)(p - v);
	*pp = p;
	if (tl == 10 && strncasecmp(tag, "accounturi", tl) == 0) {
		if (out->has_accounturi)
			return -1; /* two account URIs cannot both hold: ambiguous, so malformed */
		out->has_accounturi = true;
		return copy_field(out->accounturi, sizeof(out->accounturi), v, vl);
	}
	if (tl == 17 && strncasecmp(tag, "validationmethods", tl) == 0) {
		if (out->has_methods)
			return -1;
		out->has_methods = true;
		return copy_field(out->methods, sizeof(out->methods), v, vl);
	}
	return 0; /* parameters a CA does not know are ignored */
}

int caa_parse_issue(const char *v, size_t len, struct caa_issue *out)
{
	memset(out, 0, sizeof(*out));
	const char *p = v, *end = v + len;
	p = skip_wsp(p, end);
	const char *dom = p;
	for (size_t l; (l = label_len(p, end)) > 0;) {
		p += l;
		if (p < end && *p == '.' && label_len(p + 1, end))
			p++;
		else
			break;
	}
	if (copy_field(out->domain, sizeof(out->domain), dom, (size_t)(p - dom)) < 0)
		return -1;
	p = skip_wsp(p, end);
	if (p < end && *p == ';') {
		p = skip_wsp(p + 1, end);
		while (p < end) {
			if (parse_parameter(&p, end, out) < 0)
				return -1;
			p = skip_wsp(p, end);
			if (p >= end)
				break;
			if (*p != ';')
				return -1;
			p = skip_wsp(p + 1, end);
		}
	}
	return p == end ? 0 : -1;
}

/* validationmethods is a comma-separated list of method names (RFC 8657 section 4). */
static bool method_listed(const char *list, const char *method)
{
	size_t ml = strlen(method);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == ml && strncmp(p, method, ml) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

bool caa_issue_permits(const struct caa_issue *is, const struct caa_issuer *who)
{
	if (strcasecmp(is->domain, who->identity) != 0)
		return false;
	/* A record bound to an account we do not (yet) know cannot be shown to be ours. */
	if (is->has_accounturi && (!who->account_uri || strcmp(is->accounturi, who->account_uri) != 0))
		return false;
	if (is->has_methods && !method_listed(is->methods, who->method ? who->method : "http-01"))
		return false;
	return true;
}

static bool tag_is(const struct caa_record *r, const char *tag)
{
	return r->tag_len == strlen(tag) && strncasecmp(r->tag, tag, r->tag_len) == 0;
}

static bool tag_known(const struct caa_record *r)
{
	for (size_t i = 0; i < sizeof(known_tags) / sizeof(known_tags[0]); i++)
		if (tag_is(r, known_tags[i]))
			return true;
	return false;
}

enum caa_verdict caa_evaluate(const struct caa_record *rs, size_t n, bool wildcard, const struct caa_issuer *who,
			      char *why, size_t whysize)
{
	for (size_t i = 0; i < n; i++)
		if (rs[i].critical && !tag_known(&rs[i])) {
			snprintf(why, whysize, "a critical CAA property '%.*s' that no CA may ignore",
				 (int)rs[i].tag_len, rs[i].tag);
			return CAA_FORBIDS;
		}
	/* issuewild governs wildcard names when present; otherwise (and for every other name) issue */
	const char *tag = "issue";
	if (wildcard)
		for (size_t i = 0; i < n; i++)
			if (tag_is(&rs[i], "issuewild"))
				tag = "issuewild";
	size_t seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (!tag_is(&rs[i], tag))
			continue;
		seen++;
		struct caa_issue is;
		if (caa_parse_issue(rs[i].value, rs[i].value_len, &is) == 0 && caa_issue_permits(&is, who))
			return CAA_PERMITS;
	}
	if (!seen) {
		snprintf(why, whysize, "no %s property: any CA may issue", tag);
		return CAA_PERMITS;
	}
	snprintf(why, whysize, "no %s property names %s%s%s", tag, who->identity,
		 who->account_uri ? " for account " : "", who->account_uri ? who->account_uri : "");
	return CAA_FORBIDS;
}
