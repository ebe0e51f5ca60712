#!/usr/bin/env bash
# Fetches Debian 13's pebble (2.6+, with ARI renewalInfo) without touching the system's apt sources
# and without installing it: its binary only needs libc. Prints the path of its pebble binary.
set -euo pipefail
CACHE_ROOT=${TRACKTLS_CACHE:-/var/cache/tracktls}
dir="$CACHE_ROOT/pebble-trixie"
if [ -x "$dir/usr/bin/pebble" ]; then echo "$dir/usr/bin/pebble"; exit 0; fi
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial"
cat > "$dir/apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
cat > "$dir/apt/apt.conf" <<CONF
Dir::Etc::SourceList "$dir/apt/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::State::Lists "$dir/apt/lists";
Dir::Cache "$dir/apt/cache";
APT::Architecture "amd64";
CONF
export APT_CONFIG="$dir/apt/apt.conf"
apt-get -q update >"$dir/update.log" 2>&1 || { echo "fetch-pebble-ari: cannot read trixie's package index (see $dir/update.log)" >&2; exit 1; }
( cd "$dir" && apt-get -q download pebble ) >"$dir/download.log" 2>&1 || { echo "fetch-pebble-ari: download failed (see $dir/download.log)" >&2; exit 1; }
deb=$(ls "$dir"/pebble_*.deb | head -n1)
dpkg-deb -x "$deb" "$dir"
"$dir/usr/bin/pebble" -version >/dev/null 2>&1 || true
echo "$dir/usr/bin/pebble"
