/* options: one table per binary (struct tt_opt rows) drives the flag parser, the environment and
 * --config file lookup, the defaults, the value checks, the one error format and --help. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* The longest flag name a table holds, with room to spare. */
#define FLAG_NAME_MAX 64

int tt_parse_bool(const char *s, bool *out, struct tt_err *err)
{
	static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return tt_fail(err, "'%s' is not yes, no, true, false, on, off, 1 or 0", s);
}

int tt_parse_size(const char *s, size_t *out, struct tt_err *err)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned long long mul = 1;
	if (*end == 'K' || *end == 'k')
		mul = 1024;
	else if (*end == 'M' || *end == 'm')
		mul = 1024 * 1024;
	else if (*end == 'G' || *end == 'g')
		mul = 1024ULL * 1024 * 1024;
	if (mul != 1)
		end++;
	if (errno || end == s || *end || *s == '-' || v > SIZE_MAX / mul)
		return tt_fail(err, "'%s' is not a size", s);
	*out = (size_t)(v * mul);
	return 0;
}

static int parse_count(const char *s, long *out, struct tt_err *err)
{
	char *end;
	errno = 0;
	long n = strtol(s, &end, 10);
	if (errno || *end || end == s || n < 0)
		return tt_fail(err, "expected a non-negative integer, got '%s'", s);
	*out = n;
	return 0;
}

static bool in_list(const char *list, const char *key)
{
	if (!list)
		return true;
	size_t kl = strlen(key);
	for (const char *p = list; *p;) {
		size_t l = strcspn(p, " ");
		if (l == kl && strncmp(p, key, l) == 0)
			return true;
		p += l;
		p += strspn(p, " ");
	}
	return false;
}

int tt_opts_init(struct tt_opts *o, const struct tt_opt *table, size_t n, struct tt_err *err)
{
	*o = (struct tt_opts){.table = table, .n = n};
	o->v = calloc(n, sizeof *o->v);
	if (!o->v)
		return tt_fail(err, "out of memory");
	for (size_t i = 0; i < n; i++) {
		enum tt_config_kind kind = TT_KEY_ONE;
		if (table[i].type == TT_OPT_ACTION)
			kind = TT_KEY_FLAG_ONLY;
		else if (table[i].flags & TT_OPT_REPEAT)
			kind = TT_KEY_REPEAT;
		o->v[i] = (struct tt_config_entry){.key = table[i].key, .env = table[i].env, .kind = kind};
	}
	return 0;
}

void tt_opts_free(struct tt_opts *o)
{
	if (o->v)
		tt_config_free(o->v, o->n);
	free(o->v);
	o->v = NULL;
}

static const struct tt_opt *row(const struct tt_opts *o, const char *key, size_t *at)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->table[i].key, key) == 0) {
			*at = i;
			return &o->table[i];
		}
	return NULL;
}

/* A repeated flag keeps every value, one per line, in the order given; an empty one sets nothing,
 * as an empty environment variable does. */
static int set_flag(struct tt_config_entry *e, const char *v, bool repeat, struct tt_err *err)
{
	/* An empty value is no value, as in the environment; the last flag wins, so it also drops
	 * what an earlier copy of a single-valued flag set (repeatable values only add up). */
	if (!*v) {
		if (!repeat)
			e->value = NULL;
		return 0;
	}
	if (!repeat || !e->value) {
		e->value = v;
		return 0;
	}
	char *joined;
	if (asprintf(&joined, "%s\n%s", e->value, v) < 0)
		return tt_fail(err, "out of memory");
	free(e->owned);
	e->owned = joined;
	e->value = joined;
	return 0;
}

int tt_opts_parse_argv(struct tt_opts *o, int argc, char **argv, const char *allowed, char **pos, int maxpos, int *npos,
		       struct tt_err *err)
{
	int np = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = strcmp(argv[i], "-h") == 0 ? "--help" : argv[i];
		if (strncmp(a, "--", 2) != 0) {
			if (np >= maxpos)
				return tt_fail(err, "unexpected argument '%s'", a);
			pos[np++] = argv[i];
			continue;
		}
		char key[FLAG_NAME_MAX];
		const char *eq = strchr(a + 2, '=');
		size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (kl >= sizeof key)
			return tt_fail(err, "%.*s: unknown flag", FLAG_NAME_MAX, a);
		memcpy(key, a + 2, kl);
		key[kl] = '\0';
		size_t at;
		const struct tt_opt *r = row(o, key, &at);
		if (!r || !in_list(allowed, key))
			return tt_fail(err, "--%s: unknown flag (see --help)", key);
		const char *v;
		if (r->type == TT_OPT_ACTION)
			v = "yes"; /* an action has nothing to set: --help=x still asks for the help */
		else if (r->type == TT_OPT_BOOL)
			v = eq ? eq + 1 : "yes";
		else if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else
			return tt_fail(err, "--%s: needs a value (%s)", key, r->arg);
		if (set_flag(&o->v[at], v, r->flags & TT_OPT_REPEAT, err) < 0)
			return -1;
	}
	if (npos)
		*npos = np;
	return 0;
}

int tt_opts_resolve(struct tt_opts *o, const char *config_key, struct tt_err *err)
{
	tt_config_apply_env(o->v, o->n);
	size_t at;
	if (config_key && row(o, config_key, &at) && o->v[at].value && *o->v[at].value &&
	    tt_config_load_file(o->v, o->n, o->v[at].value, err) < 0)
		return -1;
	for (size_t i = 0; i < o->n; i++)
		if (!o->v[i].value)
			o->v[i].value = o->table[i].def;
	return 0;
}

/* A bound as its flag is written: a count, or a duration in s or ms. */
static const char *bound(const struct tt_opt *r, long long v, char *buf, size_t size)
{
	if (r->type != TT_OPT_DURATION)
		snprintf(buf, size, "%lld", v);
	else if (v % TT_MS_PER_S == 0)
		snprintf(buf, size, "%llds", v / TT_MS_PER_S);
	else
		snprintf(buf, size, "%lldms", v);
	return buf;
}

static int check_range(const struct tt_opt *r, const struct tt_opt_range *range, long long v, struct tt_err *err)
{
	char lo[32], hi[32];
	if (!range)
		return 0;
	if (range->max && (v < range->min || v > range->max))
		return tt_fail(err, "must be %s to %s", bound(r, range->min, lo, sizeof lo),
			       bound(r, range->max, hi, sizeof hi));
	if (v < range->min)
		return tt_fail(err, "must be at least %s", bound(r, range->min, lo, sizeof lo));
	return 0;
}

static int check_value(const struct tt_opt *r, const struct tt_opt_range *range, const char *v, struct tt_err *err)
{
	bool b;
	long n;
	size_t size;
	int64_t ms;
	char host[256];
	uint16_t port;
	switch (r->type) {
	case TT_OPT_BOOL:
		return tt_parse_bool(v, &b, err);
	case TT_OPT_INT:
		return parse_count(v, &n, err) < 0 ? -1 : check_range(r, range, n, err);
	case TT_OPT_SIZE:
		return tt_parse_size(v, &size, err);
	case TT_OPT_DURATION:
		return tt_parse_duration_ms(v, &ms, err) < 0 ? -1 : check_range(r, range, ms, err);
	case TT_OPT_ADDR:
		return tt_parse_hostport(v, host, sizeof host, &port, err);
	case TT_OPT_STRING:
	case TT_OPT_PATH:
	case TT_OPT_ACTION:
		break;
	}
	return 0;
}

int tt_opts_check(const struct tt_opts *o, const char *allowed, struct tt_err *err)
{
	for (size_t i = 0; i < o->n; i++) {
		const char *v = o->v[i].value;
		if (!v || !*v || !in_list(allowed, o->table[i].key))
			continue;
		const struct tt_opt_range *range = NULL;
		for (size_t k = 0; k < o->nranges; k++)
			if (strcmp(o->ranges[k].key, o->table[i].key) == 0)
				range = &o->ranges[k];
		/* A repeatable option is checked value by value. */
		char one[1024];
		for (const char *p = v; p;) {
			size_t l = strcspn(p, "\n");
			snprintf(one, sizeof one, "%.*s", (int)l, p);
			if (*one && check_value(&o->table[i], range, one, err) < 0)
				return tt_wrap(err, "--%s", o->table[i].key);
			p = p[l] ? p + l + 1 : NULL;
		}
	}
	return 0;
}

const char *tt_opts_get(const struct tt_opts *o, const char *key)
{
	size_t at;
	return row(o, key, &at) ? o->v[at].value : NULL;
}

bool tt_opts_bool(const struct tt_opts *o, const char *key)
{
	const char *v = tt_opts_get(o, key);
	struct tt_err ignored;
	bool b = false;
	return v && *v && tt_parse_bool(v, &b, &ignored) == 0 && b;
}

int tt_opts_int(const struct tt_opts *o, const char *key, long *out, struct tt_err *err)
{
	const char *v = tt_opts_get(o, key);
	if (!v || !*v)
		return tt_fail(err, "--%s: not set", key);
	return parse_count(v, out, err) < 0 ? tt_wrap(err, "--%s", key) : 0;
}

int tt_opts_size(const struct tt_opts *o, const char *key, size_t *out, struct tt_err *err)
{
	const char *v = tt_opts_get(o, key);
	return tt_parse_size(v ? v : "", out, err) < 0 ? tt_wrap(err, "--%s", key) : 0;
}

int tt_opts_duration_ms(const struct tt_opts *o, const char *key, int64_t *out_ms, struct tt_err *err)
{
	const char *v = tt_opts_get(o, key);
	return tt_parse_duration_ms(v ? v : "", out_ms, err) < 0 ? tt_wrap(err, "--%s", key) : 0;
}

void tt_opts_help(FILE *f, const struct tt_opt *table, size_t n, const char *allowed)
{
	for (size_t i = 0; i < n; i++) {
		const struct tt_opt *r = &table[i];
		if (!in_list(allowed, r->key))
			continue;
		char left[FLAG_NAME_MAX];
		snprintf(left, sizeof left, "--%s%s%s", r->key, r->arg ? " " : "", r->arg ? r->arg : "");
		fprintf(f, "  %-34s %s", left, r->help);
		if (r->def)
			fprintf(f, " [%s]", r->def);
		if (r->env)
			fprintf(f, " (%s)", r->env);
		fputc('\n', f);
	}
}
