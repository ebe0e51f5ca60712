/* keygen.c: fresh keys of both types, and CSRs that openssl accepts (signature and the one SAN). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "issuer.h"

/* Pipes the DER CSR through `openssl req -verify` and returns its text form's first SAN line. */
static int openssl_csr(const uint8_t *csr, size_t len, char *san, size_t size)
{
	char path[] = "/tmp/tt-csr-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "w");
	fwrite(csr, 1, len, f);
	fclose(f);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "openssl req -inform DER -in %s -verify -noout -text 2>&1", path);
	FILE *p = popen(cmd, "r");
	int verified = 0;
	char line[512];
	san[0] = 0;
	bool next_is_san = false;
	while (p && fgets(line, sizeof(line), p)) {
		if (strstr(line, "verify OK") || strstr(line, "Certificate request self-signature verify OK"))
			verified = 1;
		if (next_is_san) {
			snprintf(san, size, "%s", line + strspn(line, " "));
			san[strcspn(san, "\n")] = 0;
			next_is_san = false;
		}
		if (strstr(line, "X509v3 Subject Alternative Name"))
			next_is_san = true;
	}
	if (p)
		pclose(p);
	unlink(path);
	return verified ? 0 : -1;
}

int main(void)
{
	struct tt_err err = {{0}};
	enum key_type t;
	CHECK(key_type_parse(NULL, &t, &err) == 0 && t == KEY_ECDSA_P256, "default key type is ECDSA P-256");
	CHECK(key_type_parse("rsa", &t, &err) == 0 && t == KEY_RSA_2048, "--key-type rsa");
	CHECK(key_type_parse("dsa", &t, &err) < 0 && strstr(err.msg, "ecdsa or rsa"), "unknown key type refused");

	for (int i = 0; i < 2; i++) {
		enum key_type type = i ? KEY_RSA_2048 : KEY_ECDSA_P256;
		uint8_t *key = NULL, *csr = NULL;
		size_t key_len = 0, csr_len = 0;
		char name[64];
		snprintf(name, sizeof(name), "%s.keygen.example", i ? "rsa" : "ec");
		int rc = keygen_domain(type, name, &key, &key_len, &csr, &csr_len, &err);
		CHECK(rc == 0, i ? "RSA-2048 key and CSR" : "P-256 key and CSR");
		if (rc)
			continue;
		char kt[32];
		CHECK(certinfo_key_type(key, key_len, kt, sizeof(kt), &err) == 0 &&
			  strcmp(kt, key_type_name(type)) == 0,
		      "the key reads back as its type");
		CHECK(memmem(key, key_len, "PRIVATE KEY-----", 16) != NULL, "the key is PEM");
		char san[256], want[100];
		snprintf(want, sizeof(want), "DNS:%s", name);
		CHECK(openssl_csr(csr, csr_len, san, sizeof(san)) == 0, "openssl verifies the CSR signature");
		CHECK(strcmp(san, want) == 0, "the CSR asks for exactly the one name");
		tt_secret_free(key, key_len);
		free(csr);
	}
	uint8_t *ak;
	size_t ak_len;
	struct jws_key *jk = NULL;
	CHECK(keygen_account(&ak, &ak_len, &err) == 0 && jws_key_load(ak, ak_len, &jk, &err) == 0,
	      "an account key loads as a JWS key");
	CHECK(jk && strlen(jws_key_thumbprint(jk)) == 43, "JWK thumbprint is 43 base64url characters");
	jws_key_free(jk);
	tt_secret_free(ak, ak_len);
	CHECK_DONE();
}
