# Sourced by scripts that fetch Debian packages or sources without touching the system's apt
# configuration (scripts/build-wolfssl.sh, scripts/fetch-pebble-ari.sh):
#   private_apt DIR [APT_CONF_LINE...] <SOURCES_LIST
# writes DIR/sources.list from stdin and DIR/apt.conf (lists and cache under DIR, the system's
# sources.list.d ignored, plus the extra lines), makes the folders apt needs, exports APT_CONFIG.
private_apt() {
	local dir=$1
	shift
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
	cat >"$dir/sources.list"
	{
		printf 'Dir::Etc::SourceList "%s/sources.list";\n' "$dir"
		printf 'Dir::Etc::SourceParts "/nonexistent";\n'
		printf 'Dir::State::Lists "%s/lists";\n' "$dir"
		printf 'Dir::Cache "%s/cache";\n' "$dir"
		[ $# -eq 0 ] || printf '%s\n' "$@"
	} >"$dir/apt.conf"
	export APT_CONFIG="$dir/apt.conf"
}
