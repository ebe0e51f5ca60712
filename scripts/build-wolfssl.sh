#!/usr/bin/env bash
# Builds wolfSSL with assembly from Debian's own source package, once, into a cache outside the tree.
# Prints the install prefix on stdout; prints "system" when it had to fall back to Debian's binary package.
set -euo pipefail

CACHE_ROOT=${TRACKTLS_CACHE:-/var/cache/tracktls}
FLAGS="--enable-static --disable-shared --disable-examples --disable-crypttests --disable-benchmark \
--enable-intelasm --enable-aesni --enable-sp --enable-sp-asm --enable-tls13 --enable-sni --enable-alpn \
--enable-session-ticket --enable-opensslextra --enable-certgen --enable-certreq --enable-curve25519 \
--enable-ecc --enable-keygen --enable-supportedcurves --enable-aesgcm --enable-chacha --enable-poly1305 \
--enable-secure-renegotiation=no --enable-oldtls=no --enable-tlsv10=no --enable-ecccustcurves=no \
--enable-pkcallbacks --enable-fastmath=no --enable-certext --enable-altcertchains --with-pic"

log() { echo "build-wolfssl: $*" >&2; }

# Every make runs this script: answer from the cache without touching apt when the build for these
# flags was checked against Debian's current source version within the last day.
EXTRA_CFLAGS="-O2 -DWOLFSSL_GETRANDOM"
flagkey=$(printf '%s' "$FLAGS $EXTRA_CFLAGS" | sha256sum | cut -c1-12)
pointer="$CACHE_ROOT/wolfssl-current-$flagkey"
if [ -f "$pointer" ] && [ -z "$(find "$pointer" -mmin +1440 2>/dev/null)" ]; then
  cached=$(cat "$pointer")
  if [ -f "$cached/lib/libwolfssl.a" ]; then echo "$cached"; exit 0; fi
fi

aptdir="$CACHE_ROOT/apt"
. "$(dirname "$0")/private-apt.sh"
private_apt "$aptdir" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
SRC

fallback() {
  log "WARNING: $1"
  log "WARNING: falling back to Debian's libwolfssl-dev, which has NO assembly (handshakes 2-5x slower)"
  echo system
  exit 0
}

version=""
if apt-get -q update >"$aptdir/update.log" 2>&1; then
  version=$(apt-cache showsrc wolfssl 2>/dev/null | awk '/^Version:/{print $2}' | sort -V | tail -n1)
fi
[ -n "$version" ] || {
  # No network: reuse any build already in the cache.
  prev=$(ls -d "$CACHE_ROOT"/wolfssl-[0-9]*/ 2>/dev/null | tail -n1 || true)
  if [ -n "$prev" ] && [ -f "$prev/lib/libwolfssl.a" ]; then echo "${prev%/}"; exit 0; fi
  fallback "cannot read the wolfssl source package index (see $aptdir/update.log)"
}

key=$(printf '%s %s %s' "$version" "$FLAGS" "$EXTRA_CFLAGS" | sha256sum | cut -c1-12)
prefix="$CACHE_ROOT/wolfssl-${version//[:~+]/_}-$key"
if [ -f "$prefix/lib/libwolfssl.a" ] && [ -f "$prefix/include/wolfssl/options.h" ]; then
  echo "$prefix" > "$pointer"
  echo "$prefix"; exit 0
fi

log "building wolfSSL $version with assembly into $prefix (once; later builds reuse it)"
work=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
( cd "$work" && apt-get source -q "wolfssl=$version" ) >"$work/source.log" 2>&1 || fallback "apt-get source wolfssl failed: $(tail -n3 "$work/source.log")"
src=$(find "$work" -maxdepth 1 -type d -name 'wolfssl-*' | head -n1)
[ -n "$src" ] || fallback "no unpacked source in $work"
(
  cd "$src"
  ./autogen.sh
  # shellcheck disable=SC2086
  ./configure --prefix="$prefix.tmp" $FLAGS CFLAGS="$EXTRA_CFLAGS"
  make -j"$(nproc)"
  rm -rf "$prefix.tmp"
  make install
  cp wolfssl/options.h "$prefix.tmp/include/wolfssl/options.h"
) >"$work/build.log" 2>&1 || { cp "$work/build.log" "$CACHE_ROOT/wolfssl-build-failed.log"; fallback "wolfSSL build failed, log: $CACHE_ROOT/wolfssl-build-failed.log"; }
echo "$version" > "$prefix.tmp/VERSION"
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
echo "$prefix" > "$pointer"
log "done: $prefix"
echo "$prefix"
