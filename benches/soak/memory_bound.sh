#!/usr/bin/env bash
# Memory bound: one edge with `memory_bytes = MEMORY` (64MiB) is sent COUNT (1,000,000) distinct
# small objects once each, and its RSS is sampled as it goes; the report gives the RSS (VmRSS),
# the peak (VmHWM), what the memory tier charged (`/stats`: cache.memory_bytes, objects) and
# RSS per charged MiB.
#
#   bash benches/soak/memory_bound.sh
#   COUNT=200000 bash benches/soak/memory_bound.sh
#
# Origin: `outpost sample-origin` (its /static/<name>: a ~1 KiB body with Content-Type,
# Cache-Control `public, max-age=31536000, immutable`, ETag, Last-Modified, Date: ordinary
# origin headers). The edge is a release `outpost run` (default worker threads); the client is
# benches/soak_load.rs in `fill` mode, CONNS connections. Builds both in release mode unless
# SKIP_BUILD=1. Output: printed, and OUT (default benches/results/memory-bound-<UTC time>/).
# Knobs (environment): COUNT, MEMORY, CONNS (32), WORKERS (edge worker threads; default: one
# per CPU), ORIGIN_PORT (19100), EDGE_PORT (19101), ADMIN_PORT (19102), SKIP_BUILD, LOAD_BIN (a
# built soak_load), OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
BIN=$ROOT/target/release/outpost

COUNT=${COUNT:-1000000}
MEMORY=${MEMORY:-64MiB}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-}
ORIGIN_PORT=${ORIGIN_PORT:-19100}
EDGE_PORT=${EDGE_PORT:-19101}
ADMIN_PORT=${ADMIN_PORT:-19102}
OUT=${OUT:-$ROOT/benches/results/memory-bound-$(date -u +%Y%m%dT%H%M%SZ)}

declare -A PID=()
WORK=""
MOUNTED=""
SHM_DIR=""
CLIENT_CPU=0 # lib.sh's start_origin pins the origin here; unused otherwise
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

cd "$ROOT"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    cargo build --release --locked --bin outpost
    cargo build --release --locked -p edge-node --bench soak_load
fi
LOAD=${LOAD_BIN:-}
if [[ -z "$LOAD" ]]; then
    LOAD=$(cargo build --release --locked -p edge-node --bench soak_load --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "soak_load" and m.get("executable"):
        print(m["executable"])')
fi
[[ -x "$BIN" && -x "$LOAD" ]] || die "build outpost and the soak_load bench first"

for p in $ORIGIN_PORT $EDGE_PORT $ADMIN_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is already in use (set ORIGIN_PORT, EDGE_PORT, ADMIN_PORT)"
    fi
done
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/outpost-membound.XXXXXX)
"$BIN" --workers 1 sample-origin --listen "127.0.0.1:$ORIGIN_PORT" >"$WORK/origin.log" 2>&1 &
PID[origin]=$!
wait_port "$ORIGIN_PORT" || die "origin did not start: $(cat "$WORK/origin.log")"

cat >"$WORK/edge.toml" <<EOF
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
token = "bound"

[edge]
listen = ["127.0.0.1:$EDGE_PORT"]
memory_bytes = "$MEMORY"

[[edge.sites]]
hosts = ["127.0.0.1", "localhost"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
EOF
chmod 600 "$WORK/edge.toml" # it holds the admin token
if [[ -n "$WORKERS" ]]; then
    "$BIN" --workers "$WORKERS" run --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
else
    "$BIN" run --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
fi
PID[edge]=$!
wait_port "$EDGE_PORT" || die "edge did not start: $(tail -5 "$WORK/edge.log")"
EDGE=${PID[edge]}

status() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$EDGE/status"; }
log "edge RSS at start: $(status VmRSS) KiB; storing $COUNT objects with memory_bytes = $MEMORY"
START_RSS=$(status VmRSS)
"$LOAD" fill --targets "http://127.0.0.1:$EDGE_PORT" --count "$COUNT" --prefix /static/o \
    --conns "$CONNS" --procs "edge=$EDGE" | tee "$OUT/fill.log"
sleep 2
STATS=$(curl -s -H 'Authorization: Bearer bound' "http://127.0.0.1:$ADMIN_PORT/stats")
echo "$STATS" >"$OUT/stats.json"
read -r CHARGED OBJECTS < <(python3 -c 'import json, sys
s = json.loads(sys.argv[1])
c = (s.get("edge") or [{}])[0].get("cache", {})
print(c.get("memory_bytes", 0), c.get("objects", 0))' "$STATS")
RSS=$(status VmRSS)
HWM=$(status VmHWM)
{
    echo "## Memory bound"
    echo
    echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)"
    echo "- objects sent: $COUNT distinct (/static/o<n>, ~1 KiB bodies), memory_bytes = $MEMORY"
    echo "- memory tier at the end: $CHARGED bytes charged ($((CHARGED / 1048576)) MiB), $OBJECTS objects"
    echo "- edge RSS: start $((START_RSS / 1024)) MiB, end $((RSS / 1024)) MiB, peak (VmHWM) $((HWM / 1024)) MiB"
} | tee "$OUT/summary.md"
