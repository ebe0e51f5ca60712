#!/usr/bin/env bash
# The release binaries (bin/, what `make` builds and packages ship) are built hardened: a
# position-independent executable, relocations read-only and bound at start (-z relro -z now),
# fortified libc calls (-D_FORTIFY_SOURCE=2), and every one of our compilation units built with
# -fstack-protector-strong and -fstack-clash-protection (as its DWARF producer string records).
. "$TT_ROOT/tests/lib/common.sh"

for b in terminator issuer; do
	f=$TT_ROOT/bin/$b
	if [ ! -x "$f" ]; then
		fail "$f exists (run make first)"
		continue
	fi
	check "$b is a position-independent executable" grep -q "DYN (Position-Independent Executable file)" \
		<(readelf -h "$f")
	check "$b binds every symbol at start (FLAGS_1 NOW PIE)" grep -qE "FLAGS_1.*NOW.*PIE" <(readelf -d "$f")
	check "$b has a read-only relocation segment (GNU_RELRO)" grep -q GNU_RELRO <(readelf -lW "$f")
	syms=$(readelf --dyn-syms -W "$f")
	check "$b calls __stack_chk_fail (stack protector)" grep -q __stack_chk_fail <<<"$syms"
	check "$b calls fortified libc functions ($(grep -oE '__[a-z]+_chk' <<<"$syms" | sort -u | tr '\n' ' '))" \
		grep -qE '__(snprintf|memcpy|printf|fprintf|vsnprintf|read)_chk' <<<"$syms"
	readelf --debug-dump=info "$f" 2>/dev/null | awk '
		/DW_AT_producer/ { producer = $0 }
		/DW_AT_name/ && $NF ~ /^(terminator|issuer|common)\/[a-z_0-9]+\.c$/ {
			n++
			if (producer !~ /-fstack-protector-strong/ || producer !~ /-fstack-clash-protection/) bad++
		}
		END { print n + 0, bad + 0 }' >"$T/$b.units"
	read -r units bad <"$T/$b.units"
	check "$b: all $units units of ours built with stack protector and clash protection ($bad without)" \
		test "$units" -gt 10 -a "$bad" = 0
done
