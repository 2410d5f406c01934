#!/usr/bin/env bash
# User-space instructions per 1 KiB hit of a whole edge process (sockets, HTTP, cache,
# rules), counted by callgrind: what other load on a shared machine does not move, unlike
# time (this VM has no hardware counters for perf stat). The edge serves N hits from
# h2load after a warm-up; the counters are zeroed between the two, so start-up is left out.
# Kernel time (the socket calls) is not counted: a request spends about two thirds of its
# CPU there, so a share of these instructions is a smaller share of CPU time.
# Usage: benches/load/insns.sh BIN [SITE_LINES_FILE] [EDGE_LINES]   (N=20000)
# By default every hit is for one URL (/bytes/1024). URLS=2000 spreads them over that many
# objects (/bytes/1024?o=1..URLS, all fetched first), each client going through the list in
# order; with CONNS=1 consecutive hits are for different objects, so no answer finds its
# header fields kept by the thread (edge-node's cache/hot_headers.rs): the cold case.
# CONNS (8) is h2load's client count. TLS=1 sends the hits over TLS 1.3 (HTTP/1.1, an ECDSA
# P-256 certificate made here) to a second listener: the TLS record layer's share too. Under
# valgrind, ring runs its AES-NI code, not the VAES code it picks on CPUs that have it.
# Example (issue 15): compare `insns.sh BIN` with
#   insns.sh BIN benches/load/rules20-site.toml "$(sed -n "s/^LIMITS='\(.*\)'$/\1/p" benches/load/rules20.sh)"
set -euo pipefail
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" # bench_cert
BIN=${1:?usage: insns.sh BIN [SITE_LINES_FILE] [EDGE_LINES]}
SITE=${2:-}
EDGE=${3:-}
N=${N:-20000}
URLS=${URLS:-}
CONNS=${CONNS:-8}
TLS=${TLS:-}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN_PORT=$(port)
TLS_PORT=$(port)
TLS_LINES=
if [ -n "$TLS" ]; then
    bench_cert "$WORK/cert.pem" "$WORK/key.pem"
    TLS_LINES="tls_listen = [\"127.0.0.1:$TLS_PORT\"]"
fi
PORT=$(port)
"$BIN" --workers 1 sample-origin --listen "127.0.0.1:$ORIGIN_PORT" >"$WORK/origin.log" 2>&1 &
{
    printf '[edge]\nlisten = ["127.0.0.1:%s"]\nmemory_bytes = "256MiB"\n%s\n%s\n\n' "$PORT" "$TLS_LINES" "$EDGE"
    printf '[[edge.sites]]\nhosts = ["127.0.0.1", "localhost"]\norigins = ["http://127.0.0.1:%s"]\n' "$ORIGIN_PORT"
    if [ -n "$SITE" ]; then grep -v '^#' "$SITE"; fi
    if [ -n "$TLS" ]; then
        printf '\n[[edge.certificates]]\nhosts = ["bench.test"]\ncert = "%s"\nkey = "%s"\n' \
            "$WORK/cert.pem" "$WORK/key.pem"
    fi
} >"$WORK/edge.toml"
OUTPOST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
    "$BIN" --workers 1 run --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
VPID=$!
URL="http://127.0.0.1:$PORT/bytes/1024"
[ -n "$TLS" ] && URL="https://127.0.0.1:$TLS_PORT/bytes/1024"
for _ in $(seq 300); do curl -sk -o /dev/null "$URL" && break; sleep 0.2; done
if [ -n "$URLS" ]; then
    for i in $(seq "$URLS"); do echo "$URL?o=$i"; done >"$WORK/urls.txt"
    # Twice through the list from one client: every object fetched, then hit once.
    h2load --h1 -n "$((2 * URLS))" -c 1 -i "$WORK/urls.txt" >/dev/null
    TARGET=(-i "$WORK/urls.txt")
else
    h2load --h1 -n 2000 -c 8 "$URL" >/dev/null
    TARGET=("$URL")
fi
callgrind_control -z "$VPID" >/dev/null 2>&1
h2load --h1 -n "$N" -c "$CONNS" "${TARGET[@]}" | grep -q "$N succeeded" || { echo "not every request succeeded" >&2; exit 1; }
callgrind_control -d "$VPID" >/dev/null 2>&1
sleep 1
total=$(awk '/^summary:/ {print $2}' "$WORK"/cg.out.1)
echo "$((total / N)) user instructions per hit ($total over $N)"
