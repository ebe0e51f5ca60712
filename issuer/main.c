/* issuer main: picks the command, resolves flags > environment > config file > defaults, and
 * prints --help for each command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/ssl.h>

#include "issuer.h"

/* One row per option (see struct tt_opt in common.h); which commands take it is in commands[]. */
static const struct tt_opt opts[] = {
    {"db", "TRACKTLS_DB", TT_OPT_STRING, "CONNINFO", NULL, 0, "libpq connection string (PG* variables also work)"},
    {"master-key-file", "TRACKTLS_MASTER_KEY_FILE", TT_OPT_PATH, "PATH", NULL, 0, "master key ring (mode 0600)"},
    {"config", "TRACKTLS_ISSUER_CONFIG", TT_OPT_PATH, "PATH", NULL, 0,
     "config file of `key = value` lines, keys as the flags"},
    {"log-level", "TRACKTLS_LOG_LEVEL", TT_OPT_STRING, "LEVEL", "info", 0, "debug, info, warn or error"},
    {"json", NULL, TT_OPT_BOOL, NULL, NULL, 0, "print JSON"},
    {"owner", NULL, TT_OPT_STRING, "REF", NULL, 0, "owner reference stored with the domain"},
    {"cert", NULL, TT_OPT_PATH, "CHAIN.pem", NULL, 0, "certificate chain, leaf first"},
    {"key", NULL, TT_OPT_PATH, "KEY.pem", NULL, 0, "private key of the leaf"},
    {"directory", "TRACKTLS_ACME_DIRECTORY", TT_OPT_STRING, "URL", ISSUER_DEFAULT_DIRECTORY, TT_OPT_REPEAT,
     "ACME directory (Let's Encrypt production); repeat for fallback CAs, preferred first"},
    {"contact", "TRACKTLS_ACME_CONTACT", TT_OPT_STRING, "EMAIL", NULL, 0, "account contact address"},
    {"ca-file", "TRACKTLS_ACME_CA_FILE", TT_OPT_PATH, "PATH", NULL, TT_OPT_REPEAT,
     "trust for the CA's HTTPS (a test CA such as Pebble); per directory"},
    {"chain-ca-file", "TRACKTLS_CHAIN_CA_FILE", TT_OPT_PATH, "PATH", NULL, TT_OPT_REPEAT,
     "roots a downloaded chain must verify to (default the system store; a test CA's root); per directory"},
    {"eab-kid", "TRACKTLS_EAB_KID", TT_OPT_STRING, "KID", NULL, TT_OPT_REPEAT,
     "external account binding key id; per directory ('-': none)"},
    {"eab-hmac-key", "TRACKTLS_EAB_HMAC_KEY", TT_OPT_STRING, "B64URL", NULL, TT_OPT_REPEAT,
     "external account binding HMAC key; per directory"},
    {"caa-identity", "TRACKTLS_CAA_IDENTITY", TT_OPT_STRING, "DOMAIN", ISSUER_DEFAULT_CAA_IDENTITY, TT_OPT_REPEAT,
     "the CA's CAA issuer domain; per directory"},
    {"edge-cname", "TRACKTLS_EDGE_CNAME", TT_OPT_STRING, "NAMES", NULL, 0,
     "preflight: names point at the edge when their CNAME chain reaches one of these (comma-separated)"},
    {"edge-addrs", "TRACKTLS_EDGE_ADDRS", TT_OPT_STRING, "LIST", NULL, 0,
     "preflight: or when all their A/AAAA records are in this list (addresses or CIDR, comma-separated)"},
    {"dns-server", "TRACKTLS_DNS_SERVER", TT_OPT_STRING, "ADDR:PORT", NULL, 0,
     "preflight resolver (default the system's)"},
    {"dormant-after", NULL, TT_OPT_DURATION, "DURATION", "30d", 0,
     "a domain whose preflight keeps failing this long turns dormant"},
    {"state", NULL, TT_OPT_STRING, "STATE", NULL, 0,
     "only domains in this state (pending, active, failing, paused, dormant)"},
    {"profile", "TRACKTLS_ACME_PROFILE", TT_OPT_STRING, "NAME", NULL, 0,
     "ACME profile for new orders (when the CA lists it)"},
    {"key-type", NULL, TT_OPT_STRING, "ecdsa|rsa", "ecdsa", 0, "domain key type (ecdsa: P-256)"},
    {"max-orders", NULL, TT_OPT_INT, "N", "0", 0, "stop after starting N orders (0: no limit)"},
    {"concurrency", NULL, TT_OPT_INT, "N", "8", 0, "orders in flight"},
    {"deadline", NULL, TT_OPT_INT, "SECONDS", "0", 0, "stop taking new work after this long (0: no deadline)"},
    {"dry-run", NULL, TT_OPT_BOOL, NULL, NULL, 0, "list the domains that are due, order nothing"},
    {"order-budget", NULL, TT_OPT_INT, "N", "300", 0,
     "new orders per rolling " TT_STRINGIFY(ORDER_BUDGET_WINDOW_H) " hours, shared by all runs"},
    {"max-failures", NULL, TT_OPT_INT, "N", "8", 0, "consecutive failures before a domain is paused"},
    {"self-check-via", NULL, TT_OPT_ADDR, "ADDR:PORT", NULL, 0, "send the challenge self-check to this address"},
    {"no-self-check", NULL, TT_OPT_BOOL, NULL, NULL, 0, "answer challenges without checking our own port 80 first"},
    {"https-check-via", "TRACKTLS_HTTPS_CHECK_VIA", TT_OPT_STRING, "ADDR:PORT", NULL, 0,
     "where the edge's HTTPS is for the served check (default: the name itself, port 443)"},
    {"https-check-ca-file", "TRACKTLS_HTTPS_CHECK_CA_FILE", TT_OPT_PATH, "PATH", NULL, 0,
     "trust for the served chain (default: the system's; the test CA's root)"},
    {"linger", NULL, TT_OPT_INT, "SECONDS", "0", 0,
     "stay up to SECONDS after the start, ordering added or resumed domains at once (0: no)"},
    {"events-retention", NULL, TT_OPT_DURATION, "DURATION", "30d", 0, "delete domain events older than this"},
    {"metrics-file", NULL, TT_OPT_PATH, "PATH", NULL, 0, "Prometheus textfile written atomically at the end"},
    {"timeout", NULL, TT_OPT_DURATION, "DURATION", "30s", 0, "per-request timeout"},
    {"reason", NULL, TT_OPT_INT, "CODE", "0", 0, "RFC 5280 revocation reason code"},
    {"no-revoke", NULL, TT_OPT_BOOL, NULL, NULL, 0, "remove without revoking the current certificate"},
    {"batch", NULL, TT_OPT_INT, "N", "100", 0, "rows per transaction"},
    {"since", NULL, TT_OPT_INT, "ID", "0", 0, "print the events after this id (0: all kept)"},
    {"follow", NULL, TT_OPT_BOOL, NULL, NULL, 0, "keep printing new events as they are committed (reconnects)"},
    {"ticket-rotate", "TRACKTLS_TICKET_ROTATE", TT_OPT_DURATION, "DURATION", "12h", 0,
     "how long one session-ticket key encrypts new tickets"},
    {"ticket-lifetime", "TRACKTLS_TICKET_LIFETIME", TT_OPT_DURATION, "DURATION", "24h", 0,
     "how long a session ticket stays valid, so its key decrypts"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))
/* Checked with the types, so a value out of range is refused as an option before any work. Ticket
 * keys are timed in whole seconds. */
static const struct tt_opt_range ranges[] = {
    {"concurrency", 1, RUN_MAX_CONCURRENCY},
    {"max-failures", 1, 0},
    {"timeout", 1, 0},
    {"ticket-rotate", TT_MS_PER_S, 0},
    {"ticket-lifetime", TT_MS_PER_S, 0},
};

#define COMMON_OPTS "db master-key-file config log-level"
#define ACME_OPTS "directory contact ca-file eab-kid eab-hmac-key timeout"
#define TICKET_OPTS "ticket-rotate ticket-lifetime"
#define PREFLIGHT_OPTS "edge-cname edge-addrs dns-server caa-identity"

struct command {
	const char *words; /* "domain add" */
	const char *args;  /* positional arguments for the usage line */
	int nargs;
	const char *opts;
	const char *help;
	int (*fn)(struct issuer_ctx *ctx);
};

static const struct command commands[] = {
    {"db migrate", "", 0, COMMON_OPTS, "apply the missing schema migrations", cli_db_migrate},
    {"keys generate", "", 0, "master-key-file config log-level", "create the master key file, or add a newer key to it",
     cli_keys_generate},
    {"keys rotate", "", 0, COMMON_OPTS " batch", "re-seal every stored key under the newest master key",
     cli_keys_rotate},
    {"domain add", "NAME", 1, COMMON_OPTS " owner profile",
     "add a tracking domain (issued by the next run); resumes a paused or removed one", cli_domain_add},
    {"domain remove", "NAME", 1, COMMON_OPTS " " ACME_OPTS " no-revoke",
     "revoke the current certificate, destroy the keys, remove the domain", cli_domain_remove},
    {"domain list", "", 0, COMMON_OPTS " json state", "list the domains' status (the domain_status view)",
     cli_domain_list},
    {"domain show", "NAME", 1, COMMON_OPTS " json", "one domain's status: state, https_ready, reason, certificate",
     cli_domain_show},
    {"domain check", "NAME", 1, COMMON_OPTS " " PREFLIGHT_OPTS " directory json",
     "DNS and CAA preflight now: the verdict and the record to fix (0 ok, 1 fails, 2 cannot check)", cli_domain_check},
    {"cert import", "NAME", 1, COMMON_OPTS " cert key", "store a certificate and key you bring (checks match and name)",
     cli_cert_import},
    {"cert import-batch", "LIST", 1, COMMON_OPTS " batch",
     "import many: LIST has one `NAME CHAIN.pem KEY.pem` per line ('-': stdin)", cli_cert_import_batch},
    {"revoke", "NAME", 1, COMMON_OPTS " " ACME_OPTS " reason", "revoke the domain's current certificate", cli_revoke},
    {"account show", "", 0, COMMON_OPTS " " ACME_OPTS, "show the ACME account for the directory", cli_account_show},
    {"account rollover", "", 0, COMMON_OPTS " " ACME_OPTS, "replace the account key (ACME keyChange)",
     cli_account_rollover},
    {"run", "", 0,
     COMMON_OPTS " " ACME_OPTS " profile key-type max-orders concurrency deadline dry-run order-budget "
		 "max-failures self-check-via no-self-check chain-ca-file https-check-via https-check-ca-file linger "
		 "events-retention metrics-file " TICKET_OPTS " " PREFLIGHT_OPTS " dormant-after",
     "rotate the session-ticket keys, issue and renew the due certificates, then exit (0 all done, 1 some "
     "failed, 2 cannot run); with --edge-cname or --edge-addrs, a DNS and CAA preflight before any order",
     run_main},
    {"events", "", 0, COMMON_OPTS " since follow json",
     "print domain events in id order (one JSON object per line with --json)", cli_events},
    {"tickets rotate", "", 0, COMMON_OPTS " " TICKET_OPTS,
     "create the next session-ticket key ahead of use and delete expired ones (what every run does first)",
     cli_tickets_rotate},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))
/* The most positional arguments a command takes. */
#define MAX_ARGS 8

static void print_usage(FILE *f)
{
	fprintf(f, "usage: issuer COMMAND [ARGS] [FLAGS]   (issuer COMMAND --help for its flags)\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-18s %-5s %s\n", commands[i].words, commands[i].args, commands[i].help);
}

static void print_command_help(const struct command *c)
{
	printf("usage: issuer %s%s%s [FLAGS]\n\n%s\n\nflags [default] (environment):\n", c->words, *c->args ? " " : "",
	       c->args, c->help);
	tt_opts_help(stdout, opts, NOPTS, c->opts);
	printf("\nSwitches take yes/no, true/false, on/off or 1/0.\n");
}

/* Matches the longest command whose words start argv. */
static const struct command *find_command(int argc, char **argv, int *used)
{
	const struct command *best = NULL;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		char words[64];
		snprintf(words, sizeof(words), "%s", commands[i].words);
		int n = 0;
		bool ok = true;
		for (char *save, *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save), n++)
			if (n >= argc || strcmp(argv[n], w) != 0) {
				ok = false;
				break;
			}
		if (ok && (!best || n > *used)) {
			best = &commands[i];
			*used = n;
		}
	}
	return best;
}

int main(int argc, char **argv)
{
	int used = 0;
	tt_process_protect_secrets();
	/* Once, before any worker thread: wolfSSL's first initialisation is not thread-safe. */
	if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
		fprintf(stderr, "issuer: wolfSSL failed to initialise\n");
		return 2;
	}
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		print_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? TT_EXIT_USAGE : 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("issuer %s\n", TT_VERSION);
		return 0;
	}
	const struct command *cmd = find_command(argc - 1, argv + 1, &used);
	if (!cmd) {
		fprintf(stderr, ISSUER_PROG ": unknown command '%s'\n", argv[1]);
		print_usage(stderr);
		return TT_EXIT_USAGE;
	}

	for (int i = 1 + used; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			print_command_help(cmd);
			return 0;
		}
	struct tt_opts o;
	struct tt_err err = {{0}};
	char *pos[MAX_ARGS];
	int npos = 0, rc = TT_EXIT_USAGE;
	int ok = tt_opts_init(&o, opts, NOPTS, &err);
	o.ranges = ranges;
	o.nranges = sizeof(ranges) / sizeof(ranges[0]);
	if (ok < 0 ||
	    tt_opts_parse_argv(&o, argc - 1 - used, argv + 1 + used, cmd->opts, pos, cmd->nargs, &npos, &err) < 0 ||
	    tt_opts_resolve(&o, "config", &err) < 0 || tt_opts_check(&o, cmd->opts, &err) < 0) {
		rc = tt_prog_fail(ISSUER_PROG, &err, TT_EXIT_USAGE);
		goto out;
	}
	if (npos < cmd->nargs) {
		fprintf(stderr, "usage: issuer %s %s [FLAGS]\n", cmd->words, cmd->args);
		goto out;
	}
	enum tt_level level;
	if (tt_log_parse_level(tt_opts_get(&o, "log-level"), &level) < 0) {
		tt_fail(&err, "--log-level: '%s' is not debug, info, warn or error", tt_opts_get(&o, "log-level"));
		rc = tt_prog_fail(ISSUER_PROG, &err, TT_EXIT_USAGE);
		goto out;
	}
	tt_log_set_level(level);
	struct issuer_ctx ctx = {.opts = &o, .argc = npos, .argv = pos};
	rc = cmd->fn(&ctx);
	tt_opts_free(&o);
	return rc;
out:
	if (rc == TT_EXIT_USAGE && cmd->fn == run_main)
		run_failed("options", err.msg[0] ? err.msg : "usage");
	tt_opts_free(&o);
	return rc;
}
