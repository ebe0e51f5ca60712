/* Tests common/options.c: the boolean rule, precedence flag > environment > file > default, the
 * one error format, unknown flags, bad numbers and durations, repeatable flags and --help. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common.h"

static const struct tt_opt table[] = {
    {"config", "TT_TEST_OPT_CONFIG", TT_OPT_PATH, "FILE", NULL, TT_OPT_LIVE, "a config file"},
    {"name", "TT_TEST_OPT_NAME", TT_OPT_STRING, "NAME", "built-in", 0, "a name"},
    {"count", "TT_TEST_OPT_COUNT", TT_OPT_INT, "N", "8", TT_OPT_LIVE, "a count"},
    {"wait", NULL, TT_OPT_DURATION, "DURATION", "30s", 0, "a wait"},
    {"size", NULL, TT_OPT_SIZE, "BYTES", "1K", 0, "a size"},
    {"dry-run", "TT_TEST_OPT_DRY", TT_OPT_BOOL, NULL, NULL, 0, "a switch"},
    {"directory", NULL, TT_OPT_STRING, "URL", NULL, TT_OPT_REPEAT, "repeatable"},
    {"only-run", NULL, TT_OPT_STRING, "X", NULL, 0, "taken by one command only"},
    {"version", NULL, TT_OPT_ACTION, NULL, NULL, 0, "an action"},
    {"workers", NULL, TT_OPT_INT, "N", "4", 0, "a bounded count"},
    {"grace", NULL, TT_OPT_DURATION, "DURATION", "5s", 0, "at least a second"},
};
#define N (sizeof table / sizeof table[0])
static const struct tt_opt_range ranges[] = {{"workers", 1, 16}, {"grace", 1000, 0}};

/* Parses argv (a NULL-terminated list) through the whole layer; returns what the parse returned. */
static int parse(struct tt_opts *o, const char *allowed, struct tt_err *err, char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	char *pos[2];
	int npos = 0;
	if (tt_opts_init(o, table, N, err) < 0)
		return -1;
	o->ranges = ranges;
	o->nranges = sizeof ranges / sizeof ranges[0];
	if (tt_opts_parse_argv(o, argc, argv, allowed, pos, 2, &npos, err) < 0 || tt_opts_resolve(o, "config", err) < 0)
		return -1;
	return tt_opts_check(o, allowed, err);
}

/* Writes text into a new temporary file named by path (a mkstemp template). */
static bool write_file(char *path, const char *text)
{
	int fd = mkstemp(path);
	bool ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* True when parsing argv is refused with a message that starts with want. */
static bool refused_with(const char *allowed, char **argv, const char *want)
{
	struct tt_opts o;
	struct tt_err err = {{0}};
	bool refused = parse(&o, allowed, &err, argv) < 0 && strncmp(err.msg, want, strlen(want)) == 0;
	if (!refused)
		printf("# got: %s\n", err.msg);
	tt_opts_free(&o);
	return refused;
}

/* One flag refused, and the error it must start with. */
static const struct refusal {
	const char *arg, *allowed, *want, *name;
} refusals[] = {
    {"--no-such", NULL, "--no-such: unknown flag", "an unknown flag is refused"},
    {"--only-run=x", "name count", "--only-run: unknown flag", "a flag another command takes is refused"},
    {"--count", NULL, "--count: needs a value (N)", "a flag without its value is refused"},
    {"--count=-1", NULL, "--count: ", "a negative count"},
    {"--count=3x", NULL, "--count: ", "a count with trailing text"},
    {"--wait=soon", NULL, "--wait: bad duration 'soon'", "a bad duration"},
    {"--size=12Q", NULL, "--size: '12Q' is not a size", "a bad size"},
    {"--workers=0", NULL, "--workers: must be 1 to 16", "a count below its range"},
    {"--workers=17", NULL, "--workers: must be 1 to 16", "a count above its range"},
    {"--grace=500ms", NULL, "--grace: must be at least 1s", "a duration below its least"},
};

static bool switch_value(const char *arg, bool *refused)
{
	struct tt_opts o;
	struct tt_err err = {{0}};
	char *argv[] = {(char *)arg, NULL};
	*refused = parse(&o, NULL, &err, argv) < 0;
	bool v = tt_opts_bool(&o, "dry-run");
	tt_opts_free(&o);
	return v;
}

int main(void)
{
	struct tt_err err = {{0}};
	struct tt_opts o;
	bool refused;

	static const char *const yes[] = {"--dry-run", "--dry-run=yes", "--dry-run=true", "--dry-run=on",
					  "--dry-run=1"};
	static const char *const no[] = {"--dry-run=no", "--dry-run=false", "--dry-run=off", "--dry-run=0"};
	bool all = true;
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		all = all && switch_value(yes[i], &refused) && !refused;
	CHECK(all, "a switch alone, yes, true, on and 1 turn it on");
	all = true;
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		all = all && !switch_value(no[i], &refused) && !refused;
	CHECK(all, "no, false, off and 0 turn it off (--dry-run=off is not a dry run)");
	CHECK(!switch_value("--dry-run=maybe", &refused) && refused, "anything else is refused");
	{
		char *argv[] = {"--dry-run=Off", NULL};
		CHECK(refused_with(NULL, argv,
				   "--dry-run: 'Off' is not yes, no, true, false, "
				   "on, off, 1 or 0"),
		      "the refusal names the flag and the accepted words");
	}
	setenv("TT_TEST_OPT_DRY", "perhaps", 1);
	CHECK(!switch_value("--name=x", &refused) && refused, "the boolean rule holds for the environment too");
	unsetenv("TT_TEST_OPT_DRY");

	char path[] = "/tmp/tt-options-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "name = from-file\ncount = 3\nwait = 5m\n";
	CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write a config file");
	close(fd);
	setenv("TT_TEST_OPT_CONFIG", path, 1);
	setenv("TT_TEST_OPT_COUNT", "5", 1);
	{
		char *argv[] = {NULL};
		CHECK(parse(&o, NULL, &err, argv) == 0, "resolve from environment and file");
		long count = 0;
		int64_t ms = 0;
		size_t size = 0;
		CHECK(strcmp(tt_opts_get(&o, "name"), "from-file") == 0, "the file beats the default");
		CHECK(tt_opts_int(&o, "count", &count, &err) == 0 && count == 5, "the environment beats the file");
		CHECK(tt_opts_duration_ms(&o, "wait", &ms, &err) == 0 && ms == 300000, "a duration from the file");
		CHECK(tt_opts_size(&o, "size", &size, &err) == 0 && size == 1024, "the default when nothing sets it");
		CHECK(tt_opts_get(&o, "directory") == NULL, "unset without a default stays unset");
		tt_opts_free(&o);
	}
	{
		char *argv[] = {"--count", "7", "--name=flag", NULL};
		long count = 0;
		CHECK(parse(&o, NULL, &err, argv) == 0 && tt_opts_int(&o, "count", &count, &err) == 0 && count == 7 &&
			  strcmp(tt_opts_get(&o, "name"), "flag") == 0,
		      "a flag beats the environment and the file");
		tt_opts_free(&o);
	}
	unsetenv("TT_TEST_OPT_COUNT");
	unsetenv("TT_TEST_OPT_CONFIG");
	unlink(path);

	for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
		char *argv[] = {(char *)refusals[i].arg, NULL};
		CHECK(refused_with(refusals[i].allowed, argv, refusals[i].want), refusals[i].name);
	}
	{
		char *argv[] = {"a", "b", "c", NULL};
		CHECK(refused_with(NULL, argv, "unexpected argument 'c'"),
		      "more positional arguments than the command takes");
	}
	{
		char *argv[] = {"--directory", "https://one", "--name=a", "--directory=https://two", "--name=b", NULL};
		CHECK(parse(&o, NULL, &err, argv) == 0 &&
			  strcmp(tt_opts_get(&o, "directory"), "https://one\nhttps://two") == 0 &&
			  strcmp(tt_opts_get(&o, "name"), "b") == 0,
		      "a repeatable flag keeps every value in order; another keeps the last");
		tt_opts_free(&o);
	}

	{
		char *argv[] = {"--workers=16", "--grace=2h", NULL};
		CHECK(parse(&o, NULL, &err, argv) == 0, "values within their ranges");
		tt_opts_free(&o);
	}

	char rpath[] = "/tmp/tt-options-XXXXXX";
	CHECK(write_file(rpath, "directory = https://one\ndirectory = https://two\nname = a\nname = b\n"),
	      "write a config file with a repeated key");
	{
		char *argv[] = {"--config", rpath, NULL};
		CHECK(parse(&o, NULL, &err, argv) == 0 && tt_opts_get(&o, "directory") &&
			  strcmp(tt_opts_get(&o, "directory"), "https://one\nhttps://two") == 0 &&
			  strcmp(tt_opts_get(&o, "name"), "b") == 0,
		      "a repeatable key written twice in the file keeps both lines in order; another keeps the last");
		tt_opts_free(&o);
	}
	{
		char *argv[] = {"--config", rpath, "--directory=https://flag", NULL};
		CHECK(parse(&o, NULL, &err, argv) == 0 && strcmp(tt_opts_get(&o, "directory"), "https://flag") == 0,
		      "the file's lines never add to a repeatable flag's values");
		tt_opts_free(&o);
	}
	unlink(rpath);

	char apath[] = "/tmp/tt-options-XXXXXX";
	CHECK(write_file(apath, "version = yes\n"), "write a config file with an action");
	{
		char *argv[] = {"--config", apath, NULL};
		struct tt_opts a;
		int rc = parse(&a, NULL, &err, argv);
		CHECK(rc < 0 && strstr(err.msg, ":1: 'version' is a command-line flag only"),
		      "an action (--version, --help) in the file is refused with its line");
		if (rc == 0)
			printf("# version=%s\n", tt_opts_get(&a, "version") ? tt_opts_get(&a, "version") : "(unset)");
		tt_opts_free(&a);
	}
	unlink(apath);

	char epath[] = "/tmp/tt-options-XXXXXX";
	CHECK(write_file(epath, "count =\nname = \n"), "write a config file with empty values");
	{
		char *argv[] = {"--config", epath, NULL};
		long count = 0;
		CHECK(parse(&o, NULL, &err, argv) == 0 && tt_opts_int(&o, "count", &count, &err) == 0 && count == 8 &&
			  strcmp(tt_opts_get(&o, "name"), "built-in") == 0,
		      "an empty value in the file leaves the key unset: the default applies");
		tt_opts_free(&o);
	}
	unlink(epath);
	{
		char *argv[] = {"--count=", "--wait", "", NULL};
		long count = 0;
		int64_t ms = 0;
		CHECK(parse(&o, NULL, &err, argv) == 0 && tt_opts_int(&o, "count", &count, &err) == 0 && count == 8 &&
			  tt_opts_duration_ms(&o, "wait", &ms, &err) == 0 && ms == 30000,
		      "an empty flag leaves the key unset, as an empty environment variable does: the default applies");
		tt_opts_free(&o);
	}
	{
		char *argv[] = {"--count", "3", "--count=", NULL};
		long count = 0;
		CHECK(parse(&o, NULL, &err, argv) == 0 && tt_opts_int(&o, "count", &count, &err) == 0 && count == 8,
		      "an empty flag after a value unsets it, as the last flag wins: the default applies");
		tt_opts_free(&o);
	}
	setenv("TT_TEST_OPT_COUNT", "", 1);
	{
		char *argv[] = {NULL};
		long count = 0;
		CHECK(parse(&o, NULL, &err, argv) == 0 && tt_opts_int(&o, "count", &count, &err) == 0 && count == 8,
		      "an empty environment variable leaves the key unset");
		tt_opts_free(&o);
	}
	unsetenv("TT_TEST_OPT_COUNT");

	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	tt_opts_help(f, table, N, "count dry-run");
	fclose(f);
	CHECK(strcmp(buf, "  --count N                          a count [8] (TT_TEST_OPT_COUNT)\n"
			  "  --dry-run                          a switch (TT_TEST_OPT_DRY)\n") == 0,
	      "--help: one line per allowed row with its default and variable");
	free(buf);
	CHECK_DONE();
}
