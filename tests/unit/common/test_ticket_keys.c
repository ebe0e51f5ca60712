/* Tests common/ticket_keys.c against a real PostgreSQL: rotation ahead of time, retirement, loading. */
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common.h"

static int64_t scalar(PGconn *c, const char *sql)
{
	PGresult *r;
	struct tt_err err;
	if (tt_db_exec(c, &r, &err, sql, 0, NULL) != 0)
		return -1;
	int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

int main(void)
{
	struct tt_err err = {{0}};
	PGconn *c = NULL;
	int applied = 0;
	if (tt_db_connect(check_test_db(), &c, &err) != 0 || tt_db_migrate(c, &applied, &err) != 0) {
		printf("FAIL: database: %s\n", err.msg);
		return 1;
	}
	char ring[] = "/tmp/tt-ticket-ring-XXXXXX";
	int fd = mkstemp(ring);
	close(fd);
	unlink(ring);
	uint32_t kid;
	struct tt_keyring *kr = NULL;
	CHECK(tt_keyring_generate(ring, &kid, &err) == 0 && tt_keyring_load(ring, &kr, &err) == 0, "key ring");

	struct tt_ticket_policy p = {.rotate_s = 3600, .lifetime_s = 7200, .lead_s = 600};
	int created = -1, retired = -1;
	CHECK(tt_ticket_keys_rotate(c, kr, &p, &created, &retired, &err) == 0 && created == 1 && retired == 0,
	      "first rotation creates a key");
	CHECK(scalar(c, "SELECT count(*) FROM ticket_keys WHERE created_at <= now() AND encrypt_until > now()") == 1,
	      "the first key encrypts from now");
	CHECK(tt_ticket_keys_rotate(c, kr, &p, &created, &retired, &err) == 0 && created == 0,
	      "a second rotation within the key's time creates nothing");

	/* Bring the current key to the end of its encrypting time: the next is made ahead of it. */
	tt_db_run(c, &err, "UPDATE ticket_keys SET encrypt_until = now() + interval '5 minutes', "
			   "decrypt_until = now() + interval '5 minutes' + interval '2 hours'", 0, NULL);
	CHECK(tt_ticket_keys_rotate(c, kr, &p, &created, &retired, &err) == 0 && created == 1,
	      "a key ending within the lead time gets a successor");
	CHECK(scalar(c, "SELECT count(*) FROM ticket_keys WHERE created_at > now()") == 1,
	      "the successor starts when its predecessor stops encrypting, not now");

	struct tt_ticket_key *keys = NULL;
	size_t n = 0;
	CHECK(tt_ticket_keys_load(c, kr, &keys, &n, &err) == 0 && n == 2, "both keys load");
	CHECK(n == 2 && memcmp(keys[0].name, keys[1].name, TT_TICKET_NAME_BYTES) != 0 &&
		      memcmp(keys[0].secret, keys[1].secret, TT_TICKET_SECRET_BYTES) != 0,
	      "keys are distinct");
	CHECK(n == 2 && keys[0].start <= keys[1].start && keys[0].encrypt_until == keys[1].start,
	      "loaded oldest first, back to back");
	tt_ticket_keys_free(keys, n);

	CHECK(scalar(c, "SELECT count(*) FROM ticket_keys WHERE length(sealed_key) = 48 + 33 AND master_key_id = 1") == 2,
	      "rows hold 48 bytes of key material in an envelope under master key 1");
	tt_db_run(c, &err, "UPDATE ticket_keys SET sealed_key = set_byte(sealed_key, 20, get_byte(sealed_key, 20) # 1) "
			   "WHERE id = (SELECT max(id) FROM ticket_keys)", 0, NULL);
	CHECK(tt_ticket_keys_load(c, kr, &keys, &n, &err) == 0 && n == 1, "a corrupted key is skipped, the others load");
	tt_ticket_keys_free(keys, n);

	tt_db_run(c, &err, "UPDATE ticket_keys SET created_at = now() - interval '3 days', encrypt_until = now() - interval '2 days', "
			   "decrypt_until = now() - interval '1 day'", 0, NULL);
	CHECK(tt_ticket_keys_rotate(c, kr, &p, &created, &retired, &err) == 0 && retired == 2 && created == 1,
	      "expired keys are retired and a fresh one starts now");
	CHECK(scalar(c, "SELECT count(*) FROM ticket_keys WHERE created_at <= now() AND encrypt_until > now()") == 1,
	      "after an outage there is again a key encrypting now");

	tt_keyring_free(kr);
	unlink(ring);
	PQfinish(c);
	CHECK_DONE();
}
