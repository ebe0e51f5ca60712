/* peer_addr.c: which addresses the self-check may connect to when the customer's DNS chooses. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "issuer.h"

static bool pub(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
		v4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
		v6->sin6_family = AF_INET6;
	else
		return true; /* makes a typo in this test fail its check */
	return peer_addr_public((struct sockaddr *)&ss);
}

int main(void)
{
	CHECK(pub("8.8.8.8") && pub("1.1.1.1") && pub("93.184.216.34"), "public IPv4 addresses pass");
	CHECK(pub("2606:4700:4700::1111") && pub("2a00:1450:4001:80b::200e"), "public IPv6 addresses pass");
	CHECK(!pub("127.0.0.1") && !pub("127.255.0.9"), "IPv4 loopback is refused");
	CHECK(!pub("10.1.2.3") && !pub("172.16.0.1") && !pub("172.31.255.254") && !pub("192.168.1.1"),
	      "RFC 1918 private addresses are refused");
	CHECK(pub("172.32.0.1") && pub("172.15.255.255") && pub("11.0.0.1") && pub("192.169.0.1"),
	      "neighbours of the private blocks pass");
	CHECK(!pub("169.254.169.254"), "link-local (the cloud metadata service) is refused");
	CHECK(!pub("100.64.0.1") && !pub("100.127.255.255") && pub("100.128.0.1"), "carrier-grade NAT is refused");
	CHECK(!pub("0.0.0.0") && !pub("255.255.255.255") && !pub("224.0.0.1") && !pub("240.0.0.1"),
	      "unspecified, broadcast, multicast and reserved are refused");
	CHECK(!pub("192.0.2.1") && !pub("198.51.100.1") && !pub("203.0.113.1") && !pub("198.18.0.1"),
	      "documentation and benchmarking blocks are refused");
	CHECK(!pub("::1") && !pub("::"), "IPv6 loopback and unspecified are refused");
	CHECK(!pub("fd00::1") && !pub("fc00::1") && !pub("fe80::1") && !pub("ff02::1"),
	      "unique-local, link-local and multicast IPv6 are refused");
	CHECK(!pub("::ffff:127.0.0.1") && !pub("::ffff:10.0.0.1") && pub("::ffff:8.8.8.8"),
	      "IPv4-mapped IPv6 is judged by its IPv4 address");
	CHECK(!pub("64:ff9b::7f00:1") && !pub("2002:7f00:1::1") && !pub("2001:db8::1"),
	      "NAT64, 6to4 of loopback and documentation IPv6 are refused");
	struct sockaddr un = {.sa_family = AF_UNIX};
	CHECK(!peer_addr_public(&un), "a non-IP address is refused");
	CHECK_DONE();
}
