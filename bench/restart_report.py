#!/usr/bin/env python3
"""bench/restart_report.py RESULTS.json: the Markdown report of bench/restart.sh."""
import json
import statistics
import sys

FINE_MS = 100  # the step of the view around the switch


def fine(raw_path):
    """--fine RAW: load --timeline-raw's completions as 100-ms steps by the time each was due."""
    steps = {}
    for line in open(raw_path):
        end_ms, lat_us, _, _ = (int(x) for x in line.split())
        if lat_us < 0:
            continue
        steps.setdefault((end_ms - lat_us // 1000) // FINE_MS, []).append(lat_us)
    out = []
    for k in sorted(steps):
        v = sorted(steps[k])
        out.append({"ms": k * FINE_MS, "n": len(v), "p50_us": v[len(v) // 2], "p99_us": v[len(v) * 99 // 100]})
    return out


if len(sys.argv) == 3 and sys.argv[1] == "--fine":
    json.dump(fine(sys.argv[2]), sys.stdout)
    sys.exit(0)

d = json.load(open(sys.argv[1]))
runs = d["runs"]
by = {r["scenario"]: r for r in runs}
setup = d["setup"]
WARM_WINDOW = 8  # seconds before the switch that give the warm reference (after 2 s of settling)
AFTER = setup["after_s"]

RESTARTS = ("before", "cold", "warm", "spare")
title = "The terminator restarted under load" if any(v in by for v in RESTARTS) else "Cold-name storms"
print(f"# {title} ({d['date']}, {d['machine']['cores']} cores, shared machine)\n")
print(f"{setup['names']:,} domains in the database, {setup['real']:,} servable; Zipf (s = {setup['zipf']}) over the "
      f"servable names, handshakes opened at {setup['rate']:,}/s (open loop; latency counts from the time each "
      f"was due); {setup['threads']} terminator thread(s) on half the cores. The machine was shared with other "
      f"builds and tests (load average at the end: {d['machine']['loadavg_at_end']}): read the ratios, not the "
      f"absolutes.\n")
if setup.get("pooler"):
    print(f"The terminators reached PostgreSQL through {setup['pooler']} in session mode "
          f"(deploy/pgbouncer-tracktls.ini), its pool open before the measured seconds.\n")
if "warm_max" in by:
    print(f"Warm closed-loop rate (32 connections): {by['warm_max']['rps']:,.0f} handshakes/s; "
          f"the restarts run at {setup['rate'] / by['warm_max']['rps'] * 100:.0f} % of it, each old process "
          f"warmed first by {setup.get('prewarm_s', '?')} s of closed-loop traffic.\n")

LABELS = {
    "before": "one query per miss, fixed 1,000 misses/s per thread, no handover (the behaviour before)",
    "cold": "batched misses, adaptive miss limit, no handover (a new host under traffic)",
    "warm": "batched misses, adaptive miss limit, hot-names handover",
    "spare": "the control: a terminator started, warmed up and stopped beside the serving one, no takeover",
}


def window(r):
    sw = r["switch_ms"] / 1000
    tl = r["timeline"]
    warm = [x for x in tl if sw - WARM_WINDOW <= x["s"] < int(sw)]
    after = [x for x in tl if int(sw) <= x["s"] < int(sw) + AFTER]
    dbs = [x for x in r["db_per_second"] if int(sw) < x["s"] <= int(sw) + AFTER]
    return sw, warm, after, dbs


def fine_window(r):
    """The 100-ms steps from 1 s before the switch to 3 s after the new process turned healthy."""
    lo, hi = r["switch_ms"] - 1000, r["new_healthy_ms"] + 3000
    return [x for x in r.get("fine", []) if lo <= x["ms"] < hi]


# Runs of only the storms (--variants "") have no restart to report.
if any(v in by for v in RESTARTS):
    print("The switch is when the new process was started; it takes over (the old one gets SIGTERM) once healthy.\n")
    print("## Over the 30 s after the switch\n")
    print("| figure | " + " | ".join(v for v in LABELS if v in by) + " |")
    print("|---|" + "---:|" * sum(v in by for v in LABELS))
    rows = {}
    for v in LABELS:
        if v not in by:
            continue
        r = by[v]
        sw, warm, after, dbs = window(r)
        wp99 = statistics.median(x["p99_us"] for x in warm) if warm else 0
        wp50 = statistics.median(x["p50_us"] for x in warm) if warm else 0
        ok = sum(x["ok"] for x in after)
        err = sum(x["errors"] for x in after)
        p99s = [x["p99_us"] for x in after if x["ok"]]
        worst = max(p99s) if p99s else 0
        over = sum(1 for p in p99s if wp99 and p > 2 * wp99)
        rows.setdefault("handshakes completed / failed or refused (client side)", []).append(f"{ok:,} / {err:,}")
        n = r["new"]
        spare = v == "spare"
        rows.setdefault("new process: refused as throttled / certificate errors", []).append(
            "-" if spare else f"{n['throttled']:,} / {n['certificate_errors']:,}")
        rows.setdefault("warm p50 / p99 before the switch, ms (median of per-second figures)", []).append(
            f"{wp50 / 1000:.2f} / {wp99 / 1000:.2f}")
        rows.setdefault("worst per-second p99 after the switch, ms (× warm p99)", []).append(
            f"{worst / 1000:.2f} ({worst / wp99:.2f}×)" if wp99 else "-")
        rows.setdefault("seconds with p99 above 2× warm p99", []).append(f"{over} of {len(p99s)}")
        rows.setdefault("median per-second p50 / p99 after the switch, ms", []).append(
            f"{statistics.median(x['p50_us'] for x in after) / 1000:.2f} / {statistics.median(p99s) / 1000:.2f}"
            if p99s else "-")
        xs = [x["xacts"] for x in dbs]
        rows.setdefault("database transactions/s after the switch: peak / mean", []).append(
            f"{max(xs):,} / {statistics.mean(xs):,.0f}" if xs else "-")
        if any("pg_started" in x for x in dbs):
            rows.setdefault("PostgreSQL processes started / ended after the switch", []).append(
                f"{sum(x.get('pg_started', 0) for x in dbs)} / {sum(x.get('pg_ended', 0) for x in dbs)}")
        qs = [x["queries"] for x in dbs if "queries" in x]
        rows.setdefault("certificate queries/s sent by the terminators after the switch: peak / mean", []).append(
            f"{max(qs):,} / {statistics.mean(qs):,.1f}" if qs else "-")
        rows.setdefault("new process: cache misses, certificate queries (batches: names)", []).append(
            "-" if spare else f"{n['cache_misses']:,}, {n['db_queries']:,} ({n['batches']:,}: {n['batched_names']:,})")
        rows.setdefault("new process: names prefetched, in queries", []).append(
            "-" if spare else f"{n['prefetch_loaded']:,}, {n['prefetch_queries']:,}")
        rows.setdefault("new process healthy after, ms", []).append(f"{r['new_healthy_ms'] - r['switch_ms']:,}")
        wu = n.get("warm_up_ms")
        rows.setdefault("new process: warm-up before accepting, ms", []).append(f"{wu:,}" if wu is not None else "none")
        loadcpu = [x["cpu_s"]["load"] for x in r["db_per_second"]
                   if "cpu_s" in x and sw - WARM_WINDOW < x["s"] <= int(sw)]
        rows.setdefault("load generator busy before the switch, % of its core", []).append(
            f"{statistics.mean(loadcpu) * 100:.0f}" if loadcpu else "-")
        fw = fine_window(r)
        fover = [x for x in fw if wp99 and x["p99_us"] > 2 * wp99]
        rows.setdefault(f"{FINE_MS}-ms steps with p99 above 2× warm p99, from 1 s before the switch to 3 s after "
                        f"the new process turned healthy", []).append(f"{len(fover)} of {len(fw)}" if fw else "-")
        rows.setdefault(f"worst {FINE_MS}-ms step there: p50 / p99, ms", []).append(
            f"{max(x['p50_us'] for x in fw) / 1000:.1f} / {max(x['p99_us'] for x in fw) / 1000:.1f}" if fw else "-")
    for k, vals in rows.items():
        print(f"| {k} | " + " | ".join(vals) + " |")

    print("\n## Per second after the switch (completed / failed, p99 ms, database transactions, certificate queries)\n")
    vs = [v for v in LABELS if v in by]
    print("| s | " + " | ".join(vs) + " |")
    print("|---:|" + "---:|" * len(vs))
    wins = {v: window(by[v]) for v in vs}
    for i in range(-2, AFTER):
        cells = []
        for v in vs:
            sw, _, _, _ = wins[v]
            s = int(sw) + i
            t = next((x for x in by[v]["timeline"] if x["s"] == s), None)
            db = next((x for x in by[v]["db_per_second"] if x["s"] == s + 1), None)
            q = db.get("queries", "-") if db else "-"
            cells.append(f"{t['ok']} / {t['errors']}, {t['p99_us'] / 1000:.1f}, {db['xacts'] if db else '-'}, {q}"
                         if t else "-")
        print(f"| {i:+d} | " + " | ".join(cells) + " |")

    print(f"\n## Around the switch, {FINE_MS}-ms steps (p50 / p99 ms of the handshakes due in each; "
          f"* the step in which the new process turned healthy and the old one got SIGTERM)\n")
    print("| ms after the switch | " + " | ".join(vs) + " |")
    print("|---:|" + "---:|" * len(vs))
    fines = {v: {x["ms"] - by[v]["switch_ms"] // FINE_MS * FINE_MS: x for x in by[v].get("fine", [])} for v in vs}
    span = max(by[v]["new_healthy_ms"] - by[v]["switch_ms"] for v in vs) + 3000
    for off in range(-1000, span, FINE_MS):
        cells = []
        for v in vs:
            x = fines[v].get(off)
            mark = "*" if off <= by[v]["new_healthy_ms"] - by[v]["switch_ms"] < off + FINE_MS else ""
            cells.append(f"{mark}{x['p50_us'] / 1000:.1f} / {x['p99_us'] / 1000:.1f}" if x else "-")
        print(f"| {off:+d} | " + " | ".join(cells) + " |")

print("\n## Cold-name cost: a storm of names never served (closed loop, 64 connections, fresh process, no latency limit)\n")
print("| figure | one query per name | batched |")
print("|---|---:|---:|")
st = [by.get("storm-single"), by.get("storm-batched")]
if all(st):
    def per(r, v):
        return v / r["cache_misses"] if r["cache_misses"] else 0
    lines = [
        ("handshakes/s", lambda r: f"{r['rps']:,.0f}"),
        ("cold names (cache misses) / certificate queries", lambda r: f"{r['cache_misses']:,} / {r['db_queries']:,}"),
        ("names per query", lambda r: f"{per(r, 1) and r['cache_misses'] / max(r['db_queries'], 1):.1f}"),
        ("server CPU per cold handshake + request + close, µs",
         lambda r: f"{r['server_cpu_s'] / r['requests'] * 1e6:.0f}" if r["requests"] else "-"),
        ("PostgreSQL CPU per cold name, µs", lambda r: f"{per(r, r['pg_cpu_s']) * 1e6:.0f}"),
        ("database time waited per cold name (query round trips), µs", lambda r: f"{per(r, r['db_query_s']) * 1e6:.0f}"),
        ("database transactions per cold name", lambda r: f"{per(r, r['xacts']):.3f}"),
        ("latency p50 / p99, ms", lambda r: f"{r['latency_us']['p50'] / 1000:.2f} / {r['latency_us']['p99'] / 1000:.2f}"),
        ("errors / refused as throttled", lambda r: f"{r['errors_total']} / {r['throttled']}"),
    ]
    for label, f in lines:
        print(f"| {label} | {f(st[0])} | {f(st[1])} |")
    a, b = st
    if a["cache_misses"] and b["cache_misses"]:
        print(f"\nBatched against one query per name: PostgreSQL CPU per cold name "
              f"{per(b, b['pg_cpu_s']) / max(per(a, a['pg_cpu_s']), 1e-9):.2f}×, database wait per cold name "
              f"{per(b, b['db_query_s']) / max(per(a, a['db_query_s']), 1e-9):.2f}×, server CPU per cold handshake "
              f"{(b['server_cpu_s'] / b['requests']) / (a['server_cpu_s'] / a['requests']):.2f}×.")
