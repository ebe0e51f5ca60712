/* backend: the backend side of a connection (its socket, receive and send state, buffers) and the
 * loop's pool of idle backend connections. A connection joins the pool only with nothing of its
 * own on the ring, and leaves it only if it is still quiet (no byte, no EOF). Between two exchanges
 * of one client it stays with that client instead (BACKEND_KEPT), its receive still armed, so the
 * next request costs no cancel, no re-armed receive and no trip through the pool. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "terminator.h"

static void backend_reset(struct backend *b)
{
	b->s.fd = -1;
	b->state = BACKEND_NONE;
	b->s.recv_armed = b->s.recv_paused = b->s.eof = false;
	b->s.in.off = b->s.in.len = 0;
}

void backend_pool_put(struct loop *l, int fd)
{
	struct backend_pool *p = &l->pool;
	if (p->n == BACKEND_POOL_MAX) {
		/* Full: the oldest goes. */
		ring_close(l->ring, p->fds[0]);
		memmove(p->fds, p->fds + 1, (BACKEND_POOL_MAX - 1) * sizeof p->fds[0]);
		memmove(p->since_ms, p->since_ms + 1, (BACKEND_POOL_MAX - 1) * sizeof p->since_ms[0]);
		p->n--;
	}
	p->fds[p->n] = fd;
	p->since_ms[p->n] = l->now_ms;
	p->n++;
}

/* An idle connection the backend wrote to or closed meanwhile answers nothing we asked. */
static bool backend_quiet(int fd)
{
	char peek;
	ssize_t n = recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT);
	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static int backend_pool_take(struct loop *l)
{
	struct backend_pool *p = &l->pool;
	while (p->n > 0) {
		int top = p->n - 1;
		if (l->now_ms - p->since_ms[top] > BACKEND_POOL_IDLE_MS) {
			/* The newest is too old, so are all the others. */
			for (int i = 0; i < p->n; i++)
				ring_close(l->ring, p->fds[i]);
			p->n = 0;
			return -1;
		}
		p->n--;
		if (backend_quiet(p->fds[top]))
			return p->fds[top];
		ring_close(l->ring, p->fds[top]);
	}
	return -1;
}

void backend_pool_free(struct backend_pool *p)
{
	for (int i = 0; i < p->n; i++)
		close(p->fds[i]);
	p->n = 0;
}

/* Nothing of an exchange is left on it: nothing sending, queued or unread. Only such a connection
 * may serve another exchange, kept or pooled. */
static bool backend_drained(const struct backend *b)
{
	return !b->s.send_busy && buf_size(&b->s.out) == 0 && buf_size(&b->s.in) == 0;
}

bool backend_keep(struct backend *b)
{
	if (b->state != BACKEND_OPEN || !b->s.recv_armed || b->s.recv_paused || !backend_drained(b))
		return false;
	b->state = BACKEND_KEPT;
	return true;
}

bool backend_take_kept(struct loop *l, struct backend *b, bool may_reuse)
{
	if (b->state != BACKEND_KEPT)
		return false;
	if (may_reuse && !b->fresh && backend_quiet(b->s.fd)) {
		b->state = BACKEND_OPEN;
		b->reused = true;
		return true;
	}
	backend_close(l, b);
	return false;
}

enum backend_open backend_open(struct loop *l, struct backend *b, void *owner, bool may_reuse)
{
	const struct term_config *cfg = l->cfg;
	int pooled = may_reuse && !b->fresh ? backend_pool_take(l) : -1;
	b->fresh = false;
	if (pooled >= 0) {
		b->s.fd = pooled;
		b->state = BACKEND_OPEN;
		b->reused = true;
		return BACKEND_OPENED;
	}
	b->reused = false;
	int fd = socket(cfg->backend_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_ERROR, "backend_socket_failed", "error=%s", tt_log_quote(q, sizeof q, strerror(errno)));
		return BACKEND_FAILED;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	b->s.fd = fd;
	b->state = BACKEND_CONNECTING;
	b->s.ops++;
	ring_connect(l->ring, fd, (const struct sockaddr *)&cfg->backend_addr, cfg->backend_len,
		     loop_token(owner, OP_BACKEND_CONNECT));
	return BACKEND_PENDING;
}

void backend_arm_recv(struct loop *l, struct backend *b, void *owner)
{
	if (b->state != BACKEND_OPEN || b->s.recv_armed || b->s.recv_paused)
		return;
	b->s.recv_armed = true;
	b->s.ops++;
	ring_recv_multishot(l->ring, b->s.fd, loop_token(owner, OP_BACKEND_RECV));
}

void backend_pause(struct loop *l, struct backend *b, void *owner)
{
	if (b->s.recv_paused)
		return;
	b->s.recv_paused = true;
	if (b->s.recv_armed)
		ring_cancel(l->ring, loop_token(owner, OP_BACKEND_RECV));
}

void backend_resume(struct loop *l, struct backend *b, void *owner)
{
	if (!b->s.recv_paused)
		return;
	b->s.recv_paused = false;
	backend_arm_recv(l, b, owner);
}

static void backend_send_flight(struct loop *l, struct backend *b, void *owner)
{
	b->s.send_busy = true;
	b->s.ops++;
	ring_send(l->ring, b->s.fd, buf_head(&b->s.flight), buf_size(&b->s.flight), loop_token(owner, OP_BACKEND_SEND));
}

/* A send goes out from the flight buffer while the other one queues. */
void backend_flush(struct loop *l, struct backend *b, void *owner)
{
	if (b->state != BACKEND_OPEN || b->s.send_busy || buf_size(&b->s.out) == 0)
		return;
	struct buf t = b->s.out;
	b->s.out = b->s.flight;
	b->s.flight = t;
	backend_send_flight(l, b, owner);
}

void backend_close(struct loop *l, struct backend *b)
{
	if (b->s.fd < 0)
		return;
	/* What was queued was meant for this connection's exchange; a returning or kept connection's
	 * exchange is over, and what is queued is the owner's next request. */
	if (b->state != BACKEND_RETURNING && b->state != BACKEND_KEPT)
		b->s.out.off = b->s.out.len = 0;
	ring_cancel_fd(l->ring, b->s.fd);
	ring_close(l->ring, b->s.fd);
	backend_reset(b);
}

void backend_release(struct loop *l, struct backend *b, void *owner, bool reusable)
{
	if (!reusable || (b->state != BACKEND_OPEN && b->state != BACKEND_KEPT) || !backend_drained(b)) {
		backend_close(l, b);
		return;
	}
	/* The receive armed for this owner ends before the socket can have another. */
	b->state = BACKEND_RETURNING;
	if (b->s.recv_armed)
		ring_cancel(l->ring, loop_token(owner, OP_BACKEND_RECV));
	backend_settle(l, b);
}

void backend_settle(struct loop *l, struct backend *b)
{
	if (b->state != BACKEND_RETURNING || b->s.ops)
		return;
	backend_pool_put(l, b->s.fd);
	/* out may already hold the owner's next request, for whichever connection it gets. */
	backend_reset(b);
}

bool backend_completed(struct loop *l, struct backend *b, void *owner, enum loop_op op, const struct ring_event *ev)
{
	bool stale = b->s.fd < 0;
	switch (op) {
	case OP_BACKEND_CONNECT:
		b->s.ops--;
		if (!stale && ev->res >= 0)
			b->state = BACKEND_OPEN;
		break;
	case OP_BACKEND_SEND:
		b->s.ops--;
		b->s.send_busy = false;
		if (stale) {
			b->s.flight.off = b->s.flight.len = 0;
		} else if (ev->res > 0) {
			buf_consume(&b->s.flight, (size_t)ev->res);
			if (buf_size(&b->s.flight))
				backend_send_flight(l, b, owner);
		}
		break;
	case OP_BACKEND_RECV:
		if (!ev->more) {
			b->s.ops--;
			if (!stale)
				b->s.recv_armed = false;
		}
		/* A returning connection that speaks or closes is no one's to reuse; a kept one has
		 * nothing to say between exchanges, and without its receive it is no longer watched. */
		if (!stale && ((b->state == BACKEND_RETURNING && ev->res >= 0) || b->state == BACKEND_KEPT))
			backend_close(l, b);
		break;
	default:
		break;
	}
	return stale;
}

void backend_destroy(struct backend *b)
{
	if (b->s.fd >= 0)
		close(b->s.fd);
	b->s.fd = -1;
	buf_release(&b->s.in);
	buf_release(&b->s.out);
	buf_release(&b->s.flight);
}
