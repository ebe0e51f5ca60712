#!/usr/bin/env bash
# The issuer holds clear private keys while it works: it runs with no core file.
. "$TT_ROOT/tests/lib/common.sh"

make_keyring
"$TT_BIN/issuer" db migrate >/dev/null 2>&1
CA_PORT=$(free_port)
# A CA that accepts and never answers keeps the run busy long enough to look at it.
bg python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',$CA_PORT)); s.listen(); time.sleep(60)"
wait_until 10 port_open 127.0.0.1 "$CA_PORT"
"$TT_BIN/issuer" run --directory "https://127.0.0.1:$CA_PORT/dir" --timeout 20s >"$T/run.log" 2>&1 &
RUN=$!
TT_PIDS+=("$RUN")
core0() { grep -Eq '^Max core file size +0 +0 ' "/proc/$RUN/limits"; }
check "a running issuer has a core file limit of 0" wait_until 10 core0
kill "$RUN"
