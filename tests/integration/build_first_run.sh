#!/usr/bin/env bash
# On a fresh machine `make test` installs autoconf and the rest (scripts/deps.sh) in its recipe, so
# the top-level make must not build wolfSSL (scripts/build-wolfssl.sh, through WOLFSSL_PREFIX)
# while it reads its makefiles: that early build fails for want of tools and prints a false
# "falling back" warning. Only the nested makes, which run after deps.sh, may expand it.
. "$TT_ROOT/tests/lib/common.sh"

marker=$T/expanded
# Top level only (MAKELEVEL 0): an expansion there would run the build script before deps.sh.
# Set with --eval, not on the command line: make exports command-line variables to every recipe,
# which would expand the probe where the real variable is never expanded.
# `make test` runs this test from a recipe: drop the MAKELEVEL and flags it exports, or the make
# below would be a nested one and the probe would never fire.
unset MAKELEVEL MAKEFLAGS MFLAGS
probe="override WOLFSSL_PREFIX = \$(if \$(filter 0,\$(MAKELEVEL)),\$(shell echo expanded >>$marker))system"
for target in test deps clean lint; do
	rm -f "$marker"
	make -C "$TT_ROOT" -n --no-print-directory --eval "$probe" "$target" >"$T/make-$target.log" 2>&1
	check "top-level \`make $target\` reads its makefiles without expanding WOLFSSL_PREFIX" test ! -e "$marker"
done
# The probe is live: a target that compiles does expand it at the top level.
rm -f "$marker"
make -C "$TT_ROOT" -n --no-print-directory --eval "$probe" all >"$T/make-all.log" 2>&1
check "top-level \`make all\` expands WOLFSSL_PREFIX (the probe works)" test -e "$marker"
