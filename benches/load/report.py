#!/usr/bin/env python3
"""Summarise one benches/load/run.sh result directory as Markdown (stdout).

Reads meta.txt, runs.tsv and the wrk outputs it names, memory.tsv and collapse.tsv.
Medians are taken per metric across rounds; ratios are ratios of those medians.
"""
import csv
import json
import re
import statistics
import sys
from pathlib import Path

SERVERS = ["nginx", "varnish", "outpost"]
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"latency {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    out = {"rps": None, "p50": None, "p99": None, "requests": None, "errors": 0, "non2xx": 0}
    in_dist = False
    for line in path.read_text(errors="replace").splitlines():
        s = line.strip()
        if s.startswith("Requests/sec:"):
            out["rps"] = float(s.split()[1])
        elif s.startswith("Latency Distribution"):
            in_dist = True
        elif in_dist and re.match(r"^\d+%\s", s):
            pct, val = s.split()[:2]
            if pct == "50%":
                out["p50"] = to_ms(val)
            elif pct == "99%":
                out["p99"] = to_ms(val)
        elif re.match(r"^\d+ requests in", s):
            in_dist = False
            out["requests"] = int(s.split()[0])
        elif s.startswith("Socket errors:"):
            out["errors"] = sum(int(n) for n in re.findall(r"\d+", s))
        elif s.startswith("Non-2xx or 3xx responses:"):
            out["non2xx"] = int(s.split(":")[1])
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "n/a"
    if nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


def pct(x):
    return "n/a" if x is None else f"{x * 100:.0f}%"


def ratio(a, b, nd=2):
    if a is None or not b:
        return "n/a"
    return f"{a / b:.{nd}f}x"


def size_label(n):
    n = int(n)
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def main():
    d = Path(sys.argv[1])
    meta = (d / "meta.txt").read_text().strip()
    duration = float(re.search(r"duration: ([0-9.]+)s", meta).group(1))

    runs = list(csv.DictReader(open(d / "runs.tsv"), delimiter="\t"))
    cases = []
    attempts = {}
    for r in runs:
        w = parse_wrk(d / r["wrk_file"])
        ticks = float(r["server_ticks"])
        cpu_s = ticks / float(r["clk_tck"])
        w["cpu_s"] = cpu_s
        w["req_per_cpu_s"] = (w["requests"] / cpu_s) if (w["requests"] and cpu_s > 0) else None
        real = float(r["client_real_s"])
        w["client_cpu"] = (float(r["client_user_s"]) + float(r["client_sys_s"])) / real if real else None
        w["misses"] = int(r["origin_misses"])
        # Load from anything else on the two CPUs during the run (other users of the machine,
        # kernel work not charged to the server or wrk), as a share of one CPU.
        clk = float(r["clk_tck"])
        if r.get("server_cpu_busy_ticks") and real:
            w["other0"] = max(0.0, (float(r["server_cpu_busy_ticks"]) - ticks) / clk / real)
            wrk_s = float(r["client_user_s"]) + float(r["client_sys_s"])
            w["other1"] = max(0.0, float(r["client_cpu_busy_ticks"]) / clk / real - wrk_s / real)
        else:
            w["other0"] = w["other1"] = None
        w["round"] = int(r["round"])
        w["other"] = max(w["other0"], w["other1"]) if w["other0"] is not None else 0.0
        w["attempt"] = int(r.get("attempt") or 1)
        case = (int(r["size"]), int(r["conns"]))
        if case not in cases:
            cases.append(case)
        attempts.setdefault((case, r["server"], w["round"]), []).append(w)

    # Each run's quietest attempt (a run is repeated when other processes were busy).
    by = {}
    for (case, server, _), ws in sorted(attempts.items(), key=lambda kv: kv[0][2]):
        best = min(ws, key=lambda w: w["other"])
        best["attempts"] = len(ws)
        by.setdefault((case, server), []).append(best)

    print("## Load benchmark results\n")
    print("```")
    print(meta)
    print("```\n")

    rounds = max((w["round"] for ws in by.values() for w in ws), default=0)
    print(f"### Cache hits: medians of {rounds} rounds, {duration:.0f} s each (wrk -t1, client on CPU 1, server on CPU 0)\n")
    print("| object | conns | server | req/s | p50 ms | p99 ms | server CPU s | req per server CPU-s | server CPU use | wrk CPU use | other load CPU0 / CPU1 | errors | origin misses |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    meds = {}
    for case in cases:
        for s in SERVERS:
            ws = by.get((case, s), [])
            m = {k: med([w[k] for w in ws]) for k in ("rps", "p50", "p99", "cpu_s", "req_per_cpu_s", "client_cpu", "other0", "other1")}
            m["errors"] = sum(w["errors"] + w["non2xx"] for w in ws)
            m["misses"] = sum(w["misses"] for w in ws)
            meds[(case, s)] = m
            util = m["cpu_s"] / duration if m["cpu_s"] is not None else None
            print(
                f"| {size_label(case[0])} | {case[1]} | {s} | {fmt(m['rps'])} | {fmt(m['p50'], 2)} | {fmt(m['p99'], 2)} "
                f"| {fmt(m['cpu_s'], 2)} | {fmt(m['req_per_cpu_s'])} | {fmt(util * 100 if util is not None else None)}% "
                f"| {fmt(m['client_cpu'] * 100 if m['client_cpu'] is not None else None)}% "
                f"| {pct(m['other0'])} / {pct(m['other1'])} | {m['errors']} | {m['misses']} |"
            )
    print()
    print("### Ratios (Outpost / other; > 1 is better for Outpost in req/s and req per CPU-s, worse in latency)\n")
    print("| object | conns | req/s vs nginx | req/s vs varnish | req/CPU-s vs nginx | req/CPU-s vs varnish | p99 vs nginx | p99 vs varnish |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        o, n, v = (meds[(case, s)] for s in ("outpost", "nginx", "varnish"))
        print(
            f"| {size_label(case[0])} | {case[1]} | {ratio(o['rps'], n['rps'])} | {ratio(o['rps'], v['rps'])} "
            f"| {ratio(o['req_per_cpu_s'], n['req_per_cpu_s'])} | {ratio(o['req_per_cpu_s'], v['req_per_cpu_s'])} "
            f"| {ratio(o['p99'], n['p99'])} | {ratio(o['p99'], v['p99'])} |"
        )
    print()
    noisy = sum(1 for ws in by.values() for w in ws if w["other"] > 0.10)
    retried = sum(1 for ws in by.values() for w in ws if w["attempts"] > 1)
    print(
        f"Other load: CPU time used on the server's / wrk's CPU by anything but the server and wrk, "
        f"as a share of that CPU (the machine is shared). {retried} run(s) were repeated for it; "
        f"{noisy} run(s) kept more than 10% after their last attempt.\n"
    )
    print("<details><summary>Every run (quietest attempt)</summary>\n")
    print("| round | object | conns | server | req/s | p50 ms | p99 ms | server CPU s | req per CPU-s | wrk CPU use | other load CPU0 / CPU1 | attempts |")
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        for s in SERVERS:
            for w in by.get((case, s), []):
                print(
                    f"| {w['round']} | {size_label(case[0])} | {case[1]} | {s} | {fmt(w['rps'])} | {fmt(w['p50'], 2)} "
                    f"| {fmt(w['p99'], 2)} | {fmt(w['cpu_s'], 2)} | {fmt(w['req_per_cpu_s'])} "
                    f"| {pct(w['client_cpu'])} | {pct(w['other0'])} / {pct(w['other1'])} | {w['attempts']} |"
                )
    print("\n</details>\n")

    mem_path = d / "memory.tsv"
    if mem_path.exists():
        mem = list(csv.DictReader(open(mem_path), delimiter="\t"))
        if mem:
            n_obj = int(mem[0]["objects"])
            print(f"### Memory: {n_obj:,} distinct 1 KiB objects, fresh server\n")
            print("| server | RSS after start MiB | RSS after fill MiB | RSS growth B/object | + tmpfs cache dir B/object | total B/object | PSS growth B/object | stored (2nd pass hits) | origin fetches | threads before/after |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in mem:
                rss0, rss1 = int(r["rss_before_kib"]), int(r["rss_after_kib"])
                pss0, pss1 = int(r["pss_before_kib"]), int(r["pss_after_kib"])
                du0, du1 = int(r["tmpfs_before_kib"]), int(r["tmpfs_after_kib"])
                per_rss = (rss1 - rss0) * 1024 / n_obj
                per_du = (du1 - du0) * 1024 / n_obj
                per_pss = (pss1 - pss0) * 1024 / n_obj
                try:
                    fill = json.loads(r["fill_json"])
                    stored = f"{fill['pass2_hits']:,}"
                except (ValueError, KeyError):
                    stored = "n/a"
                tmpfs = fmt(per_du) if r["server"] == "nginx" else "-"
                print(
                    f"| {r['server']} | {rss0 / 1024:.1f} | {rss1 / 1024:.1f} | {fmt(per_rss)} | {tmpfs} "
                    f"| {fmt(per_rss + per_du)} | {fmt(per_pss + per_du)} | {stored} | {int(r['origin_fetches']):,} "
                    f"| {r['threads_before']}/{r['threads_after']} |"
                )
            for r in mem:
                if r["server"] == "nginx" and int(r["tmpfs_apparent_bytes"]):
                    print(
                        f"\nnginx tmpfs cache dir: {int(r['tmpfs_after_kib']) - int(r['tmpfs_before_kib']):,} KiB allocated, "
                        f"{int(r['tmpfs_apparent_bytes']):,} bytes of file contents "
                        f"({int(r['tmpfs_apparent_bytes']) / n_obj:,.0f} B/object: body plus nginx's cache header)."
                    )
            print()

    col_path = d / "collapse.tsv"
    if col_path.exists():
        col = list(csv.DictReader(open(col_path), delimiter="\t"))
        if col:
            c0 = json.loads(col[0]["collapse_json"])
            print(f"### Collapse: {c0['clients']} concurrent requests for one uncached `/slow` URL (origin takes 2 s)\n")
            print(
                "Times are from the release of the first request. \"stagger 0\": all clients at once; "
                "otherwise one leader, then the other clients that many ms later (they join a fetch in flight). "
                "Spread = last answer minus first answer.\n"
            )
            print("| server | stagger ms | origin requests | statuses | first answer s | median s | p90 s | last answer s | spread ms | send skew ms | errors |")
            print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
            for r in sorted(col, key=lambda r: float(r.get("stagger_ms") or 0)):
                try:
                    c = json.loads(r["collapse_json"])
                except ValueError:
                    print(f"| {r['server']} | {r.get('stagger_ms', '')} | n/a | | | | | | | | |")
                    continue
                st = ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()))
                print(
                    f"| {r['server']} | {c.get('stagger_ms', 0):g} | {c['origin_requests']} | {st} | {c['first_s']} | {c['median_s']} "
                    f"| {c['p90_s']} | {c['last_s']} | {c['spread_ms']} | {c['send_skew_ms']} | {c['errors']} |"
                )
            print()


if __name__ == "__main__":
    main()
