/* log: one logfmt line per event on stderr, written with a single write so threads never interleave. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* The level is process configuration set once at start-up (or on SIGHUP), read by every thread. */
static _Atomic int log_level = TT_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void tt_log_set_level(enum tt_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int tt_log_parse_level(const char *s, enum tt_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum tt_level)i;
			return 0;
		}
	}
	return -1;
}

void tt_log(enum tt_level level, const char *event, const char *fmt, ...)
{
	if ((int)level < atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, level_names[level], event);
	if (n < 0)
		return;
	if (fmt && *fmt && (size_t)n < sizeof(line) - 2) {
		line[n++] = ' ';
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}

const char *tt_log_quote(char *buf, size_t size, const char *s)
{
	if (size == 0)
		return buf;
	if (!s)
		s = "";
	bool plain = *s != '\0';
	for (const char *p = s; *p; p++) {
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) {
			plain = false;
			break;
		}
	}
	size_t o = 0;
	if (plain) {
		snprintf(buf, size, "%s", s);
		return buf;
	}
	buf[o++] = '"';
	for (const char *p = s; *p && o + 5 < size; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c == '\n') {
			buf[o++] = '\\';
			buf[o++] = 'n';
		} else if (c < ' ' || c == 0x7f) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	if (o < size - 1)
		buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
