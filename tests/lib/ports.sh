# Loopback ports for tests and benchmarks. Source this file, then:
#   free_port      -> a port nothing is bound to on 127.0.0.1 (TCP and UDP)
#   pebble_ports   -> exports PEBBLE_PORT, PEBBLE_MGMT_PORT, PEBBLE_DNS_PORT, PEBBLE_CHALL_MGMT_PORT
# The kernel's bind(0) picks from the ephemeral range, which is also where every outgoing
# connection takes its source port (and leaves it in TIME_WAIT), and it can hand out the same port
# twice in a row: a scenario asking for four ports got a duplicate about once in 1,700 calls. So
# free_port picks below the ephemeral range, checks the port can be bound, and never returns a port
# it already returned to the same caller (remembered in $TT_PORTS_FILE, default $T/.ports).
free_port() {
	python3 - "${TT_PORTS_FILE:-${T:?free_port needs T or TT_PORTS_FILE}/.ports}" <<'PY'
import random, socket, sys

path = sys.argv[1]
try:
    with open(path) as f:
        used = {int(x) for x in f.read().split()}
except FileNotFoundError:
    used = set()
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph_lo = int(f.read().split()[0])
except OSError:
    eph_lo = 32768
lo, hi = (10000, eph_lo - 1) if eph_lo > 12000 else (eph_lo, 65535)


def bindable(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


for _ in range(1000):
    port = random.randint(lo, hi)
    if port not in used and bindable(port):
        break
else:
    sys.exit("free_port: no free port found")
with open(path, "a") as f:
    f.write("%d\n" % port)
print(port)
PY
}

pebble_ports() {
	PEBBLE_PORT=$(free_port) && PEBBLE_MGMT_PORT=$(free_port) && PEBBLE_DNS_PORT=$(free_port) &&
		PEBBLE_CHALL_MGMT_PORT=$(free_port) || return 1
	export PEBBLE_PORT PEBBLE_MGMT_PORT PEBBLE_DNS_PORT PEBBLE_CHALL_MGMT_PORT
}
