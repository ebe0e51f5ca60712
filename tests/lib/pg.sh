# Private PostgreSQL for tests and the demo: initdb in a folder, Unix socket only, run as the
# unprivileged 'postgres' user when we are root. Source this file, then:
#   pg_start DIR        -> exports PGHOST (socket dir), PGPORT, PGUSER, PGDATABASE=postgres
#   pg_newdb NAME       -> creates database NAME, prints its connection string
#   pg_stop DIR
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}

pg__as() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
	local dir=$1 port=${2:-5432}
	mkdir -p "$dir"
	# 0755: a terminator that dropped to nobody still reaches the socket (the data dir stays 0700).
	if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; chmod 755 "$dir"; fi
	if [ ! -f "$dir/data/PG_VERSION" ]; then
		pg__as "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
			{ echo "pg_start: initdb failed, see $dir/initdb.log" >&2; return 1; }
	fi
	# fsync=off is safe here (a stopped server loses no OS buffers); synchronous_commit stays on,
	# or tests that stop PostgreSQL with -m immediate would lose their last commits.
	pg__as "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
		-o "-k $dir -p $port -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=300" \
		start >/dev/null || { echo "pg_start: postgres did not start, see $dir/postgres.log" >&2; return 1; }
	export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
}

pg_newdb() {
	psql -qAt -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \"$1\"" >/dev/null || return 1
	echo "host=$PGHOST port=$PGPORT user=postgres dbname=$1"
}

pg_stop() {
	local dir=$1
	[ -f "$dir/data/postmaster.pid" ] || return 0
	pg__as "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}
