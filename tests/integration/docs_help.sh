#!/usr/bin/env bash
# Every flag and command is documented twice, in --help and in the README: the README's reference
# must hold each --help output verbatim, so neither can drift from the binaries.
. "$TT_ROOT/tests/lib/common.sh"

blocks=$T/readme-blocks
python3 - "$TT_ROOT/README.md" "$blocks" <<'PY'
import sys
text = open(sys.argv[1]).read().split("\n")
out, cur = [], None
for line in text:
    if line.startswith("```"):
        if cur is None:
            cur = []
        else:
            out.append("\n".join(cur).rstrip())
            cur = None
    elif cur is not None:
        cur.append(line.rstrip())
open(sys.argv[2], "w").write("\0".join(out))
PY
in_readme() {
	python3 -c 'import sys; b = open(sys.argv[1]).read().split("\0"); h = sys.stdin.read().rstrip(); sys.exit(0 if h in b else 1)' "$blocks"
}
check "README holds \`terminator --help\`" in_readme < <("$TT_BIN/terminator" --help 2>&1 | sed 's/[[:space:]]*$//')
check "README holds \`issuer --help\`" in_readme < <("$TT_BIN/issuer" --help 2>&1 | sed 's/[[:space:]]*$//')
"$TT_BIN/issuer" --help 2>&1 | awk '/^commands:/ { on = 1; next } on && NF { print }' | cut -c3-20 | sed 's/ *$//' >"$T/commands"
check "issuer lists its commands ($(wc -l <"$T/commands"))" test "$(wc -l <"$T/commands")" -ge 10
while read -r cmd; do
	# shellcheck disable=SC2086
	check "README holds \`issuer $cmd --help\`" in_readme < <("$TT_BIN/issuer" $cmd --help 2>&1 | sed 's/[[:space:]]*$//')
done <"$T/commands"
