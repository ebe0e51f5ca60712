#!/usr/bin/env bash
# revoke shows in Pebble's management API and makes the domain due; domain remove revokes and destroys the key;
# account show / rollover (keyChange) and issuing with the rolled key; keys rotate re-seals.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
status_of() { curl -sf --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/cert-status-by-serial/$1"; }

for n in r1.test r2.test; do $I domain add $n >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run.log"
check "issued two" grep -q "issued=2 renewed=0 failed=0" "$T/run.log"
s1=$(q "select c.serial from domains d join certificates c on c.id=d.current_cert_id where d.name='r1.test'")
check "Pebble reports the certificate valid before revocation" bash -c "curl -sf --cacert '$PEBBLE_CA' '$PEBBLE_MGMT/cert-status-by-serial/$s1' | grep -q '\"Status\": *\"Valid\"'"
out=$($I revoke r1.test --reason 4 2>&1)
check "revoke succeeds" grep -q "revoked r1.test" <<<"$out"
check "Pebble's management API shows it revoked" bash -c "curl -sf --cacert '$PEBBLE_CA' '$PEBBLE_MGMT/cert-status-by-serial/$s1' | grep -q '\"Status\": *\"Revoked\"'"
check "revocation recorded with its reason" test "$(q "select revoke_reason from certificates where serial='$s1' and revoked_at is not null")" = 4
check "  ... the domain is due at once, so the next run replaces it" test "$(q "select next_attempt_at <= now() and current_cert_id is not null from domains where name='r1.test'")" = t
check "  ... and (not keyCompromise) its certificate is kept until then" test "$(q "select sealed_key is not null from certificates where serial='$s1'")" = t
$I revoke r1.test --reason 7 >/dev/null 2>&1; rc=$?
check "reason 7 is refused" test "$rc" = 2

s2=$(q "select c.serial from domains d join certificates c on c.id=d.current_cert_id where d.name='r2.test'")
out=$($I domain remove r2.test 2>&1)
check "domain remove" grep -q "removed r2.test" <<<"$out"
check "  ... revoked its certificate at the CA" bash -c "curl -sf --cacert '$PEBBLE_CA' '$PEBBLE_MGMT/cert-status-by-serial/$s2' | grep -q Revoked"
check "  ... and destroyed its key" test "$(q "select count(*) from certificates c join domains d on d.id=c.domain_id where d.name='r2.test' and c.sealed_key is not null")" = 0

out=$($I account show 2>&1)
check "account show prints the account, valid" bash -c "grep -q 'status      valid' <<<'$out' && grep -q 'account     https://127.0.0.1' <<<'$out'"
tp1=$(sed -n 's/^thumbprint *//p' <<<"$out")
out=$($I account rollover 2>&1)
check "account rollover" grep -q "now uses key" <<<"$out"
tp2=$($I account show 2>/dev/null | sed -n 's/^thumbprint *//p')
check "  ... the stored key changed and the CA accepts it" test -n "$tp2" -a "$tp1" != "$tp2"
check "  ... rolled_at recorded" test "$(q "select rolled_at is not null from acme_accounts")" = t
$I domain add r3.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"
check "issuing works with the rolled key, and the revoked r1.test is replaced" grep -q "issued=1 renewed=1 failed=0" "$T/run2.log"
check "  ... by a certificate that is not revoked" test "$(q "select c.revoked_at is null and c.serial <> '$s1' from domains d join certificates c on c.id=d.current_cert_id where d.name='r1.test'")" = t

# keys rotate: a new master key, every sealed key re-sealed under it, and still opening
$I keys generate >/dev/null
out=$($I keys rotate --batch 1 2>&1)
check "keys rotate re-seals certificate and account keys" grep -q "re-sealed under master key 2: 3 certificate keys, 1 account keys" <<<"$out"
check "  ... nothing left under key 1" test "$(q "select count(*) from certificates where sealed_key is not null and master_key_id <> 2") $(q "select count(*) from acme_accounts where master_key_id <> 2")" = "0 0"
check "  ... the re-sealed key opens and matches" \
	test "$(open_key r3.test | openssl pkey -pubout 2>/dev/null)" = "$(q "select c.chain_pem from domains d join certificates c on c.id=d.current_cert_id where d.name='r3.test'" | openssl x509 -noout -pubkey)"
out=$($I keys rotate 2>&1)
check "  ... a second rotate has nothing to do" grep -q ": 0 certificate keys, 0 account keys" <<<"$out"
$I domain add r4.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run3.log"
check "  ... and the re-sealed account key still works" grep -q "issued=1 renewed=0 failed=0" "$T/run3.log"

$I domain add rsa.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --key-type rsa 2>"$T/run4.log"
check "--key-type rsa issues with an RSA-2048 key" test "$(q "select c.key_type from domains d join certificates c on c.id=d.current_cert_id where d.name='rsa.test'")" = rsa-2048
check "  ... that opens and matches the leaf" \
	test "$(open_key rsa.test | openssl pkey -pubout 2>/dev/null)" = "$(q "select c.chain_pem from domains d join certificates c on c.id=d.current_cert_id where d.name='rsa.test'" | openssl x509 -noout -pubkey)"
check "  ... and is RSA 2048" bash -c "python3 '$TT_ROOT/tests/lib/open_sealed.py' '$TRACKTLS_MASTER_KEY_FILE' rsa.test | openssl pkey -noout -text | grep -q 'Private-Key: (2048 bit'"
