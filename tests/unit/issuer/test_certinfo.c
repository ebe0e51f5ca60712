/* certinfo.c and name_input.c: renewal points relative to the lifetime, name coverage, name input. */
#include <string.h>

#include "check.h"
#include "issuer.h"

int main(void)
{
	const time_t nb = 1800000000;
	bool ok = true;
	for (int i = 0; i < 200; i++) {
		time_t at = certinfo_renew_at(nb, nb + 90 * 86400);
		ok = ok && at >= nb + 60 * 86400 && at <= nb + 70 * 86400;
	}
	CHECK(ok, "90-day certificate: renewal at a random point early in the last third");
	ok = true;
	for (int i = 0; i < 200; i++) {
		time_t at = certinfo_renew_at(nb, nb + 45 * 86400);
		ok = ok && at >= nb + 30 * 86400 && at <= nb + 35 * 86400;
	}
	CHECK(ok, "45-day certificate: the same rule, relative to the lifetime");
	ok = true;
	time_t first = certinfo_renew_at(nb, nb + 160 * 3600), spread = 0;
	for (int i = 0; i < 200; i++) {
		time_t at = certinfo_renew_at(nb, nb + 160 * 3600);
		ok = ok && at >= nb + 80 * 3600 && at <= nb + 80 * 3600 + 80 * 3600 / 3;
		if (at != first)
			spread = 1;
	}
	CHECK(ok, "160-hour certificate: renewal in the last half (lifetimes under 10 days)");
	CHECK(spread, "renewal points are spread, not one instant");

	char *sans[] = {"a.example", "*.wild.example"};
	struct certinfo ci = {.sans = sans, .nsans = 2};
	CHECK(certinfo_covers(&ci, "a.example"), "exact SAN covers");
	CHECK(certinfo_covers(&ci, "x.wild.example"), "wildcard covers one label");
	CHECK(!certinfo_covers(&ci, "y.x.wild.example"), "wildcard does not cover two labels");
	CHECK(!certinfo_covers(&ci, "wild.example"), "wildcard does not cover its parent");
	CHECK(!certinfo_covers(&ci, "b.example"), "other name not covered");

	struct tt_err err = {{0}};
	char out[TT_NAME_MAX];
	CHECK(name_to_ascii("Straße.Example.", out, &err) == 0 && strcmp(out, "xn--strae-oqa.example") == 0,
	      "IDNA 2008 non-transitional A-label, lowercase, no trailing dot");
	CHECK(name_to_ascii("*.example.com", out, &err) < 0 && strstr(err.msg, "wildcard"), "wildcard refused");
	CHECK(name_to_ascii("10.0.0.1", out, &err) < 0, "IP address refused");
	CHECK_DONE();
}
