/* bench/backend: a fixed-response HTTP/1.1 origin for benchmarks (epoll, keep-alive): a 43-byte GIF
 * at /o/..., a 302 at /c/..., 404 elsewhere. It must never be the bottleneck, so it does nothing else. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQ_MAX 16384

static const char gif[43] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00\x21\xf9\x04\x01\x00\x00\x00"
			    "\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

struct conn {
	int fd;
	size_t in_len;
	size_t out_len, out_off;
	bool close_after;
	char in[REQ_MAX];
	char out[8192];
};

struct worker {
	int listen_fd;
	int ep;
};

static int listen_on(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
		fprintf(stderr, "backend: --listen wants HOST:PORT, got %s\n", spec);
		return -1;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = 0;
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
	if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res) != 0) {
		fprintf(stderr, "backend: cannot resolve %s\n", spec);
		return -1;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		fprintf(stderr, "backend: cannot listen on %s: %s\n", spec, strerror(errno));
		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void conn_free(struct worker *w, struct conn *c)
{
	epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static bool header_has(const char *head, size_t len, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	for (const char *p = memchr(head, '\n', len); p && p < head + len;
	     p = memchr(p, '\n', (size_t)(head + len - p))) {
		p++;
		if ((size_t)(head + len - p) > nl + vl && !strncasecmp(p, name, nl)) {
			const char *v = p + nl;
			while (*v == ' ' || *v == '\t')
				v++;
			if (!strncasecmp(v, value, vl))
				return true;
		}
	}
	return false;
}

/* Appends the response for one request head; false when the output buffer is full. */
static bool respond(struct conn *c, const char *head, size_t len)
{
	const char *sp = memchr(head, ' ', len);
	const char *path = sp ? sp + 1 : "";
	bool http10 =
	    len > 16 &&
	    memmem(head, memchr(head, '\n', len) ? (size_t)((const char *)memchr(head, '\n', len) - head) : len,
		   "HTTP/1.0", 8) != NULL;
	if (header_has(head, len, "connection:", "close") ||
	    (http10 && !header_has(head, len, "connection:", "keep-alive")))
		c->close_after = true;
	const char *conn = c->close_after ? "close" : "keep-alive";
	char *o = c->out + c->out_len;
	size_t room = sizeof(c->out) - c->out_len;
	int n;
	if (!strncmp(path, "/o/", 3)) {
		n = snprintf(o, room,
			     "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: 43\r\n"
			     "Cache-Control: no-store\r\nConnection: %s\r\n\r\n",
			     conn);
		if (n < 0 || (size_t)n + sizeof(gif) >= room)
			return false;
		memcpy(o + n, gif, sizeof(gif));
		n += (int)sizeof(gif);
	} else if (!strncmp(path, "/c/", 3)) {
		n = snprintf(o, room,
			     "HTTP/1.1 302 Found\r\nLocation: https://www.example.com/landing\r\nContent-Length: 0\r\n"
			     "Connection: %s\r\n\r\n",
			     conn);
	} else {
		n = snprintf(o, room, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: %s\r\n\r\n", conn);
	}
	if (n < 0 || (size_t)n >= room)
		return false;
	c->out_len += (size_t)n;
	return true;
}

static int flush_out(struct worker *w, struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN) {
				struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
				epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e);
				return 0;
			}
			return -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &e);
	return c->close_after ? -1 : 0;
}

static void conn_event(struct worker *w, struct conn *c, uint32_t ev)
{
	if (ev & EPOLLOUT) {
		if (flush_out(w, c) < 0)
			goto done;
		if (c->out_len)
			return;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (n == 0)
			goto done;
		if (n < 0) {
			if (errno == EAGAIN)
				break;
			goto done;
		}
		c->in_len += (size_t)n;
		size_t off = 0;
		for (;;) {
			const char *end = memmem(c->in + off, c->in_len - off, "\r\n\r\n", 4);
			if (!end)
				break;
			size_t hl = (size_t)(end - (c->in + off)) + 4;
			if (!respond(c, c->in + off, hl))
				goto done;
			off += hl;
			if (c->close_after)
				break;
		}
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
		if (c->in_len == sizeof(c->in))
			goto done;
		if (c->out_len && flush_out(w, c) < 0)
			goto done;
		if (c->out_len)
			return;
	}
	return;
done:
	conn_free(w, c);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(w->ep, evs, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "backend: epoll_wait: %s\n", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr) {
				conn_event(w, evs[i].data.ptr, evs[i].events);
				continue;
			}
			for (;;) {
				int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					break;
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				struct conn *c = malloc(sizeof(*c));
				if (!c) {
					close(fd);
					continue;
				}
				c->fd = fd;
				c->in_len = c->out_len = c->out_off = 0;
				c->close_after = false;
				struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
				if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
					close(fd);
					free(c);
				}
			}
		}
	}
}

int main(int argc, char **argv)
{
	const char *listen_spec = NULL;
	int threads = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			listen_spec = argv[++i];
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: backend --listen HOST:PORT [--threads N]\n");
			return 2;
		}
	}
	if (!listen_spec || threads < 1) {
		fprintf(stderr, "usage: backend --listen HOST:PORT [--threads N]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct worker *ws = calloc((size_t)threads, sizeof(*ws));
	if (!ws)
		return 1;
	for (int i = 0; i < threads; i++) {
		/* One listening socket per thread with SO_REUSEPORT: the kernel spreads connections. */
		ws[i].listen_fd = listen_on(listen_spec);
		ws[i].ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
		if (ws[i].listen_fd < 0 || ws[i].ep < 0 || epoll_ctl(ws[i].ep, EPOLL_CTL_ADD, ws[i].listen_fd, &e) < 0)
			return 1;
	}
	fprintf(stderr, "backend: listening on %s with %d thread(s)\n", listen_spec, threads);
	for (int i = 1; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker_main, &ws[i]) != 0)
			return 1;
	}
	worker_main(&ws[0]);
	return 1;
}
