#!/usr/bin/env bash
# Certificates per minute for the ACME clients we compare the issuer with (lego, uacme; whichever is
# installed) against Pebble with PEBBLE_VA_NOSLEEP=1: P workers, each issuing for fresh names in a loop
# for S seconds. Prints one JSON line per client.
#   bench/acme_peers.sh [--seconds S] [--parallel P]
# HTTP-01 files are served from one webroot by python3's http.server. uacme (libcurl-gnutls) only
# trusts the system bundle, so it runs in a private mount namespace where that bundle also holds
# Pebble's CA; nothing outside changes.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=60 parallel=1
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) seconds=$2; shift 2 ;;
	--parallel) parallel=$2; shift 2 ;;
	*) sed -n '2,5p' "$0" >&2; exit 2 ;;
	esac
done
clients=()
command -v lego >/dev/null && clients+=(lego)
command -v uacme >/dev/null && clients+=(uacme)
[ ${#clients[@]} -gt 0 ] || { echo "acme_peers: neither lego nor uacme is installed" >&2; exit 0; }

T=$(mktemp -d /tmp/tracktls-acme-peers.XXXXXX)
chmod 755 "$T"
. "$root/tests/lib/pebble.sh"
. "$root/tests/lib/ports.sh"
WEB_PID=
cleanup() {
	[ -n "$WEB_PID" ] && kill "$WEB_PID" 2>/dev/null
	pebble_stop "$T/pebble"
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

HTTP=$(free_port)
pebble_ports
pebble_start "$T/pebble" "$HTTP" >/dev/null || exit 1
WEB=$T/webroot
mkdir -p "$WEB/.well-known/acme-challenge"
python3 -m http.server --bind 127.0.0.1 --directory "$WEB" "$HTTP" >/dev/null 2>&1 &
WEB_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$HTTP") 2>/dev/null && break; sleep 0.05; done

cat "/etc/ssl/certs/ca-certificates.crt" "$PEBBLE_CA" >"$T/bundle.crt"
cat >"$T/uacme-hook" <<EOF
#!/bin/sh
# uacme hook: METHOD TYPE IDENT TOKEN AUTH
[ "\$2" = http-01 ] || exit 1
case \$1 in
begin) printf '%s' "\$5" >"$WEB/.well-known/acme-challenge/\$4" ;;
*) rm -f "$WEB/.well-known/acme-challenge/\$4" ;;
esac
EOF
chmod +x "$T/uacme-hook"

issue_one() { # CLIENT WORKER NAME
	case $1 in
	lego)
		LEGO_CA_CERTIFICATES=$PEBBLE_CA lego --server "$PEBBLE_DIRECTORY" --accept-tos --email bench@example.com \
			--path "$T/lego-$2" --key-type ec256 --http --http.webroot "$WEB" --domains "$3" run ;;
	uacme)
		unshare -m sh -c 'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec uacme "$@"' \
			"$T/bundle.crt" -y -c "$T/uacme-$2" -a "$PEBBLE_DIRECTORY" -t EC -h "$T/uacme-hook" issue "$3" ;;
	esac
}

worker() { # CLIENT WORKER DEADLINE: issues until the deadline, prints its count
	local n=0 i=0
	if [ "$1" = uacme ]; then
		unshare -m sh -c 'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec uacme "$@"' \
			"$T/bundle.crt" -y -c "$T/uacme-$2" -a "$PEBBLE_DIRECTORY" -t EC new >>"$T/$1-$2.log" 2>&1 || { echo 0; return; }
	fi
	while [ "$(date +%s)" -lt "$3" ]; do
		i=$((i + 1))
		issue_one "$1" "$2" "$1-w$2-$i.bench.test" >>"$T/$1-$2.log" 2>&1 && n=$((n + 1))
	done
	echo "$n"
}

for c in "${clients[@]}"; do
	t0=$(date +%s.%N)
	deadline=$(($(date +%s) + seconds))
	pids=()
	for ((w = 0; w < parallel; w++)); do
		worker "$c" "$w" "$deadline" >"$T/$c-$w.count" &
		pids+=($!)
	done
	wait "${pids[@]}"
	t1=$(date +%s.%N)
	total=$(cat "$T/$c"-*.count | awk '{s+=$1} END{print s+0}')
	version=$( [ "$c" = lego ] && dpkg-query -W -f '${Version}' lego 2>/dev/null || dpkg-query -W -f '${Version}' uacme 2>/dev/null)
	awk -v c="$c" -v n="$total" -v a="$t0" -v b="$t1" -v p="$parallel" -v v="$version" \
		'BEGIN{printf "{\"client\":\"%s\",\"version\":\"%s\",\"parallel\":%d,\"certs\":%d,\"seconds\":%.1f,\"certs_per_min\":%.1f}\n", c, v, p, n, b-a, n*60/(b-a)}'
done
