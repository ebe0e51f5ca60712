#!/usr/bin/env bash
# issuer's operator commands without a CA: migrate, keys, domain add/list/show/remove, cert import.
. "$TT_ROOT/tests/lib/common.sh"
I=$TT_BIN/issuer

check "keys generate creates the master key file" make_keyring
check "key file is mode 0600" test "$(stat -c %a "$T/keys")" = 600

out=$($I db migrate 2>&1)
check "db migrate applies the schema" grep -Eq "^applied [1-9][0-9]* migrations?, schema version [1-9]" <<<"$out"
out=$($I db migrate 2>&1)
check "db migrate again applies nothing" grep -q "applied 0 migrations" <<<"$out"

out=$($I domain add Example.COM. --owner cust-1 2>&1)
check "domain add normalizes the name" grep -qx "added example.com" <<<"$out"
out=$($I domain add example.com 2>&1)
check "domain add twice says it exists" grep -qx "exists example.com" <<<"$out"
out=$($I domain add 'bücher.example' 2>&1)
check "domain add converts IDN to A-labels" grep -qx "added xn--bcher-kva.example" <<<"$out"
for bad in '*.wild.example' '192.0.2.1' 'a..b' 'under_score.example' '-x.example'; do
	out=$($I domain add "$bad" 2>&1); rc=$?
	check "domain add refuses '$bad' with exit 2 and a message" test "$rc" = 2 -a -n "$out"
done
check "refused names were not stored" test "$(psql -qAt -d "$TRACKTLS_DB" -c 'select count(*) from domains')" = 2

json=$($I domain list --json)
check "domain list --json lists both domains, pending" \
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert [x["name"] for x in d]==["example.com","xn--bcher-kva.example"] and all(x["state"]=="pending" for x in d), d' "$json"
json=$($I domain show example.com --json)
check "domain show --json has owner and state" \
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["owner"]=="cust-1" and d["state"]=="pending", d' "$json"
$I domain show nosuch.example >/dev/null 2>&1; rc=$?
check "domain show of an unknown name exits 1" test "$rc" = 1

# cert import: a self-signed certificate for imp.example and www.imp.example
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=imp.example" \
	-addext "subjectAltName=DNS:imp.example,DNS:www.imp.example" -keyout "$T/imp.key" -out "$T/imp.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=x" -keyout "$T/other.key" -out /dev/null 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=rsa.example" \
	-addext "subjectAltName=DNS:rsa.example" -keyout "$T/rsa.key" -out "$T/rsa.pem" 2>/dev/null

out=$($I cert import imp.example --cert "$T/imp.pem" --key "$T/other.key" 2>&1); rc=$?
check "cert import refuses a key that does not match (exit 2)" test "$rc" = 2
check "  ... and says so" grep -q "does not belong" <<<"$out"
out=$($I cert import other.example --cert "$T/imp.pem" --key "$T/imp.key" 2>&1); rc=$?
check "cert import refuses a name the certificate does not cover" test "$rc" = 2
check "  ... and says so" grep -q "does not cover" <<<"$out"
check "  ... and stores nothing" test "$(psql -qAt -d "$TRACKTLS_DB" -c 'select count(*) from certificates')" = 0

out=$($I cert import WWW.imp.example --cert "$T/imp.pem" --key "$T/imp.key" 2>&1)
check "cert import stores a matching certificate and creates the domain" grep -q "imported www.imp.example cert_id=" <<<"$out"
row=$(psql -qAt -d "$TRACKTLS_DB" -c "select d.state, d.current_cert_id = c.id, c.source, c.key_type, c.master_key_id,
	c.serial = lower('$(openssl x509 -in "$T/imp.pem" -noout -serial | cut -d= -f2)'), d.next_attempt_at > now() + interval '18 days',
	d.next_attempt_at <= c.not_after - interval '6 days 15 hours'
	from domains d join certificates c on c.domain_id = d.id where d.name = 'www.imp.example'")
check "imported domain is active with current_cert_id, source, key type, serial, renewal in the last third" \
	test "$row" = "active|t|import|ecdsa-p256|1|t|t|t"
out=$($I cert import rsa.example --cert "$T/rsa.pem" --key "$T/rsa.key" 2>&1)
check "cert import takes an RSA key" grep -q "imported rsa.example" <<<"$out"
check "  ... recorded as rsa-2048" test "$(psql -qAt -d "$TRACKTLS_DB" -c "select key_type from certificates c join domains d on d.id=c.domain_id where d.name='rsa.example'")" = rsa-2048
cat "$T/imp.key" "$T/imp.pem" >"$T/combined.pem"
out=$($I cert import imp.example --cert "$T/combined.pem" --key "$T/imp.key" 2>&1)
check "cert import takes a combined key+certificate PEM as --cert" grep -q "imported imp.example" <<<"$out"
check "  ... and stores its certificate only" test "$(psql -qAt -d "$TRACKTLS_DB" -c "select position('PRIVATE' in c.chain_pem) = 0 and position('BEGIN CERTIFICATE' in c.chain_pem) > 0 from certificates c join domains d on d.id = c.domain_id where d.name = 'imp.example'")" = t
check "no clear private key in the database" bash -c "! pg_dump -d '$TRACKTLS_DB' | grep -q 'PRIVATE KEY'"
check "the schema refuses a chain holding a private key, whoever writes it" bash -c "! psql -qAt -d '$TRACKTLS_DB' -c \"update certificates set chain_pem = chain_pem || '-----BEGIN PRIVATE KEY-----'\" 2>/dev/null"

out=$($I domain remove www.imp.example 2>&1)
check "domain remove" grep -qx "removed www.imp.example" <<<"$out"
row=$(psql -qAt -d "$TRACKTLS_DB" -c "select d.state, d.current_cert_id is null, bool_and(c.sealed_key is null) from domains d join certificates c on c.domain_id = d.id where d.name = 'www.imp.example' group by 1,2")
check "removed domain has no current certificate and no sealed key left" test "$row" = "removed|t|t"
check "removed domain is not listed" bash -c "! '$I' domain list | grep -q www.imp.example"

out=$($I domain list --db "host=$T/nope dbname=x" 2>&1); rc=$?
check "database down: exit 2" test "$rc" = 2
check "  ... with a clear message" grep -q "cannot use the database" <<<"$out"
out=$($I domain list --bogus 2>&1); rc=$?
check "unknown flag: exit 2" test "$rc" = 2
check "every command has --help" bash -c "'$I' run --help | grep -q -- --self-check-via && '$I' domain add --help | grep -q -- --owner"

# One rule for switches: yes/no/true/false/on/off/1/0, anything else refused. --dry-run=off runs for
# real (here it stops at once on a key ring that is not there, before any CA is asked).
$I domain add dry.example >/dev/null 2>&1
out=$($I run --dry-run=off --master-key-file "$T/no-such-keys" 2>&1); rc=$?
check "--dry-run=off is not a dry run (exit $rc)" bash -c "test '$rc' = 2 && ! grep -q '^due ' <<<'$out'"
out=$($I run --dry-run=on 2>/dev/null); rc=$?
check "--dry-run=on lists what is due" bash -c "test '$rc' = 0 && grep -q '^due dry.example' <<<'$out'"
out=$($I run --dry-run=maybe 2>&1); rc=$?
check "--dry-run=maybe is refused: exit 2" test "$rc" = 2
check "  ... in the one error format" grep -q "^tracktls-issuer: --dry-run: 'maybe' is not yes, no, true, false, on, off, 1 or 0" <<<"$out"
out=$($I domain list --bogus 2>&1)
check "an unknown flag is reported in the one error format" grep -q "^tracktls-issuer: --bogus: unknown flag" <<<"$out"

# Ranges are checked where the options are parsed, in the one error format: a run refuses an
# out-of-range value as an option (run_failed reason=options) before it asks any CA.
out=$($I run --concurrency 0 2>&1); rc=$?
check "--concurrency 0: exit 2 ($rc)" test "$rc" = 2
check "  ... in the one error format" grep -q "^tracktls-issuer: --concurrency: must be 1 to 128$" <<<"$out"
out=$($I run --timeout 0 2>&1); rc=$?
check "--timeout 0: exit 2 ($rc)" test "$rc" = 2
check "  ... in the one error format" grep -q "^tracktls-issuer: --timeout: must be at least 1ms$" <<<"$out"
check "  ... as an option error (run_failed reason=options)" grep -q "event=run_failed reason=options" <<<"$out"
check "  ... before any CA is asked (no ca_down)" bash -c "! grep -q event=ca_down <<<\"\$0\"" "$out"
# A per-directory value given more than once must be given once per --directory: with three CAs
# and two CAA identities, the third would silently have none.
out=$($I run --directory https://a.invalid/dir --directory https://b.invalid/dir --directory https://c.invalid/dir \
	--caa-identity a.example --caa-identity b.example 2>&1); rc=$?
check "two --caa-identity for three --directory: exit 2 ($rc)" test "$rc" = 2
check "  ... saying so in the one error format" \
	grep -q "^tracktls-issuer: --caa-identity: given 2 times for 3 --directory (give it once for all, or once per directory)$" <<<"$out"
check "  ... before any CA is asked (no ca_down)" bash -c "! grep -q event=ca_down <<<\"\$0\"" "$out"
out=$($I domain check x.example --directory https://a.invalid/dir --directory https://b.invalid/dir \
	--caa-identity a.example --caa-identity b.example --caa-identity c.example 2>&1); rc=$?
check "domain check: three --caa-identity for two --directory: exit 2 ($rc)" test "$rc" = 2
check "  ... saying so" grep -q "^tracktls-issuer: --caa-identity: given 3 times for 2 --directory" <<<"$out"
out=$($I tickets rotate --ticket-lifetime 500ms 2>&1); rc=$?
check "--ticket-lifetime 500ms: exit 2 ($rc)" test "$rc" = 2
check "  ... in the one error format" grep -q "^tracktls-issuer: --ticket-lifetime: must be at least 1s$" <<<"$out"
out=$($I nosuch 2>&1); rc=$?
check "an unknown command: exit 2 ($rc)" test "$rc" = 2
check "  ... in the one error format" grep -q "^tracktls-issuer: unknown command 'nosuch'$" <<<"$out"

# An empty value leaves an option unset, from a flag or the file as from the environment: the
# default applies.
out=$($I run --dry-run --deadline= 2>&1); rc=$?
check "--deadline= (empty) is the default: the dry run works (exit $rc)" test "$rc" = 0
check "  ... and lists what is due" grep -q '^due dry.example' <<<"$out"
printf 'concurrency =\nmax-failures = ""\n' >"$T/empty.conf"
out=$($I run --dry-run --config "$T/empty.conf" 2>&1); rc=$?
check "empty values in the config file are the defaults (exit $rc)" test "$rc" = 0
check "  ... and the dry run lists what is due" grep -q '^due dry.example' <<<"$out"
