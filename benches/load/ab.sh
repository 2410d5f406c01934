#!/usr/bin/env bash
# Two Outpost builds side by side on the 1 KiB hit load: before and after a change.
#
#   bash benches/load/ab.sh BEFORE_BIN AFTER_BIN
#
# One sample origin (from AFTER_BIN) feeds two edges, each `--workers 1` on CPU 0 with its own
# port; wrk -t1 -c$CONNS on CPU 1 loads one edge at a time for DURATION s, alternating
# before/after for ROUNDS rounds, so machine noise lands on both alike. Prints req/s per run,
# requests per CPU-second of the edge (steadier on a shared machine: the edge saturates its
# core, so req/s follows whatever else runs there), wrk's p99 (h1 only), and the median of each
# side. Knobs: ROUNDS (5), DURATION (10), CONNS (32), PATH_ (/bytes/1024),
# PROTO (h1: wrk; h2: h2load with prior knowledge, STREAMS (10) concurrent streams per
# connection), BEFORE_EDGE / AFTER_EDGE (TOML lines added to that side's [edge], e.g. the same
# binary twice with AFTER_EDGE='access_log = { path = "/tmp/a.log" }' to price a feature),
# BEFORE_SITE / AFTER_SITE (TOML lines added to that side's site), TLS=1 (the load over TLS
# 1.3 on a second listener of each edge, with one ECDSA P-256 certificate made here, as
# tls.sh does; h2 then negotiates HTTP/2 by ALPN).
set -euo pipefail

BEFORE=${1:?before binary}
AFTER=${2:?after binary}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PATH_=${PATH_:-/bytes/1024}
PROTO=${PROTO:-h1}
STREAMS=${STREAMS:-10}
TLS=${TLS:-}
declare -A EXTRA=([before]=${BEFORE_EDGE:-} [after]=${AFTER_EDGE:-})
declare -A SITE_EXTRA=([before]=${BEFORE_SITE:-} [after]=${AFTER_SITE:-})
ORIGIN_PORT=${ORIGIN_PORT:-18100}
declare -A PORT=([before]=18101 [after]=18102)
declare -A TLS_PORT=([before]=18111 [after]=18112)
declare -A BIN=([before]=$BEFORE [after]=$AFTER)
declare -A EDGE_PID=()
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=benches/common.sh
source "$HERE/../common.sh" # bench_cert
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    return 1
}

if [ -n "$TLS" ]; then
    bench_cert "$WORK/cert.pem" "$WORK/key.pem" || { echo "openssl req failed" >&2; exit 1; }
fi
# The URL the load goes to on one side's edge.
url_of() {
    if [ -n "$TLS" ]; then
        echo "https://127.0.0.1:${TLS_PORT[$1]}$PATH_"
    else
        echo "http://127.0.0.1:${PORT[$1]}$PATH_"
    fi
}

taskset -c 1 "$AFTER" --workers 1 sample-origin --listen "127.0.0.1:$ORIGIN_PORT" \
    >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN_PORT"
for side in before after; do
    sed -e "s|@PORT@|${PORT[$side]}|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        "$HERE/outpost.toml.in" >"$WORK/$side.toml"
    if [ -n "$TLS" ]; then
        EXTRA[$side]="tls_listen = [\"127.0.0.1:${TLS_PORT[$side]}\"]
${EXTRA[$side]}"
        printf '\n[[edge.certificates]]\nhosts = ["bench.test"]\ncert = "%s"\nkey = "%s"\n' \
            "$WORK/cert.pem" "$WORK/key.pem" >>"$WORK/$side.toml"
    fi
    # The side's own [edge] and site keys go right after their section headers.
    EDGE_LINES="${EXTRA[$side]}" SITE_LINES="${SITE_EXTRA[$side]}" python3 -c '
import os, sys
p = sys.argv[1]
s = open(p).read()
for head, var in (("[edge]\n", "EDGE_LINES"), ("[[edge.sites]]\n", "SITE_LINES")):
    if os.environ[var]:
        s = s.replace(head, head + os.environ[var] + "\n", 1)
open(p, "w").write(s)' "$WORK/$side.toml"
    OUTPOST_LOG=warn taskset -c 0 "${BIN[$side]}" --workers 1 run --config "$WORK/$side.toml" \
        >"$WORK/$side.log" 2>&1 &
    PIDS+=($!)
    EDGE_PID[$side]=$!
    wait_port "${PORT[$side]}"
    # Warm: the object stored, and the connections' first requests out of the way.
    for _ in 1 2 3; do curl -sk -o /dev/null "$(url_of $side)"; done
    curl -sk -D - -o /dev/null "$(url_of $side)" | grep -qi 'cache-status:.*hit' ||
        { echo "$side: $PATH_ is not a hit" >&2; exit 1; }
done

# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

declare -A RUNS=([before]="" [after]="") PERCPU=([before]="" [after]="") P99=([before]="" [after]="")
for r in $(seq "$ROUNDS"); do
    for side in before after; do
        url=$(url_of $side)
        t0=$(cpu_ticks "${EDGE_PID[$side]}")
        if [ "$PROTO" = h2 ]; then
            rps=$(taskset -c 1 h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" "$url" |
                awk '/^finished in/ {print $4}')
            p99=-
        else
            out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url")
            rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
            # wrk prints "99% 1.23ms" (or us, or s): in ms.
            p99=$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
                printf "%.2f", (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : v)) }' <<<"$out")
        fi
        t1=$(cpu_ticks "${EDGE_PID[$side]}")
        # Requests per CPU-second of the edge: what a busy machine's noise hardly moves.
        per=$(awk -v r="$rps" -v d="$DURATION" -v t=$((t1 - t0)) -v hz="$TICK" \
            'BEGIN {printf "%.0f", (t > 0 ? r * d / (t / hz) : 0)}')
        RUNS[$side]="${RUNS[$side]} $rps"
        PERCPU[$side]="${PERCPU[$side]} $per"
        P99[$side]="${P99[$side]} $p99"
        echo "round $r $side $rps req/s, $per req per CPU-second, p99 $p99 ms"
    done
done
for side in before after; do
    med=$(printf '%s\n' ${RUNS[$side]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$side median $med req/s (runs:${RUNS[$side]})"
    med=$(printf '%s\n' ${PERCPU[$side]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$side median $med req per CPU-second (runs:${PERCPU[$side]})"
    med=$(printf '%s\n' ${P99[$side]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$side median p99 $med ms (runs:${P99[$side]})"
done
