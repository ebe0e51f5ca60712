#!/usr/bin/env python3
"""bench/restart_sampler.py: bench/restart.sh's once-a-second sampler, one process for the whole run.

    restart_sampler.py OUT T0_NS SECONDS DBNAME PG_DATA_DIR OLD_METRICS_PORT NEW_METRICS_PORT LOAD_PID

At each second's boundary after T0_NS (CLOCK_REALTIME, as `date +%s%N`), one JSON line: the
database's transactions in that second (pg_stat_database, this sampler's own subtracted), the
certificate queries both terminators sent (misses and prefetches; a process not running counts 0),
the CPU seconds of the terminators, of PostgreSQL and of the load generator, and the PostgreSQL
processes started and ended (a connection opened or closed directly is a backend forked or ended).

It forks nothing per sample: spawning psql and curl every second cost the load generator's core
about 40 ms a second, which showed as a stall once a second in the very latencies it measures.
"""
import http.client
import json
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
QUERY_METRICS = ("tracktls_db_queries_total", "tracktls_handover_prefetch_queries_total")


def cpu_s(pid):
    """utime + stime of one process, seconds; 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return 0.0


def pg_cpu_s(data_dir):
    """The postmaster's and its children's CPU, seconds (children that ended are not counted)."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pm = int(f.readline())
    except (OSError, ValueError):
        return 0.0
    total = cpu_s(pm)
    try:
        with open(f"/proc/{pm}/task/{pm}/children") as f:
            total += sum(cpu_s(int(p)) for p in f.read().split())
    except OSError:
        pass
    return total


def pg_processes(data_dir):
    """The postmaster's children now: backends (one per connection) and its own workers."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pm = int(f.readline())
        with open(f"/proc/{pm}/task/{pm}/children") as f:
            return set(f.read().split())
    except (OSError, ValueError):
        return set()


def queries(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        c.close()
    except (OSError, http.client.HTTPException):
        return 0
    total = 0
    for line in body.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in QUERY_METRICS:
            total += int(float(parts[1]))
    return total


def main():
    out, t0_ns, seconds, db, pg_dir, m_old, m_new, load_pid = sys.argv[1:9]
    t0_ns, seconds, m_old, m_new, load_pid = int(t0_ns), int(seconds), int(m_old), int(m_new), int(load_pid)
    psql = subprocess.Popen(["psql", "-qAtX", "-d", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def xacts():
        psql.stdin.write("select xact_commit + xact_rollback from pg_stat_database where datname = current_database();\n")
        psql.stdin.flush()
        return int(psql.stdout.readline())

    procs = {}

    def sample():
        return {
            "xacts": xacts(),
            "queries": (queries(m_old), queries(m_new)),
            "cpu": {"old": cpu_s(procs.get("old", 0)), "new": cpu_s(procs.get("new", 0)),
                    "pg": pg_cpu_s(pg_dir), "load": cpu_s(load_pid)},
            "pg_processes": pg_processes(pg_dir),
        }

    def find_terminators():
        # the terminators are found by their metrics port in their command line
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if not argv[0].endswith(b"terminator"):
                continue
            for role, port in (("old", m_old), ("new", m_new)):
                if f"127.0.0.1:{port}".encode() in argv and role not in procs:
                    procs[role] = int(pid)

    find_terminators()
    prev = sample()
    with open(out, "w") as f:
        for i in range(1, seconds + 1):
            delay = (t0_ns + i * 1_000_000_000 - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            if "new" not in procs:
                find_terminators()
            cur = sample()
            # a process that exited reads 0: only what each one added counts
            dq = sum(max(c - p, 0) for c, p in zip(cur["queries"], prev["queries"]))
            cpu = {k: round(max(cur["cpu"][k] - prev["cpu"][k], 0.0), 3) for k in cur["cpu"]}
            # PostgreSQL processes forked and ended in this second (one that lived less than a
            # second between two samples is not seen)
            started = len(cur["pg_processes"] - prev["pg_processes"])
            ended = len(prev["pg_processes"] - cur["pg_processes"])
            f.write(json.dumps({"s": i, "xacts": cur["xacts"] - prev["xacts"] - 1, "queries": dq, "cpu_s": cpu,
                                "pg_started": started, "pg_ended": ended}) + "\n")
            f.flush()
            prev = cur
    psql.stdin.close()
    psql.wait()


if __name__ == "__main__":
    main()
