/* Tests common/clock.c's tt_pace: how long a background job rests between its steps. */
#include "check.h"
#include "common.h"

#define MS 1000

/* Works (spins) for us microseconds: a step of a background job. */
static void work_us(int64_t us)
{
	int64_t until = tt_now_us() + us;
	while (tt_now_us() < until)
		;
}

int main(void)
{
	struct tt_pace p;

	tt_pace_start(&p, 0);
	work_us(5 * MS);
	CHECK(tt_pace_rest_us(&p, 1000000) == 0, "no rate: never rests");

	tt_pace_start(&p, 1000);
	int64_t rest = tt_pace_rest_us(&p, 100);
	CHECK(rest > 50 * MS && rest <= 100 * MS,
	      "100 units at 1,000 a second take 100 ms: a job that did them at once rests the rest of them");
	tt_sleep_ms(rest / MS);
	CHECK(tt_pace_rest_us(&p, 100) < 5 * MS, "after its rest the job is on time");
	CHECK(tt_pace_rest_us(&p, 200) > 50 * MS, "the pace counts from the start: 100 more units, 100 ms more");

	tt_pace_start(&p, 1000);
	work_us(30 * MS);
	CHECK(tt_pace_rest_us(&p, 10) == 0, "a job behind its rate does not rest");
	CHECK_DONE();
}
