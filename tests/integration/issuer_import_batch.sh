#!/usr/bin/env bash
# issuer cert import-batch: many certificates in one process; a bad line costs only itself.
. "$TT_ROOT/tests/lib/common.sh"
I=$TT_BIN/issuer

check "keys generate" make_keyring
$I db migrate >/dev/null 2>&1 || fail "db migrate"
cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$1" \
		-addext "subjectAltName=DNS:$1" -keyout "$T/$1.key" -out "$T/$1.pem" 2>/dev/null
}
for i in 1 2 3 4 5; do cert "b$i.batch.test"; done
cert stray.batch.test
count() { psql -qAt -d "$TRACKTLS_DB" -c "$1"; }

{
	echo "# name chain key"
	for i in 1 2; do echo "B$i.batch.test $T/b$i.batch.test.pem $T/b$i.batch.test.key"; done
	echo
	echo "mismatch.batch.test $T/b3.batch.test.pem $T/stray.batch.test.key"
	echo "b3.batch.test $T/b3.batch.test.pem $T/stray.batch.test.key"
	echo "only-two-fields.batch.test $T/b3.batch.test.pem"
	echo "missing.batch.test $T/nope.pem $T/nope.key"
	echo "*.wild.test $T/b3.batch.test.pem $T/b3.batch.test.key"
	for i in 3 4 5; do printf 'b%s.batch.test\t%s %s\r\n' "$i" "$T/b$i.batch.test.pem" "$T/b$i.batch.test.key"; done
} >"$T/list"
out=$($I cert import-batch "$T/list" --batch 2 2>"$T/err"); rc=$?
check "a list with 5 good and 5 bad lines: exit 1 ($rc)" test "$rc" = 1
check "  ... reporting the counts ($out)" test "$out" = "imported 5, failed 5"
check "  ... each bad line named by file and line number" test "$(grep -c "^issuer cert import-batch: $T/list:[0-9]*: " "$T/err")" = 5
check "  ... a key that does not match, saying so" grep -q "list:6: b3.batch.test: .*does not belong" "$T/err"
check "  ... a name the certificate does not cover" grep -q "list:5: .*does not cover mismatch.batch.test" "$T/err"
check "  ... a short line" grep -q "list:7: want NAME CHAIN.pem KEY.pem" "$T/err"
check "  ... a file that is not there" grep -q "list:8: missing.batch.test: cannot open" "$T/err"
check "  ... a wildcard name" grep -q "list:9: \*.wild.test: " "$T/err"
check "the 5 good ones are stored, each the current certificate of its (normalized) domain" \
	test "$(count "select count(*) from domains d join certificates c on c.id = d.current_cert_id where d.name like 'b_.batch.test' and d.state = 'active' and c.source = 'import'")" = 5
check "  ... each with its own serial" \
	test "$(count "select serial from certificates c join domains d on d.id = c.domain_id where d.name = 'b4.batch.test'")" = "$(openssl x509 -in "$T/b4.batch.test.pem" -noout -serial | cut -d= -f2 | tr A-F a-f)"
check "the bad lines left no domain and no certificate behind" \
	test "$(count "select count(*) from domains where name not like 'b_.batch.test'")/$(count "select count(*) from certificates")" = 0/5
check "b3 came from its good line, not the one with the wrong key" \
	test "$(count "select count(*) from certificates c join domains d on d.id = c.domain_id where d.name = 'b3.batch.test'")" = 1
check "no clear private key in the database" bash -c "! pg_dump -d '$TRACKTLS_DB' | grep -q 'PRIVATE KEY'"

grep -v -e mismatch -e only-two -e missing -e wild -e '^b3' "$T/list" >"$T/good"
out=$($I cert import-batch - <"$T/good" 2>&1); rc=$?
check "a list of good lines from stdin: exit 0 ($out)" test "$rc" = 0 -a "$out" = "imported 4, failed 0"
check "  ... each imported one is the domain's new current certificate (renewal by import)" \
	test "$(count "select count(*) from domains d join certificates c on c.id = d.current_cert_id where d.name in ('b1.batch.test','b2.batch.test','b4.batch.test','b5.batch.test') and c.id > 5")" = 4

out=$($I cert import-batch "$T/nope.list" 2>&1); rc=$?
check "a list that is not there: exit 2 ($rc)" test "$rc" = 2
check "  ... saying so" grep -q "cannot open $T/nope.list" <<<"$out"
out=$($I cert import-batch "$T/good" --db "host=/nonexistent dbname=x" 2>&1); rc=$?
check "no database: exit 2 ($rc)" test "$rc" = 2
check "  ... saying so" grep -q "nonexistent" <<<"$out"
out=$($I cert import-batch "$T/good" --batch 0 2>&1); rc=$?
check "--batch 0 refused" test "$rc" = 2
