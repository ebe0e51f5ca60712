/* Tests common/config.c: precedence of flag > environment > file, and value parsers. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "common.h"

int main(void)
{
	struct tt_err err = {{0}};
	char path[] = "/tmp/tt-config-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "# comment\n db = host=/file\nbackend = \"127.0.0.1:8080\"\nmaster-key-file=/file/keys\n";
	CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write a config file");
	close(fd);

	struct tt_config_entry e[] = {
		{.key = "db", .env = "TT_TEST_DB_VAR"},
		{.key = "backend"},
		{.key = "master-key-file", .env = "TT_TEST_KEY_VAR"},
		{.key = "https"},
	};
	size_t n = sizeof(e) / sizeof(e[0]);
	e[0].value = "host=/flag"; /* given as a flag */
	setenv("TT_TEST_DB_VAR", "host=/env", 1);
	setenv("TT_TEST_KEY_VAR", "/env/keys", 1);
	tt_config_apply_env(e, n);
	CHECK(tt_config_load_file(e, n, path, &err) == 0, "load the file");
	CHECK(strcmp(e[0].value, "host=/flag") == 0, "a flag beats env and file");
	CHECK(strcmp(e[2].value, "/env/keys") == 0, "env beats the file");
	CHECK(strcmp(e[1].value, "127.0.0.1:8080") == 0, "file value, quotes removed");
	CHECK(e[3].value == NULL, "unset stays unset");
	tt_config_free(e, n);

	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(write(fd, "bogus = 1\n", 10) == 10, "rewrite the config file");
	close(fd);
	struct tt_config_entry e2[] = {{.key = "db"}};
	CHECK(tt_config_load_file(e2, 1, path, &err) != 0 && strstr(err.msg, "unknown key 'bogus'"),
	      "an unknown key is refused with its line");
	unlink(path);

	char host[64];
	uint16_t port = 0;
	CHECK(tt_parse_hostport(":443", host, sizeof(host), &port, &err) == 0 && host[0] == 0 && port == 443, ":PORT");
	CHECK(tt_parse_hostport("127.0.0.1:8080", host, sizeof(host), &port, &err) == 0 && strcmp(host, "127.0.0.1") == 0 &&
		      port == 8080,
	      "ADDR:PORT");
	CHECK(tt_parse_hostport("[::1]:80", host, sizeof(host), &port, &err) == 0 && strcmp(host, "::1") == 0 && port == 80,
	      "[v6]:PORT");
	CHECK(tt_parse_hostport("127.0.0.1", host, sizeof(host), &port, &err) != 0, "missing port refused");
	CHECK(tt_parse_hostport("a:99999", host, sizeof(host), &port, &err) != 0, "port out of range refused");
	int64_t ms = 0;
	CHECK(tt_parse_duration_ms("30", &ms, &err) == 0 && ms == 30000, "bare number is seconds");
	CHECK(tt_parse_duration_ms("250ms", &ms, &err) == 0 && ms == 250, "milliseconds");
	CHECK(tt_parse_duration_ms("2h", &ms, &err) == 0 && ms == 7200000, "hours");
	CHECK(tt_parse_duration_ms("5x", &ms, &err) != 0, "unknown unit refused");
	CHECK(tt_parse_duration_ms("-1", &ms, &err) != 0, "negative refused");
	char q[64];
	CHECK(strcmp(tt_log_quote(q, sizeof(q), "plain"), "plain") == 0, "plain logfmt value unquoted");
	CHECK(strcmp(tt_log_quote(q, sizeof(q), "a \"b\"\n"), "\"a \\\"b\\\"\\n\"") == 0, "logfmt value quoted and escaped");
	CHECK_DONE();
}
