/* ring: the one place that talks to io_uring. A ring per thread, a provided-buffer ring for every
 * receive, and thin wrappers that queue one operation each. */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "terminator.h"

#define RING_BGID 0

struct ring {
	struct io_uring uring;
	const char *mode;
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	uint8_t *bufs;
	unsigned nbufs, buf_size, mask;
	unsigned recycled; /* buffers added since the last tail publish */
};

/* SINGLE_ISSUER + DEFER_TASKRUN runs completions only when this thread asks for them, so no
 * interrupts of the loop; older kernels get the next best. */
static int ring_setup(struct ring *r, unsigned entries)
{
	static const struct {
		unsigned flags;
		const char *name;
	} modes[] = {
	    {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL, "defer_taskrun"},
	    {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "coop_taskrun"},
	    {0, "plain"},
	};
	int rc = -EINVAL;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		p.flags = modes[i].flags;
		p.cq_entries = entries * 4;
		p.flags |= IORING_SETUP_CQSIZE;
		rc = io_uring_queue_init_params(entries, &r->uring, &p);
		if (rc == 0) {
			r->mode = modes[i].name;
			return 0;
		}
	}
	return rc;
}

/* liburing 2.3 has no io_uring_setup_buf_ring: map the shared ring ourselves and register it. */
static int ring_setup_bufs(struct ring *r, struct tt_err *err)
{
	r->br_bytes = (size_t)r->nbufs * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, r->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return tt_fail(err, "mmap buffer ring: %s", strerror(errno));
	r->br = mem;
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.ring_addr = (uint64_t)(uintptr_t)mem;
	reg.ring_entries = r->nbufs;
	reg.bgid = RING_BGID;
	int rc = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (rc < 0)
		return tt_fail(err, "io_uring_register_buf_ring: %s", strerror(-rc));
	r->bufs = malloc((size_t)r->nbufs * r->buf_size);
	if (!r->bufs)
		return tt_fail(err, "out of memory for %u receive buffers", r->nbufs);
	io_uring_buf_ring_init(r->br);
	r->mask = (unsigned)io_uring_buf_ring_mask(r->nbufs);
	for (unsigned i = 0; i < r->nbufs; i++)
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * r->buf_size, r->buf_size, (unsigned short)i,
				      (int)r->mask, (int)i);
	io_uring_buf_ring_advance(r->br, (int)r->nbufs);
	return 0;
}

int ring_new(unsigned entries, unsigned nbufs, unsigned buf_size, struct ring **out, struct tt_err *err)
{
	if (nbufs == 0 || (nbufs & (nbufs - 1)) || nbufs > 32768)
		return tt_fail(err, "receive buffer count %u must be a power of two up to 32768", nbufs);
	struct ring *r = calloc(1, sizeof *r);
	if (!r)
		return tt_fail(err, "out of memory");
	r->nbufs = nbufs;
	r->buf_size = buf_size;
	int rc = ring_setup(r, entries);
	if (rc < 0) {
		free(r);
		return tt_fail(err, "io_uring_queue_init: %s", strerror(-rc));
	}
	if (ring_setup_bufs(r, err) < 0) {
		ring_free(r);
		return -1;
	}
	*out = r;
	return 0;
}

void ring_free(struct ring *r)
{
	if (!r)
		return;
	io_uring_queue_exit(&r->uring);
	if (r->br)
		munmap(r->br, r->br_bytes);
	free(r->bufs);
	free(r);
}

const char *ring_mode(const struct ring *r)
{
	return r->mode;
}

/* A full submission queue is flushed to the kernel rather than failing the caller. */
static struct io_uring_sqe *ring_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
	while (!sqe) {
		io_uring_submit(&r->uring);
		sqe = io_uring_get_sqe(&r->uring);
	}
	return sqe;
}

int ring_accept(struct ring *r, int fd)
{
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	return cfd >= 0 ? cfd : -errno;
}

void ring_poll_multishot(struct ring *r, int fd, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, token);
}

void ring_recv_multishot(struct ring *r, int fd, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RING_BGID;
	io_uring_sqe_set_data64(sqe, token);
}

void ring_send(struct ring *r, int fd, const void *buf, size_t len, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, token);
}

void ring_connect(struct ring *r, int fd, const struct sockaddr *sa, socklen_t salen, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_connect(sqe, fd, sa, salen);
	io_uring_sqe_set_data64(sqe, token);
}

void ring_poll(struct ring *r, int fd, bool want_write, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_poll_add(sqe, fd, POLLIN | (want_write ? POLLOUT : 0));
	io_uring_sqe_set_data64(sqe, token);
}

void ring_poll_remove(struct ring *r, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_poll_remove(sqe, token);
	io_uring_sqe_set_data64(sqe, 0);
}

void ring_cancel_fd(struct ring *r, int fd)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, 0);
}

void ring_close(struct ring *r, int fd)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data64(sqe, 0);
}

int ring_wait(struct ring *r, int64_t timeout_ms, struct ring_event *events, unsigned max, unsigned *n,
	      struct tt_err *err)
{
	if (r->recycled) {
		io_uring_buf_ring_advance(r->br, (int)r->recycled);
		r->recycled = 0;
	}
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000};
	int rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		return tt_fail(err, "io_uring wait: %s", strerror(-rc));
	unsigned seen = 0, count = 0, head;
	io_uring_for_each_cqe(&r->uring, head, cqe)
	{
		if (count == max)
			break;
		seen++;
		if (cqe->user_data == 0)
			continue;
		struct ring_event *ev = &events[count++];
		ev->token = cqe->user_data;
		ev->res = cqe->res;
		ev->more = cqe->flags & IORING_CQE_F_MORE;
		ev->buf = (cqe->flags & IORING_CQE_F_BUFFER) ? (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) : -1;
	}
	io_uring_cq_advance(&r->uring, seen);
	*n = count;
	return 0;
}

const uint8_t *ring_buf(const struct ring *r, int buf)
{
	return r->bufs + (size_t)buf * r->buf_size;
}

void ring_buf_recycle(struct ring *r, int buf)
{
	io_uring_buf_ring_add(r->br, r->bufs + (size_t)buf * r->buf_size, r->buf_size, (unsigned short)buf,
			      (int)r->mask, (int)r->recycled);
	r->recycled++;
}

void ring_cancel(struct ring *r, uint64_t token)
{
	struct io_uring_sqe *sqe = ring_sqe(r);
	io_uring_prep_cancel64(sqe, token, 0);
	io_uring_sqe_set_data64(sqe, 0);
}
