# Helpers for terminator scenarios: a migrated database with a key ring, the echo backend,
# certificates made with openssl and stored with `issuer cert import`, and the terminator itself.
# Source after tests/lib/common.sh.
#   tt_setup_db                   migrate $TRACKTLS_DB, make the key ring
#   start_backend                 tests/lib/backend.py on $BACKEND_PORT
#   start_terminator [flags...]   on $HTTPS_PORT/$HTTP_PORT/$METRICS_PORT as nobody, waits for /healthz
#   stop_terminator               SIGTERM, waits; its exit status is the return value
#   make_cert NAME                self-signed P-256 certificate for NAME, imported
#   renew NAME                    make_cert again (a renewal); prints the new certificate's serial
#   serving_serial NAME SERIAL    the leaf served for NAME has that serial
#   served NAME FIELD             the leaf served for SNI NAME: subject, serial...
#   metric NAME                   a value from /metrics (labels included in NAME)
#   metric_is NAME VALUE          it has that value (for wait_until, which runs it again each time)
#   metric_at_least NAME N        it is N or more (the same)

tt_setup_db() {
	make_keyring || return 1
	"$TT_BIN/issuer" db migrate >/dev/null 2>&1
}

BACKEND_PORT=$(free_port)
start_backend() {
	bg python3 "$TT_ROOT/tests/lib/backend.py" "$BACKEND_PORT"
	BACKEND_PID=$!
	wait_until 10 port_open 127.0.0.1 "$BACKEND_PORT"
}

start_terminator() {
	HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
	bg "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
		--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$METRICS_PORT" --threads 2 --user nobody "$@" \
		>>"$T/terminator.log" 2>&1
	TERM_PID=$!
	wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
}

stop_terminator() {
	kill -TERM "$TERM_PID" 2>/dev/null
	wait "$TERM_PID"
}

make_cert() {
	local name=$1
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$name" \
		-addext "subjectAltName=DNS:$name" -keyout "$T/$name.key" -out "$T/$name.pem" 2>/dev/null &&
		"$TT_BIN/issuer" cert import "$name" --cert "$T/$name.pem" --key "$T/$name.key" >/dev/null
}

renew() { make_cert "$1" && openssl x509 -noout -serial -in "$T/$1.pem"; }

serving_serial() { test "$(served "$1" serial)" = "$2"; }

served() {
	openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$1" </dev/null 2>/dev/null |
		openssl x509 -noout "-$2" 2>/dev/null
}

# --max-time: a scrape that gets no answer is an empty value, not a test that hangs.
metric() {
	curl -s --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

metric_is() { test "$(metric "$1")" = "$2"; }
metric_at_least() {
	local v
	v=$(metric "$1")
	test -n "$v" && test "${v%.*}" -ge "$2"
}
