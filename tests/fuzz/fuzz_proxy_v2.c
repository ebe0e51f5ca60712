// fuzz-sources: terminator/proxy_v2.c
/* Fuzzes the PROXY v2 writer's inputs: addresses of either family, ports, and the SNI, ALPN,
 * version and cipher strings, into buffers of any size. Whatever is written must read back, with
 * an independent decoder, to exactly the inputs; a buffer too small must be refused. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_v2_decode.h"
#include "terminator.h"

static void require(int cond)
{
	if (!cond)
		abort();
}

static void fill_addr(struct sockaddr_storage *ss, bool six, const uint8_t *addr, uint16_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (six) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, addr, 16);
		s->sin6_port = htons(port);
	} else {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, addr, 4);
		s->sin_port = htons(port);
	}
}

static bool addr_matches(const uint8_t *got, int family, bool six, const uint8_t *addr)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (family == 4)
		return memcmp(got, addr, 4) == 0;
	if (six)
		return memcmp(got, addr, 16) == 0;
	return memcmp(got, mapped, 12) == 0 && memcmp(got + 12, addr, 4) == 0;
}

static bool span_matches(const struct pp2_span *s, const char *str)
{
	if (!str || !*str)
		return !s->seen;
	return pp2_span_is(s, str);
}

/* Input: flags(1) src(16) dst(16) sport(2) dport(2) outsize(2) then four NUL-separated strings. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 39)
		return 0;
	uint8_t flags = data[0];
	const uint8_t *src = data + 1, *dst = data + 17;
	uint16_t sport = (uint16_t)(data[33] << 8 | data[34]), dport = (uint16_t)(data[35] << 8 | data[36]);
	size_t outsize = (size_t)(data[37] << 8 | data[38]);
	bool six_src = flags & 1, six_dst = flags & 2, with_tls = flags & 4, big_out = flags & 8;

	/* The strings, NUL-terminated in a copy; a missing one is NULL. */
	size_t rest = size - 39;
	char *copy = malloc(rest + 1);
	memcpy(copy, data + 39, rest);
	copy[rest] = '\0';
	const char *str[4] = {NULL, NULL, NULL, NULL};
	char *p = copy;
	for (int i = 0; i < 4 && p <= copy + rest; i++) {
		str[i] = p;
		p += strlen(p) + 1;
	}
	struct proxy_v2_tls tls = {str[0], str[1], str[2], str[3]};

	struct sockaddr_storage s, d;
	fill_addr(&s, six_src, src, sport);
	fill_addr(&d, six_dst, dst, dport);
	bool v4 = !six_src && !six_dst;
	size_t expect = 16 + (v4 ? 12 : 36);
	if (with_tls) {
		for (int i = 0; i < 4; i++)
			if (str[i] && *str[i])
				expect += 3 + strlen(str[i]);
		expect += 3 + 5;
	}
	if (big_out)
		outsize = expect + outsize;
	uint8_t *out = malloc(outsize ? outsize : 1);
	ssize_t n = proxy_v2_header((struct sockaddr *)&s, (struct sockaddr *)&d, with_tls ? &tls : NULL, out, outsize);
	if (outsize < expect || expect - 16 > UINT16_MAX) {
		require(n == -1);
	} else {
		require(n == (ssize_t)expect);
		struct pp2_decoded dec;
		require(pp2_decode(out, (size_t)n, &dec));
		require(dec.family == (v4 ? 4 : 6) && dec.src_port == sport && dec.dst_port == dport);
		require(addr_matches(dec.src, dec.family, six_src, src) && addr_matches(dec.dst, dec.family, six_dst, dst));
		if (with_tls) {
			require(dec.ssl_seen && dec.ssl_client == 1 && dec.ssl_verify == 0);
			require(span_matches(&dec.authority, str[0]) && span_matches(&dec.alpn, str[1]) &&
				span_matches(&dec.ssl_version, str[2]) && span_matches(&dec.ssl_cipher, str[3]));
		} else {
			require(!dec.ssl_seen && !dec.authority.seen && !dec.alpn.seen);
		}
	}
	free(out);
	free(copy);
	return 0;
}
