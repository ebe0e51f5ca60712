/* peer_addr: where a customer's DNS may send the issuer. The self-check connects to whatever a
 * domain resolves to; a name pointed at loopback, a private network or a link-local address would
 * make the issuer probe hosts inside our own network (SSRF), so those are refused unless the
 * operator names the target with --self-check-via. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "issuer.h"

struct v4_block {
	uint32_t net;
	int bits;
};

/* IANA special-purpose IPv4 blocks (RFC 6890 and successors) that are not the public internet. */
static const struct v4_block v4_special[] = {
    {0x00000000, 8},  /* "this network" */
    {0x0a000000, 8},  /* private */
    {0x64400000, 10}, /* carrier-grade NAT */
    {0x7f000000, 8},  /* loopback */
    {0xa9fe0000, 16}, /* link-local, cloud metadata */
    {0xac100000, 12}, /* private */
    {0xc0000000, 24}, /* IETF protocol assignments */
    {0xc0000200, 24}, /* documentation */
    {0xc0a80000, 16}, /* private */
    {0xc6120000, 15}, /* benchmarking */
    {0xc6336400, 24}, /* documentation */
    {0xcb007100, 24}, /* documentation */
    {0xe0000000, 4},  /* multicast */
    {0xf0000000, 4},  /* reserved, broadcast */
};

static bool v4_public(uint32_t a)
{
	for (size_t i = 0; i < sizeof(v4_special) / sizeof(v4_special[0]); i++)
		if ((a >> (32 - v4_special[i].bits)) == (v4_special[i].net >> (32 - v4_special[i].bits)))
			return false;
	return true;
}

static uint32_t v4_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool v6_public(const uint8_t *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return v4_public(v4_at(a + 12)); /* an IPv4 address in IPv6 clothes */
	/* only global unicast (2000::/3) reaches the internet; of it, documentation and ORCHID-like
	 * special blocks are left out below */
	if ((a[0] & 0xe0) != 0x20)
		return false; /* ::, ::1, fc00::/7 unique local, fe80::/10 link-local, ff00::/8 multicast */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return false; /* 2001:db8::/32 documentation */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x00 && a[3] == 0x00)
		return false; /* 2001::/32 Teredo */
	if (a[0] == 0x20 && a[1] == 0x02)
		return v4_public(v4_at(a + 2)); /* 6to4 carries an IPv4 address */
	return true;
}

bool peer_addr_public(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return v4_public(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
	if (sa->sa_family == AF_INET6)
		return v6_public(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
	return false;
}

static curl_socket_t guard_open(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct peer_guard *g = arg;
	if (purpose == CURLSOCKTYPE_IPCXN && !peer_addr_public(&addr->addr)) {
		if (!g->refused) {
			const void *bin = addr->family == AF_INET6
					      ? (const void *)&((const struct sockaddr_in6 *)&addr->addr)->sin6_addr
					      : (const void *)&((const struct sockaddr_in *)&addr->addr)->sin_addr;
			if (!inet_ntop(addr->family, bin, g->addr, sizeof(g->addr)))
				snprintf(g->addr, sizeof(g->addr), "?");
		}
		g->refused = true;
		return CURL_SOCKET_BAD;
	}
	return socket(addr->family, addr->socktype, addr->protocol);
}

void peer_guard_arm(CURL *h, struct peer_guard *g)
{
	memset(g, 0, sizeof(*g));
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, guard_open);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, g);
}
