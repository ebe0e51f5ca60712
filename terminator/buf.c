/* buf: a growable byte buffer consumed from the front, one per direction of a connection, so
 * requests reuse memory instead of allocating. */
#include <stdlib.h>
#include <string.h>

#include "terminator.h"

/* A first allocation that holds a typical request head or response head without growing. */
#define BUF_FIRST_CAP 1024

int buf_reserve(struct buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	/* Moving live bytes to the front is cheaper than growing when most was consumed. */
	if (b->off && b->cap - buf_size(b) >= more) {
		memmove(b->data, b->data + b->off, buf_size(b));
		b->len -= b->off;
		b->off = 0;
		return 0;
	}
	size_t need = buf_size(b) + more, cap = b->cap ? b->cap : BUF_FIRST_CAP;
	while (cap < need)
		cap *= 2;
	uint8_t *p = malloc(cap);
	if (!p)
		return -1;
	if (b->data) {
		memcpy(p, b->data + b->off, buf_size(b));
		free(b->data);
	}
	b->len -= b->off;
	b->off = 0;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	b->off += n;
	if (b->off == b->len)
		b->off = b->len = 0;
}

void buf_release(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof *b);
}
