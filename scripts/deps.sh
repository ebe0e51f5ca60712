#!/usr/bin/env bash
# Installs the Debian 12 packages tracktls builds and tests with. --if-missing: only when one is absent.
set -euo pipefail
PKGS="build-essential pkg-config liburing-dev libcurl4-openssl-dev libpq-dev libsodium-dev libjansson-dev libidn2-dev libc-ares-dev
postgresql pgbouncer pebble curl openssl ca-certificates autoconf automake libtool dpkg-dev clang libclang-rt-14-dev
haproxy hitch nginx-light procps iproute2 util-linux python3 testssl.sh valgrind
debhelper lintian help2man man-db systemd prometheus prometheus-node-exporter python3-yaml python3-cryptography"
missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${1:-}" = "--if-missing" ] && [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  [ "$(id -u)" = 0 ] || { echo "deps: need root to install packages" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts packaged daemons on install; tests and the demo run their own private instances.
for svc in haproxy hitch nginx postgresql pgbouncer prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; systemctl disable "$svc" >/dev/null 2>&1 || true; fi
done
# The fast wolfSSL is built from Debian's source; when that cannot be fetched, the build links
# Debian's binary package instead (without assembly, and the build says so).
if [ "$(scripts/build-wolfssl.sh)" = system ] && ! dpkg-query -W -f='${Status}' libwolfssl-dev 2>/dev/null | grep -q 'ok installed'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libwolfssl-dev >/dev/null
fi
