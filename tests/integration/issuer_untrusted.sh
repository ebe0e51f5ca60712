#!/usr/bin/env bash
# What the issuer takes from others is checked before it acts on it or stores it: a chain that does
# not verify to the trusted roots is refused and nothing is stored; a directory whose URLs leave
# https or its origin is refused; a domain whose DNS points at loopback is not self-checked there.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
cert_rows() { q "select count(*) from certificates c join domains d on d.id=c.domain_id where d.name='$1'"; }

# --- the chain: Pebble's HTTPS CA is not the root its certificates are issued under
$I domain add chain.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --chain-ca-file "$PEBBLE_CA" 2>"$T/chain1.log"; rc=$?
check "a chain that does not verify to the given roots fails the domain (exit $rc)" test "$rc" = 1
check "  ... logged as chain_refused, naming the roots" grep -q "event=chain_refused name=chain.test reason=.*does not verify.*$PEBBLE_CA" "$T/chain1.log"
check "  ... recorded on the domain as chainRefused" test "$(q "select state, failures, last_error_type from domains where name='chain.test'")" = "failing|1|urn:tracktls:chainRefused"
check "  ... and on the attempt" test "$(q "select state, problem_type from issuance_attempts where domain_id=(select id from domains where name='chain.test')")" = "failed|urn:tracktls:chainRefused"
check "  ... nothing stored: no certificate row, no current certificate" test "$(cert_rows chain.test) $(q "select current_cert_id is null from domains where name='chain.test'")" = "0 t"
$I domain add store.test >/dev/null
env -u TRACKTLS_CHAIN_CA_FILE "$I" run --self-check-via "127.0.0.1:$HTTP" 2>"$T/chain2.log"; rc=$?
check "without --chain-ca-file the system store is the trust, and Pebble's root is not in it (exit $rc)" \
	bash -c "test $rc = 1 && grep -q 'event=chain_refused name=store.test reason=.*does not verify up to a root in /etc/ssl/certs/ca-certificates.crt' '$T/chain2.log' && test \$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from certificates\") = 0"
$I domain add good.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --chain-ca-file "$PEBBLE_ROOT" 2>"$T/chain3.log"; rc=$?
check "with Pebble's issuing root the same chain verifies and is stored (exit $rc)" \
	bash -c "grep -q 'issued=1 ' '$T/chain3.log' && test \$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from certificates c join domains d on d.id=c.domain_id where d.name='good.test'\") = 1"

# --- the self-check: without --self-check-via, a name resolving to loopback is not fetched
# (libcurl resolves *.localhost to loopback itself, RFC 6761, so no resolver needs changing)
$I domain add ssrf.localhost >/dev/null
before=$(grep -c 'ssrf.localhost' "$T/pebble/pebble.log")
$I run --metrics-file "$T/issuer.prom" 2>"$T/ssrf.log"; rc=$?
check "a domain resolving to loopback fails the self-check (exit $rc)" test "$rc" = 1
check "  ... refused, not attempted: logged with the address" grep -q "event=self_check_refused name=ssrf.localhost addr=127.0.0.1" "$T/ssrf.log"
check "  ... recorded as selfCheckRefused, telling the operator about --self-check-via" \
	test "$(q "select last_error_type, last_error_detail like '%127.0.0.1%--self-check-via%' from domains where name='ssrf.localhost'")" = "urn:tracktls:selfCheckRefused|t"
check "  ... counted in the metrics file, beside the two refused chains" \
	bash -c "grep -qx 'tracktls_issuer_refused{what=\"self_check_target\"} 1' '$T/issuer.prom' && grep -qx 'tracktls_issuer_refused{what=\"chain\"} 2' '$T/issuer.prom'"
check "  ... and the CA was never asked to validate it" bash -c "! grep 'ssrf.localhost' '$T/pebble/pebble.log' | tail -n +$((before + 1)) | grep -qi 'challenge'"

# --- the CA's URLs: a directory pointing off https or off its origin is refused before any use
P=$(free_port)
cat >"$T/fake_ca.py" <<'PY'
import http.server, json, ssl, sys
port = int(sys.argv[1])
base = 'https://127.0.0.1:%d' % port
dirs = {
    '/dir-http': {'newNonce': 'http://127.0.0.1:%d/nonce' % port, 'newAccount': base + '/acct', 'newOrder': base + '/order'},
    '/dir-port': {'newNonce': base + '/nonce', 'newAccount': base + '/acct', 'newOrder': 'https://127.0.0.1:%d/order' % (port + 1)},
    '/dir-host': {'newNonce': base + '/nonce', 'newAccount': 'https://localhost:%d/acct' % port, 'newOrder': base + '/order'},
}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps(dirs.get(self.path, {})).encode()
        self.send_response(200 if self.path in dirs else 404)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_HEAD = do_POST = lambda self: (self.send_response(500), self.end_headers())
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = http.server.HTTPServer(('127.0.0.1', port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
bg python3 "$T/fake_ca.py" "$P" "$T/pebble/server.pem" "$T/pebble/server.key"
wait_until 10 port_open 127.0.0.1 "$P"
accounts=$(q "select count(*) from acme_accounts")
for case in "http:newNonce.*not https" "port:newOrder.*127.0.0.1:$((P + 1)), not on the directory's origin https://127.0.0.1:$P" "host:newAccount.*localhost:$P, not on the directory's origin"; do
	name=${case%%:*} want=${case#*:}
	out=$($I run --directory "https://127.0.0.1:$P/dir-$name" 2>&1); rc=$?
	check "directory with a $name URL: exit 2 ($rc)" test "$rc" = 2
	check "  ... saying which URL and why" grep -q "refused the CA's $want" <<<"$out"
	check "  ... logged and counted as ca_url_refused" grep -q "event=ca_url_refused what=${want%%.\**}" <<<"$out"
done
check "  ... no account registered, nothing stored lost" test "$(q "select count(*) from acme_accounts") $(cert_rows good.test)" = "$accounts 1"
