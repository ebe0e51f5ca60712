/* terminator: flags and configuration, the key ring and the shared certificate cache, listeners
 * bound before privileges drop, one loop thread per core, the metrics thread, a drain on
 * SIGTERM/SIGINT and a configuration reload on SIGHUP. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <netdb.h>
#include <pwd.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <wolfssl/version.h>

#include "terminator.h"

/* Capabilities are numbered below 64 (two 32-bit words); the kernel says where its list ends. */
#define CAP_LAST_CAP_MAX 63

/* One row per option (see struct tt_opt in common.h); the reload column (TT_OPT_LIVE) is what SIGHUP
 * applies, every other change is reported as needing a restart. */
static const struct tt_opt opts[] = {
    {"config", "TRACKTLS_CONFIG", TT_OPT_PATH, "FILE", NULL, 0,
     "`key = value` file with any of these flags (flags and env win)"},
    {"db", "TRACKTLS_DB", TT_OPT_STRING, "CONNINFO", NULL, 0,
     "PostgreSQL connection string (libpq; empty: PG* defaults)"},
    {"db-listen", "TRACKTLS_DB_LISTEN", TT_OPT_STRING, "CONNINFO", NULL, 0,
     "connection for LISTEN/NOTIFY when --db is a read replica (standbys cannot LISTEN) [--db]"},
    {"master-key-file", "TRACKTLS_MASTER_KEY_FILE", TT_OPT_PATH, "FILE", NULL, 0,
     "master key ring, mode 0600 (required)"},
    {"https", "TRACKTLS_HTTPS", TT_OPT_ADDR, "ADDR:PORT", ":443", 0, "TLS listener"},
    {"http", "TRACKTLS_HTTP", TT_OPT_ADDR, "ADDR:PORT", ":80", 0, "plain HTTP listener (ACME HTTP-01, plain requests)"},
    {"backend", "TRACKTLS_BACKEND", TT_OPT_ADDR, "HOST:PORT", "127.0.0.1:8080", TT_OPT_LIVE,
     "where requests go (HTTP/1.1)"},
    {"backend-mode", "TRACKTLS_BACKEND_MODE", TT_OPT_STRING, "MODE", "http", 0,
     "http (parse, forward with X-Forwarded-*) or proxy-v2 (PROXY v2 header, then raw bytes)"},
    {"cache-size", "TRACKTLS_CACHE_SIZE", TT_OPT_SIZE, "N", "100000", TT_OPT_LIVE, "certificates kept in memory"},
    {"cache-bytes", "TRACKTLS_CACHE_BYTES", TT_OPT_SIZE, "BYTES", "1073741824", TT_OPT_LIVE,
     "memory for cached certificates and keys"},
    {"negative-ttl", "TRACKTLS_NEGATIVE_TTL", TT_OPT_DURATION, "DURATION", "10s", TT_OPT_LIVE,
     "how long an unknown name stays unknown"},
    {"metrics", "TRACKTLS_METRICS", TT_OPT_ADDR, "ADDR:PORT", NULL, 0,
     "Prometheus /metrics and /healthz (off if unset)"},
    {"threads", "TRACKTLS_THREADS", TT_OPT_STRING, "N", NULL, 0,
     "event loop threads (default: the CPUs it may run on)"},
    {"max-connections", "TRACKTLS_MAX_CONNECTIONS", TT_OPT_SIZE, "N", "0", 0,
     "client connections held at once, shared equally by the threads; a thread holding its share stops"
     " accepting and the kernel queues the rest (0: as many as the descriptor limit allows, two each)"},
    {"log-level", "TRACKTLS_LOG_LEVEL", TT_OPT_STRING, "LEVEL", "info", TT_OPT_LIVE, "debug, info, warn or error"},
    {"handshake-timeout", "TRACKTLS_HANDSHAKE_TIMEOUT", TT_OPT_DURATION, "DURATION", "10s", TT_OPT_LIVE,
     "from accept to a finished handshake"},
    {"header-timeout", "TRACKTLS_HEADER_TIMEOUT", TT_OPT_DURATION, "DURATION", "10s", TT_OPT_LIVE,
     "to read a whole request head"},
    {"idle-timeout", "TRACKTLS_IDLE_TIMEOUT", TT_OPT_DURATION, "DURATION", "60s", TT_OPT_LIVE,
     "keep-alive between requests"},
    {"backend-connect-timeout", "TRACKTLS_BACKEND_CONNECT_TIMEOUT", TT_OPT_DURATION, "DURATION", "5s", TT_OPT_LIVE,
     "to connect to the backend (and to PostgreSQL: SIGHUP changes only the backend's)"},
    {"backend-timeout", "TRACKTLS_BACKEND_TIMEOUT", TT_OPT_DURATION, "DURATION", "30s", TT_OPT_LIVE,
     "backend silence while a response is due"},
    {"response-timeout", "TRACKTLS_RESPONSE_TIMEOUT", TT_OPT_DURATION, "DURATION", "60s", TT_OPT_LIVE,
     "from forwarding a request to the last byte of its response reaching the client (slow readers)"},
    {"db-timeout", "TRACKTLS_DB_TIMEOUT", TT_OPT_DURATION, "DURATION", "1s", 0, "one certificate or challenge lookup"},
    {"cert-batch-max", "TRACKTLS_CERT_BATCH_MAX", TT_OPT_SIZE, "N", "128", 0,
     "names per certificate query: misses that arrive together share one query (1: a query per name)"},
    {"max-pending-misses", "TRACKTLS_MAX_PENDING_MISSES", TT_OPT_SIZE, "N", "1024", 0,
     "misses waiting for the database per thread; beyond it misses are refused (throttled)"},
    {"miss-latency-limit", "TRACKTLS_MISS_LATENCY_LIMIT", TT_OPT_DURATION, "DURATION", "250ms", 0,
     "refuse misses while database answers take longer than this and a full batch waits (0: never)"},
    {"max-misses-per-sec", "TRACKTLS_MAX_MISSES_PER_SEC", TT_OPT_SIZE, "N", "0", 0,
     "deprecated: a fixed ceiling on certificate queries per second and thread (0: none)"},
    {"hot-names-file", "TRACKTLS_HOT_NAMES_FILE", TT_OPT_PATH, "FILE", NULL, 0,
     "warm restarts: hot names (names only) written here at SIGTERM and on a timer; a new process prefetches"
     " them (off if unset)"},
    {"hot-names-interval", "TRACKTLS_HOT_NAMES_INTERVAL", TT_OPT_DURATION, "DURATION", "60s", 0,
     "how often the hot-names file is rewritten while serving (0: only at SIGTERM)"},
    {"hot-names-watch", "TRACKTLS_HOT_NAMES_WATCH", TT_OPT_DURATION, "DURATION", "2m", 0,
     "after start, how long the hot-names file is watched for the outgoing process's list (0: no prefetch)"},
    {"warm-up-limit", "TRACKTLS_WARM_UP_LIMIT", TT_OPT_DURATION, "DURATION", "10s", 0,
     "on a restart (another process serves the HTTPS address), accept only once the name filter and the"
     " hottest hot-names are loaded, or after this long (0: accept at once)"},
    {"name-filter-names", "TRACKTLS_NAME_FILTER_NAMES", TT_OPT_SIZE, "N", "1000000", 0,
     "size the filter of servable names for N names (0: no filter, every miss queries)"},
    {"ticket-refresh", "TRACKTLS_TICKET_REFRESH", TT_OPT_DURATION, "DURATION", "5m", 0,
     "reload session ticket keys this often (and on NOTIFY)"},
    {"drain-timeout", "TRACKTLS_DRAIN_TIMEOUT", TT_OPT_DURATION, "DURATION", "30s", TT_OPT_LIVE,
     "on SIGTERM, how long in-flight requests get before what is left is closed"},
    {"user", "TRACKTLS_USER", TT_OPT_STRING, "NAME", NULL, 0,
     "after binding and reading the key ring, run as this user and its group, without capabilities"},
    {"allow-root", "TRACKTLS_ALLOW_ROOT", TT_OPT_BOOL, NULL, NULL, 0,
     "serve as root (refused without it, unless --user is given)"},
    {"version", NULL, TT_OPT_ACTION, NULL, NULL, 0, "print versions and exit"},
    {"help", NULL, TT_OPT_ACTION, NULL, NULL, 0, "print this help and exit"},
};
#define NOPTS (sizeof opts / sizeof opts[0])
/* A batch's names travel as one array parameter and its rows come back in one result. */
#define CERT_BATCH_MAX_LIMIT 4096
/* More loops than this only add contention, whatever the machine. */
#define MAX_THREADS 1024
/* Descriptors the process holds whatever its clients: standard streams, files read (key ring, hot
 * names, configuration), the database connections of the warm-up and the prefetcher and the overlap
 * of a reconnect, the signal and metrics threads' own. */
#define FD_RESERVE_PROCESS 64
/* Each loop's own: its ring, its two listeners, its database connection and a reconnect's overlap. */
#define FD_RESERVE_LOOP 5
/* A client connection's socket and its backend's. */
#define FDS_PER_CONN 2
/* How long an idle connection keeps its buffers before it returns them (see build_config). */
#define IDLE_LINGER_MS 1000
/* The main thread waits for signals this long at a time, then checks drain, hot names and health. */
#define CONTROL_TICK_MS 50

struct core_thread {
	int id;
	pthread_t thread;
	const struct term_config *cfg;
	struct metrics *m;
	sem_t *ready;
	int fds[2];
	struct loop *loop;
	int status; /* of loop_new, read by main once the thread has posted ready */
	_Atomic bool failed;
	struct tt_err err;
};

/* Errors about the options and at start-up go to stderr after this, then the process exits. */
#define PROG "tracktls-terminator"
/* --help lines stay readable in a 100-column terminal and in the man page. */
#define HELP_WIDTH 100

static void usage(FILE *f)
{
	fprintf(f, "usage: terminator [flags]\n\nTerminates TLS for every domain in the tracktls database and passes "
		   "requests\n"
		   "to the backend. Certificates load on first use; start-up loads none.\n\nflags [default] "
		   "(environment):\n");
	tt_opts_help(f, opts, NOPTS, NULL);
	fprintf(f, "\nDURATION: 500ms, 10s, 5m, 1h. Switches take yes/no, true/false, on/off or 1/0.\n"
		   "Signals: SIGTERM or SIGINT drain (stop accepting, finish what is in flight, exit by\n"
		   "--drain-timeout; a second one stops at once). SIGHUP rereads the flags, the --config file and\n"
		   "the environment (a bad configuration is refused and the old one stays) and applies these at\n"
		   "once; a change to any other needs a restart:\n ");
	size_t col = 1;
	for (size_t i = 0; i < NOPTS; i++)
		if (opts[i].flags & TT_OPT_LIVE) {
			if (col + strlen(opts[i].key) + 3 > HELP_WIDTH) {
				fprintf(f, "\n ");
				col = 1;
			}
			col += (size_t)fprintf(f, " --%s", opts[i].key);
		}
	fprintf(f, "\nIt also reloads the ticket keys and the master key ring (new keys become usable; dropping a\n"
		   "key still in use is refused).\n");
}

static void version(void)
{
	printf("tracktls terminator %s\nwolfSSL %s", TT_VERSION, LIBWOLFSSL_VERSION_STRING);
#if defined(WOLFSSL_AESNI) || defined(WOLFSSL_SP_X86_64_ASM)
	printf(" with assembly:");
#ifdef WOLFSSL_AESNI
	printf(" aesni");
#endif
#ifdef WOLFSSL_SP_X86_64_ASM
	printf(" sp-x86_64");
#endif
	printf("\n");
#else
	printf(" without assembly\n");
#endif
}

static int resolve(const char *what, const char *spec, bool passive, struct sockaddr_storage *ss, socklen_t *len,
		   struct tt_err *err)
{
	char host[256];
	uint16_t port;
	if (tt_parse_hostport(spec, host, sizeof host, &port, err) < 0)
		return tt_wrap(err, "--%s", what);
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE | AI_NUMERICHOST : 0};
	struct addrinfo *ai;
	char portstr[8];
	snprintf(portstr, sizeof portstr, "%u", port);
	int rc = getaddrinfo(*host ? host : NULL, portstr, &hints, &ai);
	if (rc != 0)
		return tt_fail(err, "--%s: %s: %s", what, spec, gai_strerror(rc));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

/* The CPUs this process may run on (taskset, a cpuset, systemd's CPUAffinity=), not every online
 * one: a thread beyond them only adds context switches (measured: 10% more CPU per keep-alive
 * request with 2 threads on 1 CPU). */
static long usable_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		return CPU_COUNT(&set);
	return sysconf(_SC_NPROCESSORS_ONLN);
}

/* Each loop's share of --max-connections (rounded down to a multiple of the threads), and the
 * metrics port's connections (0 without --metrics), read at start only: a SIGHUP keeps them,
 * whatever the limit became. The descriptor limit must hold two per connection beside what the
 * process and its loops hold otherwise (a full backend pool each, the metrics port's connections),
 * or a connection accepted with the last descriptor would have none for its backend. */
static int share_connections(const struct tt_opts *o, int threads, size_t *per_loop, size_t *metrics_conns,
			     struct tt_err *err)
{
	struct rlimit files;
	if (getrlimit(RLIMIT_NOFILE, &files) < 0)
		return tt_fail(err, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
	size_t limit =
	    files.rlim_cur == RLIM_INFINITY || files.rlim_cur > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)files.rlim_cur;
	size_t metrics = limit / METRICS_LIMIT_SHARE;
	if (metrics > METRICS_MAX_CONNS)
		metrics = METRICS_MAX_CONNS;
	if (metrics < METRICS_MIN_CONNS)
		metrics = METRICS_MIN_CONNS;
	*metrics_conns = tt_opts_get(o, "metrics") ? metrics : 0;
	size_t reserve = FD_RESERVE_PROCESS + *metrics_conns + (size_t)threads * (FD_RESERVE_LOOP + BACKEND_POOL_MAX);
	size_t room = limit > reserve ? (limit - reserve) / FDS_PER_CONN : 0;
	size_t want;
	if (tt_opts_size(o, "max-connections", &want, err) < 0)
		return -1;
	if (want > room)
		return tt_fail(
		    err,
		    "--max-connections %zu needs %zu descriptors (%d per connection, %zu for the process and "
		    "its %d threads), the limit is %zu: raise it (LimitNOFILE= in the unit)",
		    want, want * FDS_PER_CONN + reserve, FDS_PER_CONN, reserve, threads, limit);
	size_t total = want ? want : room;
	if (total < (size_t)threads)
		return tt_fail(
		    err,
		    "%zu connections are fewer than one for each of %d threads (the descriptor limit is %zu, "
		    "%zu of them for the process and its threads): raise the limit or --max-connections",
		    total, threads, limit, reserve);
	*per_loop = total / (size_t)threads;
	return 0;
}

/* Everything start-up and SIGHUP both read: a reload checks the whole of it before using a part. */
static int build_config(const struct tt_opts *o, struct term_config *tc, struct sni_cache_limits *limits, int *threads,
			enum tt_level *level, int64_t *drain_ms, struct tt_err *err)
{
	if (tt_log_parse_level(tt_opts_get(o, "log-level"), level) < 0)
		return tt_fail(err, "--log-level: '%s' is not debug, info, warn or error", tt_opts_get(o, "log-level"));
	static const char *const timer_flags[TIMER_LINGER] = {"handshake-timeout", "header-timeout", "idle-timeout",
							      "backend-connect-timeout", "backend-timeout"};
	for (int k = 0; k < TIMER_LINGER; k++) {
		if (tt_opts_duration_ms(o, timer_flags[k], &tc->timeout_ms[k], err) < 0)
			return -1;
		if (tc->timeout_ms[k] <= 0)
			return tt_fail(err, "--%s: must be positive", timer_flags[k]);
	}
	/* An idle connection keeps its buffers for a second (the next request usually comes sooner),
	 * then returns them for the rest of the idle timeout; a short idle timeout lingers half of it. */
	tc->timeout_ms[TIMER_LINGER] =
	    tc->timeout_ms[TIMER_IDLE] < 2 * IDLE_LINGER_MS ? tc->timeout_ms[TIMER_IDLE] / 2 : IDLE_LINGER_MS;
	tc->timeout_ms[TIMER_IDLE] -= tc->timeout_ms[TIMER_LINGER];
	if (tt_opts_duration_ms(o, "response-timeout", &tc->response_timeout_ms, err) < 0)
		return -1;
	if (tc->response_timeout_ms <= 0)
		return tt_fail(err, "--response-timeout: must be positive");
	if (tt_opts_duration_ms(o, "db-timeout", &tc->db_timeout_ms, err) < 0 ||
	    tt_opts_duration_ms(o, "negative-ttl", &limits->negative_ttl_ms, err) < 0)
		return -1;
	size_t misses;
	if (tt_opts_size(o, "cache-size", &limits->max_entries, err) < 0 ||
	    tt_opts_size(o, "cache-bytes", &limits->max_bytes, err) < 0 ||
	    tt_opts_size(o, "max-misses-per-sec", &misses, err) < 0 ||
	    tt_opts_size(o, "cert-batch-max", &tc->cert_batch_max, err) < 0 ||
	    tt_opts_size(o, "max-pending-misses", &tc->max_pending_misses, err) < 0)
		return -1;
	tc->max_misses_per_sec = (int64_t)misses;
	if (tc->cert_batch_max < 1 || tc->cert_batch_max > CERT_BATCH_MAX_LIMIT)
		return tt_fail(err, "--cert-batch-max: between 1 and %d", CERT_BATCH_MAX_LIMIT);
	if (tc->max_pending_misses < 1)
		return tt_fail(err, "--max-pending-misses: must be positive");
	if (tt_opts_duration_ms(o, "miss-latency-limit", &tc->miss_latency_limit_ms, err) < 0)
		return -1;
	if (tc->miss_latency_limit_ms == 0)
		tc->miss_latency_limit_ms = -1;
	if (resolve("https", tt_opts_get(o, "https"), true, &tc->https_addr, &tc->https_len, err) < 0 ||
	    resolve("http", tt_opts_get(o, "http"), true, &tc->http_addr, &tc->http_len, err) < 0 ||
	    resolve("backend", tt_opts_get(o, "backend"), false, &tc->backend_addr, &tc->backend_len, err) < 0)
		return -1;
	const char *mode = tt_opts_get(o, "backend-mode");
	if (strcmp(mode, "http") == 0)
		tc->backend_mode = BACKEND_HTTP;
	else if (strcmp(mode, "proxy-v2") == 0)
		tc->backend_mode = BACKEND_PROXY_V2;
	else
		return tt_fail(err, "--backend-mode: '%s' is neither http nor proxy-v2", mode);
	/* A string in the table: unset means the usable CPUs, so it is read here. */
	const char *t = tt_opts_get(o, "threads");
	char *end = NULL;
	long n = t ? strtol(t, &end, 10) : usable_cpus();
	if (n < 1 || n > MAX_THREADS || (t && *end))
		return tt_fail(err, "--threads: '%s' is not a thread count (1 to %d)", t ? t : "?", MAX_THREADS);
	*threads = (int)n;
	tc->db_conninfo = tt_opts_get(o, "db");
	tc->db_listen_conninfo = tt_opts_get(o, "db-listen") ? tt_opts_get(o, "db-listen") : tc->db_conninfo;
	if (tt_opts_duration_ms(o, "drain-timeout", drain_ms, err) < 0)
		return -1;
	if (*drain_ms <= 0)
		return tt_fail(err, "--drain-timeout: must be positive");
	return 0;
}

static void *core_main(void *arg)
{
	struct core_thread *w = arg;
	/* The ring belongs to the thread that made it (SINGLE_ISSUER), so each loop is built here. */
	w->status = loop_new(w->id, w->cfg, w->fds, w->m, &w->loop, &w->err);
	int status = w->status;
	sem_post(w->ready);
	if (status == 0 && loop_run(w->loop, &w->err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_ERROR, "thread_failed", "thread=%d error=%s", w->id, tt_log_quote(q, sizeof q, w->err.msg));
		/* A core that stopped serving stops the process, so a supervisor restarts it whole. */
		atomic_store(&w->failed, true);
		kill(getpid(), SIGTERM);
	}
	return NULL;
}

/* Flags, then the environment, then the --config file, then the defaults (first found wins); with
 * neither --help nor --version, every value must parse as its type. */
static int load_settings(int argc, char **argv, struct tt_opts *o, struct tt_err *err)
{
	o->v = NULL;
	if (tt_opts_init(o, opts, NOPTS, err) < 0)
		return -1;
	if (tt_opts_parse_argv(o, argc - 1, argv + 1, NULL, NULL, 0, NULL, err) < 0 ||
	    tt_opts_resolve(o, "config", err) < 0)
		return -1;
	if (tt_opts_bool(o, "help") || tt_opts_bool(o, "version"))
		return 0;
	return tt_opts_check(o, NULL, err);
}

/* Empties the capability bounding set, so no later execve (of a setuid or file-capability binary)
 * can hand a capability back. Needs CAP_SETPCAP, so it runs before leaving root. */
static int drop_bounding_set(struct tt_err *err)
{
	for (int cap = 0; cap <= CAP_LAST_CAP_MAX; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
			continue;
		if (errno == EINVAL) /* past the last capability this kernel knows */
			break;
		return tt_fail(err, "emptying the capability bounding set: %s", strerror(errno));
	}
	return 0;
}

/* After every socket is bound and the key ring read, nothing needs a privilege: started as root,
 * empty the bounding set and become --user (root can); drop every capability, including those
 * systemd gives a non-root start (CAP_NET_BIND_SERVICE); and set no_new_privs, so nothing this
 * process runs can gain one. Runs while the process has one thread, since capabilities are per
 * thread (and the threads made later inherit all of it). */
static int drop_privileges(const char *user, bool allow_root, struct tt_err *err)
{
	bool root = geteuid() == 0 || getuid() == 0;
	if (root && (!user || !*user) && !allow_root)
		return tt_fail(err, "refusing to serve as root: give --user NAME (ports are bound and the key "
				    "ring read before switching to it) or --allow-root");
	if (root && drop_bounding_set(err) < 0)
		return -1;
	if (user && *user) {
		struct passwd *pw = getpwnam(user);
		if (!pw)
			return tt_fail(err, "--user %s: no such user", user);
		if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			return tt_fail(err, "--user %s: %s", user, strerror(errno));
		if (pw->pw_uid != 0 && setuid(0) == 0)
			return tt_fail(err, "--user %s: root could be regained", user);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return tt_fail(err, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
	if (geteuid() == 0 || getuid() == 0)
		return 0; /* --allow-root: root keeps its capabilities, not its bounding set */
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	memset(data, 0, sizeof data);
	if (syscall(SYS_capset, &hdr, data) < 0)
		return tt_fail(err, "capset: %s", strerror(errno));
	return 0;
}

/* What main hands run(): the settings it started from, and what SIGHUP may replace. */
struct ctx {
	int argc;
	char **argv;
	const struct tt_opts *opts; /* as started; only reloaded copies differ */
	const struct term_config *initial, *current;
	const struct term_config **retired; /* replaced snapshots, freed once every loop moved on */
	size_t nretired;
	int nthreads;
	int (*fds)[2];
	int metrics_fd;
	size_t metrics_conns; /* the metrics port's share of the descriptors (share_connections) */
	const struct name_filter *filter;
	int64_t warm_up_limit_ms;   /* 0: tc.hold_accept is off, the loops accept at once */
	struct tt_keyring *keyring; /* the loops and the ticket refresher read it; SIGHUP changes it in place */
	int64_t drain_timeout_ms;
	struct handover *handover; /* NULL without --hot-names-file */
	int64_t hot_names_interval_ms;
};

static bool str_differs(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* A key may leave the ring only when nothing the terminator reads is sealed under it: no
 * certificate and no ticket key (the database says; unreachable, the drop is refused). */
static int keys_unused(void *arg, const uint32_t *ids, size_t n, struct tt_err *err)
{
	const char *conninfo = arg;
	char list[2048];
	size_t len = 0;
	for (size_t i = 0; i < n && len < sizeof list; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%u", i ? "," : "{", ids[i]);
	if (len + 2 > sizeof list)
		return tt_fail(err, "too many keys dropped at once");
	memcpy(list + len, "}", 2);
	PGconn *conn;
	PGresult *res = NULL;
	const char *params[] = {list};
	if (!(conn = tt_db_connect_bounded(conninfo, err))) {
		char why[sizeof err->msg];
		memcpy(why, err->msg, sizeof why);
		return tt_fail(err, "cannot check that the keys dropped are unused: %s", why);
	}
	int rc =
	    tt_db_exec(conn, &res, err,
		       "SELECT k, (SELECT count(*) FROM certificates WHERE master_key_id = k AND sealed_key IS NOT "
		       "NULL), (SELECT count(*) FROM ticket_keys WHERE master_key_id = k) "
		       "FROM unnest($1::int[]) k ORDER BY k",
		       1, params);
	for (int r = 0; rc == 0 && r < PQntuples(res); r++)
		if (strcmp(PQgetvalue(res, r, 1), "0") != 0 || strcmp(PQgetvalue(res, r, 2), "0") != 0)
			rc = tt_fail(err,
				     "master key %s is still in use (%s certificate keys and %s ticket keys sealed "
				     "under it): run issuer keys rotate before it leaves the file",
				     PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2));
	if (res)
		PQclear(res);
	PQfinish(conn);
	return rc;
}

/* SIGHUP: keys added to the file become usable at once; a key still in use never leaves. */
static void reload_keyring(struct ctx *x)
{
	struct tt_keyring_change ch;
	struct tt_err err = {{0}};
	char q[TT_LOG_QUOTED_MAX];
	if (tt_keyring_reload(x->keyring, keys_unused, (void *)x->current->db_listen_conninfo, &ch, &err) < 0)
		tt_log(TT_ERROR, "keyring_reload_refused", "error=%s", tt_log_quote(q, sizeof q, err.msg));
	else
		tt_log(TT_INFO, "keyring_reloaded", "keys=%zu newest=%u added=%s dropped=%s",
		       tt_keyring_count(x->keyring), tt_keyring_newest_id(x->keyring), ch.added, ch.dropped);
}

static void reload(struct ctx *x, struct core_thread *cores, int started)
{
	reload_keyring(x);
	struct tt_opts next_opts = {0};
	struct tt_err err = {{0}};
	struct sni_cache_limits limits;
	memset(&limits, 0, sizeof limits);
	struct term_config *tc = calloc(1, sizeof *tc);
	int threads = 0;
	enum tt_level level = TT_INFO;
	int64_t drain_ms = 0;
	int rc = tc ? load_settings(x->argc, x->argv, &next_opts, &err) : tt_fail(&err, "out of memory");
	if (rc == 0)
		rc = build_config(&next_opts, tc, &limits, &threads, &level, &drain_ms, &err);
	if (rc < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_ERROR, "reload_refused", "error=%s", tt_log_quote(q, sizeof q, err.msg));
		free(tc);
		tt_opts_free(&next_opts);
		return;
	}
	for (size_t i = 0; i < NOPTS; i++)
		if (!(opts[i].flags & TT_OPT_LIVE) && opts[i].type != TT_OPT_ACTION &&
		    str_differs(next_opts.v[i].value, x->opts->v[i].value))
			tt_log(TT_WARN, "reload_needs_restart", "setting=%s", opts[i].key);
	/* Only what can change live comes from the new settings. */
	struct term_config next = *x->current;
	memcpy(next.timeout_ms, tc->timeout_ms, sizeof next.timeout_ms);
	next.response_timeout_ms = tc->response_timeout_ms;
	next.backend_addr = tc->backend_addr;
	next.backend_len = tc->backend_len;
	*tc = next;
	const struct term_config **r = realloc(x->retired, (x->nretired + 1) * sizeof *r);
	if (!r) {
		tt_log(TT_ERROR, "reload_refused", "error=\"out of memory\"");
		free(tc);
		tt_opts_free(&next_opts);
		return;
	}
	x->retired = r;
	x->retired[x->nretired++] = x->current;
	x->current = tc;
	for (int i = 0; i < started; i++)
		if (cores[i].status == 0)
			atomic_store_explicit(&cores[i].loop->cfg_next, tc, memory_order_release);
	sni_cache_set_limits(tc->cache, &limits);
	tt_log_set_level(level);
	x->drain_timeout_ms = drain_ms;
	tickets_reload_soon(tc->tickets);
	tt_log(TT_INFO, "reloaded",
	       "backend=%s idle_timeout=%s cache_size=%s cache_bytes=%s negative_ttl=%s log_level=%s",
	       tt_opts_get(&next_opts, "backend"), tt_opts_get(&next_opts, "idle-timeout"),
	       tt_opts_get(&next_opts, "cache-size"), tt_opts_get(&next_opts, "cache-bytes"),
	       tt_opts_get(&next_opts, "negative-ttl"), tt_opts_get(&next_opts, "log-level"));
	tt_opts_free(&next_opts);
}

static void free_retired_now(struct ctx *x)
{
	for (size_t i = 0; i < x->nretired; i++)
		if (x->retired[i] != x->initial)
			free((void *)x->retired[i]);
	x->nretired = 0;
}

/* Replaced snapshots go once every loop has picked up the current one. */
static void free_retired(struct ctx *x, struct core_thread *cores, int started)
{
	for (int i = 0; i < started; i++)
		if (cores[i].status == 0 && !atomic_load(&cores[i].loop->done) &&
		    atomic_load_explicit(&cores[i].loop->cfg_seen, memory_order_acquire) != x->current)
			return;
	free_retired_now(x);
}

/* The signals main takes with sigtimedwait: drain (TERM, INT) and reload (HUP). */
static void control_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

static uint64_t open_connections(struct metrics *const *ms, int n)
{
	uint64_t open = 0;
	for (int i = 0; i < n; i++)
		open += atomic_load(&ms[i]->accepted) - atomic_load(&ms[i]->closed);
	return open;
}

/* --hot-names-file: the prefetcher starts at once (the loops may already be serving when it
 * loads its first batch); it builds contexts, so wolfSSL_Init has run. */
static int start_handover(const struct tt_opts *o, const struct term_config *tc, struct ctx *x, struct tt_err *err)
{
	const char *path = tt_opts_get(o, "hot-names-file");
	int64_t watch_ms;
	if (!path || !*path)
		return 0;
	if (tt_opts_duration_ms(o, "hot-names-interval", &x->hot_names_interval_ms, err) < 0 ||
	    tt_opts_duration_ms(o, "hot-names-watch", &watch_ms, err) < 0)
		return -1;
	struct handover_config hc = {.path = path,
				     .conninfo = tc->db_conninfo,
				     .keyring = tc->keyring,
				     .tickets = tc->tickets,
				     .cache = tc->cache,
				     .batch = tc->cert_batch_max,
				     .watch_ms = watch_ms};
	return handover_start(&hc, &x->handover, err);
}

/* The warm-up is over once the name filter has been built (or failed to) and the hot-names file's
 * names found at start are loaded; after warm_up_limit_ms it is over anyway, and at once when the
 * database cannot be reached (a loop retried its connection and none is ready): then nothing
 * loads, and the names are answered on demand as without a warm-up. db_seen: a loop was ready once. */
static bool warmed_up(const struct ctx *x, struct metrics *const *ms, int n, int64_t started_ms, bool *db_seen)
{
	bool retried = false;
	for (int i = 0; i < n; i++) {
		*db_seen = *db_seen || atomic_load_explicit(&ms[i]->db_ready, memory_order_relaxed);
		retried = retried || atomic_load_explicit(&ms[i]->db_reconnects, memory_order_relaxed) > 0;
	}
	struct name_filter_stats fs = {0};
	struct handover_stats hs = {.initial_done = true};
	if (x->filter)
		name_filter_stats(x->filter, &fs);
	if (x->handover)
		handover_stats(x->handover, &hs);
	bool filter_done = !x->filter || fs.trusted || fs.build_errors > 0;
	/* A database that answered once is slow, not down: a query that timed out under the load of
	 * a restart must not end the warm-up early. */
	bool done = filter_done && hs.initial_done, db_down = !*db_seen && retried;
	if (done || db_down || tt_now_ms() - started_ms >= x->warm_up_limit_ms) {
		tt_log(TT_INFO, "warm_up_done", "ms=%lld complete=%s database=%s filter=%s prefetched=%llu",
		       (long long)(tt_now_ms() - started_ms), done ? "true" : "false", db_down ? "down" : "up",
		       fs.trusted    ? "trusted"
		       : filter_done ? "failed"
				     : "building",
		       (unsigned long long)hs.loaded);
		return true;
	}
	return false;
}

static void write_hot_names(struct ctx *x)
{
	struct tt_err err = {{0}};
	size_t n;
	char q[TT_LOG_QUOTED_MAX];
	if (x->handover && handover_write(x->handover, &n, &err) < 0)
		tt_log(TT_ERROR, "hot_names_write_failed", "error=%s", tt_log_quote(q, sizeof q, err.msg));
}

static int run(struct ctx *x, struct tt_err *err)
{
	int nthreads = x->nthreads;
	struct core_thread *cores = calloc((size_t)nthreads, sizeof *cores);
	struct metrics **ms = calloc((size_t)nthreads, sizeof *ms);
	sem_t ready;
	/* PHASE_WARMING: the loops run (certdb connects and LISTENs, which starts the filter scan)
	 * but accept nothing; /healthz says so. */
	_Atomic(enum process_phase) phase = x->current->hold_accept ? PHASE_WARMING : PHASE_SERVING;
	int rc = -1, started = 0;
	if (!cores || !ms) {
		tt_fail(err, "out of memory");
		goto out;
	}
	for (int i = 0; i < nthreads; i++) {
		ms[i] = calloc(1, sizeof *ms[i]);
		if (!ms[i]) {
			tt_fail(err, "out of memory");
			goto out;
		}
	}
	sem_init(&ready, 0, 0);
	for (int i = 0; i < nthreads; i++) {
		cores[i] = (struct core_thread){
		    .id = i, .cfg = x->current, .m = ms[i], .ready = &ready, .fds = {x->fds[i][0], x->fds[i][1]}};
		int e = pthread_create(&cores[i].thread, NULL, core_main, &cores[i]);
		if (e != 0) {
			tt_fail(err, "thread: %s", strerror(e));
			break;
		}
		/* The loop owns them now. */
		x->fds[i][0] = x->fds[i][1] = -1;
		started++;
	}
	for (int i = 0; i < started; i++)
		while (sem_wait(&ready) < 0 && errno == EINTR)
			;
	bool ok = started == nthreads;
	for (int i = 0; i < started; i++) {
		if (cores[i].status < 0) {
			if (ok)
				tt_fail(err, "%s", cores[i].err.msg);
			ok = false;
		}
	}
	int64_t warm_start = tt_now_ms();
	bool db_seen = false;
	struct metrics_server *msrv = NULL;
	if (ok && x->metrics_fd >= 0) {
		int fd = x->metrics_fd;
		x->metrics_fd = -1;
		if (metrics_server_start(fd,
					 &(struct metrics_sources){.loops = ms,
								   .nloops = nthreads,
								   .cache = x->current->cache,
								   .tickets = x->current->tickets,
								   .filter = x->filter,
								   .challenges = x->current->challenges,
								   .handover = x->handover,
								   .phase = &phase,
								   .max_conns = x->metrics_conns},
					 &msrv, err) < 0)
			ok = false;
	}
	if (ok) {
		tt_log(TT_INFO, "listening", "threads=%d metrics=%s", nthreads, msrv ? "on" : "off");
		sigset_t set;
		control_signals(&set);
		int64_t deadline = 0, drain_start = 0;
		int64_t next_hot_names =
		    x->hot_names_interval_ms > 0 ? tt_now_ms() + x->hot_names_interval_ms : INT64_MAX;
		bool failed = false, serve_failed = false;
		for (;;) {
			struct timespec tick = {.tv_sec = 0, .tv_nsec = CONTROL_TICK_MS * 1000000L};
			int sig = sigtimedwait(&set, NULL, &tick);
			if (sig == SIGHUP) {
				reload(x, cores, started);
			} else if (sig == SIGTERM || sig == SIGINT) {
				const char *name = sig == SIGTERM ? "TERM" : "INT";
				if (phase == PHASE_DRAINING) {
					tt_log(TT_INFO, "stopping", "signal=%s open=%llu", name,
					       (unsigned long long)open_connections(ms, nthreads));
					break;
				}
				atomic_store(&phase, PHASE_DRAINING);
				drain_start = tt_now_ms();
				deadline = drain_start + x->drain_timeout_ms;
				tt_log(TT_INFO, "draining", "signal=%s timeout_ms=%lld open=%llu", name,
				       (long long)x->drain_timeout_ms,
				       (unsigned long long)open_connections(ms, nthreads));
				for (int i = 0; i < started; i++)
					loop_drain(cores[i].loop);
				/* The listeners are closing: the incoming process takes the traffic now, and
				 * these names are what it should load first. */
				write_hot_names(x);
				next_hot_names = INT64_MAX;
			}
			if (phase == PHASE_WARMING && warmed_up(x, ms, nthreads, warm_start, &db_seen)) {
				for (int i = 0; i < started && !serve_failed; i++)
					serve_failed = loop_serve(cores[i].loop, err) < 0;
				atomic_store(&phase, PHASE_SERVING);
				if (serve_failed)
					break;
			}
			if (tt_now_ms() >= next_hot_names) {
				write_hot_names(x);
				next_hot_names = tt_now_ms() + x->hot_names_interval_ms;
			}
			if (x->nretired)
				free_retired(x, cores, started);
			for (int i = 0; i < started; i++)
				failed = failed || atomic_load(&cores[i].failed);
			if (failed)
				break;
			if (phase == PHASE_DRAINING) {
				bool all = true;
				for (int i = 0; i < started; i++)
					all = all && atomic_load(&cores[i].loop->done);
				if (all || tt_now_ms() >= deadline)
					break;
			}
		}
		rc = serve_failed ? -1 : 0;
		for (int i = 0; i < started; i++)
			loop_stop(cores[i].loop);
		for (int i = 0; i < started; i++)
			pthread_join(cores[i].thread, NULL);
		if (phase == PHASE_DRAINING) {
			size_t left = 0;
			for (int i = 0; i < started; i++)
				left += cores[i].loop->nconns;
			tt_log(TT_INFO, "drained", "ms=%lld closed_early=%zu", (long long)(tt_now_ms() - drain_start),
			       left);
			/* Nothing is left to serve; what remains (freeing the cache, closing the database
			 * connections, the exit itself) must not take the core from the incoming process. */
			setpriority(PRIO_PROCESS, (id_t)gettid(), TERM_TEARDOWN_NICE);
		}
	} else {
		for (int i = 0; i < started; i++)
			if (cores[i].status == 0)
				loop_stop(cores[i].loop);
		for (int i = 0; i < started; i++)
			pthread_join(cores[i].thread, NULL);
	}
	for (int i = 0; i < started; i++) {
		if (atomic_load(&cores[i].failed)) {
			tt_fail(err, "thread %d failed: %s", i, cores[i].err.msg);
			rc = -1;
		}
		loop_free(cores[i].loop);
	}
	metrics_server_stop(msrv);
	sem_destroy(&ready);
out:
	if (ms)
		for (int i = 0; i < nthreads; i++)
			free(ms[i]);
	free(ms);
	free(cores);
	return rc;
}

int main(int argc, char **argv)
{
	tt_process_protect_secrets();
	/* Every connection holds one or two descriptors: take all the kernel allows. */
	struct rlimit files;
	if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
		files.rlim_cur = files.rlim_max;
		setrlimit(RLIMIT_NOFILE, &files);
	}

	struct tt_opts cfg;
	struct tt_err err = {{0}};
	if (load_settings(argc, argv, &cfg, &err) < 0) {
		tt_opts_free(&cfg);
		return tt_prog_fail(PROG, &err, TT_EXIT_USAGE);
	}
	if (tt_opts_bool(&cfg, "help") || tt_opts_bool(&cfg, "version")) {
		if (tt_opts_bool(&cfg, "help"))
			usage(stdout);
		else
			version();
		tt_opts_free(&cfg);
		return 0;
	}

	int rc = TT_EXIT_FAILED;
	enum tt_level level;
	struct term_config tc;
	memset(&tc, 0, sizeof tc);
	struct sni_cache_limits limits;
	memset(&limits, 0, sizeof limits);
	int threads = 0;
	struct tt_keyring *kr = NULL;
	struct sni_cache *cache = NULL;
	struct tickets *tickets = NULL;
	struct name_filter *filter = NULL;
	struct challenge_set *challenges = NULL;
	size_t filter_names = 0;
	int64_t ticket_refresh_ms = 0, drain_ms = 0;
	struct ctx x = {.argc = argc, .argv = argv, .opts = &cfg, .initial = &tc, .current = &tc, .metrics_fd = -1};
	if (build_config(&cfg, &tc, &limits, &threads, &level, &drain_ms, &err) < 0 ||
	    share_connections(&cfg, threads, &tc.loop_max_conns, &x.metrics_conns, &err) < 0 ||
	    tt_opts_size(&cfg, "name-filter-names", &filter_names, &err) < 0 ||
	    tt_opts_duration_ms(&cfg, "warm-up-limit", &x.warm_up_limit_ms, &err) < 0 ||
	    tt_opts_duration_ms(&cfg, "ticket-refresh", &ticket_refresh_ms, &err) < 0) {
		rc = tt_prog_fail(PROG, &err, TT_EXIT_USAGE);
		goto out;
	}
	tt_log_set_level(level);
	x.nthreads = threads;
	x.drain_timeout_ms = drain_ms;
	x.fds = calloc((size_t)threads, sizeof *x.fds);
	if (!x.fds) {
		tt_fail(&err, "out of memory");
		rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
		goto out;
	}
	for (int i = 0; i < threads; i++)
		x.fds[i][0] = x.fds[i][1] = -1;
	if (tt_keyring_load(tt_opts_get(&cfg, "master-key-file"), &kr, &err) < 0 ||
	    sni_cache_new(&limits, &cache, &err) < 0 || tickets_new(&tickets, &err) < 0 ||
	    challenge_set_new(&challenges, &err) < 0 ||
	    (filter_names && name_filter_new(filter_names, &filter, &err) < 0)) {
		rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
		goto out;
	}
	/* A restart: the process it replaces serves meanwhile, so this one warms up before it takes
	 * connections (run() makes the listeners listen). When the kernel cannot tell, listening at
	 * once is what a new host does anyway. */
	tc.hold_accept = false;
	if (x.warm_up_limit_ms > 0 && listeners_address_served(&tc.https_addr, &tc.hold_accept, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_WARN, "listener_check_failed", "error=%s", tt_log_quote(q, sizeof q, err.msg));
	}
	/* Everything privileged happens here, while the process has one thread. */
	for (int i = 0; i < threads; i++) {
		if (loop_listen(&tc, x.fds[i], &err) < 0) {
			rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
			goto out;
		}
	}
	const char *metrics_addr = tt_opts_get(&cfg, "metrics");
	if (metrics_addr && *metrics_addr) {
		struct sockaddr_storage ss;
		socklen_t len;
		if (resolve("metrics", metrics_addr, true, &ss, &len, &err) < 0) {
			rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
			goto out;
		}
		if (loop_listen_on(&ss, len, &x.metrics_fd, &err) < 0) {
			tt_wrap(&err, "--metrics");
			rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
			goto out;
		}
	}
	if (drop_privileges(tt_opts_get(&cfg, "user"), tt_opts_bool(&cfg, "allow-root"), &err) < 0) {
		rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
		goto out;
	}
	/* Signals are taken by sigtimedwait in this thread only (every thread inherits the mask);
	 * SIGPIPE never kills (sends use MSG_NOSIGNAL). */
	sigset_t set;
	control_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (tickets_start_refresher(tickets, tc.db_listen_conninfo, kr, ticket_refresh_ms, &err) < 0) {
		rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
		goto out;
	}
	if (challenge_set_start(challenges, tc.db_listen_conninfo, tc.db_timeout_ms, &err) < 0) {
		rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
		goto out;
	}
	if (filter) {
		sni_cache_set_filter(cache, filter);
		if (name_filter_start(filter, tc.db_conninfo, &err) < 0) {
			rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
			goto out;
		}
	}
	tc.keyring = kr;
	tc.cache = cache;
	tc.tickets = tickets;
	tc.challenges = challenges;
	x.filter = filter;
	x.keyring = kr;

	wolfSSL_Init();
	tt_log(TT_INFO, "start",
	       "version=%s wolfssl=%s threads=%d max_connections=%zu metrics_connections=%zu https=%s http=%s "
	       "backend=%s uid=%u",
	       TT_VERSION, LIBWOLFSSL_VERSION_STRING, threads, tc.loop_max_conns * (size_t)threads, x.metrics_conns,
	       tt_opts_get(&cfg, "https"), tt_opts_get(&cfg, "http"), tt_opts_get(&cfg, "backend"), (unsigned)getuid());
	if (start_handover(&cfg, &tc, &x, &err) < 0) {
		rc = tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
		wolfSSL_Cleanup();
		goto out;
	}
	if (run(&x, &err) < 0) {
		char q[TT_LOG_QUOTED_MAX];
		tt_log(TT_ERROR, "start_failed", "error=%s", tt_log_quote(q, sizeof q, err.msg));
		tt_prog_fail(PROG, &err, TT_EXIT_FAILED);
	} else {
		tt_log(TT_INFO, "stopped", "threads=%d", threads);
		rc = 0;
	}
	wolfSSL_Cleanup();
out:
	/* The loops are gone: nothing uses the filter, the tickets, the cache or a snapshot any more. */
	if (x.fds)
		for (int i = 0; i < threads; i++)
			for (int j = 0; j < 2; j++)
				if (x.fds[i][j] >= 0)
					close(x.fds[i][j]);
	free(x.fds);
	if (x.metrics_fd >= 0)
		close(x.metrics_fd);
	free_retired_now(&x);
	free(x.retired);
	if (x.current != x.initial)
		free((void *)x.current);
	handover_stop(x.handover);
	name_filter_free(filter);
	challenge_set_free(challenges);
	tickets_free(tickets);
	sni_cache_free(cache);
	tt_keyring_free(kr);
	tt_opts_free(&cfg);
	return rc;
}
