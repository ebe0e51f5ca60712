/* acme_parse: the parsers of what the CA sends outside JSON: response header lines, Retry-After,
 * RFC 3339 times, challenge tokens, and the origin of the URLs it hands out (libcurl's URL parser)
 * (fuzzed by tests/fuzz/fuzz_acme_fields.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "issuer.h"

bool acme_header_value(const char *line, size_t len, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);
	if (size == 0 || len <= nl || strncasecmp(line, name, nl) != 0)
		return false;
	const char *v = line + nl, *end = line + len;
	while (v < end && isspace((unsigned char)*v))
		v++;
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	size_t l = (size_t)(end - v) < size - 1 ? (size_t)(end - v) : size - 1;
	memcpy(out, v, l);
	out[l] = 0;
	return true;
}

int64_t acme_parse_retry_after(const char *v)
{
	if (!v || !*v)
		return -1;
	if (isdigit((unsigned char)*v)) {
		size_t digits = strspn(v, "0123456789");
		if (v[digits] != 0)
			return -1;
		/* a day is the longest pause worth honouring in one run; more is the same as a day */
		return digits > 6 || strtoll(v, NULL, 10) > ACME_RETRY_AFTER_MAX_S ? ACME_RETRY_AFTER_MAX_S
										   : strtoll(v, NULL, 10);
	}
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return -1;
	int64_t d = (int64_t)timegm(&tm) - (int64_t)time(NULL);
	return d < 0 ? 0 : d > ACME_RETRY_AFTER_MAX_S ? ACME_RETRY_AFTER_MAX_S : d;
}

int acme_parse_rfc3339(const char *s, time_t *out)
{
	struct tm tm;
	int used = 0;
	char sep = 0;
	memset(&tm, 0, sizeof(tm));
	/* RFC 3339 section 5.6: the T and Z may be lower case */
	if (!s ||
	    sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep, &tm.tm_hour, &tm.tm_min,
		   &tm.tm_sec, &used) != 7 ||
	    used == 0 || (sep != 'T' && sep != 't'))
		return -1;
	if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
	    tm.tm_sec > 60 || tm.tm_year < 1970)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	const char *zone = s + used;
	if (*zone == '.')
		zone += 1 + strspn(zone + 1, "0123456789");
	int hh, mm;
	if (*zone == 'Z' || *zone == 'z') {
		*out = t;
		return 0;
	}
	if ((*zone == '+' || *zone == '-') && sscanf(zone + 1, "%2d:%2d", &hh, &mm) == 2 && hh >= 0 && hh < 24 &&
	    mm >= 0 && mm < 60) {
		*out = t - (*zone == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
		return 0;
	}
	return -1;
}

bool acme_token_valid(const char *token)
{
	size_t n = token ? strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") : 0;
	return n >= 1 && n <= ACME_TOKEN_MAX && token[n] == 0;
}

/* "https://host:port" of an absolute https URL without credentials, the port made explicit. */
static int https_origin(const char *url, char *out, size_t size, const char **why)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
	int rc = -1;
	*why = "not an absolute URL";
	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
		if (strcasecmp(scheme, "https") != 0)
			*why = "not https";
		else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK)
			*why = "carries credentials";
		else {
			for (char *c = host; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			rc = snprintf(out, size, "https://%s:%s", host, port) < (int)size ? 0 : -1;
			*why = rc == 0 ? NULL : "host name too long";
		}
	}
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(user);
	curl_url_cleanup(u);
	return rc;
}

int acme_url_check(const char *directory, const char *url, char *why, size_t why_size)
{
	char dir_origin[300], url_origin[300];
	const char *reason;
	if (https_origin(directory, dir_origin, sizeof(dir_origin), &reason) < 0) {
		snprintf(why, why_size, "the directory URL is %s", reason);
		return -1;
	}
	if (https_origin(url, url_origin, sizeof(url_origin), &reason) < 0) {
		snprintf(why, why_size, "%s", reason);
		return -1;
	}
	if (strcmp(dir_origin, url_origin) != 0) {
		snprintf(why, why_size, "on %s, not on the directory's origin %s", url_origin, dir_origin);
		return -1;
	}
	return 0;
}
