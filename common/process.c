/* process: what both binaries do at start because they hold opened private keys in memory. */
#include <sys/prctl.h>
#include <sys/resource.h>

#include "common.h"

void tt_process_protect_secrets(void)
{
	/* No core file (it would hold clear keys), and no ptrace or /proc/PID/mem by other processes
	 * of the same user. */
	struct rlimit nocore = {0, 0};
	setrlimit(RLIMIT_CORE, &nocore);
	prctl(PR_SET_DUMPABLE, 0);
}
