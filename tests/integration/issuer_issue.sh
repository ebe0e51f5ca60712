#!/usr/bin/env bash
# First issuance against Pebble (HTTP-01 answered by the terminator): stored chain verifies against
# Pebble's root, the sealed key opens and matches the leaf, the terminator serves it; the account
# is created once; metrics file; renewal replaces the certificate.
# exclusive: its certificates live 20 s, and their renewal is checked to fall due in a 5-second
# window of that lifetime; a loaded machine stretches issuance and renewal past it.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_VALIDITY=20 issuer_env_start

$I domain add one.test >/dev/null && $I domain add two.test >/dev/null && $I domain add three.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --metrics-file "$T/issuer.prom" 2>"$T/run1.log"; rc=$?
check "first run exits 0" test "$rc" = 0
check "one summary line with issued=3" grep -q "event=run_done.*issued=3 renewed=0 failed=0" "$T/run1.log"
check "  ... retrying no badNonce: Pebble here rejects none" grep -q "event=run_done.* bad_nonce_retries=0 " "$T/run1.log"
check "all three domains active" test "$(q "select count(*) from domains where state='active' and current_cert_id is not null")" = 3
check "one account, key sealed" test "$(q "select count(*) from acme_accounts where account_url like 'https://127.0.0.1:%' and sealed_key is not null")" = 1
check "challenge rows deleted" test "$(q "select count(*) from challenges")" = 0
check "attempts recorded valid" test "$(q "select count(*) from issuance_attempts where state='valid' and kind='new' and order_url is not null")" = 3

for n in one.test two.test three.test; do
	q "select c.chain_pem from domains d join certificates c on c.id = d.current_cert_id where d.name = '$n'" >"$T/$n.pem"
	openssl x509 -in "$T/$n.pem" -out "$T/$n.leaf.pem"
	check "$n: chain verifies against Pebble's root" openssl verify -CAfile "$PEBBLE_ROOT" -untrusted "$T/$n.pem" "$T/$n.leaf.pem"
	check "$n: leaf names $n" bash -c "openssl x509 -in '$T/$n.leaf.pem' -noout -ext subjectAltName | grep -q 'DNS:$n'"
	check "$n: stored key opens and matches the leaf" \
		test "$(open_key $n | openssl pkey -pubout 2>/dev/null)" = "$(openssl x509 -in "$T/$n.leaf.pem" -noout -pubkey)"
	check "$n: serial stored" test "$(q "select c.serial from domains d join certificates c on c.id=d.current_cert_id where d.name='$n'")" = \
		"$(openssl x509 -in "$T/$n.leaf.pem" -noout -serial | cut -d= -f2 | tr A-F a-f)"
done
served=$(openssl s_client -connect "127.0.0.1:$HTTPS" -servername one.test </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null)
check "the terminator serves the issued certificate" test -n "$served" -a "$served" = "$(openssl x509 -in "$T/one.test.leaf.pem" -noout -fingerprint -sha256)"
check "key type is P-256" bash -c "open_key() { python3 '$TT_ROOT/tests/lib/open_sealed.py' '$TRACKTLS_MASTER_KEY_FILE' \$1; }; open_key one.test | openssl pkey -noout -text | grep -q 'prime256v1\|P-256'"
check "no clear private key in the database" bash -c "! pg_dump -d '$TRACKTLS_DB' | grep -q 'PRIVATE KEY'"
check "metrics file written" grep -q "^tracktls_issuer_issued 3$" "$T/issuer.prom"
check "metrics file has soonest expiry" grep -q "^tracktls_issuer_soonest_expiry_seconds [1-9]" "$T/issuer.prom"

$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"; rc=$?
check "a second run right away has nothing to do" grep -q "issued=0 renewed=0 failed=0" "$T/run2.log"
check "  ... and reuses the account" test "$(q "select count(*) from acme_accounts")" = 1

# Renewal: 20-second certificates are due within their last half (lifetimes under 10 days).
old=$(q "select current_cert_id from domains where name='one.test'")
check "renewal is scheduled inside the last half of the lifetime" \
	test "$(q "select bool_and(d.next_attempt_at >= c.not_after - interval '11 seconds' and d.next_attempt_at <= c.not_after - interval '6 seconds') from domains d join certificates c on c.id=d.current_cert_id")" = t
wait_until 30 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from domains where next_attempt_at <= now()\")\" = 3"
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run3.log"; rc=$?
check "renewal run exits 0 and renews all three" grep -q "status=0 issued=0 renewed=3 failed=0" "$T/run3.log"
new=$(q "select current_cert_id from domains where name='one.test'")
check "renewal replaced the certificate" test "$new" != "$old"
check "  ... and recorded what it replaces" test "$(q "select replaces_id from certificates where id=${new:-0}")" = "${old:-x}"
check "  ... as a renewal attempt" test "$(q "select count(*) from issuance_attempts where kind='renewal' and state='valid'")" = 3
check "renewed key opens and matches" \
	bash -c "test \"\$(python3 '$TT_ROOT/tests/lib/open_sealed.py' '$TRACKTLS_MASTER_KEY_FILE' one.test | openssl pkey -pubout)\" = \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select chain_pem from certificates where id=$new\" | openssl x509 -noout -pubkey)\""
