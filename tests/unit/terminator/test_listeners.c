/* Tests terminator/listeners.c against real sockets of this process: which listeners take the
 * connections of an address (the same address, the wildcards that cover it) and which do not
 * (another address of the port, an IPv6-only wildcard for IPv4, a socket bound but not listening,
 * a connection, a TIME_WAIT). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include "check.h"
#include "terminator.h"

static struct sockaddr_storage addr(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(port);
	}
	return ss;
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* A socket bound at ip:port (port 0: one the kernel picks), listening or not, IPv6 ones taking
 * IPv4 too unless v6only; its port in *bound. */
static int bound_socket_v6only(const char *ip, uint16_t port, bool listening, bool v6only, uint16_t *bound)
{
	struct sockaddr_storage ss = addr(ip, port);
	int fd = socket(ss.ss_family, SOCK_STREAM, 0), only = v6only;
	if (fd < 0)
		return -1;
	if (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only) < 0) {
		close(fd);
		return -1;
	}
	socklen_t len = sizeof ss;
	if (bind(fd, (struct sockaddr *)&ss, addr_len(&ss)) < 0 || (listening && listen(fd, 16) < 0) ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		close(fd);
		return -1;
	}
	*bound = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					       : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

static int bound_socket(const char *ip, uint16_t port, bool listening, uint16_t *bound)
{
	return bound_socket_v6only(ip, port, listening, false, bound);
}

/* 1 served, 0 not, -1 the kernel could not be asked. */
static int served(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = addr(ip, port);
	struct tt_err err = {{0}};
	bool yes = true;
	if (listeners_address_served(&ss, &yes, &err) < 0) {
		printf("# %s\n", err.msg);
		return -1;
	}
	return yes;
}

static void test_specific_address(void)
{
	uint16_t port = 0;
	int fd = bound_socket("127.0.0.1", 0, false, &port);
	CHECK(fd >= 0, "a socket bound at 127.0.0.1");
	CHECK(served("127.0.0.1", port) == 0, "bound but not listening: not served (our own sockets at start)");
	CHECK(listen(fd, 16) == 0, "it listens");
	CHECK(served("127.0.0.1", port) == 1, "a listener at the same address and port: served");
	CHECK(served("127.0.0.2", port) == 0, "another address of the port: not served");
	CHECK(served("0.0.0.0", port) == 0, "a listener at one address does not cover the wildcard");
	CHECK(served("::1", port) == 0, "nor the IPv6 loopback");

	/* A connection on the port, then its TIME_WAIT, once the listener is gone: neither listens. */
	struct sockaddr_storage to = addr("127.0.0.1", port);
	int client = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(client >= 0 && connect(client, (struct sockaddr *)&to, addr_len(&to)) == 0, "a client connects");
	int conn = accept(fd, NULL, NULL);
	CHECK(conn >= 0, "the listener accepts it");
	close(fd);
	CHECK(served("127.0.0.1", port) == 0, "an established connection on the port: not served");
	close(conn); /* the side that closes first waits in TIME_WAIT on the port */
	char c;
	CHECK(read(client, &c, 1) == 0, "the client sees the close");
	close(client);
	CHECK(served("127.0.0.1", port) == 0, "a TIME_WAIT on the port: not served");
}

static void test_wildcards(void)
{
	uint16_t p4 = 0, p6 = 0, pm = 0;
	int any4 = bound_socket("0.0.0.0", 0, true, &p4);
	CHECK(any4 >= 0, "a listener at 0.0.0.0");
	CHECK(served("127.0.0.1", p4) == 1, "0.0.0.0 covers 127.0.0.1");
	CHECK(served("127.0.0.2", p4) == 1, "  ... and every IPv4 address");
	CHECK(served("::1", p4) == 0, "  ... but no IPv6 one");
	close(any4);
	CHECK(served("127.0.0.1", p4) == 0, "once it closes, nothing is served");

	int any6 = bound_socket("::", 0, true, &p6);
	CHECK(any6 >= 0, "a listener at ::");
	CHECK(served("::1", p6) == 1, ":: covers ::1");
	CHECK(served("127.0.0.1", p6) == 1, "  ... and IPv4 addresses");
	close(any6);

	/* IPV6_V6ONLY (a service that listens for IPv6 alone, e.g. bindv6only=1): taken for an IPv4
	 * listener, the terminator's start would hold its IPv4 listeners back for --warm-up-limit,
	 * refusing every IPv4 connection meanwhile. */
	int only6 = bound_socket_v6only("::", 0, true, true, &p6);
	CHECK(only6 >= 0, "an IPv6-only listener at ::");
	/* The port's IPv4 side is free for anyone to bind meanwhile: hold it, not listening. */
	uint16_t p4_held = 0;
	int v4_side = bound_socket("0.0.0.0", p6, false, &p4_held);
	CHECK(v4_side >= 0 && p4_held == p6, "  ... its port's IPv4 side held here, not listening");
	CHECK(served("::1", p6) == 1, "it covers ::1");
	CHECK(served("127.0.0.1", p6) == 0, "  ... but no IPv4 address");
	CHECK(served("0.0.0.0", p6) == 0, "  ... nor the IPv4 wildcard");
	close(v4_side);
	close(only6);

	int mapped = bound_socket("::ffff:127.0.0.1", 0, true, &pm);
	CHECK(mapped >= 0, "an IPv6 listener at ::ffff:127.0.0.1");
	CHECK(served("127.0.0.1", pm) == 1, "it covers 127.0.0.1");
	CHECK(served("127.0.0.2", pm) == 0, "  ... not 127.0.0.2");
	close(mapped);
}

int main(void)
{
	test_specific_address();
	test_wildcards();
	CHECK_DONE();
}
