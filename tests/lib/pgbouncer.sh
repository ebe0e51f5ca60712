# A private PgBouncer in session mode in front of a private PostgreSQL (pg.sh), with the settings
# the terminators are deployed with (deploy/pgbouncer-tracktls.ini). Source pg.sh and a file that
# defines free_port (ports.sh, or bench/setup.sh) first.
#   pgb_start DIR DBNAME PG_HOST PG_PORT POOL -> starts it on a Unix socket in DIR, DBNAME's pool
#                                               POOL server connections, all kept open; prints
#                                               the connection string to DBNAME through it
#   pgb_servers DIR DBNAME                    -> the pool's server connections logged in
#   pgb_filled DIR DBNAME                     -> all POOL of them are (PgBouncer opens them while
#                                               a client is connected)
#   pgb_stop DIR
pgb__root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# The admin console; its errors go to DIR/admin.log.
pgb__admin() { psql -qAX -h "$1" -p "$(cat "$1/port")" -U postgres -d pgbouncer -c "$2" 2>>"$1/admin.log"; }

# SHOW POOLS, by column name (they differ between PgBouncer versions): servers in use, idle, used
# or being tested; not those still logging in, which PostgreSQL may not list yet.
pgb_servers() {
	pgb__admin "$1" "SHOW POOLS" | awk -F'|' -v d="$2" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^sv_(active|idle|used|tested)$/) sv[i] = 1; next }
		$1 == d { for (i in sv) n += $i; f = 1 } END { print f ? n : 0 }'
}

pgb_filled() { [ "$(pgb_servers "$1" "$2")" -ge "$(cat "$1/pool")" ]; }

pgb_start() {
	local dir=$1 db=$2 pghost=$3 pgport=$4 pool=$5 port i
	mkdir -p "$dir"
	# With no listen_addr the port only names the socket file in DIR.
	port=$(free_port)
	echo "$port" >"$dir/port"
	echo "$pool" >"$dir/pool"
	cat >"$dir/pgbouncer.ini" <<INI
[databases]
$db = host=$pghost port=$pgport user=postgres dbname=$db pool_size=$pool min_pool_size=$pool
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
	local pid i
	pid=$(cat "$1/pgbouncer.pid" 2>/dev/null) || return 0
	kill "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
	kill -9 "$pid" 2>/dev/null
}
