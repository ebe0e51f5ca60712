/* ring.c and buf.c against the real kernel: multishot receive into provided buffers, sends,
 * cancellation, a poll, and the growable buffer's front consumption. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "terminator.h"

static int wait_for(struct ring *r, struct ring_event *evs, unsigned max, unsigned *n)
{
	struct tt_err err;
	for (int i = 0; i < 20; i++) {
		if (ring_wait(r, 100, evs, max, n, &err) < 0)
			return -1;
		if (*n)
			return 0;
	}
	return -1;
}

static void test_buf(void)
{
	struct buf b = {0};
	CHECK(buf_append(&b, "hello ", 6) == 0 && buf_append(&b, "world", 5) == 0, "buf: appends");
	CHECK(buf_size(&b) == 11 && memcmp(buf_head(&b), "hello world", 11) == 0, "buf: holds the bytes in order");
	buf_consume(&b, 6);
	CHECK(buf_size(&b) == 5 && memcmp(buf_head(&b), "world", 5) == 0, "buf: consumes from the front");
	size_t cap = b.cap;
	CHECK(buf_reserve(&b, cap - 5) == 0 && b.cap == cap && b.off == 0, "buf: reuses consumed room before growing");
	char big[5000];
	memset(big, 'x', sizeof big);
	CHECK(buf_append(&b, big, sizeof big) == 0 && buf_size(&b) == 5005 && b.cap >= 5005, "buf: grows");
	buf_consume(&b, 5005);
	CHECK(buf_size(&b) == 0 && b.off == 0 && b.len == 0, "buf: empty after consuming all");
	buf_release(&b);
	CHECK(b.data == NULL && b.cap == 0, "buf: release frees");
}

int main(void)
{
	test_buf();
	struct ring *r;
	struct tt_err err;
	CHECK(ring_new(64, 8, 4096, &r, &err) == 0, "ring: created");
	CHECK(ring_new(64, 6, 4096, &r, &err) < 0, "ring: buffer count must be a power of two");
	printf("ring mode: %s\n", ring_mode(r));
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	struct ring_event evs[16];
	unsigned n = 0;

	ring_recv_multishot(r, sv[0], 0x10 | OP_CLIENT_RECV);
	write(sv[1], "first", 5);
	CHECK(wait_for(r, evs, 16, &n) == 0 && n == 1, "recv: one completion");
	CHECK(evs[0].token == (0x10 | OP_CLIENT_RECV) && evs[0].res == 5 && evs[0].more && evs[0].buf >= 0,
	      "recv: token, length, still armed, a provided buffer");
	CHECK(memcmp(ring_buf(r, evs[0].buf), "first", 5) == 0, "recv: the bytes are in the provided buffer");
	ring_buf_recycle(r, evs[0].buf);

	/* More receives than buffers, recycling as we go: the ring keeps serving. */
	int ok = 0;
	for (int i = 0; i < 32; i++) {
		write(sv[1], "x", 1);
		if (wait_for(r, evs, 16, &n) == 0 && n == 1 && evs[0].res == 1 && evs[0].buf >= 0)
			ok++;
		if (n && evs[0].buf >= 0)
			ring_buf_recycle(r, evs[0].buf);
	}
	CHECK(ok == 32, "recv: 32 receives through 8 recycled buffers");

	ring_send(r, sv[0], "reply", 5, 0x20 | OP_CLIENT_SEND);
	CHECK(wait_for(r, evs, 16, &n) == 0 && n == 1 && evs[0].res == 5 && evs[0].token == (0x20 | OP_CLIENT_SEND),
	      "send: completes with its length");
	char got[16] = {0};
	CHECK(read(sv[1], got, sizeof got) == 5 && memcmp(got, "reply", 5) == 0, "send: the peer reads the bytes");

	ring_cancel(r, 0x10 | OP_CLIENT_RECV);
	CHECK(wait_for(r, evs, 16, &n) == 0 && n == 1 && evs[0].res == -ECANCELED && !evs[0].more,
	      "cancel: the multishot receive ends with -ECANCELED");

	ring_poll(r, sv[0], false, 0x30 | OP_DB_POLL);
	write(sv[1], "p", 1);
	CHECK(wait_for(r, evs, 16, &n) == 0 && n == 1 && evs[0].token == (0x30 | OP_DB_POLL) && evs[0].res > 0,
	      "poll: readable socket reported");
	ring_poll(r, sv[1], false, 0x40 | OP_DB_POLL);
	ring_poll_remove(r, 0x40 | OP_DB_POLL);
	CHECK(wait_for(r, evs, 16, &n) == 0 && n == 1 && evs[0].res == -ECANCELED, "poll: removed poll ends cancelled");

	ring_recv_multishot(r, sv[0], 0x50 | OP_BACKEND_RECV);
	ring_cancel_fd(r, sv[0]);
	CHECK(wait_for(r, evs, 16, &n) == 0 && n >= 1 && evs[n - 1].res == -ECANCELED, "cancel_fd: cancels by socket");
	close(sv[1]);
	ring_close(r, sv[0]);
	unsigned none = 1;
	CHECK(ring_wait(r, 50, evs, 16, &none, &err) == 0 && none == 0, "close: runs without a completion to handle");
	CHECK(ring_wait(r, 10, evs, 16, &none, &err) == 0 && none == 0, "wait: times out with nothing");
	ring_free(r);
	CHECK_DONE();
}
