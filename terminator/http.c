/* http: HTTP/1.1 message heads (RFC 9112) parsed in place, message bodies framed by a streaming
 * state machine, and the request head rewritten for the backend with our forwarding headers. */
#include <stdio.h>
#include <string.h>

#include "terminator.h"

/* tchar (RFC 9110 5.6.2): what header names, methods and transfer codings are made of. */
static const bool tchar[256] = {
    ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['!'] = true, ['#'] = true, ['$'] = true,
    ['%'] = true,	  ['&'] = true,		['\''] = true,	      ['*'] = true, ['+'] = true, ['-'] = true,
    ['.'] = true,	  ['^'] = true,		['_'] = true,	      ['`'] = true, ['|'] = true, ['~'] = true,
};

/* uri-host [ ":" port ] (RFC 3986): reg-name, IP literals and percent-encoding, nothing else. */
static const bool hostchar[256] = {
    ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['-'] = true, ['.'] = true, ['_'] = true,
    ['~'] = true,	  ['%'] = true,		['!'] = true,	      ['$'] = true, ['&'] = true, ['\''] = true,
    ['('] = true,	  [')'] = true,		['*'] = true,	      ['+'] = true, [','] = true, [';'] = true,
    ['='] = true,	  [':'] = true,		['['] = true,	      [']'] = true,
};

/* Field values may hold SP, HTAB, visible ASCII and obs-text; every other control byte (CR, LF,
 * NUL among them) is refused, which is what keeps header injection out of the rewritten head. */
static const bool valuechar[256] = {['\t'] = true, [0x20 ... 0x7e] = true, [0x80 ... 0xff] = true};

static inline bool is_value_char(unsigned char c)
{
	return valuechar[c];
}

static inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static inline int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static inline char fold(char c, bool fold_underscore)
{
	if (c >= 'A' && c <= 'Z')
		return (char)(c | 0x20);
	return fold_underscore && c == '_' ? '-' : c;
}

/* ASCII case-insensitive equality. With fold_underscore '_' matches '-': CGI-style backends fold
 * both into '_', so "X_Forwarded_For" would reach them as X-Forwarded-For. */
static bool name_eq(const char *a, size_t alen, const char *b, size_t blen, bool fold_underscore)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (fold(a[i], fold_underscore) != fold(b[i], fold_underscore))
			return false;
	return true;
}

#define NAME_IS(p, n, lit) name_eq((p), (n), lit, sizeof(lit) - 1, false)

/* Finds the blank line that ends a head, scanning at most limit bytes from start. Returns the
 * offset just past it, 0 when it is not there yet, -1 on a line ending other than CR LF. */
static ssize_t find_head_end(const char *buf, size_t start, size_t limit)
{
	size_t line = start, pos = start;
	while (pos < limit) {
		const char *lf = memchr(buf + pos, '\n', limit - pos);
		if (!lf)
			return 0;
		size_t i = (size_t)(lf - buf);
		if (i == line || buf[i - 1] != '\r')
			return -1;
		if (i - 1 == line)
			return (ssize_t)(i + 1);
		line = pos = i + 1;
	}
	return 0;
}

/* Leading empty lines before a request line are ignored (RFC 9112 2.2). */
static size_t skip_empty_lines(const char *buf, size_t limit)
{
	size_t pos = 0;
	while (pos + 1 < limit && buf[pos] == '\r' && buf[pos + 1] == '\n')
		pos += 2;
	return pos;
}

/* What the framing and routing decisions need from the header fields. */
struct head_fields {
	int64_t content_length;
	const char *host;
	size_t host_len;
	bool host_seen;
	int te_lines;
	bool te_chunked;      /* the Transfer-Encoding value is exactly "chunked" (any case) */
	bool te_last_chunked; /* its last coding is chunked (what frames a response) */
	int te_chunked_count; /* chunked may appear once, at most */
	bool conn_close;
	bool conn_keep_alive;
};

/* Calls fn for each element of a comma-separated list value (RFC 9110 5.6.1), trimmed.
 * Stops at the first element fn refuses; returns -1 then. */
static int for_each_element(const char *v, size_t n, int (*fn)(void *, const char *, size_t), void *arg)
{
	size_t i = 0;
	while (i <= n) {
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		size_t s = start, e = i;
		while (s < e && is_ows(v[s]))
			s++;
		while (e > s && is_ows(v[e - 1]))
			e--;
		if (fn(arg, v + s, e - s) < 0)
			return -1;
		i++;
	}
	return 0;
}

static int connection_element(void *arg, const char *el, size_t n)
{
	struct head_fields *f = arg;
	if (NAME_IS(el, n, "close"))
		f->conn_close = true;
	else if (NAME_IS(el, n, "keep-alive"))
		f->conn_keep_alive = true;
	return 0;
}

static enum http_parse parse_content_length(const char *v, size_t n, struct head_fields *f)
{
	if (f->content_length >= 0 || n == 0)
		return HTTP_BAD;
	int64_t cl = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return HTTP_BAD;
		int d = v[i] - '0';
		if (cl > (INT64_MAX - d) / 10)
			return HTTP_BAD;
		cl = cl * 10 + d;
	}
	f->content_length = cl;
	return HTTP_OK;
}

static int count_chunked(void *arg, const char *el, size_t n)
{
	if (NAME_IS(el, n, "chunked"))
		(*(int *)arg)++;
	return 0;
}

static bool last_element_is_chunked(const char *v, size_t n)
{
	size_t s = n;
	while (s > 0 && v[s - 1] != ',')
		s--;
	while (s < n && is_ows(v[s]))
		s++;
	return NAME_IS(v + s, n - s, "chunked");
}

/* The headers whose spelling with '_' is refused in a request: framing and forwarding. */
static bool folds_onto_guarded(const char *name, size_t n)
{
	return name_eq(name, n, "content-length", 14, true) || name_eq(name, n, "transfer-encoding", 17, true) ||
	       (n >= 12 && name_eq(name, 12, "x-forwarded-", 12, true));
}

/* Parses the header lines in [pos, end) (end is just past the blank line), recording them into
 * headers (up to HTTP_MAX_HEADERS; NULL to only count) and the fields that matter into f. */
static enum http_parse parse_fields(const char *buf, size_t pos, size_t end, struct http_header *headers,
				    size_t *nheaders, struct head_fields *f)
{
	size_t n = 0;
	while (pos < end - 2) {
		const char *line = buf + pos;
		const char *eol = memchr(line, '\r', end - pos);
		/* A CR inside a line is refused here: the end-of-head scan only proved every LF
		 * follows a CR, and the first CR of this line must be its end. */
		if (eol[1] != '\n')
			return HTTP_BAD;
		size_t len = (size_t)(eol - line);
		pos += len + 2;
		if (is_ows(line[0]))
			return HTTP_BAD; /* obs-fold, or whitespace before the first field */
		size_t nl = 0;
		while (nl < len && tchar[(unsigned char)line[nl]])
			nl++;
		if (nl == 0 || nl == len || line[nl] != ':')
			return HTTP_BAD; /* no name, no colon, or whitespace before the colon */
		size_t vs = nl + 1, ve = len;
		while (vs < ve && is_ows(line[vs]))
			vs++;
		while (ve > vs && is_ows(line[ve - 1]))
			ve--;
		for (size_t i = vs; i < ve; i++)
			if (!is_value_char((unsigned char)line[i]))
				return HTTP_BAD;
		/* Only a request's fields are kept, so only they are counted against the limit. */
		if (headers && n == HTTP_MAX_HEADERS)
			return HTTP_TOO_LARGE;
		const char *value = line + vs;
		size_t vlen = ve - vs;
		if (headers)
			headers[n] = (struct http_header){line, nl, value, vlen};
		n++;

		/* A name that folds '_' onto a framing or forwarding header is read as that header by
		 * CGI-style backends and as nothing by us: two readings of one request. */
		if (headers && memchr(line, '_', nl) && folds_onto_guarded(line, nl))
			return HTTP_BAD;
		if (NAME_IS(line, nl, "host")) {
			if (f->host_seen)
				return HTTP_BAD;
			for (size_t i = 0; i < vlen; i++)
				if (!hostchar[(unsigned char)value[i]])
					return HTTP_BAD;
			f->host_seen = true;
			f->host = value;
			f->host_len = vlen;
		} else if (NAME_IS(line, nl, "content-length")) {
			if (parse_content_length(value, vlen, f) != HTTP_OK)
				return HTTP_BAD;
		} else if (NAME_IS(line, nl, "transfer-encoding")) {
			/* Exactly one line holding exactly chunked: any other coding, a list, or a
			 * second line is something two parsers may frame differently. */
			f->te_lines++;
			f->te_chunked = NAME_IS(value, vlen, "chunked");
			f->te_last_chunked = last_element_is_chunked(value, vlen);
			for_each_element(value, vlen, count_chunked, &f->te_chunked_count);
		} else if (NAME_IS(line, nl, "connection")) {
			for_each_element(value, vlen, connection_element, f);
		}
	}
	*nheaders = n;
	return HTTP_OK;
}

/* Locates the head in buf: *start after ignorable leading lines, *end just past the blank line. */
static enum http_parse locate_head(const char *buf, size_t len, size_t max_head, bool skip_leading, size_t *start,
				   size_t *end)
{
	size_t limit = len < max_head ? len : max_head;
	*start = skip_leading ? skip_empty_lines(buf, limit) : 0;
	ssize_t e = find_head_end(buf, *start, limit);
	if (e < 0)
		return HTTP_BAD;
	if (e == 0)
		return len >= max_head ? HTTP_TOO_LARGE : HTTP_INCOMPLETE;
	*end = (size_t)e;
	return HTTP_OK;
}

/* "HTTP/1.x" at p (n bytes available): returns the minor version or -1. */
static int parse_version(const char *p, size_t n)
{
	if (n < 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
		return -1;
	return p[7] - '0';
}

static bool keep_alive_for(int minor_version, const struct head_fields *f)
{
	if (f->conn_close)
		return false;
	return minor_version >= 1 || f->conn_keep_alive;
}

static bool target_form_ok(const char *method, size_t mlen, const char *t, size_t tlen)
{
	if (t[0] == '/')
		return true;
	if (tlen == 1 && t[0] == '*')
		return mlen == 7 && memcmp(method, "OPTIONS", 7) == 0;
	/* absolute-form: what a client talking to a proxy sends; the backend gets it unchanged. */
	return (tlen > 7 && name_eq(t, 7, "http://", 7, false)) || (tlen > 8 && name_eq(t, 8, "https://", 8, false));
}

enum http_parse http_parse_request(const char *buf, size_t len, size_t max_head, struct http_request *req)
{
	size_t start, end;
	enum http_parse r = locate_head(buf, len, max_head, true, &start, &end);
	if (r != HTTP_OK)
		return r;

	const char *line = buf + start;
	const char *eol = memchr(line, '\r', end - start);
	size_t llen = (size_t)(eol - line);
	if (eol[1] != '\n')
		return HTTP_BAD;
	size_t i = 0;
	while (i < llen && tchar[(unsigned char)line[i]])
		i++;
	if (i == 0 || i == llen || line[i] != ' ')
		return HTTP_BAD;
	req->method = line;
	req->method_len = i;
	size_t ts = ++i;
	while (i < llen && (unsigned char)line[i] > 0x20 && line[i] != 0x7f)
		i++;
	if (i == ts || i == llen || line[i] != ' ')
		return HTTP_BAD;
	req->target = line + ts;
	req->target_len = i - ts;
	i++;
	if (llen - i != 8 || (req->minor_version = parse_version(line + i, 8)) < 0)
		return HTTP_BAD;
	/* CONNECT would turn the connection into a tunnel our framing knows nothing about. */
	if ((req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0) ||
	    !target_form_ok(req->method, req->method_len, req->target, req->target_len))
		return HTTP_BAD;

	struct head_fields f = {.content_length = -1};
	r = parse_fields(buf, start + llen + 2, end, req->headers, &req->nheaders, &f);
	if (r != HTTP_OK)
		return r;
	if (req->minor_version >= 1 && !f.host_seen)
		return HTTP_BAD;
	if (f.te_lines) {
		/* RFC 9112 6.1 and 6.3: a request's only coding we take is chunked, once; Transfer-Encoding
		 * in HTTP/1.0 or beside Content-Length is the classic smuggling shape. */
		if (req->minor_version == 0 || f.content_length >= 0 || f.te_lines != 1 || !f.te_chunked)
			return HTTP_BAD;
	}
	req->host = f.host_seen ? f.host : NULL;
	req->host_len = f.host_len;
	req->content_length = f.content_length;
	req->chunked = f.te_lines == 1;
	req->keep_alive = keep_alive_for(req->minor_version, &f);
	req->head_len = end;
	return HTTP_OK;
}

enum http_parse http_parse_response(const char *buf, size_t len, size_t max_head, bool head_request,
				    struct http_response *resp)
{
	size_t start, end;
	enum http_parse r = locate_head(buf, len, max_head, false, &start, &end);
	if (r != HTTP_OK)
		return r;

	const char *eol = memchr(buf, '\r', end);
	size_t llen = (size_t)(eol - buf);
	if (eol[1] != '\n' || llen < 12 || (resp->minor_version = parse_version(buf, llen)) < 0 || buf[8] != ' ')
		return HTTP_BAD;
	int status = 0;
	for (int k = 9; k < 12; k++) {
		if (buf[k] < '0' || buf[k] > '9')
			return HTTP_BAD;
		status = status * 10 + (buf[k] - '0');
	}
	if (status < 100 || status > 599)
		return HTTP_BAD;
	/* The reason phrase is optional, and so in practice is the space before it. */
	if (llen > 12 && buf[12] != ' ')
		return HTTP_BAD;
	for (size_t k = 13; k < llen; k++)
		if (!is_value_char((unsigned char)buf[k]))
			return HTTP_BAD;
	resp->status = status;

	struct head_fields f = {.content_length = -1};
	size_t nheaders;
	r = parse_fields(buf, llen + 2, end, NULL, &nheaders, &f);
	if (r != HTTP_OK)
		return r;
	bool chunked = false;
	if (f.te_lines) {
		if (resp->minor_version == 0 || f.content_length >= 0 || f.te_lines > 1 || f.te_chunked_count > 1)
			return HTTP_BAD;
		/* A final coding other than chunked means the body runs until the close (RFC 9112 6.3). */
		chunked = f.te_last_chunked;
	}
	resp->content_length = f.content_length;
	resp->chunked = chunked;
	resp->no_body = head_request || status < 200 || status == 204 || status == 304;
	resp->keep_alive = keep_alive_for(resp->minor_version, &f);
	if (!resp->no_body && !chunked && f.content_length < 0)
		resp->keep_alive = false;
	resp->head_len = end;
	return HTTP_OK;
}

/* Bounded output: the first write that does not fit marks the whole result as too small. */
struct out {
	char *buf;
	size_t size, len;
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full || n > o->size - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

#define PUT_LIT(o, lit) put((o), lit, sizeof(lit) - 1)

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static bool safe_value(const char *s)
{
	for (; *s; s++)
		if (!is_value_char((unsigned char)*s) || *s == '\t')
			return false;
	return true;
}

/* Headers that describe one hop, never forwarded (RFC 9110 7.6.1), and every forwarding header a
 * client may try to plant: the backend trusts only the ones we write. */
static bool dropped_name(const char *name, size_t n)
{
	static const struct {
		const char *s;
		size_t n;
	} drop[] = {
#define D(lit) {lit, sizeof(lit) - 1}
	    D("connection"), D("keep-alive"), D("proxy-connection"), D("te"),
	    D("upgrade"),    D("trailer"),    D("x-real-ip"),	     D("forwarded"),
#undef D
	};
	for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
		if (name_eq(name, n, drop[i].s, drop[i].n, true))
			return true;
	/* All of X-Forwarded-*: -Port, -Ssl, -Scheme and friends steer backends as much as -For. */
	return n >= 12 && name_eq(name, 12, "x-forwarded-", 12, true);
}

struct nominated {
	const char *name;
	size_t n;
	bool found;
};

static int nominated_element(void *arg, const char *el, size_t n)
{
	struct nominated *m = arg;
	if (name_eq(m->name, m->n, el, n, false))
		m->found = true;
	return 0;
}

static int other_than_close(void *arg, const char *el, size_t n)
{
	if (n && !NAME_IS(el, n, "close") && !NAME_IS(el, n, "keep-alive"))
		*(bool *)arg = true;
	return 0;
}

/* The first Connection field that names a header (not just close or keep-alive), or nheaders:
 * most requests have none, and then no header needs the search below. */
static size_t first_naming_connection(const struct http_request *req)
{
	for (size_t i = 0; i < req->nheaders; i++) {
		const struct http_header *c = &req->headers[i];
		bool names = false;
		if (NAME_IS(c->name, c->name_len, "connection"))
			for_each_element(c->value, c->value_len, other_than_close, &names);
		if (names)
			return i;
	}
	return req->nheaders;
}

/* Connection may name further hop-by-hop headers; honouring that must never strip what frames
 * the message or routes it. */
static bool nominated_by_connection(const struct http_request *req, size_t from, const struct http_header *h)
{
	if (NAME_IS(h->name, h->name_len, "host") || NAME_IS(h->name, h->name_len, "content-length") ||
	    NAME_IS(h->name, h->name_len, "transfer-encoding"))
		return false;
	struct nominated m = {h->name, h->name_len, false};
	for (size_t i = from; i < req->nheaders && !m.found; i++) {
		const struct http_header *c = &req->headers[i];
		if (NAME_IS(c->name, c->name_len, "connection"))
			for_each_element(c->value, c->value_len, nominated_element, &m);
	}
	return m.found;
}

ssize_t http_rewrite_request(const struct http_request *req, const struct http_forward *fwd, char *out, size_t outsize)
{
	if (!fwd->client_ip || !fwd->proto || !safe_value(fwd->client_ip) || !safe_value(fwd->proto) ||
	    (fwd->host && !safe_value(fwd->host)))
		return -1;
	struct out o = {out, outsize, 0, false};
	put(&o, req->method, req->method_len);
	PUT_LIT(&o, " ");
	put(&o, req->target, req->target_len);
	char version[] = " HTTP/1.0\r\n";
	version[8] = (char)('0' + req->minor_version);
	put(&o, version, sizeof(version) - 1);
	size_t naming = first_naming_connection(req);
	for (size_t i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (dropped_name(h->name, h->name_len) ||
		    (naming < req->nheaders && nominated_by_connection(req, naming, h)))
			continue;
		/* Framing goes out in one canonical spelling, whatever the client's case. */
		if (NAME_IS(h->name, h->name_len, "transfer-encoding")) {
			PUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
			continue;
		}
		if (NAME_IS(h->name, h->name_len, "content-length")) {
			PUT_LIT(&o, "Content-Length: ");
		} else {
			put(&o, h->name, h->name_len);
			PUT_LIT(&o, ": ");
		}
		put(&o, h->value, h->value_len);
		PUT_LIT(&o, "\r\n");
	}
	PUT_LIT(&o, "X-Forwarded-For: ");
	put_str(&o, fwd->client_ip);
	PUT_LIT(&o, "\r\nX-Forwarded-Proto: ");
	put_str(&o, fwd->proto);
	if (fwd->host) {
		PUT_LIT(&o, "\r\nX-Forwarded-Host: ");
		put_str(&o, fwd->host);
	}
	PUT_LIT(&o, "\r\nConnection: keep-alive\r\n\r\n");
	return o.full ? -1 : (ssize_t)o.len;
}

enum body_mode { BODY_DONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE };
enum chunk_state {
	CH_SIZE_FIRST, /* first hex digit of a chunk size */
	CH_SIZE,       /* more hex digits, an extension, or CR */
	CH_SIZE_WS,    /* whitespace after the size (BWS): more of it, an extension, or CR */
	CH_EXT,	       /* chunk extension up to CR */
	CH_SIZE_LF,
	CH_DATA,
	CH_DATA_CR,
	CH_DATA_LF,
	CH_TRAILER_FIRST, /* start of a trailer line, or CR of the final empty line */
	CH_TRAILER_NAME,  /* a trailer field's name, up to its colon */
	CH_TRAILER,	  /* a trailer field's value */
	CH_TRAILER_LF,
	CH_FINAL_LF,
};

void http_body_init(struct http_body *body, int64_t content_length, bool chunked, bool until_close)
{
	body->remaining = 0;
	body->state = CH_SIZE_FIRST;
	if (chunked)
		body->mode = BODY_CHUNKED;
	else if (content_length > 0) {
		body->mode = BODY_LENGTH;
		body->remaining = (uint64_t)content_length;
	} else if (content_length < 0 && until_close)
		body->mode = BODY_UNTIL_CLOSE;
	else
		body->mode = BODY_DONE;
}

/* One byte of chunk framing (everything but data). Returns -1 on a malformed encoding. */
static int chunk_step(struct http_body *body, unsigned char c)
{
	int h;
	switch (body->state) {
	case CH_SIZE_FIRST:
	case CH_SIZE:
		if ((h = hex_value(c)) >= 0) {
			/* Sizes beyond 2^60 are nobody's body and would overflow below. */
			if (body->remaining >> 60)
				return -1;
			body->remaining = body->remaining << 4 | (uint64_t)h;
			body->state = CH_SIZE;
			return 0;
		}
		if (body->state == CH_SIZE_FIRST)
			return -1;
		/* fall through */
	case CH_SIZE_WS:
		if (c == '\r')
			body->state = CH_SIZE_LF;
		else if (c == ';')
			body->state = CH_EXT;
		else if (is_ows((char)c))
			body->state = CH_SIZE_WS;
		else
			return -1;
		return 0;
	case CH_EXT:
		/* Extensions are passed on unread, but a bare LF or other control byte in them is how
		 * parsers are made to disagree about where a chunk starts. */
		if (c == '\r')
			body->state = CH_SIZE_LF;
		else if (!is_value_char(c))
			return -1;
		return 0;
	case CH_SIZE_LF:
		if (c != '\n')
			return -1;
		body->state = body->remaining ? CH_DATA : CH_TRAILER_FIRST;
		return 0;
	case CH_DATA_CR:
		if (c != '\r')
			return -1;
		body->state = CH_DATA_LF;
		return 0;
	case CH_DATA_LF:
		if (c != '\n')
			return -1;
		body->state = CH_SIZE_FIRST;
		return 0;
	case CH_TRAILER_FIRST:
		if (c == '\r')
			body->state = CH_FINAL_LF;
		else if (tchar[c])
			body->state = CH_TRAILER_NAME;
		else
			return -1;
		return 0;
	case CH_TRAILER_NAME:
		/* A trailer is a header field: a line without "name:" is how two parsers come to disagree. */
		if (c == ':')
			body->state = CH_TRAILER;
		else if (!tchar[c])
			return -1;
		return 0;
	case CH_TRAILER:
		if (c == '\r')
			body->state = CH_TRAILER_LF;
		else if (!is_value_char(c))
			return -1;
		return 0;
	case CH_TRAILER_LF:
		if (c != '\n')
			return -1;
		body->state = CH_TRAILER_FIRST;
		return 0;
	case CH_FINAL_LF:
		if (c != '\n')
			return -1;
		body->mode = BODY_DONE;
		return 0;
	}
	return -1;
}

ssize_t http_body_consume(struct http_body *body, const char *buf, size_t len, bool *done)
{
	size_t n = 0;
	switch (body->mode) {
	case BODY_DONE:
		break;
	case BODY_UNTIL_CLOSE:
		n = len;
		break;
	case BODY_LENGTH:
		n = len < body->remaining ? len : (size_t)body->remaining;
		body->remaining -= n;
		if (body->remaining == 0)
			body->mode = BODY_DONE;
		break;
	case BODY_CHUNKED:
		while (n < len && body->mode == BODY_CHUNKED) {
			if (body->state == CH_DATA) {
				size_t take = len - n < body->remaining ? len - n : (size_t)body->remaining;
				n += take;
				body->remaining -= take;
				if (body->remaining == 0)
					body->state = CH_DATA_CR;
				continue;
			}
			if (chunk_step(body, (unsigned char)buf[n]) < 0)
				return -1;
			n++;
		}
		break;
	}
	*done = body->mode == BODY_DONE;
	return (ssize_t)n;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 421:
		return "Misdirected Request";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return NULL;
	}
}

ssize_t http_write_simple(int status, const char *body, bool keep_alive, char *out, size_t outsize)
{
	const char *reason = reason_phrase(status);
	if (!reason)
		return -1;
	char line[96];
	size_t blen = body ? strlen(body) : strlen(reason) + 1;
	int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n", status, reason, blen);
	struct out o = {out, outsize, 0, false};
	put(&o, line, (size_t)n);
	PUT_LIT(&o, "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n");
	if (keep_alive)
		PUT_LIT(&o, "Connection: keep-alive\r\n\r\n");
	else
		PUT_LIT(&o, "Connection: close\r\n\r\n");
	if (body)
		put(&o, body, blen);
	else {
		put_str(&o, reason);
		PUT_LIT(&o, "\n");
	}
	return o.full ? -1 : (ssize_t)o.len;
}
