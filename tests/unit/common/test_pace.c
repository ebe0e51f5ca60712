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

	tt_pace_start(&p, 0, 0);
	work_us(5 * MS);
	CHECK(tt_pace_rest_us(&p, 1000000) == 0, "no rate and no duty: never rests");

	tt_pace_start(&p, 1000, 0);
	int64_t rest = tt_pace_rest_us(&p, 100);
	CHECK(rest > 50 * MS && rest <= 100 * MS, "rate: 100 units at 1,000 a second take 100 ms, so the job rests the rest of them");
	tt_pace_start(&p, 1000, 0);
	work_us(30 * MS);
	CHECK(tt_pace_rest_us(&p, 10) == 0, "rate: a job behind its rate does not rest");

	int64_t t0 = tt_now_us();
	tt_pace_start(&p, 0, 25);
	work_us(20 * MS);
	int64_t busy = tt_now_us() - t0;
	rest = tt_pace_rest_us(&p, 1);
	CHECK(rest >= 60 * MS && rest <= 3 * busy + 3 * MS, "duty 25 %: a 20 ms step rests three times as long");
	tt_sleep_ms(rest / MS);
	rest = tt_pace_rest_us(&p, 2);
	CHECK(rest < 10 * MS, "duty: the next step is measured from the end of the rest, not from the last step's start");

	tt_pace_start(&p, 1000000, 50);
	work_us(20 * MS);
	rest = tt_pace_rest_us(&p, 1);
	CHECK(rest >= 20 * MS, "rate and duty: the longer rest of the two wins");
	return check_failures ? 1 : 0;
}
