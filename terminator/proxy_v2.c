/* proxy_v2: the PROXY protocol v2 header (haproxy doc/proxy-protocol.txt) that opens a backend
 * connection in proxy-v2 mode: client and local address, then TLVs for SNI, ALPN and TLS. */
#include <netinet/in.h>
#include <string.h>

#include "terminator.h"

static const uint8_t signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

enum {
	PP2_VERSION_PROXY = 0x21,
	PP2_TCP4 = 0x11,
	PP2_TCP6 = 0x21,
	PP2_TYPE_ALPN = 0x01,
	PP2_TYPE_AUTHORITY = 0x02,
	PP2_TYPE_SSL = 0x20,
	PP2_SUBTYPE_SSL_VERSION = 0x21,
	PP2_SUBTYPE_SSL_CIPHER = 0x23,
	PP2_CLIENT_SSL = 0x01,
	PP2_FIXED_LEN = 16,
	PP2_TLV_LEN = 3,
	PP2_SSL_FIXED_LEN = 5, /* client flags (1) and verify (4) */
};

/* Bounded output: the first write that does not fit marks the whole header as too large. */
struct out {
	uint8_t *buf;
	size_t size, len;
	bool full;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->full || n > o->size - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void put_be16(struct out *o, size_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(o, b, 2);
}

static size_t tlv_size(const char *s)
{
	return s && *s ? PP2_TLV_LEN + strlen(s) : 0;
}

static void put_tlv(struct out *o, uint8_t type, const char *s)
{
	if (!s || !*s)
		return;
	size_t n = strlen(s);
	put(o, &type, 1);
	put_be16(o, n);
	put(o, s, n);
}

/* An IPv4 address in an IPv6 header is written v4-mapped (::ffff:a.b.c.d). */
static void put_addr6(struct out *o, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6) {
		put(o, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return;
	}
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	put(o, mapped, sizeof(mapped));
	put(o, &((const struct sockaddr_in *)sa)->sin_addr, 4);
}

static in_port_t port_of(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
					 : ((const struct sockaddr_in *)sa)->sin_port;
}

ssize_t proxy_v2_header(const struct sockaddr *src, const struct sockaddr *dst, const struct proxy_v2_tls *tls,
			uint8_t *out, size_t outsize)
{
	bool ok_src = src->sa_family == AF_INET || src->sa_family == AF_INET6;
	bool ok_dst = dst->sa_family == AF_INET || dst->sa_family == AF_INET6;
	if (!ok_src || !ok_dst)
		return -1;
	bool v4 = src->sa_family == AF_INET && dst->sa_family == AF_INET;

	/* Lengths first: the header carries them before the values, and each must fit 16 bits. */
	size_t tlvs = 0, ssl = 0;
	if (tls) {
		ssl = PP2_SSL_FIXED_LEN + tlv_size(tls->version) + tlv_size(tls->cipher);
		if (ssl > UINT16_MAX)
			return -1;
		tlvs = tlv_size(tls->sni) + tlv_size(tls->alpn) + PP2_TLV_LEN + ssl;
	}
	size_t body = (v4 ? 12 : 36) + tlvs;
	if (body > UINT16_MAX)
		return -1;

	struct out o = {out, outsize, 0, false};
	put(&o, signature, sizeof(signature));
	uint8_t vf[2] = {PP2_VERSION_PROXY, v4 ? PP2_TCP4 : PP2_TCP6};
	put(&o, vf, 2);
	put_be16(&o, body);
	if (v4) {
		put(&o, &((const struct sockaddr_in *)src)->sin_addr, 4);
		put(&o, &((const struct sockaddr_in *)dst)->sin_addr, 4);
	} else {
		put_addr6(&o, src);
		put_addr6(&o, dst);
	}
	/* Ports are already in network order in the sockaddr. */
	in_port_t sport = port_of(src), dport = port_of(dst);
	put(&o, &sport, 2);
	put(&o, &dport, 2);
	if (tls) {
		put_tlv(&o, PP2_TYPE_AUTHORITY, tls->sni);
		put_tlv(&o, PP2_TYPE_ALPN, tls->alpn);
		/* verify 0: no client certificate is asked for, so there is nothing that failed. */
		uint8_t head[3 + PP2_SSL_FIXED_LEN] = {
		    PP2_TYPE_SSL, (uint8_t)(ssl >> 8), (uint8_t)ssl, PP2_CLIENT_SSL, 0, 0, 0, 0};
		put(&o, head, sizeof(head));
		put_tlv(&o, PP2_SUBTYPE_SSL_VERSION, tls->version);
		put_tlv(&o, PP2_SUBTYPE_SSL_CIPHER, tls->cipher);
	}
	return o.full ? -1 : (ssize_t)o.len;
}
