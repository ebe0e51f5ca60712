// fuzz-sources: terminator/http.c
// fuzz-dict: tests/fuzz/http.dict
/* Fuzzes the request-head parser, the rewrite for the backend and request-body framing. Beyond
 * not crashing: an accepted head is incomplete when cut short, its rewrite parses again with
 * exactly our forwarding headers, and body framing does not depend on how bytes arrive. */
#include <stdlib.h>
#include <string.h>

#include "terminator.h"

#define MAX_HEAD 4096

static void require(int cond)
{
	if (!cond)
		abort();
}

static bool named(const struct http_header *h, const char *lower)
{
	return h->name_len == strlen(lower) && strncasecmp(h->name, lower, h->name_len) == 0;
}

/* Body framing fed whole and fed in two parts must agree. */
static void check_body(const struct http_request *req, const uint8_t *p, size_t n, size_t cut)
{
	struct http_body a, b;
	bool done_a, done_b;
	http_body_init(&a, req->content_length, req->chunked, false);
	http_body_init(&b, req->content_length, req->chunked, false);
	ssize_t whole = http_body_consume(&a, (const char *)p, n, &done_a);
	cut = n ? cut % n : 0;
	ssize_t first = http_body_consume(&b, (const char *)p, cut, &done_b);
	ssize_t second = first < 0 || done_b ? 0 : http_body_consume(&b, (const char *)p + first, n - (size_t)first, &done_b);
	if (whole < 0) {
		require(first < 0 || second < 0);
		return;
	}
	require(first >= 0 && second >= 0 && first + second == whole && done_a == done_b && (size_t)whole <= n);
	if (!req->chunked && req->content_length >= 0)
		require(done_a == ((uint64_t)n >= (uint64_t)req->content_length));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request req;
	const char *buf = (const char *)data;
	if (http_parse_request(buf, size, MAX_HEAD, &req) != HTTP_OK)
		return 0;
	require(req.head_len <= size && req.head_len <= MAX_HEAD && req.nheaders <= HTTP_MAX_HEADERS);
	for (size_t i = 0; i < req.nheaders; i++) {
		const struct http_header *h = &req.headers[i];
		require(h->name >= buf && h->value + h->value_len <= buf + req.head_len);
		require(!memchr(h->value, '\r', h->value_len) && !memchr(h->value, '\n', h->value_len) &&
			!memchr(h->value, 0, h->value_len));
	}
	struct http_request cut;
	require(http_parse_request(buf, req.head_len - 1, MAX_HEAD, &cut) == HTTP_INCOMPLETE);

	char host[MAX_HEAD + 1] = "fallback.example";
	if (req.host) {
		memcpy(host, req.host, req.host_len);
		host[req.host_len] = '\0';
	}
	struct http_forward fwd = {"192.0.2.1", "https", host};
	char out[2 * MAX_HEAD];
	ssize_t n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	require(n > 0);
	struct http_request again;
	enum http_parse r = http_parse_request(out, (size_t)n, sizeof(out), &again);
	if (r == HTTP_TOO_LARGE) {
		require(req.nheaders + 4 > HTTP_MAX_HEADERS);
	} else {
		require(r == HTTP_OK && again.head_len == (size_t)n && again.keep_alive);
		require(again.method_len == req.method_len && memcmp(again.method, req.method, req.method_len) == 0);
		require(again.target_len == req.target_len && memcmp(again.target, req.target, req.target_len) == 0);
		require(again.content_length == req.content_length && again.chunked == req.chunked);
		require(again.host_len == req.host_len && (!req.host || memcmp(again.host, req.host, req.host_len) == 0));
		int xff = 0, conn = 0;
		for (size_t i = 0; i < again.nheaders; i++) {
			const struct http_header *h = &again.headers[i];
			require(!named(h, "forwarded") && !named(h, "x-real-ip") && !named(h, "upgrade"));
			if (named(h, "x-forwarded-for"))
				require(++xff == 1 && h->value_len == 9 && memcmp(h->value, "192.0.2.1", 9) == 0);
			if (named(h, "connection"))
				require(++conn == 1 && h->value_len == 10);
		}
		require(xff == 1 && conn == 1);
	}
	check_body(&req, data + req.head_len, size - req.head_len, size ? data[0] : 0);
	return 0;
}
