/* listeners: is another process listening where connections to an address would go? The
 * answer decides whether a start is a restart that warms up first (main.c). The kernel is asked
 * through NETLINK_SOCK_DIAG for listening TCP sockets only: it then walks its listening hash
 * alone, so the cost does not grow with the connections (and TIME_WAIT sockets) of a busy edge
 * host, as reading /proc/net/tcp did, on the core the outgoing process serves from. */
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "terminator.h"

/* A start never waits longer than this for each part of the kernel's answer. */
#define DIAG_TIMEOUT_S 1
/* The kernel sizes a dump's datagrams to the reader's buffer, up to 32 KiB: this one always fits. */
#define DIAG_BUF_SIZE 32768

/* What a listener must cover: sa's port, and its address as IPv6 words (see address_words). */
struct target {
	uint16_t port_be;
	uint32_t ours[4];
	bool v4;
};

/* sa's address as IPv6 (an IPv4 one mapped, ::ffff:a.b.c.d), in the kernel's 32-bit words. */
static void address_words(const struct sockaddr_storage *sa, uint32_t w[4])
{
	if (sa->ss_family == AF_INET6) {
		memcpy(w, &((const struct sockaddr_in6 *)sa)->sin6_addr, 4 * sizeof *w);
		return;
	}
	struct in6_addr mapped = {.s6_addr = {[10] = 0xff, [11] = 0xff}};
	memcpy(&mapped.s6_addr[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
	memcpy(w, &mapped, 4 * sizeof *w);
}

/* Whether an IPv6 listener is IPV6_V6ONLY: the kernel adds INET_DIAG_SKV6ONLY to every IPv6
 * listener's message unasked; a message without it says nothing, and counts as both families. */
static bool v6only(const struct nlmsghdr *h)
{
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	/* The attributes follow the message, aligned: NLMSG_SPACE counts the padding. */
	int len = (int)h->nlmsg_len - (int)NLMSG_SPACE(sizeof *m);
	for (const struct rtattr *a = (const struct rtattr *)((const char *)m + NLMSG_ALIGN(sizeof *m)); RTA_OK(a, len);
	     a = RTA_NEXT(a, len))
		if (a->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(a) >= 1)
			return *(const uint8_t *)RTA_DATA(a) != 0;
	return false;
}

/* A listener at our address, at :: (both families, unless IPv6-only) or, for an IPv4 address,
 * at 0.0.0.0 takes our connections; one at another address of the port (another service on
 * another IP) none. */
static bool covers(const struct target *t, const struct nlmsghdr *h)
{
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	uint32_t theirs[4], any6[4], any4[4];
	if (m->id.idiag_sport != t->port_be)
		return false;
	if (m->idiag_family == AF_INET) {
		struct sockaddr_storage v4 = {.ss_family = AF_INET};
		memcpy(&((struct sockaddr_in *)&v4)->sin_addr, &m->id.idiag_src[0], 4);
		address_words(&v4, theirs);
	} else if (m->idiag_family == AF_INET6) {
		memcpy(theirs, m->id.idiag_src, sizeof theirs);
	} else {
		return false;
	}
	address_words(&(struct sockaddr_storage){.ss_family = AF_INET6}, any6);
	address_words(&(struct sockaddr_storage){.ss_family = AF_INET}, any4);
	return memcmp(theirs, t->ours, sizeof theirs) == 0 ||
	       (memcmp(theirs, any6, sizeof any6) == 0 && !(t->v4 && v6only(h))) ||
	       (t->v4 && memcmp(theirs, any4, sizeof any4) == 0);
}

/* Asks for the listening TCP sockets of family on t's port (the kernel filters listeners by
 * source port; covers checks it again). */
static int request(int fd, uint8_t family, uint32_t seq, const struct target *t, struct tt_err *err)
{
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req = {
	    .h = {.nlmsg_len = sizeof req,
		  .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		  .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
		  .nlmsg_seq = seq},
	    .r = {.sdiag_family = family,
		  .sdiag_protocol = IPPROTO_TCP,
		  .idiag_states = 1U << TCP_LISTEN,
		  .id = {.idiag_sport = t->port_be}},
	};
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	ssize_t n;
	do
		n = sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return tt_fail(err, "send: %s", strerror(errno));
	if ((size_t)n != sizeof req)
		return tt_fail(err, "send: %zd of %zu bytes", n, sizeof req);
	return 0;
}

/* The end of a dump: it carries the dump's status, negative on failure. */
static int dump_done(const struct nlmsghdr *h, struct tt_err *err)
{
	int status = 0;
	if (h->nlmsg_len >= NLMSG_LENGTH(sizeof status))
		memcpy(&status, NLMSG_DATA(h), sizeof status);
	if (status < 0)
		return tt_fail(err, "dump: %s", strerror(-status));
	if (h->nlmsg_flags & NLM_F_DUMP_INTR)
		return tt_fail(err, "dump interrupted");
	return 0;
}

static int dump_error(const struct nlmsghdr *h, struct tt_err *err)
{
	const struct nlmsgerr *e = NLMSG_DATA(h);
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof *e))
		return tt_fail(err, "short error message");
	return tt_fail(err, "%s", e->error ? strerror(-e->error) : "acknowledged instead of answered");
}

/* One received datagram: 1 when it ended the dump, 0 when more follow, -1 on error. */
static int read_datagram(char *buf, int len, uint32_t seq, const struct target *t, bool *served, struct tt_err *err)
{
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
		if (h->nlmsg_seq != seq)
			continue;
		if (h->nlmsg_type == NLMSG_DONE)
			return dump_done(h, err) < 0 ? -1 : 1;
		if (h->nlmsg_type == NLMSG_ERROR)
			return dump_error(h, err);
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
			return tt_fail(err, "short socket message (%u bytes)", h->nlmsg_len);
		if (covers(t, h)) {
			*served = true;
			return 1;
		}
	}
	if (len != 0)
		return tt_fail(err, "malformed answer (%d bytes left over)", len);
	return 0;
}

/* Reads the answer to request seq until its end, or until a listener covers t. */
static int read_dump(int fd, uint32_t seq, const struct target *t, bool *served, struct tt_err *err)
{
	_Alignas(struct nlmsghdr) char buf[DIAG_BUF_SIZE];
	for (;;) {
		struct sockaddr_nl from;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
		struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n = recvmsg(fd, &msg, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return tt_fail(err, "no answer within %d s", DIAG_TIMEOUT_S);
		if (n < 0)
			return tt_fail(err, "receive: %s", strerror(errno));
		if (msg.msg_flags & MSG_TRUNC)
			return tt_fail(err, "answer truncated");
		if (msg.msg_namelen < sizeof from || from.nl_pid != 0)
			continue; /* not from the kernel */
		int rc = read_datagram(buf, (int)n, seq, t, served, err);
		if (rc != 0)
			return rc < 0 ? -1 : 0;
	}
}

int listeners_address_served(const struct sockaddr_storage *sa, bool *served, struct tt_err *err)
{
	struct target t = {.v4 = sa->ss_family == AF_INET};
	t.port_be = t.v4 ? ((const struct sockaddr_in *)sa)->sin_port : ((const struct sockaddr_in6 *)sa)->sin6_port;
	address_words(sa, t.ours);
	*served = false;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return tt_fail(err, "sock_diag socket: %s", strerror(errno));
	struct timeval timeout = {.tv_sec = DIAG_TIMEOUT_S};
	int rc = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0)
		rc = tt_fail(err, "sock_diag SO_RCVTIMEO: %s", strerror(errno));
	static const uint8_t families[] = {AF_INET, AF_INET6};
	for (uint32_t i = 0; rc == 0 && !*served && i < sizeof families; i++) {
		rc = request(fd, families[i], i + 1, &t, err);
		if (rc == 0)
			rc = read_dump(fd, i + 1, &t, served, err);
		if (rc < 0)
			tt_wrap(err, "sock_diag %s", families[i] == AF_INET ? "IPv4" : "IPv6");
	}
	close(fd);
	if (rc < 0)
		*served = false;
	return rc;
}
