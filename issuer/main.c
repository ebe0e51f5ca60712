/* issuer main: picks the command, resolves flags > environment > config file > defaults, and
 * prints --help for each command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/ssl.h>

#include "issuer.h"

struct opt_doc {
	const char *key;
	const char *env;
	const char *arg; /* NULL: a boolean flag */
	const char *help;
};

static const struct opt_doc opt_docs[] = {
    {"db", "TRACKTLS_DB", "CONNINFO", "libpq connection string (PG* variables also work)"},
    {"master-key-file", "TRACKTLS_MASTER_KEY_FILE", "PATH", "master key ring (mode 0600)"},
    {"config", "TRACKTLS_ISSUER_CONFIG", "PATH", "config file of `key = value` lines, keys as the flags"},
    {"log-level", "TRACKTLS_LOG_LEVEL", "LEVEL", "debug, info, warn or error (default info)"},
    {"json", NULL, NULL, "print JSON"},
    {"owner", NULL, "REF", "owner reference stored with the domain"},
    {"cert", NULL, "CHAIN.pem", "certificate chain, leaf first"},
    {"key", NULL, "KEY.pem", "private key of the leaf"},
    {"directory", "TRACKTLS_ACME_DIRECTORY", "URL",
     "ACME directory (default Let's Encrypt production); repeat for fallback CAs, preferred first"},
    {"contact", "TRACKTLS_ACME_CONTACT", "EMAIL", "account contact address"},
    {"ca-file", "TRACKTLS_ACME_CA_FILE", "PATH", "trust for the CA's HTTPS (a test CA such as Pebble); per directory"},
    {"chain-ca-file", "TRACKTLS_CHAIN_CA_FILE", "PATH",
     "roots a downloaded chain must verify to (default the system store; a test CA's root); per directory"},
    {"eab-kid", "TRACKTLS_EAB_KID", "KID", "external account binding key id; per directory ('-': none)"},
    {"eab-hmac-key", "TRACKTLS_EAB_HMAC_KEY", "B64URL", "external account binding HMAC key; per directory"},
    {"caa-identity", "TRACKTLS_CAA_IDENTITY", "DOMAIN",
     "the CA's CAA issuer domain (default letsencrypt.org); per directory"},
    {"edge-cname", "TRACKTLS_EDGE_CNAME", "NAMES",
     "preflight: names point at the edge when their CNAME chain reaches one of these (comma-separated)"},
    {"edge-addrs", "TRACKTLS_EDGE_ADDRS", "LIST",
     "preflight: or when all their A/AAAA records are in this list (addresses or CIDR, comma-separated)"},
    {"dns-server", "TRACKTLS_DNS_SERVER", "ADDR:PORT", "preflight resolver (default the system's)"},
    {"dormant-after", NULL, "DURATION", "a domain whose preflight keeps failing this long turns dormant (default 30d)"},
    {"state", NULL, "STATE", "only domains in this state (pending, active, failing, paused, dormant)"},
    {"profile", "TRACKTLS_ACME_PROFILE", "NAME", "ACME profile for new orders (when the CA lists it)"},
    {"key-type", NULL, "ecdsa|rsa", "domain key type (default ecdsa: P-256)"},
    {"max-orders", NULL, "N", "stop after starting N orders"},
    {"concurrency", NULL, "N", "orders in flight (default 8)"},
    {"deadline", NULL, "SECONDS", "stop taking new work after this long"},
    {"dry-run", NULL, NULL, "list the domains that are due, order nothing"},
    {"order-budget", NULL, "N", "new orders per rolling 3 hours, shared by all runs (default 300)"},
    {"max-failures", NULL, "N", "consecutive failures before a domain is paused (default 8)"},
    {"self-check-via", NULL, "ADDR:PORT", "send the challenge self-check to this address"},
    {"no-self-check", NULL, NULL, "answer challenges without checking our own port 80 first"},
    {"https-check-via", "TRACKTLS_HTTPS_CHECK_VIA", "ADDR:PORT",
     "where the edge's HTTPS is for the served check (default: the name itself, port 443)"},
    {"https-check-ca-file", "TRACKTLS_HTTPS_CHECK_CA_FILE", "PATH",
     "trust for the served chain (default: the system's; the test CA's root)"},
    {"linger", NULL, "SECONDS", "stay up to SECONDS after the start, ordering added or resumed domains at once"},
    {"events-retention", NULL, "DURATION", "delete domain events older than this (default 30d)"},
    {"metrics-file", NULL, "PATH", "Prometheus textfile written atomically at the end"},
    {"timeout", NULL, "DURATION", "per-request timeout (default 30s)"},
    {"reason", NULL, "CODE", "RFC 5280 revocation reason code (default 0)"},
    {"no-revoke", NULL, NULL, "remove without revoking the current certificate"},
    {"batch", NULL, "N", "rows per transaction (default 100)"},
    {"since", NULL, "ID", "print the events after this id (default 0: all kept)"},
    {"follow", NULL, NULL, "keep printing new events as they are committed (reconnects)"},
    {"ticket-rotate", "TRACKTLS_TICKET_ROTATE", "DURATION",
     "how long one session-ticket key encrypts new tickets (default 12h)"},
    {"ticket-lifetime", "TRACKTLS_TICKET_LIFETIME", "DURATION",
     "how long a session ticket stays valid, so its key decrypts (default 24h)"},
};
#define NOPTS (sizeof(opt_docs) / sizeof(opt_docs[0]))

#define COMMON_OPTS "db master-key-file config log-level"
#define ACME_OPTS "directory contact ca-file eab-kid eab-hmac-key timeout"
#define TICKET_OPTS "ticket-rotate ticket-lifetime"
/* Flags that may be given several times: their values are kept in order, one per line. */
#define REPEATABLE_OPTS "directory ca-file chain-ca-file eab-kid eab-hmac-key caa-identity"
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

static bool in_list(const char *list, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == kl && strncmp(p, key, l) == 0)
			return true;
		p += l;
		while (*p == ' ')
			p++;
	}
	return false;
}

static bool opt_allowed(const struct command *c, const char *key)
{
	return in_list(c->opts, key);
}

static const struct opt_doc *opt_doc_find(const char *key)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opt_docs[i].key, key) == 0)
			return &opt_docs[i];
	return NULL;
}

static void print_usage(FILE *f)
{
	fprintf(f, "usage: issuer COMMAND [ARGS] [FLAGS]   (issuer COMMAND --help for its flags)\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-18s %-5s %s\n", commands[i].words, commands[i].args, commands[i].help);
}

static void print_command_help(const struct command *c)
{
	printf("usage: issuer %s%s%s [FLAGS]\n\n%s\n\nflags:\n", c->words, *c->args ? " " : "", c->args, c->help);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_doc *d = &opt_docs[i];
		if (!opt_allowed(c, d->key))
			continue;
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", d->key, d->arg ? " " : "", d->arg ? d->arg : "");
		if (d->env)
			printf("  %-30s %s  [$%s]\n", left, d->help, d->env);
		else
			printf("  %-30s %s\n", left, d->help);
	}
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

/* A repeated flag keeps every value, one per line (issuer_opt_item reads them). */
static int set_value(struct tt_config_entry *e, const char *v, bool repeat)
{
	if (!repeat || !e->value) {
		e->value = v;
		return 0;
	}
	char *joined;
	if (asprintf(&joined, "%s\n%s", e->value, v) < 0)
		return -1;
	free(e->owned);
	e->owned = joined;
	e->value = joined;
	return 0;
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
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("issuer %s\n", TT_VERSION);
		return 0;
	}
	const struct command *cmd = find_command(argc - 1, argv + 1, &used);
	if (!cmd) {
		fprintf(stderr, "issuer: unknown command '%s'\n", argv[1]);
		print_usage(stderr);
		return 2;
	}

	struct tt_config_entry cfg[NOPTS];
	for (size_t i = 0; i < NOPTS; i++)
		cfg[i] = (struct tt_config_entry){.key = opt_docs[i].key, .env = opt_docs[i].env};
	char *pos[8];
	int npos = 0;
	int rc = 2;
	for (int i = 1 + used; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			print_command_help(cmd);
			rc = 0;
			goto out;
		}
		if (strncmp(a, "--", 2) != 0) {
			if (npos >= cmd->nargs) {
				fprintf(stderr, "issuer %s: unexpected argument '%s'\n", cmd->words, a);
				goto out;
			}
			pos[npos++] = argv[i];
			continue;
		}
		char key[64];
		const char *eq = strchr(a + 2, '=');
		size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (kl >= sizeof(key))
			kl = sizeof(key) - 1;
		memcpy(key, a + 2, kl);
		key[kl] = '\0';
		const struct opt_doc *d = opt_doc_find(key);
		if (!d || !opt_allowed(cmd, key)) {
			fprintf(stderr, "issuer %s: unknown flag --%s (see issuer %s --help)\n", cmd->words, key,
				cmd->words);
			goto out;
		}
		struct tt_config_entry *e = tt_config_find(cfg, NOPTS, key);
		const char *v;
		if (!d->arg)
			v = eq ? eq + 1 : "1";
		else if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else {
			fprintf(stderr, "issuer %s: --%s needs a value (%s)\n", cmd->words, key, d->arg);
			goto out;
		}
		if (set_value(e, v, in_list(REPEATABLE_OPTS, key)) < 0) {
			fprintf(stderr, "issuer: out of memory\n");
			goto out;
		}
	}
	if (npos < cmd->nargs) {
		fprintf(stderr, "usage: issuer %s %s [FLAGS]\n", cmd->words, cmd->args);
		goto out;
	}
	tt_config_apply_env(cfg, NOPTS);
	struct tt_err err = {{0}};
	const char *cfgfile = tt_config_find(cfg, NOPTS, "config")->value;
	if (cfgfile && tt_config_load_file(cfg, NOPTS, cfgfile, &err) < 0) {
		fprintf(stderr, "issuer: %s\n", err.msg);
		goto out;
	}
	const char *lvl = tt_config_find(cfg, NOPTS, "log-level")->value;
	if (lvl) {
		enum tt_level level;
		if (tt_log_parse_level(lvl, &level) < 0) {
			fprintf(stderr, "issuer: bad --log-level '%s'\n", lvl);
			goto out;
		}
		tt_log_set_level(level);
	}
	struct issuer_ctx ctx = {.cfg = cfg, .ncfg = NOPTS, .argc = npos, .argv = pos};
	rc = cmd->fn(&ctx);
	tt_config_free(cfg, NOPTS);
	return rc;
out:
	if (rc == 2 && cmd->fn == run_main)
		run_failed("options", "refused before the run (see stderr)");
	tt_config_free(cfg, NOPTS);
	return rc;
}
