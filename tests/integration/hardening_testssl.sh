#!/usr/bin/env bash
# testssl.sh (Debian's testssl.sh 3.0) against the terminator with a certificate for the name it is
# asked about: protocols, ciphers, server defaults and every vulnerability check. No finding may be
# rated MEDIUM, HIGH or CRITICAL, none may read VULNERABLE. Its summary goes to $T/testssl.txt.
# --fast keeps it to about a minute and a half on two cores; the vulnerability checks all run.
# exclusive: testssl.sh gives its probes fixed timeouts and reads a slow answer as a finding; it
# failed under a loaded machine before.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

command -v testssl >/dev/null || { fail "testssl is installed (scripts/deps.sh installs testssl.sh)"; exit 1; }
tt_setup_db
start_backend
# A certificate shaped like a CA's: 90 days, a CRL and an OCSP URI (testssl rates their absence).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 -subj "/CN=tls.test" \
	-addext "subjectAltName=DNS:tls.test" -addext "crlDistributionPoints=URI:http://crl.tls.test/1.crl" \
	-addext "authorityInfoAccess=OCSP;URI:http://ocsp.tls.test/" -keyout "$T/tls.test.key" -out "$T/tls.test.pem" 2>/dev/null
check "certificate imported" "$TT_BIN/issuer" cert import tls.test --cert "$T/tls.test.pem" --key "$T/tls.test.key"
check "terminator starts" start_terminator
json=$T/testssl.json
# The certificate is self-signed: testssl trusts it through --add-ca, so chain checks are real.
timeout 300 testssl --quiet --fast --warnings off --color 0 --ip 127.0.0.1 --add-ca "$T/tls.test.pem" \
	--protocols --std --server-defaults --vulnerable --jsonfile "$json" "tls.test:$HTTPS_PORT" >"$T/testssl.txt" 2>&1
rc=$?
echo "testssl exit $rc"
grep -E '^ (SSLv|TLS |TLS 1|Chain|Heartbleed|CCS|Ticketbleed|ROBOT|Secure Rene|Secure Client|CRIME|BREACH|POODLE|TLS_FALLBACK|SWEET32|FREAK|DROWN|LOGJAM|BEAST|LUCKY13|RC4)' "$T/testssl.txt" | sed 's/  */ /g'
check "testssl ran to the end and wrote its findings" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d) > 50, len(d)' "$json"
check "it saw the certificate for the name (not a scan of nothing)" \
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert any(f["id"].startswith("cert_commonName") and "tls.test" in f["finding"] for f in d), "no cert"' "$json"
report=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
bad = [f for f in d if f.get("severity") in ("MEDIUM", "HIGH", "CRITICAL")
       or ("VULNERABLE" in f.get("finding", "") and "not vulnerable" not in f.get("finding", "").lower())]
for f in bad:
    print("%s %s: %s" % (f["severity"], f["id"], f["finding"]))
' "$json")
echo "$report"
echo "--- LOW, WARN and INFO-worthy findings, for the record:"
python3 -c '
import json, sys
for f in json.load(open(sys.argv[1])):
    if f.get("severity") in ("LOW", "WARN"):
        print("%s %s: %s" % (f["severity"], f["id"], f["finding"]))
' "$json"
check "no finding rated MEDIUM/HIGH/CRITICAL or VULNERABLE ($(grep -c . <<<"$report") found)" test -z "$report"
for p in SSLv2 SSLv3 TLS1 TLS1_1; do
	check "$p not offered" python3 -c 'import json,sys; d={f["id"]: f["finding"] for f in json.load(open(sys.argv[1]))}; assert d.get(sys.argv[2], "").startswith("not offered"), d.get(sys.argv[2])' "$json" "$p"
done
check "TLS 1.3 offered" python3 -c 'import json,sys; d={f["id"]: f["finding"] for f in json.load(open(sys.argv[1]))}; assert d.get("TLS1_3", "").startswith("offered"), d.get("TLS1_3")' "$json"
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
