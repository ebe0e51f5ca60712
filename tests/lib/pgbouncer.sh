# A private PgBouncer in session mode in front of a private PostgreSQL (pg.sh), with the pool
# settings the terminators are deployed with (deploy/pgbouncer-tracktls.ini). Source pg.sh first.
#   pgb_start DIR DBNAME PG_HOST PG_PORT -> starts it on a Unix socket in DIR, prints the
#                                          connection string to DBNAME through it
#   pgb_servers DIR DBNAME               -> the pool's server connections (in use, idle or
#                                          logging in)
#   pgb_filled DIR DBNAME                -> the pool holds its min_pool_size server connections
#                                          (PgBouncer opens them while a client is connected)
#   pgb_stop DIR
pgb__root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

pgb__admin() { psql -qAX -h "$1" -p "$(cat "$1/port")" -U postgres -d pgbouncer -c "$2" 2>/dev/null; }

# SHOW POOLS, by column name: the columns differ between PgBouncer versions.
pgb_servers() {
	pgb__admin "$1" "SHOW POOLS" | awk -F'|' -v d="$2" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^sv_/) sv[i] = 1; next }
		$1 == d { for (i in sv) n += $i; f = 1 } END { print f ? n : 0 }'
}

pgb_min_pool() { awk -F' *= *' '$1 == "min_pool_size" { print $2 }' "$pgb__root/deploy/pgbouncer-tracktls.ini"; }
pgb_filled() { [ "$(pgb_servers "$1" "$2")" -ge "$(pgb_min_pool)" ]; }

pgb_start() {
	local dir=$1 db=$2 pghost=$3 pgport=$4 port i
	mkdir -p "$dir"
	port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
	echo "$port" >"$dir/port"
	cat >"$dir/pgbouncer.ini" <<INI
[databases]
$db = host=$pghost port=$pgport user=postgres dbname=$db
[pgbouncer]
listen_addr =
listen_port = $port
unix_socket_dir = $dir
unix_socket_mode = 0777
auth_type = any
admin_users = postgres
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
%include $pgb__root/deploy/pgbouncer-tracktls.ini
INI
	if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; chmod 755 "$dir"; fi
	pg__as pgbouncer -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 ||
		{ echo "pgb_start: pgbouncer did not start: $(cat "$dir/start.log")" >&2; return 1; }
	for ((i = 0; i < 100; i++)); do
		psql -qAtX -h "$dir" -p "$port" -U postgres -d "$db" -c 'select 1' >/dev/null 2>&1 &&
			{ echo "host=$dir port=$port user=postgres dbname=$db"; return 0; }
		sleep 0.1
	done
	echo "pgb_start: no answer through pgbouncer: $(tail -n3 "$dir/pgbouncer.log")" >&2
	return 1
}

pgb_stop() {
	local pid
	pid=$(cat "$1/pgbouncer.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
	kill -9 "$pid" 2>/dev/null
}
