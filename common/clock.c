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

void tt_pace_start(struct tt_pace *p, uint64_t per_sec, unsigned duty_pct)
{
	*p = (struct tt_pace){.start_us = tt_now_us(), .per_sec = per_sec, .duty_pct = duty_pct};
	p->step_us = p->start_us;
}

int64_t tt_pace_rest_us(struct tt_pace *p, uint64_t done)
{
	int64_t now = tt_now_us(), rest = 0;
	if (p->per_sec > 0) {
		int64_t due = p->start_us + (int64_t)(done * 1000000 / p->per_sec);
		rest = due > now ? due - now : 0;
	}
	if (p->duty_pct > 0 && p->duty_pct < 100) {
		int64_t busy = now - p->step_us, share = busy * (100 - (int64_t)p->duty_pct) / (int64_t)p->duty_pct;
		if (share > rest)
			rest = share;
	}
	p->step_us = now + rest;
	return rest;
}
