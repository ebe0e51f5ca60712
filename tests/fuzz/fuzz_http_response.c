// fuzz-sources: terminator/http.c
// fuzz-dict: tests/fuzz/http.dict
/* Fuzzes the backend-response parser and body framing (Content-Length, chunked, until close). The
 * first byte chooses whether the request was HEAD and where the body is cut in two; framing must
 * not depend on the cut, and a head cut short must be incomplete. */
#include <stdlib.h>
#include <string.h>

#include "terminator.h"

#define MAX_HEAD 4096

static void require(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool head_request = data[0] & 1;
	size_t cut = data[0] >> 1;
	const char *buf = (const char *)data + 1;
	size--;
	struct http_response resp;
	if (http_parse_response(buf, size, MAX_HEAD, head_request, &resp) != HTTP_OK)
		return 0;
	require(resp.head_len <= size && resp.status >= 100 && resp.status <= 599);
	require(!(resp.chunked && resp.content_length >= 0));
	struct http_response part;
	require(http_parse_response(buf, resp.head_len - 1, MAX_HEAD, head_request, &part) == HTTP_INCOMPLETE);
	if (resp.no_body)
		return 0;

	const char *body = buf + resp.head_len;
	size_t n = size - resp.head_len;
	bool until_close = !resp.chunked && resp.content_length < 0;
	require(!until_close || !resp.keep_alive);
	struct http_body a, b;
	bool done_a, done_b = false;
	http_body_init(&a, resp.content_length, resp.chunked, until_close);
	http_body_init(&b, resp.content_length, resp.chunked, until_close);
	ssize_t whole = http_body_consume(&a, body, n, &done_a);
	/* Byte by byte for the first `cut` bytes, then the rest at once. */
	size_t used = 0;
	ssize_t r = 0;
	for (size_t i = 0; i < cut && i < n && !done_b && r >= 0; i++) {
		r = http_body_consume(&b, body + i, 1, &done_b);
		if (r > 0)
			used += (size_t)r;
	}
	if (r >= 0 && !done_b) {
		r = http_body_consume(&b, body + used, n - used, &done_b);
		if (r > 0)
			used += (size_t)r;
	}
	if (whole < 0) {
		require(r < 0);
		return 0;
	}
	require(r >= 0 && (size_t)whole == used && done_a == done_b && (size_t)whole <= n);
	if (until_close)
		require((size_t)whole == n && !done_a);
	return 0;
}
