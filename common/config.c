/* config: one key space for flags, environment variables and the optional `key = value` file. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static struct tt_config_entry *find(struct tt_config_entry *entries, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(entries[i].key, key) == 0)
			return &entries[i];
	return NULL;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int tt_config_load_file(struct tt_config_entry *entries, size_t n, const char *path, struct tt_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return tt_fail(err, "cannot open config file %s: %s", path, strerror(errno));
	char line[4096];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			rc = tt_fail(err, "%s:%d: expected 'key = value'", path, lineno);
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		size_t vl = strlen(value);
		if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
			value[vl - 1] = '\0';
			value++;
		}
		struct tt_config_entry *e = find(entries, n, key);
		if (!e) {
			rc = tt_fail(err, "%s:%d: unknown key '%s'", path, lineno, key);
			break;
		}
		if (e->kind == TT_KEY_FLAG_ONLY) {
			rc = tt_fail(err, "%s:%d: '%s' is a command-line flag only", path, lineno, key);
			break;
		}
		/* A flag or the environment wins over the file; an empty value sets nothing, as an empty
		 * environment variable does. */
		if ((e->value && !e->from_file) || !*value)
			continue;
		char *v = NULL;
		if (!e->value || e->kind != TT_KEY_REPEAT)
			v = strdup(value);
		else if (asprintf(&v, "%s\n%s", e->value, value) < 0)
			v = NULL;
		if (!v) {
			rc = tt_fail(err, "out of memory");
			break;
		}
		free(e->owned);
		e->owned = v;
		e->value = v;
		e->from_file = true;
	}
	fclose(f);
	return rc;
}

void tt_config_apply_env(struct tt_config_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (entries[i].value || !entries[i].env)
			continue;
		const char *v = getenv(entries[i].env);
		if (v && *v)
			entries[i].value = v;
	}
}

void tt_config_free(struct tt_config_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(entries[i].owned);
		entries[i].owned = NULL;
	}
}

int tt_parse_hostport(const char *s, char *host, size_t hostsize, uint16_t *port, struct tt_err *err)
{
	const char *colon;
	const char *h = s;
	size_t hl;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return tt_fail(err, "bad address '%s': expected [ADDR]:PORT", s);
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return tt_fail(err, "bad address '%s': expected ADDR:PORT", s);
		hl = (size_t)(colon - s);
	}
	if (hl >= hostsize)
		return tt_fail(err, "bad address '%s': host too long", s);
	char *end;
	errno = 0;
	long p = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
		return tt_fail(err, "bad port in '%s'", s);
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int tt_parse_duration_ms(const char *s, int64_t *out_ms, struct tt_err *err)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return tt_fail(err, "bad duration '%s'", s);
	double mult;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else if (strcmp(end, "d") == 0)
		mult = 86400000;
	else
		return tt_fail(err, "bad duration unit in '%s' (ms, s, m, h, d)", s);
	*out_ms = (int64_t)(v * mult);
	return 0;
}
