/* Tests terminator/http.c: request and response heads, smuggling shapes, limits, the forwarded
 * header rewrite and injection attempts, body framing fed in every split. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "terminator.h"

#define MAX_HEAD 8192

static struct http_request req;

static enum http_parse parse(const char *s)
{
	return http_parse_request(s, strlen(s), MAX_HEAD, &req);
}

static bool header_is(size_t i, const char *name, const char *value)
{
	const struct http_header *h = &req.headers[i];
	return i < req.nheaders && h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
	       h->value_len == strlen(value) && memcmp(h->value, value, h->value_len) == 0;
}

static bool span_is(const char *p, size_t n, const char *s)
{
	return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

/* Every proper prefix of a valid head is incomplete, never an error; the whole is accepted.
 * Each prefix lives in its own heap block so ASan sees any read past its end. */
static bool request_splits_ok(const char *s)
{
	size_t len = strlen(s);
	for (size_t k = 0; k < len; k++) {
		char *p = malloc(k ? k : 1);
		memcpy(p, s, k);
		enum http_parse r = http_parse_request(p, k, MAX_HEAD, &req);
		free(p);
		if (r != HTTP_INCOMPLETE) {
			printf("# prefix %zu of %zu gave %d\n", k, len, r);
			return false;
		}
	}
	return parse(s) == HTTP_OK && req.head_len == len;
}

static bool response_splits_ok(const char *s, bool head_request, struct http_response *resp)
{
	size_t len = strlen(s);
	for (size_t k = 0; k < len; k++) {
		char *p = malloc(k ? k : 1);
		memcpy(p, s, k);
		enum http_parse r = http_parse_response(p, k, MAX_HEAD, head_request, resp);
		free(p);
		if (r != HTTP_INCOMPLETE)
			return false;
	}
	return http_parse_response(s, len, MAX_HEAD, head_request, resp) == HTTP_OK && resp->head_len == len;
}

static void test_basic(void)
{
	const char *s = "GET /t/abc?x=1 HTTP/1.1\r\nHost: Track.Example.com:443\r\nUser-Agent: curl/7.88\r\n"
			"Accept: */*\r\n\r\n";
	CHECK(parse(s) == HTTP_OK, "basic GET parses");
	CHECK(span_is(req.method, req.method_len, "GET"), "basic GET method");
	CHECK(span_is(req.target, req.target_len, "/t/abc?x=1"), "basic GET target");
	CHECK(req.minor_version == 1, "basic GET version 1.1");
	CHECK(span_is(req.host, req.host_len, "Track.Example.com:443"), "basic GET host");
	CHECK(req.nheaders == 3 && header_is(1, "User-Agent", "curl/7.88") && header_is(2, "Accept", "*/*"),
	      "basic GET headers kept in order");
	CHECK(req.content_length == -1 && !req.chunked, "basic GET has no body");
	CHECK(req.keep_alive, "HTTP/1.1 defaults to keep-alive");
	CHECK(req.head_len == strlen(s), "head_len covers the blank line");

	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Pad:   spaced value \t \r\n\r\n") == HTTP_OK &&
		      header_is(1, "X-Pad", "spaced value"),
	      "optional whitespace around a value is trimmed");
	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n") == HTTP_OK && header_is(1, "X-Empty", ""),
	      "empty field value accepted");
	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX-Utf8: caf\xc3\xa9\r\n\r\n") == HTTP_OK,
	      "obs-text in a value accepted");
	CHECK(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_OK && req.head_len == 31 &&
		      span_is(req.method, req.method_len, "GET"),
	      "leading empty lines skipped and counted in head_len");
	CHECK(parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n") == HTTP_OK, "OPTIONS * accepted");
	CHECK(parse("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n") == HTTP_OK,
	      "absolute-form target accepted");
	CHECK(parse("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0012\r\n\r\n") == HTTP_OK &&
		      req.content_length == 12,
	      "Content-Length read as decimal");
	CHECK(parse("POST /p HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n") == HTTP_OK && req.chunked &&
		      req.content_length == -1,
	      "chunked recognised case-insensitively");
	CHECK(parse("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n") == HTTP_OK && req.chunked,
	      "chunked in capitals accepted");
	CHECK(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n") == HTTP_OK && req.host && req.host_len == 0,
	      "empty Host accepted (RFC 9112 3.2)");
	CHECK(parse("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n") == HTTP_OK, "IPv6 literal Host accepted");
}

static void test_connection(void)
{
	CHECK(parse("GET / HTTP/1.0\r\n\r\n") == HTTP_OK && !req.keep_alive && !req.host && req.minor_version == 0,
	      "HTTP/1.0 without Host, not keep-alive");
	CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") == HTTP_OK && req.keep_alive,
	      "HTTP/1.0 keep-alive when asked");
	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") == HTTP_OK && !req.keep_alive,
	      "HTTP/1.1 Connection: close");
	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n") == HTTP_OK &&
		      !req.keep_alive,
	      "close wins over keep-alive");
	CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n") == HTTP_OK &&
		      !req.keep_alive,
	      "close on a second Connection line counts");
}

static void test_pipelining(void)
{
	const char *a = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *b = "POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz";
	char buf[256];
	snprintf(buf, sizeof(buf), "%s%s", a, b);
	CHECK(parse(buf) == HTTP_OK && req.head_len == strlen(a) && span_is(req.target, req.target_len, "/one"),
	      "pipelined: first head ends at head_len");
	size_t off = req.head_len;
	CHECK(http_parse_request(buf + off, strlen(buf) - off, MAX_HEAD, &req) == HTTP_OK &&
		      span_is(req.target, req.target_len, "/two") && req.content_length == 3 &&
		      req.head_len == strlen(b) - 3,
	      "pipelined: second request parsed from head_len on");
}

static void test_splits(void)
{
	CHECK(request_splits_ok("GET /x HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\n\r\n"),
	      "GET: every prefix incomplete");
	CHECK(request_splits_ok("\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nX:\r\n\r\n"),
	      "POST with leading CRLF: every prefix incomplete");
	CHECK(request_splits_ok("PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"),
	      "chunked PUT: every prefix incomplete");
	CHECK(request_splits_ok("GET / HTTP/1.0\r\n\r\n"), "HTTP/1.0: every prefix incomplete");
}

static void test_bad(void)
{
	static const struct {
		const char *name;
		const char *msg;
	} bad[] = {
		{"CL + TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"TE + CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"},
		{"duplicate CL, same value", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"},
		{"duplicate CL, different", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"},
		{"CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"},
		{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
		{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n"},
		{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"},
		{"CL inner space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n"},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"},
		{"TE gzip then chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
		{"TE gzip line, chunked line",
		 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Content_Length", "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n"},
		{"Transfer_Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n"},
		{"transfer_encoding lower case", "POST / HTTP/1.1\r\nHost: a\r\ntransfer_encoding: chunked\r\n\r\n"},
		{"X_Forwarded_For", "GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n"},
		{"X-Forwarded_Host", "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded_Host: evil\r\n\r\n"},
		{"x_forwarded_proto", "GET / HTTP/1.1\r\nHost: a\r\nx_forwarded_proto: https\r\n\r\n"},
		{"TE chunked not final", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"},
		{"TE without chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"},
		{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
		{"TE chunked on two lines",
		 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"TE chunked then gzip line",
		 "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"},
		{"TE with parameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"},
		{"TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n"},
		{"TE trailing comma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n"},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"},
		{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"},
		{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n"},
		{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n"},
		{"tab before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n"},
		{"obs-fold with tab", "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n"},
		{"space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n"},
		{"bare LF line end", "GET / HTTP/1.1\nHost: a\n\n"},
		{"bare LF in one field", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n"},
		{"bare CR ending a field", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\r\n\r\n"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\0c\r\n\r\n"},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\x7f\r\n\r\n"},
		{"missing Host on 1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"},
		{"duplicate Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: evil@a\r\n\r\n"},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
		{"bad name char", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n"},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n"},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nJustAName\r\n\r\n"},
		{"double space in request line", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"no version", "GET /\r\nHost: a\r\n\r\n"},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"},
		{"HTTP/0.9 style", "GET /\r\n\r\n"},
		{"lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n"},
		{"trailing space after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"},
		{"bad version digit", "GET / HTTP/1.x\r\nHost: a\r\n\r\n"},
		{"bad method char", "GE/T / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"control char in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"relative target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"asterisk with GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"CONNECT", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"},
		{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"empty request line", "\r\n\r\n \r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[128];
		snprintf(name, sizeof(name), "400: %s", bad[i].name);
		/* The messages hold NULs, so their length is the literal's, not strlen. */
		size_t len = strlen(bad[i].msg);
		if (strcmp(bad[i].name, "NUL in value") == 0)
			len = sizeof("GET / HTTP/1.1\r\nHost: a\r\nX: b\0c\r\n\r\n") - 1;
		CHECK(http_parse_request(bad[i].msg, len, MAX_HEAD, &req) == HTTP_BAD, name);
	}
	CHECK(http_parse_request("GET / HTTP/1.1\nHo", 18, MAX_HEAD, &req) == HTTP_BAD,
	      "bare LF refused before the head is complete");
}

static void test_limits(void)
{
	char buf[MAX_HEAD * 2];
	int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
	memset(buf + n, 'a', sizeof(buf) - (size_t)n);
	CHECK(http_parse_request(buf, MAX_HEAD - 1, MAX_HEAD, &req) == HTTP_INCOMPLETE,
	      "unfinished head below the limit is incomplete");
	CHECK(http_parse_request(buf, MAX_HEAD, MAX_HEAD, &req) == HTTP_TOO_LARGE,
	      "unfinished head reaching the limit is too large");
	memcpy(buf + MAX_HEAD + 10, "\r\n\r\n", 4);
	CHECK(http_parse_request(buf, MAX_HEAD + 14, MAX_HEAD, &req) == HTTP_TOO_LARGE,
	      "complete head longer than the limit is too large");
	const char *small = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK(http_parse_request(small, strlen(small), strlen(small), &req) == HTTP_OK,
	      "head of exactly max_head bytes accepted");
	CHECK(http_parse_request(small, strlen(small), strlen(small) - 1, &req) == HTTP_TOO_LARGE,
	      "head one byte over max_head refused");

	for (int count = HTTP_MAX_HEADERS; count <= HTTP_MAX_HEADERS + 1; count++) {
		size_t len = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
		for (int i = 1; i < count; i++)
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "X-%d: v\r\n", i);
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "\r\n");
		enum http_parse r = http_parse_request(buf, len, MAX_HEAD, &req);
		if (count == HTTP_MAX_HEADERS)
			CHECK(r == HTTP_OK && req.nheaders == HTTP_MAX_HEADERS, "HTTP_MAX_HEADERS fields accepted");
		else
			CHECK(r == HTTP_TOO_LARGE, "one field over HTTP_MAX_HEADERS is too large");
	}
}

static size_t count_lines_starting(const char *s, size_t n, const char *prefix)
{
	size_t count = 0, plen = strlen(prefix);
	for (size_t i = 0; i + plen <= n; i++)
		if ((i == 0 || s[i - 1] == '\n') && strncasecmp(s + i, prefix, plen) == 0)
			count++;
	return count;
}

static void test_rewrite(void)
{
	char out[4096];
	struct http_forward fwd = {"203.0.113.9", "https", "track.example.com"};
	CHECK(parse("GET /t/1 HTTP/1.1\r\nHost: track.example.com\r\nAccept:  */* \r\n\r\n") == HTTP_OK,
	      "rewrite: input parses");
	ssize_t n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	const char *want = "GET /t/1 HTTP/1.1\r\nHost: track.example.com\r\nAccept: */*\r\n"
			   "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
			   "X-Forwarded-Host: track.example.com\r\nConnection: keep-alive\r\n\r\n";
	CHECK(n == (ssize_t)strlen(want) && memcmp(out, want, (size_t)n) == 0, "rewrite: exact output");

	for (size_t size = 0; size < strlen(want); size++)
		if (http_rewrite_request(&req, &fwd, out, size) != -1) {
			CHECK(false, "rewrite: every short buffer refused");
			break;
		}
	CHECK(http_rewrite_request(&req, &fwd, out, strlen(want)) == (ssize_t)strlen(want),
	      "rewrite: exact-size buffer accepted");

	const char *spoof = "POST /x HTTP/1.0\r\nHost: a.example\r\nX-Forwarded-For: 1.1.1.1\r\n"
			    "x-forwarded-proto: http\r\nX-FORWARDED-HOST: evil.example\r\nX-Real-IP: 1.1.1.1\r\n"
			    "Forwarded: for=1.1.1.1\r\nX-Forwarded-Port: 80\r\n"
			    "X-Forwarded-Ssl: on\r\nConnection: keep-alive, X-Secret, Host, Content-Length\r\n"
			    "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
			    "Upgrade: websocket\r\nTrailer: X-T\r\nX-Secret: s\r\nContent-Length: 2\r\n"
			    "X-Forwarded: stays\r\nX-Keep: yes\r\n\r\n";
	CHECK(parse(spoof) == HTTP_OK, "rewrite: spoofing input parses");
	n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	const char *want2 = "POST /x HTTP/1.0\r\nHost: a.example\r\nContent-Length: 2\r\nX-Forwarded: stays\r\n"
			    "X-Keep: yes\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
			    "X-Forwarded-Host: track.example.com\r\nConnection: keep-alive\r\n\r\n";
	CHECK(n == (ssize_t)strlen(want2) && memcmp(out, want2, (size_t)n) == 0,
	      "rewrite: client forwarding and hop-by-hop headers dropped, Host and framing kept");
	CHECK(n > 0 && count_lines_starting(out, (size_t)n, "x-forwarded-for:") == 1 &&
		      count_lines_starting(out, (size_t)n, "x-forwarded-host:") == 1 &&
		      count_lines_starting(out, (size_t)n, "connection:") == 1,
	      "rewrite: exactly one of each forwarding header");

	CHECK(n > 0 && http_parse_request(out, (size_t)n, MAX_HEAD, &req) == HTTP_OK && req.keep_alive &&
		      req.content_length == 2,
	      "rewrite: output parses back");

	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\ntransfer-ENCODING: ChUnKeD\r\ncontent_type: x\r\n\r\n") == HTTP_OK,
	      "rewrite: chunked in any case parses, and '_' in other names is allowed");
	n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	CHECK(n > 0 && strstr(out, "\r\nTransfer-Encoding: chunked\r\n") &&
		      count_lines_starting(out, (size_t)n, "transfer-encoding:") == 1 &&
		      count_lines_starting(out, (size_t)n, "content_type:") == 1,
	      "rewrite: Transfer-Encoding goes out in canonical form");
	CHECK(parse("POST / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 3\r\n\r\n") == HTTP_OK, "rewrite: odd-case CL parses");
	n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	CHECK(n > 0 && strstr(out, "\r\nContent-Length: 3\r\n"), "rewrite: Content-Length goes out canonical");

	CHECK(parse("GET / HTTP/1.1\r\nX-Hop: 1\r\nHost: a\r\nX-Keep: 1\r\nConnection: x-hop\r\n\r\n") == HTTP_OK,
	      "rewrite: late Connection input parses");
	n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	CHECK(n > 0 && count_lines_starting(out, (size_t)n, "x-hop:") == 0 &&
		      count_lines_starting(out, (size_t)n, "x-keep:") == 1,
	      "rewrite: a header named by a later Connection field is dropped");

	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nX-Keep: 1\r\n\r\n") ==
		      HTTP_OK,
	      "rewrite: plain keep-alive input parses");
	n = http_rewrite_request(&req, &fwd, out, sizeof(out));
	CHECK(n > 0 && count_lines_starting(out, (size_t)n, "keep-alive:") == 0 &&
		      count_lines_starting(out, (size_t)n, "x-keep:") == 1 &&
		      count_lines_starting(out, (size_t)n, "connection: keep-alive\r") == 1,
	      "rewrite: Connection naming only keep-alive drops nothing else");

	static const struct {
		const char *name;
		struct http_forward fwd;
	} inject[] = {
		{"CRLF in client_ip", {"1.2.3.4\r\nX-Admin: 1", "https", "a"}},
		{"LF in client_ip", {"1.2.3.4\nX-Admin: 1", "https", "a"}},
		{"CR in proto", {"1.2.3.4", "https\r", "a"}},
		{"LF in host", {"1.2.3.4", "https", "a\nX-Admin: 1"}},
		{"CR in host", {"1.2.3.4", "https", "a\rX-Admin: 1"}},
		{"tab in host", {"1.2.3.4", "https", "a\tb"}},
		{"DEL in host", {"1.2.3.4", "https", "a\x7f"}},
		{"missing client_ip", {NULL, "https", "a"}},
		{"missing proto", {"1.2.3.4", NULL, "a"}},
	};
	parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	for (size_t i = 0; i < sizeof(inject) / sizeof(inject[0]); i++) {
		char name[96];
		snprintf(name, sizeof(name), "rewrite refuses: %s", inject[i].name);
		CHECK(http_rewrite_request(&req, &inject[i].fwd, out, sizeof(out)) == -1, name);
	}
	struct http_forward nohost = {"::1", "http", NULL};
	n = http_rewrite_request(&req, &nohost, out, sizeof(out));
	CHECK(n > 0 && count_lines_starting(out, (size_t)n, "x-forwarded-host:") == 0 &&
		      count_lines_starting(out, (size_t)n, "x-forwarded-proto: http\r") == 1,
	      "rewrite: no X-Forwarded-Host without a host");
	/* A client's CR, LF or NUL never reaches the rewrite: the parser refuses the request. */
	CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nX: a\rX-Admin: 1\r\n\r\n") == HTTP_BAD,
	      "client CR inside a field never reaches the rewrite");
}

/* Feeds s to a fresh body one byte at a time; returns the bytes that belonged to the body, or -1. */
static ssize_t feed_bytewise(const char *s, size_t len, int64_t cl, bool chunked, bool *done)
{
	struct http_body b;
	http_body_init(&b, cl, chunked, false);
	size_t used = 0;
	*done = false;
	for (size_t i = 0; i < len && !*done; i++) {
		char c = s[i];
		ssize_t r = http_body_consume(&b, &c, 1, done);
		if (r < 0)
			return -1;
		used += (size_t)r;
		if (r == 0 && !*done)
			return -2;
	}
	return (ssize_t)used;
}

/* Every split into two calls gives the same boundary as one call. */
static bool chunked_splits_ok(const char *s, size_t len, size_t body_len)
{
	for (size_t k = 0; k <= len; k++) {
		struct http_body b;
		bool done = false;
		http_body_init(&b, -1, true, false);
		ssize_t r1 = http_body_consume(&b, s, k, &done);
		if (r1 < 0)
			return false;
		ssize_t r2 = done ? 0 : http_body_consume(&b, s + r1, len - (size_t)r1, &done);
		if (r2 < 0 || !done || (size_t)(r1 + r2) != body_len)
			return false;
	}
	return true;
}

static void test_body(void)
{
	struct http_body b;
	bool done;
	const char *chunked = "5\r\nhello\r\n1A;name=\"v\" ; x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
	const char *next = "GET /next HTTP/1.1\r\n";
	char buf[256];
	snprintf(buf, sizeof(buf), "%s%s", chunked, next);
	size_t blen = strlen(chunked);

	http_body_init(&b, -1, true, false);
	CHECK(http_body_consume(&b, buf, strlen(buf), &done) == (ssize_t)blen && done,
	      "chunked: body ends before the pipelined request");
	CHECK(http_body_consume(&b, buf + blen, strlen(next), &done) == 0 && done, "chunked: nothing more once done");
	CHECK(feed_bytewise(buf, strlen(buf), -1, true, &done) == (ssize_t)blen && done,
	      "chunked: byte by byte gives the same boundary");
	CHECK(chunked_splits_ok(buf, strlen(buf), blen), "chunked: every two-part split gives the same boundary");

	const char *trailers = "3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: two words\r\n\r\nNEXT";
	CHECK(feed_bytewise(trailers, strlen(trailers), -1, true, &done) == (ssize_t)strlen(trailers) - 4 && done,
	      "chunked: trailers consumed up to the final CRLF");
	const char *bws = "5 \t;a=b\r\nhello\r\n3 \r\nabc\r\n0\r\n\r\n";
	CHECK(feed_bytewise(bws, strlen(bws), -1, true, &done) == (ssize_t)strlen(bws) && done,
	      "chunked: whitespace after a size, before ';' or CR, accepted");
	const char *big = "000000000000000000010\r\n0123456789abcdef\r\n0\r\n\r\n";
	CHECK(feed_bytewise(big, strlen(big), -1, true, &done) == (ssize_t)strlen(big) && done,
	      "chunked: leading zeros in a size accepted");

	static const char *const bad[] = {
		"5\nhello\r\n0\r\n\r\n",           /* bare LF after size */
		"5\r\nhelloX\r\n0\r\n\r\n",        /* data longer than its size */
		"5\r\nhello\n0\r\n\r\n",           /* bare LF after data */
		"g\r\n",                           /* not hex */
		"\r\n",                            /* no size */
		"-1\r\n",                          /* sign */
		"5;a\nb\r\nhello\r\n0\r\n\r\n",    /* LF inside an extension */
		"5;a\0b\r\nhello\r\n0\r\n\r\n",    /* NUL inside an extension */
		"10000000000000000\r\n",           /* size over 2^60 */
		"0\r\n X: folded\r\n\r\n",         /* trailer starting with whitespace */
		"0\r\nX: a\nb\r\n\r\n",            /* bare LF in a trailer */
		"0\r\n\rx",                        /* CR not followed by LF at the end */
		"0x5\r\nhello\r\n0\r\n\r\n",       /* 0x prefix */
		"5 5\r\nhello\r\n0\r\n\r\n",       /* digits after whitespace */
		"5 zz\r\nhello\r\n0\r\n\r\n",      /* text after whitespace, no ';' */
		"0\r\nBad Trailer\r\n\r\n",         /* trailer line that is no field */
		"0\r\nX-Name\r\n\r\n",              /* trailer name without a colon */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "chunked: malformed case %zu refused", i);
		size_t len = strlen(bad[i]);
		if (i == 7)
			len = sizeof("5;a\0b\r\nhello\r\n0\r\n\r\n") - 1;
		CHECK(feed_bytewise(bad[i], len, -1, true, &done) == -1, name);
	}

	http_body_init(&b, 10, false, false);
	CHECK(http_body_consume(&b, "0123", 4, &done) == 4 && !done, "length: partial body");
	CHECK(http_body_consume(&b, "456789GET", 9, &done) == 6 && done, "length: stops at Content-Length");
	http_body_init(&b, 0, false, true);
	CHECK(http_body_consume(&b, "GET", 3, &done) == 0 && done, "length 0: done at once, even until_close");
	http_body_init(&b, -1, false, false);
	CHECK(http_body_consume(&b, "GET", 3, &done) == 0 && done, "no framing: no body");
	http_body_init(&b, -1, false, true);
	CHECK(http_body_consume(&b, "abc", 3, &done) == 3 && !done && http_body_consume(&b, "d", 1, &done) == 1 &&
		      !done,
	      "until_close: everything belongs to the body");
	http_body_init(&b, 5, true, true);
	CHECK(http_body_consume(&b, "0\r\n\r\nX", 6, &done) == 5 && done, "chunked wins over length and close");
}

static void test_response(void)
{
	struct http_response r;
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
	CHECK(response_splits_ok(ok, false, &r) && r.status == 200 && r.content_length == 5 && r.keep_alive &&
		      !r.no_body && !r.chunked && r.minor_version == 1,
	      "response: 200 with Content-Length, every prefix incomplete");
	const char *ch = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n";
	CHECK(response_splits_ok(ch, false, &r) && r.chunked && r.keep_alive, "response: chunked");
	CHECK(response_splits_ok("HTTP/1.0 200 OK\r\n\r\n", false, &r) && !r.keep_alive && r.content_length == -1 &&
		      !r.no_body,
	      "response: close-delimited HTTP/1.0");
	CHECK(response_splits_ok("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, &r) && !r.keep_alive,
	      "response: HTTP/1.1 without length is close-delimited");
	CHECK(response_splits_ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false,
				 &r) &&
		      r.keep_alive,
	      "response: HTTP/1.0 keep-alive with length");
	CHECK(response_splits_ok("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", false, &r) &&
		      !r.keep_alive,
	      "response: Connection: close");
	CHECK(response_splits_ok("HTTP/1.1 204 No Content\r\n\r\n", false, &r) && r.no_body && r.keep_alive,
	      "response: 204 has no body and stays alive");
	CHECK(response_splits_ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", false, &r) && r.no_body,
	      "response: 304 has no body");
	CHECK(response_splits_ok("HTTP/1.1 100 Continue\r\n\r\n", false, &r) && r.no_body && r.status == 100,
	      "response: 1xx has no body");
	CHECK(response_splits_ok("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", true, &r) && r.no_body &&
		      r.keep_alive,
	      "response: to HEAD has no body");
	CHECK(response_splits_ok("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, &r) && r.status == 200,
	      "response: no reason phrase");
	CHECK(response_splits_ok("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, &r), "response: empty reason");
	CHECK(response_splits_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, &r) && !r.chunked &&
		      !r.keep_alive,
	      "response: final coding not chunked is close-delimited");

	static const char *const bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 600 X\r\n\r\n",
		"HTTP/1.1 099 X\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
		"\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "response: malformed case %zu refused", i);
		CHECK(http_parse_response(bad[i], strlen(bad[i]), MAX_HEAD, false, &r) == HTTP_BAD, name);
	}
	char big[600];
	memset(big, 'a', sizeof(big));
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	CHECK(http_parse_response(big, sizeof(big), 512, false, &r) == HTTP_TOO_LARGE, "response: head over the limit");
}

static void test_write_simple(void)
{
	char out[512];
	struct http_response r;
	ssize_t n = http_write_simple(400, NULL, false, out, sizeof(out));
	const char *want = "HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"
			   "Connection: close\r\n\r\nBad Request\n";
	CHECK(n == (ssize_t)strlen(want) && memcmp(out, want, (size_t)n) == 0, "simple: 400 exact bytes");
	int codes[] = {400, 404, 431, 502, 503, 504};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		char name[64];
		n = http_write_simple(codes[i], NULL, true, out, sizeof(out));
		snprintf(name, sizeof(name), "simple: %d parses back with its length", codes[i]);
		CHECK(n > 0 && http_parse_response(out, (size_t)n, sizeof(out), false, &r) == HTTP_OK &&
			      r.status == codes[i] && r.keep_alive && (size_t)r.content_length == (size_t)n - r.head_len,
		      name);
	}
	const char *ka = "token.keyauth";
	n = http_write_simple(200, ka, true, out, sizeof(out));
	CHECK(n > 0 && http_parse_response(out, (size_t)n, sizeof(out), false, &r) == HTTP_OK &&
		      r.content_length == (int64_t)strlen(ka) && memcmp(out + r.head_len, ka, strlen(ka)) == 0,
	      "simple: 200 carries the body");
	CHECK(http_write_simple(200, ka, true, out, (size_t)n - 1) == -1 &&
		      http_write_simple(200, ka, true, out, (size_t)n) == n,
	      "simple: short buffer refused, exact fits");
	CHECK(http_write_simple(299, NULL, true, out, sizeof(out)) == -1, "simple: unknown status refused");
}

int main(void)
{
	test_basic();
	test_connection();
	test_pipelining();
	test_splits();
	test_bad();
	test_limits();
	test_rewrite();
	test_body();
	test_response();
	test_write_simple();
	CHECK_DONE();
}
