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
