#!/usr/bin/env python3
"""bench/report.py: turns bench/run's raw runs (JSON lines) into the results JSON and a Markdown
table: medians over repetitions, each figure with its ratio to the best peer (HAProxy, hitch)."""
import json
import statistics
import sys

ORDER = ["terminator", "haproxy-tcp", "haproxy-http", "hitch"]
PEERS = {"haproxy-tcp", "haproxy-http", "hitch"}


def cpu_us(r):
    return r["server_cpu_s"] / r["requests"] * 1e6 if r.get("requests") else None


def load_bound(r):
    # Load side (load generator, backend, their share of loopback TCP) saturated while the server's
    # cores had room: the load, not the server, set the pace.
    return r.get("load_cores_busy", 0) > 0.9 and r.get("server_cores_busy", 1) < 0.85


# (scenario, label, extractor, higher_is_better)
FIGURES = [
    ("startup", "start-up to first served handshake, s", lambda r: r["startup_s"], False),
    ("startup", "resident memory after start, MiB", lambda r: r["rss_kb"] / 1024, False),
    ("touched", "resident memory after touching every name, MiB", lambda r: r["rss_kb"] / 1024, False),
    ("storm", "cold storm (first touch of every name): handshakes/s", lambda r: r["rps"], True),
    ("storm", "cold storm: p99 latency, ms", lambda r: r["latency_us"]["p99"] / 1000, False),
    ("handshake", "full handshakes/s (32 conns, uniform names)", lambda r: r["rps"], True),
    ("handshake", "full handshake: p99 latency, ms", lambda r: r["latency_us"]["p99"] / 1000, False),
    ("handshake", "server CPU per full handshake + request + close, µs", cpu_us, False),
    ("handshake-zipf", "full handshakes/s (Zipf s=1 names)", lambda r: r["rps"], True),
    ("keepalive", "keep-alive requests/s (50 conns)", lambda r: r["rps"], True),
    ("keepalive", "keep-alive: p99 latency, ms", lambda r: r["latency_us"]["p99"] / 1000, False),
    ("keepalive", "server CPU per keep-alive request, µs", cpu_us, False),
    ("resume", "resumed-handshake connections/s (32 conns)", lambda r: r["rps"], True),
    ("resume", "resumed share of handshakes, %",
     lambda r: 100 * r["resumed_handshakes"] / max(1, r["resumed_handshakes"] + r["full_handshakes"]), True),
    ("resume", "server CPU per resumed handshake + request + close, µs", cpu_us, False),
]


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main():
    meta_path, runs_path, stem = sys.argv[1:4]
    meta = json.load(open(meta_path))
    runs = [json.loads(l) for l in open(runs_path) if l.strip()]
    servers = [s for s in ORDER if any(r["server"] == s for r in runs) or s in meta.get("unavailable", {})]
    sizes = sorted({r["size"] for r in runs if r["server"] in ORDER})

    figures = []
    for scenario, label, get, higher in FIGURES:
        for size in sizes:
            values, flags = {}, {}
            for s in servers:
                rs = [r for r in runs if r["scenario"] == scenario and r["server"] == s and r["size"] == size]
                vals = [v for v in (get(r) for r in rs) if v is not None]
                if vals:
                    values[s] = statistics.median(vals)
                    flags[s] = any(load_bound(r) for r in rs)
            if not values:
                continue
            peer_vals = [v for s, v in values.items() if s in PEERS and v]
            best = (max if higher else min)(peer_vals) if peer_vals else None
            figures.append({
                "scenario": scenario, "figure": label, "names": size, "higher_is_better": higher,
                "values": values, "best_peer": best,
                "ratio_to_best_peer": {s: (v / best if best else None) for s, v in values.items()},
                "load_generator_bound": [s for s, f in flags.items() if f],
            })

    errors = {}
    for r in runs:
        if "errors_total" in r:
            e = errors.setdefault(r["server"], {"errors": 0, "mismatches": 0, "requests": 0})
            e["errors"] += r["errors_total"]
            e["mismatches"] += r.get("mismatches", 0)
            e["requests"] += r["requests"]
    issuer = [r for r in runs if r["scenario"] in ("import", "issuer_rate", "acme_peer")]

    out = dict(meta, figures=figures, errors=errors, issuer=issuer, runs=runs)
    json.dump(out, open(stem + ".json", "w"), indent=1)

    m = meta["machine"]
    v = meta["versions"]
    lines = [
        f"# tracktls bench, {meta['mode']} run, {meta['date']}",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_mib']:,} MiB, Linux {m['kernel']}. "
        f"Servers on cores {meta['setup']['server_cores']}, load generator and backend on cores "
        f"{meta['setup']['load_cores']}; {meta['setup']['duration_s']} s per run, "
        f"median of {meta['setup']['reps']} interleaved repetition(s).",
        f"Machine load average (1/5/15 min) at the start {m.get('load_average_at_start', '?')}, at the end "
        f"{m.get('load_average_at_end', '?')}: other work shares this machine, so rates move from run to run.",
        f"Versions: HAProxy {v['haproxy']}, hitch {v['hitch']} ({v['openssl']}); terminator {v['terminator'].strip()}; "
        f"load generator on {v['load_generator_tls']}.",
        f"Setup: {meta['setup']['servers']}.",
        "",
        "Each cell: value (ratio to the best peer; ↑ higher is better, ↓ lower is better). "
        "`*`: the load side's cores were saturated while the server's were not, so the rate is a floor for that server. "
        "Rates depend on the whole machine (it is shared and noisy); CPU per request is the steadier figure.",
        "",
        "| figure | names | " + " | ".join(servers) + " |",
        "|---|---:|" + "---:|" * len(servers),
    ]
    for f in figures:
        cells = []
        for s in servers:
            if s not in f["values"]:
                cells.append("n/a")
                continue
            ratio = f["ratio_to_best_peer"][s]
            star = "*" if f["higher_is_better"] and s in f["load_generator_bound"] else ""
            cells.append(f"{fmt(f['values'][s])}{star}" + (f" ({ratio:.2f}×)" if ratio is not None else ""))
        arrow = "↑" if f["higher_is_better"] else "↓"
        lines.append(f"| {f['figure']} {arrow} | {f['names']:,} | " + " | ".join(cells) + " |")
    lines.append("| errors / mismatched certificates / requests, all runs | | " + " | ".join(
        f"{errors[s]['errors']:,} / {errors[s]['mismatches']:,} / {errors[s]['requests']:,}" if s in errors else "n/a"
        for s in servers) + " |")
    lines.append("")
    for r in issuer:
        if r["scenario"] == "import":
            lines.append(f"- issuer `cert import-batch`, one process per core: {r['names'] if 'names' in r else r['size']:,} "
                         f"certificates in {r['import_s']:.1f} s ({r['certs_per_s']:.0f}/s).")
        elif r["scenario"] == "issuer_rate":
            lines.append(f"- issuer against Pebble (NOSLEEP): {r.get('certs_per_min', 0):,.0f} certificates/min "
                         f"({r.get('issued')} of {r.get('names')} in {r.get('seconds')} s, concurrency {r.get('concurrency')}, "
                         f"exit {r.get('exit')}).")
        else:
            lines.append(f"- {r['client']} {r['version']} against Pebble (NOSLEEP): {r['certs_per_min']:,.0f} certificates/min "
                         f"({r['certs']} in {r['seconds']} s, {r['parallel']} process(es) in parallel).")
    for s, why in sorted(meta.get("problems", {}).items()):
        lines.append(f"- {s}: {why}.")
    open(stem + ".md", "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
