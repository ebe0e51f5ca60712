/* bench/certgen: mints a local CA and N ECDSA P-256 leaf certificates (SAN = one name each) as
 * PEM files, in forked batches. OpenSSL's libcrypto, because our wolfSSL build lacks WOLFSSL_ALT_NAMES. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct opts {
	const char *out;
	const char *suffix;
	long count;
	long start;
	int jobs;
	int days;
	int split; /* also DIR/import/NAME.crt and NAME.key: the issuer stores --cert verbatim */
};

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* A certificate for pkey named cn, signed by (issuer, issuer_key); self-signed when issuer is NULL. */
static X509 *make_cert(EVP_PKEY *pkey, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int days, int ca)
{
	X509 *x = X509_new();
	unsigned char serial[16];
	if (!x || RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	if (!ok || !X509_set_version(x, 2) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400) || !X509_set_pubkey(x, pkey))
		goto fail;
	X509_NAME *name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0))
		goto fail;
	if (!X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name))
		goto fail;
	X509 *iss = issuer ? issuer : x;
	char san[300];
	snprintf(san, sizeof(san), "DNS:%s", cn);
	if (ca) {
		if (add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
		    add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
		    add_ext(x, iss, NID_subject_key_identifier, "hash") < 0)
			goto fail;
	} else if (add_ext(x, iss, NID_basic_constraints, "CA:FALSE") < 0 ||
		   add_ext(x, iss, NID_key_usage, "critical,digitalSignature") < 0 ||
		   add_ext(x, iss, NID_ext_key_usage, "serverAuth") < 0 ||
		   add_ext(x, iss, NID_subject_alt_name, san) < 0 ||
		   add_ext(x, iss, NID_authority_key_identifier, "keyid") < 0) {
		goto fail;
	}
	if (!X509_sign(x, issuer_key ? issuer_key : pkey, EVP_sha256()))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int ok =
	    (!cert || PEM_write_X509(f, cert)) && (!key || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* Loads OUT/ca.crt and OUT/ca.key, or creates them. */
static int load_or_make_ca(const char *out, int days, X509 **ca, EVP_PKEY **ca_key)
{
	char crt[4096], key[4096];
	snprintf(crt, sizeof(crt), "%s/ca.crt", out);
	snprintf(key, sizeof(key), "%s/ca.key", out);
	FILE *fc = fopen(crt, "r"), *fk = fopen(key, "r");
	if (fc && fk) {
		*ca = PEM_read_X509(fc, NULL, NULL, NULL);
		*ca_key = PEM_read_PrivateKey(fk, NULL, NULL, NULL);
	}
	if (fc)
		fclose(fc);
	if (fk)
		fclose(fk);
	if (*ca && *ca_key)
		return 0;
	*ca_key = EVP_EC_gen("P-256");
	*ca = *ca_key ? make_cert(*ca_key, "tracktls bench CA", NULL, NULL, days * 4, 1) : NULL;
	if (!*ca || write_pem(crt, *ca, NULL) < 0 || write_pem(key, NULL, *ca_key) < 0) {
		fprintf(stderr, "certgen: cannot create the CA in %s\n", out);
		return -1;
	}
	chmod(key, 0600);
	return 0;
}

static void name_of(const struct opts *o, long i, char *buf, size_t size)
{
	snprintf(buf, size, "n%07ld%s", i, o->suffix);
}

static int mint_range(const struct opts *o, X509 *ca, EVP_PKEY *ca_key, long from, long to)
{
	char name[256], path[4096];
	for (long i = from; i < to; i++) {
		name_of(o, i, name, sizeof(name));
		EVP_PKEY *k = EVP_EC_gen("P-256");
		X509 *x = k ? make_cert(k, name, ca, ca_key, o->days, 0) : NULL;
		snprintf(path, sizeof(path), "%s/pem/%s.pem", o->out, name);
		int rc = x ? write_pem(path, x, k) : -1;
		if (rc == 0 && o->split) {
			snprintf(path, sizeof(path), "%s/import/%s.crt", o->out, name);
			rc = write_pem(path, x, NULL);
			snprintf(path, sizeof(path), "%s/import/%s.key", o->out, name);
			if (rc == 0)
				rc = write_pem(path, NULL, k);
		}
		X509_free(x);
		EVP_PKEY_free(k);
		if (rc < 0) {
			fprintf(stderr, "certgen: cannot mint %s: %s\n", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = {.suffix = ".bench.test", .jobs = (int)sysconf(_SC_NPROCESSORS_ONLN), .days = 90};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(a, "--out"))
			o.out = v;
		else if (!strcmp(a, "--count"))
			o.count = atol(v);
		else if (!strcmp(a, "--start"))
			o.start = atol(v);
		else if (!strcmp(a, "--suffix"))
			o.suffix = v;
		else if (!strcmp(a, "--jobs"))
			o.jobs = atoi(v);
		else if (!strcmp(a, "--split")) {
			o.split = 1;
			continue;
		} else
			goto usage;
		i++;
	}
	if (!o.out || o.count < 0 || o.start < 0 || o.jobs < 1)
		goto usage;
	char path[4096];
	snprintf(path, sizeof(path), "%s/pem", o.out);
	if ((mkdir(o.out, 0755) < 0 && errno != EEXIST) || (mkdir(path, 0755) < 0 && errno != EEXIST)) {
		fprintf(stderr, "certgen: cannot create %s: %s\n", path, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/import", o.out);
	if (o.split && mkdir(path, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "certgen: cannot create %s: %s\n", path, strerror(errno));
		return 1;
	}
	X509 *ca = NULL;
	EVP_PKEY *ca_key = NULL;
	if (load_or_make_ca(o.out, o.days, &ca, &ca_key) < 0)
		return 1;
	long per = (o.count + o.jobs - 1) / o.jobs;
	int kids = 0, failed = 0;
	for (int j = 0; j < o.jobs && per > 0; j++) {
		long from = o.start + j * per, to = from + per;
		if (to > o.start + o.count)
			to = o.start + o.count;
		if (from >= to)
			break;
		pid_t pid = fork();
		if (pid < 0) {
			fprintf(stderr, "certgen: fork: %s\n", strerror(errno));
			failed = 1;
			break;
		}
		if (pid == 0)
			_exit(mint_range(&o, ca, ca_key, from, to) < 0 ? 1 : 0);
		kids++;
	}
	for (int status; kids > 0; kids--)
		if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed = 1;
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	if (failed)
		return 1;
	/* Children seed their own RNG state after fork in OpenSSL 3 (fork detection), so keys differ. */
	char name[256];
	for (long i = o.start; i < o.start + o.count; i++) {
		name_of(&o, i, name, sizeof(name));
		printf("%s\n", name);
	}
	return 0;
usage:
	fprintf(stderr, "usage: certgen --out DIR --count N [--start I] [--suffix .bench.test] [--jobs J] [--split]\n"
			"Creates DIR/ca.crt, DIR/ca.key (kept if present) and DIR/pem/NAME.pem (cert + key);\n"
			"--split also writes DIR/import/NAME.crt and DIR/import/NAME.key;\n"
			"prints the names on stdout.\n");
	return 2;
}
