/* err: error values carried from where a failure happens to the caller who decides. */
#include <stdio.h>

#include "common.h"

int tt_fail(struct tt_err *err, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

int tt_wrap(struct tt_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	/* tt_fail formats into err->msg, so the reason it wraps is copied out first. */
	char prefix[256], why[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(why, sizeof(why), "%s", err->msg);
	return tt_fail(err, "%s: %s", prefix, why);
}

int tt_prog_fail(const char *prog, const struct tt_err *err, int status)
{
	fprintf(stderr, "%s: %s\n", prog, err->msg);
	return status;
}
