#!/usr/bin/env bash
# A CPU profile of one Outpost edge serving cache hits: where a hit's time goes.
#
#   bash benches/load/profile.sh [BIN]                  # default target/release/outpost
#   PROTO=h2 PATH_=/bytes/262144 bash benches/load/profile.sh
#
# A sample origin and one edge (`--workers 1`, CPU 0) as in ab.sh; the load (wrk for PROTO=h1,
# h2load with prior knowledge and STREAMS streams per connection for h2) on CPU 1 for DURATION
# (15) s with CONNS (32) connections, while `perf record -F FREQ (999) -g` samples the edge
# (the cpu-clock event: this machine's VM has no hardware counters). Prints the load's figures
# and the top of `perf report` by self time (function symbols of the release build; inlined
# functions count in their caller). OUT (default a temp dir, kept) holds
# perf.data and report.txt; with `inferno-collapse-perf` and `inferno-flamegraph` on PATH
# (`cargo install inferno`) also flame.svg. TLS=1 sends the load over TLS 1.3 to a second
# listener (an ECDSA P-256 certificate made here, as ab.sh and insns.sh do; h2 by ALPN).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh" # wait_port
BIN=${1:-$ROOT/target/release/outpost}
PROTO=${PROTO:-h1}
PATH_=${PATH_:-/bytes/1024}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
DURATION=${DURATION:-15}
FREQ=${FREQ:-999}
TLS=${TLS:-}
TOP=${TOP:-40}
ORIGIN_PORT=${ORIGIN_PORT:-18300}
EDGE_PORT=${EDGE_PORT:-18301}
TLS_PORT=${TLS_PORT:-18302}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

taskset -c 1 "$BIN" --workers 1 sample-origin --listen "127.0.0.1:$ORIGIN_PORT" >"$OUT/origin.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT"
sed -e "s|@PORT@|$EDGE_PORT|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
    "$ROOT/benches/load/outpost.toml.in" >"$OUT/edge.toml"
URL="http://127.0.0.1:$EDGE_PORT$PATH_"
if [[ -n $TLS ]]; then
    bench_cert "$OUT/cert.pem" "$OUT/key.pem" || { echo "openssl req failed" >&2; exit 1; }
    sed -i "s|^\[edge\]$|[edge]\ntls_listen = [\"127.0.0.1:$TLS_PORT\"]|" "$OUT/edge.toml"
    printf '\n[[edge.certificates]]\nhosts = ["bench.test"]\ncert = "%s"\nkey = "%s"\n' \
        "$OUT/cert.pem" "$OUT/key.pem" >>"$OUT/edge.toml"
    URL="https://127.0.0.1:$TLS_PORT$PATH_"
fi
OUTPOST_LOG=warn taskset -c 0 "$BIN" --workers 1 run --config "$OUT/edge.toml" >"$OUT/edge.log" 2>&1 &
EDGE=$!
PIDS+=($EDGE)
wait_port "$EDGE_PORT"
[[ -n $TLS ]] && wait_port "$TLS_PORT"
for _ in 1 2 3; do curl -sk -o /dev/null "$URL"; done
curl -sk -D - -o /dev/null "$URL" | grep -qi 'cache-status:.*hit' || { echo "$PATH_ is not a hit" >&2; exit 1; }

perf record -F "$FREQ" -e cpu-clock -g -p "$EDGE" -o "$OUT/perf.data" -- sleep "$DURATION" \
    2>"$OUT/perf-record.log" &
PERF=$!
if [[ $PROTO == h2 ]]; then
    taskset -c 1 h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" "$URL" | tee "$OUT/load.txt" |
        grep -E '^(finished|requests:)'
else
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$URL" | tee "$OUT/load.txt" |
        grep -E 'Requests/sec|Latency'
fi
wait "$PERF" || true
perf report -i "$OUT/perf.data" --no-children --stdio --percent-limit 0.5 -g none \
    --sort symbol 2>/dev/null | grep -v '^$' >"$OUT/report.txt"
awk -v n="$TOP" '/^ +[0-9]/ && ++i <= n' "$OUT/report.txt"
if flame_graph "$OUT/perf.data" "$OUT/flame.svg"; then
    echo "flame graph: $OUT/flame.svg"
fi
echo "perf data and report: $OUT"
