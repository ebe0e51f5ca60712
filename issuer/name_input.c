/* name_input: turns what an operator types into the one stored form of a name (IDNA A-labels, then the
 * shared tt_name_normalize rules). */
#include <idn2.h>
#include <stdlib.h>
#include <string.h>

#include "issuer.h"

int name_to_ascii(const char *in, char out[TT_NAME_MAX], struct tt_err *err)
{
	if (strchr(in, '*'))
		return tt_fail(err, "bad name '%s': wildcards are not supported", in);
	bool ascii = true;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++)
		if (*p >= 0x80)
			ascii = false;
	if (ascii)
		return tt_name_normalize(in, out, err) < 0 ? tt_wrap(err, "bad name '%s'", in) : 0;
	char *alabel = NULL;
	int rc = idn2_to_ascii_8z(in, &alabel, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
	if (rc != IDN2_OK)
		return tt_fail(err, "bad name '%s': %s", in, idn2_strerror(rc));
	rc = tt_name_normalize(alabel, out, err);
	free(alabel);
	return rc < 0 ? tt_wrap(err, "bad name '%s'", in) : 0;
}
