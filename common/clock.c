/* clock: monotonic time for deadlines and the sleeps of retry backoff. */
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
