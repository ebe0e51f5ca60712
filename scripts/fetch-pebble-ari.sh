#!/usr/bin/env bash
# Fetches Debian 13's pebble (2.6+, with ARI renewalInfo) without touching the system's apt sources
# and without installing it: its binary only needs libc. Prints the path of its pebble binary.
set -euo pipefail
CACHE_ROOT=${TRACKTLS_CACHE:-/var/cache/tracktls}
dir="$CACHE_ROOT/pebble-trixie"
# A cached binary counts only if it runs (a half-extracted or foreign one is fetched again).
runs() { "$dir/usr/bin/pebble" -version >/dev/null 2>&1; }
if [ -x "$dir/usr/bin/pebble" ] && runs; then echo "$dir/usr/bin/pebble"; exit 0; fi
. "$(dirname "$0")/private-apt.sh"
private_apt "$dir/apt" 'APT::Architecture "amd64";' <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
apt-get -q update >"$dir/update.log" 2>&1 || { echo "fetch-pebble-ari: cannot read trixie's package index (see $dir/update.log)" >&2; exit 1; }
( cd "$dir" && apt-get -q download pebble ) >"$dir/download.log" 2>&1 || { echo "fetch-pebble-ari: download failed (see $dir/download.log)" >&2; exit 1; }
deb=$(ls "$dir"/pebble_*.deb | head -n1)
dpkg-deb -x "$deb" "$dir"
runs || { echo "fetch-pebble-ari: $dir/usr/bin/pebble from $deb does not run" >&2; rm -f "$dir/usr/bin/pebble"; exit 1; }
echo "$dir/usr/bin/pebble"
