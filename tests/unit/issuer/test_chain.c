/* chain.c: a downloaded chain is accepted only when it verifies to the trusted roots, is valid now,
 * and its leaf has our CSR's key and exactly the ordered name. The chains are made with openssl. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "issuer.h"

static char dir[] = "/tmp/tt_chain_XXXXXX";

/* A file of the fixture as a string (malloc'd), or NULL. */
static char *slurp(const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 65536);
	size_t n = buf ? fread(buf, 1, 65535, f) : 0;
	fclose(f);
	if (buf && n == 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static const char fixture[] =
    "set -e; cd \"$1\"\n"
    "ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj \"/CN=$1\""
    " -keyout $1.key -out $1.pem -addext basicConstraints=critical,CA:TRUE"
    " -addext keyUsage=critical,keyCertSign,cRLSign; }\n"
    "ca root; ca other\n"
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=inter -keyout inter.key -out inter.csr\n"
    "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,cRLSign\\n' >ca.ext\n"
    "printf 'basicConstraints=critical,CA:FALSE\\n' >notca.ext\n"
    "openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -extfile ca.ext -out "
    "inter.pem\n"
    "openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -extfile notca.ext"
    " -out notca.pem\n"
    "openssl req -inform DER -in csr.der -out csr.pem\n"
    "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=a.test -keyout x.key -out other.csr\n"
    "leaf() { printf 'subjectAltName=%s\\n' \"$3\" >$2.ext; openssl x509 -req -in $1 -CA $4.pem -CAkey inter.key"
    " -CAcreateserial -days 20 -extfile $2.ext -out $2.pem; }\n"
    "leaf csr.pem good DNS:a.test inter; leaf csr.pem extra DNS:a.test,DNS:b.test inter\n"
    "leaf other.csr otherkey DNS:a.test inter; leaf csr.pem undernotca DNS:a.test notca\n"
    "cat good.pem inter.pem >chain_good.pem; cat good.pem inter.pem root.pem >chain_with_root.pem\n"
    "cat extra.pem inter.pem >chain_extra.pem; cat otherkey.pem inter.pem >chain_otherkey.pem\n"
    "cat undernotca.pem notca.pem >chain_notca.pem\n";

static int verify(const char *trust, const char *chain_file, const uint8_t *csr, size_t csr_len, time_t now,
		  struct tt_err *err)
{
	char *chain = slurp(chain_file), path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, trust);
	int rc = chain ? chain_verify(path, chain, strlen(chain), "a.test", csr, csr_len, now, err) : -2;
	free(chain);
	return rc;
}

int main(void)
{
	struct tt_err err = {{0}};
	uint8_t *key = NULL, *csr = NULL;
	size_t key_len = 0, csr_len = 0;
	char cmd[512], path[256];
	if (!mkdtemp(dir) || keygen_domain(KEY_ECDSA_P256, "a.test", &key, &key_len, &csr, &csr_len, &err) < 0) {
		CHECK(0, "a temporary folder and a CSR for a.test");
		CHECK_DONE();
	}
	snprintf(path, sizeof(path), "%s/csr.der", dir);
	FILE *f = fopen(path, "w");
	bool wrote = f && fwrite(csr, 1, csr_len, f) == csr_len;
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/fixture.sh", dir);
	f = fopen(path, "w");
	wrote = wrote && f && fputs(fixture, f) >= 0;
	if (f)
		fclose(f);
	snprintf(cmd, sizeof(cmd), "bash %s/fixture.sh %s >%s/fixture.log 2>&1", dir, dir, dir);
	CHECK(wrote && system(cmd) == 0, "openssl makes a root, an intermediate and leaves for our CSR");
	time_t now = time(NULL);

	CHECK(verify("root.pem", "chain_good.pem", csr, csr_len, now, &err) == 0,
	      "leaf + intermediate to the root: accepted");
	CHECK(verify("root.pem", "chain_with_root.pem", csr, csr_len, now, &err) == 0,
	      "  ... also with the root sent along");
	CHECK(verify("other.pem", "chain_good.pem", csr, csr_len, now, &err) < 0 && strstr(err.msg, "does not verify"),
	      "the same chain against other roots: refused");
	CHECK(verify("root.pem", "good.pem", csr, csr_len, now, &err) < 0 && strstr(err.msg, "does not verify"),
	      "the leaf without its intermediate: refused");
	CHECK(verify("root.pem", "chain_extra.pem", csr, csr_len, now, &err) < 0 && strstr(err.msg, "b.test"),
	      "a leaf naming a name we did not order: refused, naming it");
	CHECK(verify("root.pem", "chain_otherkey.pem", csr, csr_len, now, &err) < 0 && strstr(err.msg, "public key"),
	      "a leaf for another key than our CSR's: refused");
	CHECK(verify("root.pem", "chain_notca.pem", csr, csr_len, now, &err) < 0 && strstr(err.msg, "not a CA"),
	      "a leaf signed by a certificate that is not a CA: refused");
	CHECK(verify("root.pem", "chain_good.pem", csr, csr_len, now + 25 * 86400, &err) < 0 &&
		  strstr(err.msg, "not valid now"),
	      "an expired leaf: refused");
	CHECK(chain_verify(NULL, "no certificate here", 19, "a.test", csr, csr_len, now, &err) < 0 &&
		  strstr(err.msg, "no PEM certificate"),
	      "no certificate at all: refused");
	snprintf(path, sizeof(path), "%s/missing.pem", dir);
	char *good = slurp("chain_good.pem");
	CHECK(good && chain_verify(path, good, strlen(good), "a.test", csr, csr_len, now, &err) < 0 &&
		  strstr(err.msg, "cannot load the trusted roots"),
	      "a missing --chain-ca-file: refused, saying so");
	CHECK(good && chain_verify(NULL, good, strlen(good), "a.test", csr, csr_len, now, &err) < 0 &&
		  strstr(err.msg, CHAIN_SYSTEM_STORE),
	      "by default the system store is the trust, and a private root is not in it");
	free(good);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
	tt_secret_free(key, key_len);
	free(csr);
	CHECK_DONE();
}
