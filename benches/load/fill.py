#!/usr/bin/env python3
"""Store COUNT distinct objects in a cache: GET /bytes/SIZE?i=N for every N, twice.

The first pass fills the cache, the second checks each object is now a hit (by the
server's own hit marker). Prints one JSON line. Standard library only; loopback only.
"""
import argparse
import http.client
import json
import sys
import threading
import time


def is_hit(server, headers):
    h = {k.lower(): v for k, v in headers}
    if server == "nginx":
        return h.get("x-cache-status", "").upper() == "HIT"
    if server == "varnish":
        # X-Varnish carries two transaction ids on a hit, one on a miss or pass.
        return len(h.get("x-varnish", "").split()) == 2
    if server == "outpost":
        status = h.get("cache-status", "")
        return any(m.strip() == "hit" for m in status.split(";"))
    raise ValueError(server)


def run_pass(args, indices):
    hits = 0
    errors = 0
    lock = threading.Lock()
    chunks = [indices[k:: args.threads] for k in range(args.threads)]

    def worker(chunk):
        nonlocal hits, errors
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
        h = e = 0
        for i in chunk:
            for attempt in range(3):
                try:
                    conn.request("GET", args.path.format(size=args.size, i=i))
                    r = conn.getresponse()
                    body = r.read()
                    if r.status != 200 or len(body) != args.size:
                        e += 1
                    elif is_hit(args.server, r.getheaders()):
                        h += 1
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                    if attempt == 2:
                        e += 1
        conn.close()
        with lock:
            hits += h
            errors += e

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return hits, errors


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, choices=["nginx", "varnish", "outpost"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument(
        "--path",
        default="/bytes/{size}?i={i}",
        help="request path; {size} and {i} (the object's number) are filled in",
    )
    args = p.parse_args()
    indices = list(range(args.count))
    t0 = time.monotonic()
    hits1, err1 = run_pass(args, indices)
    t1 = time.monotonic()
    hits2, err2 = run_pass(args, indices)
    t2 = time.monotonic()
    out = {
        "server": args.server,
        "count": args.count,
        "pass1_hits": hits1,
        "pass1_errors": err1,
        "pass1_seconds": round(t1 - t0, 2),
        "pass2_hits": hits2,
        "pass2_errors": err2,
        "pass2_seconds": round(t2 - t1, 2),
    }
    print(json.dumps(out))
    return 0 if hits2 == args.count and err1 + err2 == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
