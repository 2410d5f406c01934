#!/usr/bin/env python3
"""Plot and summarise a soak's CSV (benches/soak/run.sh).

    python3 benches/soak/plot.py [--no-plot] soak.csv soak.svg [meta.txt] > summary.md

Writes the plot (SVG or PNG by the extension; needs matplotlib: `pip install matplotlib`) and
prints a Markdown summary: min/max RSS and fds per process after the first WARMUP rows, latency
range, error counts by kind, and the per-row table.
"""

import csv
import sys

WARMUP = 5  # rows (minutes) before RSS and fds are expected to be flat


def main():
    args = sys.argv[1:]
    plot = True
    if args and args[0] == "--no-plot":
        plot = False
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(args[0])))
    if not rows:
        sys.exit("no rows in " + args[0])
    meta = {}
    if len(args) > 2:
        for line in open(args[2]):
            k, _, v = line.partition(":")
            meta[k.strip()] = v.strip()
    procs = [c[: -len("_rss_kib")] for c in rows[0] if c.endswith("_rss_kib")]

    def f(r, k):
        v = r.get(k, "")
        return float(v) if v not in ("", None) else float("nan")

    if plot:
        draw(rows, procs, meta, args[1], f)
    summary(rows, procs, meta, f)


def draw(rows, procs, meta, out, f):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [f(r, "t_s") / 60 for r in rows]
    fig, ax = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    for p in procs:
        ax[0].plot(t, [f(r, p + "_rss_kib") / 1024 for r in rows], marker=".", label=p)
        ax[1].plot(t, [f(r, p + "_fds") for r in rows], marker=".", label=p)
    ax[0].set_ylabel("RSS (MiB)")
    ax[0].set_ylim(bottom=0)
    ax[0].legend(loc="lower right", ncol=len(procs))
    ax[1].set_ylabel("open fds")
    ax[1].set_ylim(bottom=0)
    ax[1].legend(loc="lower right", ncol=len(procs))
    ax[2].plot(t, [f(r, "p50_ms") for r in rows], marker=".", label="p50")
    ax[2].plot(t, [f(r, "p99_ms") for r in rows], marker=".", label="p99")
    ax[2].set_ylabel("latency (ms)")
    ax[2].set_ylim(bottom=0)
    load = ax[2].twinx()
    load.plot(t, [f(r, "load1") for r in rows], color="grey", linestyle=":", label="load avg (1 min)")
    load.set_ylabel("machine load avg")
    load.set_ylim(bottom=0)
    h1, l1 = ax[2].get_legend_handles_labels()
    h2, l2 = load.get_legend_handles_labels()
    ax[2].legend(h1 + h2, l1 + l2, loc="upper right")
    unexpected = [f(r, "unexpected_status") + f(r, "conn_errors") + f(r, "timeouts") for r in rows]
    ax[3].plot(t, [f(r, "injected") for r in rows], marker=".", label="origin 5xx passed through (injected)")
    ax[3].plot(t, [f(r, "stale") for r in rows], marker=".", label="served stale on origin error (injected)")
    ax[3].plot(t, unexpected, marker=".", color="red", label="unexpected (status, connection, timeout)")
    ax[3].plot(
        t, [f(r, "dropped") for r in rows], color="grey", linestyle="--", label="dropped: the client fell behind"
    )
    ax[3].set_ylabel("answers per interval")
    ax[3].set_ylim(bottom=0)
    ax[3].legend(loc="upper right")
    ax[3].set_xlabel("minutes")
    title = "Outpost soak: 1 shield + 2 edges"
    if meta.get("rate"):
        title += f", {meta['rate']} req/s open-loop"
        if meta.get("peak_rps", "").isdigit():
            title += f" ({meta.get('load_pct', '80')}% of peak {meta['peak_rps']})"
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)


def summary(rows, procs, meta, f):
    steady = rows[WARMUP:] if len(rows) > WARMUP + 1 else rows
    print("## Soak summary\n")
    for k in ("date", "commit", "machine", "peak_rps", "rate", "duration", "mix", "objects", "memory"):
        if k in meta:
            print(f"- {k}: {meta[k]}")
    print(f"\nAfter the first {len(rows) - len(steady)} rows (warm-up):\n")
    print("| process | RSS min (MiB) | RSS max (MiB) | fds min | fds max |")
    print("|---|---|---|---|---|")
    for p in procs:
        rss = [f(r, p + "_rss_kib") / 1024 for r in steady]
        fds = [f(r, p + "_fds") for r in steady]
        print(f"| {p} | {min(rss):.1f} | {max(rss):.1f} | {min(fds):.0f} | {max(fds):.0f} |")
    tot = lambda k: sum(int(f(r, k)) for r in rows)  # noqa: E731
    p99 = [f(r, "p99_ms") for r in rows]
    print()
    print(f"- requests: {tot('requests')}; ok {tot('ok')}")
    print(f"- p99 per row: {min(p99):.2f} .. {max(p99):.2f} ms; max latency {max(f(r, 'max_ms') for r in rows):.1f} ms")
    print(f"- injected: origin 5xx passed through {tot('injected')}, served stale {tot('stale')}")
    print(
        f"- unexpected: status {tot('unexpected_status')}, connection errors {tot('conn_errors')}, "
        f"timeouts {tot('timeouts')}, dropped {tot('dropped')}"
    )
    print(f"- purges: {tot('purges_ok')} ok, {tot('purges_failed')} failed")
    print()
    cols = ["minute", "load1", "rate", "ok", "stale", "injected", "unexpected", "edge_hit_pct", "p50_ms", "p99_ms"]
    cols += [f"{p} RSS MiB / fds" for p in procs]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        unexpected = sum(int(f(r, k)) for k in ("unexpected_status", "conn_errors", "timeouts", "dropped"))
        cells = [r["minute"], r["load1"], r["rate"], r["ok"], r["stale"], r["injected"], str(unexpected), r["edge_hit_pct"], r["p50_ms"], r["p99_ms"]]
        cells += [f"{f(r, p + '_rss_kib') / 1024:.1f} / {r[p + '_fds']}" for p in procs]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
