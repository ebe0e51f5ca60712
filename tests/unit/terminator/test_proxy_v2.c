/* Tests terminator/proxy_v2.c: the header's bytes against the layout in haproxy's
 * doc/proxy-protocol.txt, for IPv4 and IPv6, read back by an independent decoder. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "check.h"
#include "proxy_v2_decode.h"
#include "terminator.h"

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, ip, &sa.sin_addr);
	return sa;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	inet_pton(AF_INET6, ip, &sa.sin6_addr);
	return sa;
}

static void test_v4_layout(void)
{
	struct sockaddr_in src = v4("192.0.2.1", 51234), dst = v4("198.51.100.7", 443);
	struct proxy_v2_tls tls = {"a.example", "http/1.1", "TLSv1.3", "TLS_AES_128_GCM_SHA256"};
	uint8_t out[512];
	ssize_t n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &tls, out, sizeof(out));
	/* Written out by hand from the spec, section 2.2. */
	static const uint8_t want[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
		0x21,                                                                   /* v2, PROXY */
		0x11,                                                                   /* TCP over IPv4 */
		0x00, 12 + 12 + 11 + 3 + 5 + 10 + 25,                                   /* length */
		192, 0, 2, 1, 198, 51, 100, 7,                                          /* addresses */
		0xc8, 0x22, 0x01, 0xbb,                                                 /* 51234, 443 */
		0x02, 0x00, 9, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e',             /* AUTHORITY */
		0x01, 0x00, 8, 'h', 't', 't', 'p', '/', '1', '.', '1',                  /* ALPN */
		0x20, 0x00, 5 + 10 + 25,                                                /* SSL */
		0x01, 0, 0, 0, 0,                                                       /* PP2_CLIENT_SSL, verify 0 */
		0x21, 0x00, 7, 'T', 'L', 'S', 'v', '1', '.', '3',                       /* SSL_VERSION */
		0x23, 0x00, 22, 'T', 'L', 'S', '_', 'A', 'E', 'S', '_', '1', '2', '8', '_', 'G', 'C', 'M', '_',
		'S', 'H', 'A', '2', '5', '6', /* SSL_CIPHER */
	};
	CHECK(n == (ssize_t)sizeof(want) && memcmp(out, want, sizeof(want)) == 0, "v4: bytes match the spec layout");

	struct pp2_decoded d;
	CHECK(n > 0 && pp2_decode(out, (size_t)n, &d), "v4: decodes");
	CHECK(d.family == 4 && memcmp(d.src, &src.sin_addr, 4) == 0 && memcmp(d.dst, &dst.sin_addr, 4) == 0 &&
		      d.src_port == 51234 && d.dst_port == 443,
	      "v4: addresses and ports");
	CHECK(pp2_span_is(&d.authority, "a.example") && pp2_span_is(&d.alpn, "http/1.1"), "v4: authority and ALPN");
	CHECK(d.ssl_seen && d.ssl_client == 0x01 && d.ssl_verify == 0 && pp2_span_is(&d.ssl_version, "TLSv1.3") &&
		      pp2_span_is(&d.ssl_cipher, "TLS_AES_128_GCM_SHA256"),
	      "v4: SSL TLV with version and cipher");

	size_t refused = 0;
	for (size_t size = 0; size < sizeof(want); size++)
		refused += proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &tls, out, size) == -1;
	CHECK(refused == sizeof(want), "v4: every short buffer refused");
	CHECK(proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &tls, out, sizeof(want)) ==
		      (ssize_t)sizeof(want),
	      "v4: exact-size buffer accepted");
}

static void test_v6(void)
{
	struct sockaddr_in6 src = v6("2001:db8::1", 40000), dst = v6("2001:db8:ffff::443", 8443);
	struct proxy_v2_tls tls = {"b.example", "http/1.1", "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"};
	uint8_t out[512];
	ssize_t n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &tls, out, sizeof(out));
	struct pp2_decoded d;
	CHECK(n > 0 && out[13] == 0x21 && pp2_decode(out, (size_t)n, &d), "v6: decodes as TCP over IPv6");
	CHECK(d.family == 6 && memcmp(d.src, &src.sin6_addr, 16) == 0 && memcmp(d.dst, &dst.sin6_addr, 16) == 0 &&
		      d.src_port == 40000 && d.dst_port == 8443,
	      "v6: addresses and ports");
	CHECK(n == 16 + 36 + 12 + 11 + 8 + 10 + 32 && pp2_span_is(&d.authority, "b.example") &&
		      pp2_span_is(&d.ssl_cipher, "ECDHE-ECDSA-AES128-GCM-SHA256"),
	      "v6: TLVs and total length");

	struct sockaddr_in src4 = v4("203.0.113.5", 1234);
	n = proxy_v2_header((struct sockaddr *)&src4, (struct sockaddr *)&dst, NULL, out, sizeof(out));
	static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 5};
	CHECK(n == 16 + 36 && pp2_decode(out, (size_t)n, &d) && d.family == 6 && memcmp(d.src, mapped, 16) == 0 &&
		      d.src_port == 1234,
	      "mixed families: IPv4 written v4-mapped in an IPv6 header");
}

static void test_plain_and_limits(void)
{
	struct sockaddr_in src = v4("127.0.0.1", 5555), dst = v4("127.0.0.2", 80);
	uint8_t out[70000];
	struct pp2_decoded d;
	ssize_t n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, NULL, out, sizeof(out));
	CHECK(n == 28 && pp2_decode(out, (size_t)n, &d) && !d.ssl_seen && !d.authority.seen && !d.alpn.seen,
	      "port 80: no TLVs without tls");

	struct proxy_v2_tls partial = {"c.example", NULL, "", "TLS_AES_256_GCM_SHA384"};
	n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &partial, out, sizeof(out));
	CHECK(n > 0 && pp2_decode(out, (size_t)n, &d) && pp2_span_is(&d.authority, "c.example") && !d.alpn.seen &&
		      d.ssl_seen && !d.ssl_version.seen && d.ssl_cipher.seen,
	      "absent and empty strings leave their TLV out");

	static char longname[65536];
	memset(longname, 'a', sizeof(longname) - 1);
	struct proxy_v2_tls toolong = {longname, NULL, NULL, NULL};
	CHECK(proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &toolong, out, sizeof(out)) == -1,
	      "a string too long for a TLV refused");
	longname[65535 - 12 - 3 - 3 - 5] = '\0';
	n = proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &toolong, out, sizeof(out));
	CHECK(n == 16 + 65535 && pp2_decode(out, (size_t)n, &d), "the largest header that fits the length field");
	longname[65535 - 12 - 3 - 3 - 5] = 'a';
	longname[65535 - 12 - 3 - 3 - 5 + 1] = '\0';
	CHECK(proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &toolong, out, sizeof(out)) == -1,
	      "one byte more is refused");
	struct proxy_v2_tls bigssl = {NULL, NULL, longname, longname};
	CHECK(proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, &bigssl, out, sizeof(out)) == -1,
	      "an SSL TLV over 16 bits refused");

	struct sockaddr un = {.sa_family = AF_UNIX};
	CHECK(proxy_v2_header(&un, (struct sockaddr *)&dst, NULL, out, sizeof(out)) == -1 &&
		      proxy_v2_header((struct sockaddr *)&src, &un, NULL, out, sizeof(out)) == -1,
	      "non-TCP families refused");
}

int main(void)
{
	test_v4_layout();
	test_v6();
	test_plain_and_limits();
	CHECK_DONE();
}
