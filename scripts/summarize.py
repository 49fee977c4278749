#!/usr/bin/env python3
"""Summarize scripts/compare.sh runs (JSON lines) as Markdown tables of medians."""
import json
import statistics
import sys
from collections import defaultdict

PROMISES = {
    "ferromq": "push acked after fsync (group commit)",
    "ferromq-base": "the same, an older build (BASE_BIN)",
    "beanstalkd-mem": "none: memory only",
    "beanstalkd-binlog50": "binlog, fsync every 50 ms: up to 50 ms of acked puts lost",
    "beanstalkd-fsync": "binlog, fsync before every reply",
    "redis-everysec": "AOF, fsync every second: up to 1 s of acked writes lost",
    "redis-always": "AOF, fsync per event-loop turn before replies",
}


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = defaultdict(list)
    servers = []
    for r in rows:
        by[(r["server_name"], r["workload_label"])].append(r)
        if r["server_name"] not in servers and r["server_name"] != "raw-fdatasync":
            servers.append(r["server_name"])

    def med(server, label, get):
        values = [get(r) for r in by.get((server, label), [])]
        values = [v for v in values if v is not None]
        if not values:
            return None, None, None
        return statistics.median(values), min(values), max(values)

    def fmt(v, digits=0, unit=""):
        m, lo, hi = v
        if m is None:
            return "—"
        if lo == hi:
            return f"{m:,.{digits}f}{unit}"
        return f"{m:,.{digits}f}{unit} [{lo:,.{digits}f}–{hi:,.{digits}f}]"

    tput = lambda r: r.get("throughput_msgs_per_s")
    out = []
    out.append("| workload (100 B, msg/s, median [min–max]) | " + " | ".join(servers) + " |")
    out.append("|---|" + "---:|" * len(servers))
    labels = [
        ("push", "push only, 4 conns × 32 pipelined"),
        ("drain", "reserve+delete (drain), 4 conns × 32"),
        ("mixed", "mixed, 4 producers + 4 consumers × 32"),
        ("mixed_batch100", "mixed, batched 100 per call, × 8"),
    ]
    for label, name in labels:
        out.append(f"| {name} | " + " | ".join(fmt(med(s, label, tput)) for s in servers) + " |")
    e2e = lambda q: (lambda r: r.get("e2e_latency_ms", {}).get(q))
    for q, name in [("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")]:
        out.append(f"| end-to-end latency {name} at 5k msg/s offered (ms) | "
                   + " | ".join(fmt(med(s, "latency5k", e2e(q)), 2) for s in servers) + " |")
    cpu = lambda r: (r.get("server") or {}).get("cpu_s_per_million_msgs")
    for label, name in [("mixed", "mixed"), ("latency5k", "5k msg/s"), ("push", "push")]:
        out.append(f"| server CPU s per million messages, {name} | "
                   + " | ".join(fmt(med(s, label, cpu), 1) for s in servers) + " |")
    ctx = lambda r: (r.get("server") or {}).get("context_switches_per_msg")
    p50 = lambda r: (r.get("push_ack_latency_ms") or {}).get("p50")
    for rate in (1000, 5000):
        label = f"everyday{rate}"
        if not any(by.get((s, label)) for s in servers):
            continue
        depth = 1 if rate == 1000 else 8
        name = f"everyday: 1 + 1 conns, depth {depth}, {rate:,} msg/s offered"
        out.append(f"| {name}: msg/s | " + " | ".join(fmt(med(s, label, tput)) for s in servers) + " |")
        out.append(f"| {name}: server CPU s per million | "
                   + " | ".join(fmt(med(s, label, cpu), 0) for s in servers) + " |")
        out.append(f"| {name}: context switches per message | "
                   + " | ".join(fmt(med(s, label, ctx), 1) for s in servers) + " |")
        out.append(f"| {name}: push ack p50 (ms) | "
                   + " | ".join(fmt(med(s, label, p50), 3) for s in servers) + " |")
    rss = lambda r: r.get("rss_kib") / 1024 if r.get("rss_kib") else None
    out.append("| idle RSS (MiB) | " + " | ".join(fmt(med(s, "idle_rss", rss), 1) for s in servers) + " |")
    out.append("| RSS holding the pushed messages (MiB) | "
               + " | ".join(fmt(med(s, "hold_rss", rss), 1) for s in servers) + " |")
    out.append("")
    probe = by.get(("raw-fdatasync", "fsync_probe"))
    if probe:
        m = lambda k: statistics.median(r[k] for r in probe)
        out.append(f"Raw 4 KiB append + fdatasync at 1,000/s on the same file system "
                   f"(scripts/fsync_probe.py, median of {len(probe)}): p50 {m('p50_ms'):.3f} ms, "
                   f"p99 {m('p99_ms'):.3f} ms, {m('cpu_us_per_op'):.0f} CPU µs per operation.")
        out.append("")
    for server in ("ferromq-base", "ferromq"):
        restart = by.get((server, "restart_first_reserve"))
        if restart:
            r = restart[-1]
            out.append(f"{server} restart with {r['messages']:,} messages: first reserve served "
                       f"{r['ms']} ms after exec (RSS then {r['rss_kib'] / 1024:.1f} MiB).")
    backlog = {r["run"]: r for r in by.get(("ferromq", "backlog_rss"), [])}
    if backlog:
        out.append("")
        out.append("| ferromq holding a backlog of 100 B | RSS (MiB) | push 1 M, batched (msg/s) "
                   "| drain 1 M, batched (msg/s) | restart to first reserve (ms) |")
        out.append("|---|---:|---:|---:|---:|")
        one = lambda label, run: next((r for r in by.get(("ferromq", label), [])
                                       if r["run"] == run), None)
        for run, r in sorted(backlog.items(), key=lambda kv: int(kv[0])):
            push, drain, restart_r = (one("backlog_push", run), one("backlog_drain", run),
                                      one("backlog_restart", run))
            rate = lambda rep: f"{rep['throughput_msgs_per_s']:,.0f}" if rep else "—"
            ms = f"{restart_r['ms']:,}" if restart_r else "—"
            out.append(f"| {int(run):,} | {r['rss_kib'] / 1024:.1f} | {rate(push)} | "
                       f"{rate(drain)} | {ms} |")
    out.append("")
    out.append("Durability each server promised in these runs:")
    for s in servers:
        out.append(f"- {s}: {PROMISES.get(s, '?')}")
    out.append("")
    f = med("ferromq", "mixed", tput)[0]
    fb = med("ferromq", "mixed_batch100", tput)[0]
    for peer, factor_name in [("beanstalkd-mem", "beanstalkd in-memory"),
                              ("redis-everysec", "Redis everysec"),
                              ("redis-always", "Redis appendfsync always")]:
        p = med(peer, "mixed", tput)[0]
        if f and p:
            out.append(f"- ferromq mixed / {factor_name} mixed: {f / p:.2f}×")
    p = med("beanstalkd-mem", "mixed", tput)[0]
    if fb and p:
        out.append(f"- ferromq batched mixed / beanstalkd in-memory mixed: {fb / p:.2f}×")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
