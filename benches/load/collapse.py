#!/usr/bin/env python3
"""Request collapsing: CLIENTS concurrent GETs of one uncached URL on the origin's /slow
route (2 s, max-age=30). Reports how many requests reached the origin and when each client
got its answer. One connection per client, all connected before a barrier releases the
requests together. With --stagger-ms, one leader is released first and the other clients
that many milliseconds later, so they join a fetch already in flight (with a 2 s origin and
nginx's 500 ms lock polling, the all-at-once case can happen to line up with a poll).
Standard library only; loopback only. Prints one JSON line.
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time


def origin_count(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    r = conn.getresponse()
    r.read()
    conn.close()
    return int(r.getheader("x-origin-requests"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--origin-port", type=int, required=True)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--path", required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--stagger-ms", type=float, default=0.0)
    args = p.parse_args()

    barrier = threading.Barrier(args.clients + 1)
    results = [None] * args.clients

    def client(k):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=args.timeout)
            conn.connect()
        except OSError as e:
            results[k] = {"error": f"connect: {e}"}
            barrier.wait()
            return
        barrier.wait()
        if k > 0 and args.stagger_ms > 0:
            time.sleep(args.stagger_ms / 1000)
        sent = time.monotonic()
        try:
            conn.request("GET", args.path)
            r = conn.getresponse()
            body = r.read()
            done = time.monotonic()
            results[k] = {
                "sent": sent,
                "done": done,
                "status": r.status,
                "len": len(body),
                "origin_n": r.getheader("x-origin-requests"),
            }
        except (OSError, http.client.HTTPException) as e:
            results[k] = {"sent": sent, "error": repr(e)}
        finally:
            conn.close()

    before = origin_count(args.origin_port)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join()
    after = origin_count(args.origin_port)

    ok = [r for r in results if r and "done" in r]
    errors = [r.get("error") for r in results if not r or "error" in r]
    statuses = {}
    for r in ok:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    done = sorted(r["done"] - start for r in ok)
    sent = [r["sent"] - start for r in results[1:] if r and "sent" in r]
    out = {
        "clients": args.clients,
        "path": args.path,
        "stagger_ms": args.stagger_ms,
        # The second origin_count() request itself is one origin request.
        "origin_requests": after - before - 1,
        "distinct_origin_responses": len({r["origin_n"] for r in ok}),
        "statuses": statuses,
        "errors": len(errors),
        "error_samples": errors[:3],
        # Spread of the send times of all clients but the leader.
        "send_skew_ms": round((max(sent) - min(sent)) * 1000, 1) if sent else None,
        "first_s": round(done[0], 3) if done else None,
        "median_s": round(statistics.median(done), 3) if done else None,
        "p90_s": round(done[int(0.9 * (len(done) - 1))], 3) if done else None,
        "last_s": round(done[-1], 3) if done else None,
        "spread_ms": round((done[-1] - done[0]) * 1000, 1) if done else None,
    }
    print(json.dumps(out))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
