#!/usr/bin/env bash
# make demo: PostgreSQL, Pebble, a tracking backend, the terminator on :443/:80, three tracking
# domains issued by the issuer, served over HTTPS, then renewed live. State lives in var/demo.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/var/demo
BIN=$ROOT/bin
DOMAINS="click.shop-one.example click.shop-two.example links.news-three.example"
BACKEND_PORT=18080
METRICS=127.0.0.1:9443
# Short certificate lifetimes, so that a renewal can be watched within a minute.
export PEBBLE_VALIDITY=${DEMO_CERT_SECONDS:-45}
export PEBBLE_PORT=14000 PEBBLE_MGMT_PORT=15000 PEBBLE_DNS_PORT=8053 PEBBLE_CHALL_MGMT_PORT=8055

. tests/lib/pg.sh
. tests/lib/pebble.sh

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31mdemo: %s\033[0m\n' "$*" >&2; exit 1; }

stop_all() {
	local f
	for f in cron terminator backend; do
		if [ -f "$STATE/$f.pid" ]; then
			kill "$(cat "$STATE/$f.pid")" 2>/dev/null
			rm -f "$STATE/$f.pid"
		fi
	done
	pebble_stop "$STATE/pebble"
	pg_stop "$STATE/pg"
}

wait_until() { # seconds command...
	local limit=$1 i; shift
	for ((i = 0; i < limit * 10; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	return 1
}

served_serial() { # name -> serial of the certificate the terminator serves for it
	openssl s_client -connect 127.0.0.1:443 -servername "$1" </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | cut -d= -f2
}

start() {
	stop_all
	# Pebble forgets everything when it stops, so the demo starts from nothing every time.
	rm -rf "$STATE"
	mkdir -p "$STATE"
	chmod 755 "$ROOT/var" "$STATE" 2>/dev/null
	[ -x "$BIN/issuer" ] && [ -x "$BIN/terminator" ] || die "binaries missing: run make"

	step "PostgreSQL (private, $STATE/pg)"
	pg_start "$STATE/pg" 5433 || die "PostgreSQL failed, log: $STATE/pg/postgres.log"
	psql -q -d postgres -c "CREATE DATABASE tracktls" || die "cannot create database"
	export TRACKTLS_DB="host=$PGHOST port=$PGPORT user=postgres dbname=tracktls"
	"$BIN/issuer" db migrate || die "migration failed"

	step "Master key ring ($STATE/master.keys, mode 0600)"
	"$BIN/issuer" keys generate --master-key-file "$STATE/master.keys" || die "keys generate failed"
	export TRACKTLS_MASTER_KEY_FILE=$STATE/master.keys

	step "Pebble ACME test CA + pebble-challtestsrv (DNS answers every name with 127.0.0.1)"
	pebble_start "$STATE/pebble" 80 || die "Pebble failed, log: $STATE/pebble/pebble.log"
	# Downloaded chains verify up to Pebble's issuing root, not the system store.
	export TRACKTLS_CHAIN_CA_FILE=$PEBBLE_ROOT
	# https_ready: each run checks what the local terminator serves, trusting Pebble's root.
	export TRACKTLS_HTTPS_CHECK_VIA=127.0.0.1:443 TRACKTLS_HTTPS_CHECK_CA_FILE=$PEBBLE_ROOT
	echo "directory: $PEBBLE_DIRECTORY  (certificates live ${PEBBLE_VALIDITY}s in this demo)"

	step "Tracking backend on 127.0.0.1:$BACKEND_PORT (open pixel /o/..., click redirect /c/...)"
	python3 demo/backend.py $BACKEND_PORT >"$STATE/backend.log" 2>&1 </dev/null &
	echo $! >"$STATE/backend.pid"
	wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$BACKEND_PORT" || die "backend did not start, log: $STATE/backend.log"

	step "Terminator on :443 (HTTPS) and :80 (HTTP-01 + plain HTTP), metrics on $METRICS"
	"$BIN/terminator" --https 127.0.0.1:443 --http 127.0.0.1:80 --backend 127.0.0.1:$BACKEND_PORT \
		--metrics $METRICS --allow-root >"$STATE/terminator.log" 2>&1 </dev/null &
	echo $! >"$STATE/terminator.pid"
	wait_until 10 curl -sf "http://$METRICS/healthz" || die "terminator did not start, log: $STATE/terminator.log"

	step "Adding three tracking domains"
	local d
	for d in $DOMAINS; do "$BIN/issuer" domain add "$d" --owner demo || die "domain add $d failed"; done

	step "Issuer run (ACME: order, HTTP-01 through the terminator's port 80, finalize, store sealed key)"
	issuer_run || die "issuer run failed, see above"

	local root=$PEBBLE_ROOT
	for d in $DOMAINS; do
		step "$d"
		openssl s_client -connect 127.0.0.1:443 -servername "$d" </dev/null 2>/dev/null |
			openssl x509 -noout -subject -issuer -enddate -serial | sed 's/^/    /'
		echo "    click (HTTPS, chain verified against Pebble's root):"
		curl -sS --resolve "$d:443:127.0.0.1" --cacert "$root" -o /dev/null \
			-w '      %{http_code} -> %{redirect_url}\n' "https://$d/c/campaign-42?u=7" || die "HTTPS click on $d failed"
		echo "    open pixel:"
		curl -sS --resolve "$d:443:127.0.0.1" --cacert "$root" -o /dev/null \
			-w '      %{http_code} %{content_type} %{size_download} bytes\n' "https://$d/o/msg-1.gif" || die "pixel on $d failed"
	done
	d=${DOMAINS%% *}
	step "Plain HTTP still works (emails sent before HTTPS): http://$d/c/old-link"
	curl -sS --resolve "$d:80:127.0.0.1" -o /dev/null -w '    %{http_code} -> %{redirect_url}\n' "http://$d/c/old-link" ||
		die "HTTP link failed"

	step "Renewal, live: waiting until $d is due (a third of its ${PEBBLE_VALIDITY}s lifetime left)"
	local before after
	before=$(served_serial "$d")
	echo "    serving serial $before"
	local i
	for ((i = 0; i < PEBBLE_VALIDITY * 2; i++)); do
		"$BIN/issuer" run --ca-file "$PEBBLE_CA" --directory "$PEBBLE_DIRECTORY" --self-check-via 127.0.0.1:80 \
			--contact demo@example.org >"$STATE/issuer-renew.log" 2>&1
		after=$(served_serial "$d")
		[ -n "$after" ] && [ "$after" != "$before" ] && break
		sleep 1
	done
	[ "$after" != "$before" ] || die "no renewal seen, log: $STATE/issuer-renew.log"
	echo "    serving serial $after: renewed and picked up by the running terminator (pid $(cat "$STATE/terminator.pid")), no restart"

	# Keep certificates fresh while the demo stays up, as cron would in production.
	(while :; do
		"$BIN/issuer" run --ca-file "$PEBBLE_CA" --directory "$PEBBLE_DIRECTORY" --self-check-via 127.0.0.1:80 \
			--contact demo@example.org >>"$STATE/issuer-cron.log" 2>&1
		sleep 5
	done) >/dev/null 2>&1 </dev/null &
	echo $! >"$STATE/cron.pid"

	step "Poke it further"
	cat <<MSG
    export TRACKTLS_DB='$TRACKTLS_DB' TRACKTLS_MASTER_KEY_FILE=$TRACKTLS_MASTER_KEY_FILE
    $BIN/issuer domain list
    $BIN/issuer domain show $d
    $BIN/issuer domain add click.another.example && $BIN/issuer run --directory $PEBBLE_DIRECTORY --ca-file $PEBBLE_CA --chain-ca-file $root --self-check-via 127.0.0.1:80
    curl -v --resolve $d:443:127.0.0.1 --cacert $root https://$d/c/hello
    openssl s_client -connect 127.0.0.1:443 -servername $d </dev/null
    curl -s http://$METRICS/metrics | grep -v '^#'
    Logs: $STATE/terminator.log $STATE/backend.log $STATE/issuer-cron.log $STATE/pebble/pebble.log
    An issuer "cron" loop keeps the ${PEBBLE_VALIDITY}s certificates renewed. Stop everything: make demo-stop
MSG
}

issuer_run() {
	"$BIN/issuer" run --ca-file "$PEBBLE_CA" --directory "$PEBBLE_DIRECTORY" --self-check-via 127.0.0.1:80 \
		--contact demo@example.org 2>&1 | tee "$STATE/issuer-run.log" | sed 's/^/    /'
	return "${PIPESTATUS[0]}"
}

case "${1:-start}" in
start) start ;;
stop) stop_all; echo "demo: stopped" ;;
*) echo "usage: demo/demo.sh start|stop" >&2; exit 2 ;;
esac
