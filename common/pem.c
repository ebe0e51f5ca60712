/* pem: finds certificate blocks in PEM text, for everything that must keep certificates apart
 * from keys (imports, chains loaded into TLS contexts). */
#include <string.h>

#include "common.h"

bool tt_pem_next_cert(const char **pos, const char *stop, const char **block, size_t *len)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----", end[] = "-----END CERTIFICATE-----";
	const char *b = memmem(*pos, (size_t)(stop - *pos), begin, sizeof(begin) - 1);
	if (!b)
		return false;
	const char *e = memmem(b, (size_t)(stop - b), end, sizeof(end) - 1);
	if (!e)
		return false;
	e += sizeof(end) - 1;
	*block = b;
	*len = (size_t)(e - b);
	*pos = e;
	return true;
}
