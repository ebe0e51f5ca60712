#!/usr/bin/env bash
# `issuer revoke --reason 1` (keyCompromise): the CA revokes, the terminator stops serving that
# certificate at once (no restart, no issuer run), its sealed key is destroyed, and the domain is due
# so the next run issues a new certificate, which the terminator then serves.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
served_serial() {
	openssl s_client -connect "127.0.0.1:$HTTPS" -servername kc.test </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | cut -d= -f2 | tr A-F a-f
}
current_serial() { q "select c.serial from domains d join certificates c on c.id=d.current_cert_id where d.name='kc.test'"; }
serves() { [ "$(served_serial)" = "$1" ]; }
serves_not() { [ "$(served_serial)" != "$1" ]; }

$I domain add kc.test >/dev/null
$I domain add other.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run1.log"
s1=$(current_serial)
check "issued ($s1)" test -n "$s1"
check "the terminator serves it" wait_until 10 serves "$s1"
other=$(q "select c.serial from domains d join certificates c on c.id=d.current_cert_id where d.name='other.test'")

out=$($I revoke kc.test --reason 1 2>&1); rc=$?
check "revoke --reason 1 succeeds and says the certificate is withdrawn" \
	bash -c "test $rc = 0 && grep -q 'revoked kc.test.*withdrawn from the terminators' <<<'$out'"
check "Pebble shows it revoked" bash -c "curl -sf --cacert '$PEBBLE_CA' '$PEBBLE_MGMT/cert-status-by-serial/$s1' | grep -q '\"Status\": *\"Revoked\"'"
check "the running terminator stops serving that serial at once" wait_until 5 serves_not "$s1"
check "  ... and goes on serving the other domain" bash -c \
	"openssl s_client -connect 127.0.0.1:$HTTPS -servername other.test </dev/null 2>/dev/null | openssl x509 -noout -serial | tr A-F a-f | grep -q '=$other\$'"
check "  ... its sealed key is destroyed" test "$(q "select sealed_key is null and revoke_reason = 1 from certificates where serial='$s1'")" = t
check "  ... the domain has no current certificate and is due now" \
	test "$(q "select current_cert_id is null and state = 'pending' and next_attempt_at <= now() from domains where name='kc.test'")" = t
check "  ... the other domain is untouched" test "$(q "select state from domains where name='other.test'")" = active
out=$($I revoke kc.test --reason 1 2>&1); rc=$?
check "a second revoke finds no current certificate (exit 1)" bash -c "test $rc = 1 && grep -q 'no current certificate' <<<'$out'"

$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"; rc=$?
check "the next run issues a new certificate (exit $rc)" grep -q "issued=1 renewed=0 failed=0" "$T/run2.log"
s2=$(current_serial)
check "  ... with a new serial" test -n "$s2" -a "$s2" != "$s1"
check "  ... which the terminator serves" wait_until 10 serves "$s2"
