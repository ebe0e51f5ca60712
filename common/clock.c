/* clock: monotonic time for deadlines, the sleeps of retry backoff, and the pace of background work. */
#include <errno.h>
#include <time.h>

#include "common.h"

int64_t tt_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tt_now_ms(void)
{
	return tt_now_us() / 1000;
}

void tt_sleep_ms(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void tt_pace_start(struct tt_pace *p, uint64_t per_sec)
{
	*p = (struct tt_pace){.start_us = tt_now_us(), .per_sec = per_sec};
}

int64_t tt_pace_rest_us(const struct tt_pace *p, uint64_t done)
{
	if (p->per_sec == 0)
		return 0;
	int64_t due = p->start_us + (int64_t)(done * 1000000 / p->per_sec), now = tt_now_us();
	return due > now ? due - now : 0;
}
