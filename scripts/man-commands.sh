#!/usr/bin/env bash
# Prints a help2man include file with every `issuer COMMAND --help`, so the man page holds each
# command's flags, generated from the binary like the rest of the page.
#   scripts/man-commands.sh ISSUER_BINARY
set -euo pipefail
bin=$1
echo "[COMMANDS]"
"$bin" --help 2>&1 | awk '/^commands:/ { on = 1; next } on && NF { print }' | cut -c3-20 | sed 's/ *$//' |
	while read -r cmd; do
		echo ".SS $cmd"
		echo ".nf"
		# shellcheck disable=SC2086
		"$bin" $cmd --help 2>&1 | sed -e 's/\\/\\e/g' -e 's/^[.'\'']/\\\&&/'
		echo ".fi"
	done
