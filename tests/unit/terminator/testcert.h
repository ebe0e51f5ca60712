/* testcert: P-256 keys and self-signed certificates made with the openssl command for tests. */
#ifndef TRACKTLS_TESTCERT_H
#define TRACKTLS_TESTCERT_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int testcert_read(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	*out = malloc((size_t)n + 1);
	if (!*out || fread(*out, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(*out);
		return -1;
	}
	(*out)[n] = '\0';
	*len = (size_t)n;
	fclose(f);
	return 0;
}

static inline int testcert_read_in(const char *dir, const char *file, char **out, size_t *len)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return testcert_read(path, out, len);
}

/* A fresh key and certificate for name under dir; the key as PEM, or as PKCS#8 DER when der. */
static inline int testcert_make(const char *dir, const char *name, bool der, char **chain, size_t *chain_len,
				uint8_t **key, size_t *key_len)
{
	char cmd[4096], kpath[512], cpath[512], dpath[512];
	snprintf(kpath, sizeof(kpath), "%s/%s.key.pem", dir, name);
	snprintf(cpath, sizeof(cpath), "%s/%s.crt.pem", dir, name);
	snprintf(dpath, sizeof(dpath), "%s/%s.key.der", dir, name);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '%s' -out '%s' "
		 "-subj '/CN=%s' -addext 'subjectAltName=DNS:%s' -days 2 2>/dev/null && "
		 "openssl pkey -in '%s' -outform DER -out '%s' 2>/dev/null",
		 kpath, cpath, name, name, kpath, dpath);
	if (system(cmd) != 0)
		return -1;
	if (testcert_read(cpath, chain, chain_len) < 0)
		return -1;
	return testcert_read(der ? dpath : kpath, (char **)key, key_len);
}

static inline char *testcert_dir(void)
{
	char tmpl[512];
	const char *base = getenv("TT_WORK");
	snprintf(tmpl, sizeof(tmpl), "%s/testcert.XXXXXX", base && *base ? base : "/tmp");
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

static inline void testcert_cleanup(char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(dir);
}
#endif
