/* A PROXY v2 reader written from haproxy's doc/proxy-protocol.txt, independent of the writer, so
 * the unit test and the fuzz target check proxy_v2_header's bytes against the spec's layout. */
#ifndef TRACKTLS_PROXY_V2_DECODE_H
#define TRACKTLS_PROXY_V2_DECODE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct pp2_span {
	const uint8_t *p;
	size_t n;
	bool seen;
};

struct pp2_decoded {
	int family; /* 4 or 6 */
	uint8_t src[16], dst[16];
	uint16_t src_port, dst_port; /* host order */
	struct pp2_span authority, alpn, ssl_version, ssl_cipher;
	bool ssl_seen;
	uint8_t ssl_client;
	uint32_t ssl_verify;
	size_t total; /* bytes of the whole header */
};

static inline uint16_t pp2_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Walks TLVs in [p, p+n); nested is for the sub-TLVs inside PP2_TYPE_SSL. Returns false on any
 * length that runs past its container, a repeated TLV or an unknown type. */
static inline bool pp2_tlvs(const uint8_t *p, size_t n, bool nested, struct pp2_decoded *d)
{
	while (n) {
		if (n < 3)
			return false;
		uint8_t type = p[0];
		size_t len = pp2_be16(p + 1);
		if (len > n - 3)
			return false;
		const uint8_t *v = p + 3;
		struct pp2_span *s = NULL;
		if (!nested && type == 0x02)
			s = &d->authority;
		else if (!nested && type == 0x01)
			s = &d->alpn;
		else if (nested && type == 0x21)
			s = &d->ssl_version;
		else if (nested && type == 0x23)
			s = &d->ssl_cipher;
		else if (!nested && type == 0x20) {
			if (d->ssl_seen || len < 5)
				return false;
			d->ssl_seen = true;
			d->ssl_client = v[0];
			d->ssl_verify = (uint32_t)v[1] << 24 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 8 | v[4];
			if (!pp2_tlvs(v + 5, len - 5, true, d))
				return false;
		} else
			return false;
		if (s) {
			if (s->seen)
				return false;
			*s = (struct pp2_span){v, len, true};
		}
		p += 3 + len;
		n -= 3 + len;
	}
	return true;
}

static inline bool pp2_decode(const uint8_t *buf, size_t len, struct pp2_decoded *d)
{
	static const uint8_t sig[12] = {'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'};
	memset(d, 0, sizeof(*d));
	if (len < 16 || memcmp(buf, sig, 12) != 0 || buf[12] != 0x21)
		return false;
	size_t body = pp2_be16(buf + 14);
	if (16 + body != len)
		return false;
	const uint8_t *p = buf + 16;
	size_t alen;
	if (buf[13] == 0x11) {
		d->family = 4;
		alen = 4;
	} else if (buf[13] == 0x21) {
		d->family = 6;
		alen = 16;
	} else
		return false;
	if (body < 2 * alen + 4)
		return false;
	memcpy(d->src, p, alen);
	memcpy(d->dst, p + alen, alen);
	d->src_port = pp2_be16(p + 2 * alen);
	d->dst_port = pp2_be16(p + 2 * alen + 2);
	d->total = len;
	return pp2_tlvs(p + 2 * alen + 4, body - 2 * alen - 4, false, d);
}

static inline bool pp2_span_is(const struct pp2_span *s, const char *str)
{
	return s->seen && s->n == strlen(str) && memcmp(s->p, str, s->n) == 0;
}
#endif
