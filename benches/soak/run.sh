#!/usr/bin/env bash
# Soak: one origin, one shield and two edges (real `outpost` release processes, loopback) under
# mixed open-loop traffic at LOAD_PCT % of the mix's peak for DURATION seconds, sampled every
# INTERVAL seconds.
#
#   bash benches/soak/run.sh                   # one hour (DURATION=3600)
#   DURATION=180 bash benches/soak/run.sh      # a short check
#
# Needs: root for `apt-get install nginx` (skipped when nginx is on PATH or SKIP_INSTALL=1), a
# Rust toolchain (builds `outpost` and the load generator in release mode; SKIP_BUILD=1 uses
# what target/release holds), python3 with matplotlib for the plot (`pip install matplotlib`,
# or Debian's `apt-get install python3-matplotlib` for Debian's python3; the script tries pip
# when the import fails, and without matplotlib the CSV is still written).
#
# Set-up (configs generated into a temp dir from the *.in files here):
#   origin  nginx, one worker (origin.conf.in): every /obj/<key> is the same BODY_BYTES file,
#           `Cache-Control: max-age=MAX_AGE, stale-if-error=600`, ETag/Last-Modified, tagged
#           `Cache-Tag: g<last two digits>`; 5.1% of its requests, at random, are answered 500
#           or 503 with `X-Injected`.
#   shield  SHIELD_MEMORY of memory, purge hub (its admin API).
#   edges   two, EDGE_MEMORY each, both behind the shield, following its purge log.
# Load (benches/soak_load.rs, a Rust open-loop client: requests are due at fixed times and
# latency counts from when each was due):
#   1. warm: every hot key (HOT_KEYS of them) once on each edge;
#   2. peak: SETTLE_SECS s closed-loop (not counted: the caches fill and start to evict), then
#      PEAK_SECS s closed-loop on CONNS keep-alive connections, the same mix: peak req/s;
#   3. ramp: open-loop steps of STEP_SECS s from RAMP_FROM % of that peak, up RAMP_STEP % a
#      step, while a step keeps up (p99 at most SUSTAIN_P99_MS, no drop or error): the highest
#      such rate is the peak the soak takes its share of (ramp.csv has every step). On two
#      cores shared with the client the closed-loop peak is not sustainable open-loop;
#   4. run:  RATE = LOAD_PCT % of the open-loop peak (or RATE if set), open-loop on the same CONNS
#      connections, each with its own share of the schedule (as in wrk2: a request due while
#      its connection is busy waits, and its wait counts), DURATION s,
#      requests alternating between the edges: HIT per mille GETs of hot keys, MISS per mille
#      GETs of keys never asked before (the key space grows all run, so the caches fill and
#      evict), the rest Range GETs of hot keys; PURGE_RATE purges per second through the edges'
#      admin APIs (alternating; every TAG_EVERY-th a tag purge of 1% of the hot keys, the rest
#      URL purges of one hot key).
# Every INTERVAL s the load generator writes a CSV row: machine load (1-minute load average),
# requests, rate, answers by class (ok; stale = served stale because the origin erred;
# injected = the origin's 500/503 passed through; unexpected status, connection errors,
# timeouts, dropped = the client fell behind), edge hit %, latency p50/p99/p99.9/max (ms, from
# when each request was due), purges, and per process (shield, edge1, edge2, origin worker)
# VmRSS (KiB, /proc/PID/status) and open fds (/proc/PID/fd).
#
# Output: OUT (default benches/results/soak-<UTC time>/): soak.csv, soak.svg (plot), summary.md,
# meta.txt, the configs and every process's log.
# Knobs (environment): DURATION (3600), INTERVAL (60), LOAD_PCT (80), RATE, SETTLE_SECS (60), PEAK_SECS (30),
# STEP_SECS (20), RAMP_FROM (50), RAMP_STEP (5), SUSTAIN_P99_MS (250),
# CONNS (64), HOT_KEYS (10000), BODY_BYTES (1024), MAX_AGE (30), HIT (750), MISS (150),
# PURGE_RATE (2), TAG_EVERY (4), EDGE_MEMORY (128MiB), SHIELD_MEMORY (256MiB), OUT, SKIP_INSTALL, SKIP_BUILD, LOAD_BIN (a built soak_load), *_PORT (ORIGIN 19000, SHIELD 19090, HUB 19900,
# EDGE1 19081, EDGE2 19082, ADMIN1 19901, ADMIN2 19902).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/soak
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh"
BIN=$ROOT/target/release/outpost

DURATION=${DURATION:-3600}
INTERVAL=${INTERVAL:-60}
LOAD_PCT=${LOAD_PCT:-80}
RATE=${RATE:-}
PEAK_SECS=${PEAK_SECS:-30}
SETTLE_SECS=${SETTLE_SECS:-60}
STEP_SECS=${STEP_SECS:-20}
RAMP_FROM=${RAMP_FROM:-50}
RAMP_STEP=${RAMP_STEP:-5}
SUSTAIN_P99_MS=${SUSTAIN_P99_MS:-250}
CONNS=${CONNS:-64}
HOT_KEYS=${HOT_KEYS:-10000}
BODY_BYTES=${BODY_BYTES:-1024}
MAX_AGE=${MAX_AGE:-30}
HIT=${HIT:-750}
MISS=${MISS:-150}
PURGE_RATE=${PURGE_RATE:-2}
TAG_EVERY=${TAG_EVERY:-4}
EDGE_MEMORY=${EDGE_MEMORY:-128MiB}
SHIELD_MEMORY=${SHIELD_MEMORY:-256MiB}
ORIGIN_PORT=${ORIGIN_PORT:-19000}
SHIELD_PORT=${SHIELD_PORT:-19090}
HUB_PORT=${HUB_PORT:-19900}
EDGE1_PORT=${EDGE1_PORT:-19081}
EDGE2_PORT=${EDGE2_PORT:-19082}
ADMIN1_PORT=${ADMIN1_PORT:-19901}
ADMIN2_PORT=${ADMIN2_PORT:-19902}
OUT=${OUT:-$ROOT/benches/results/soak-$(date -u +%Y%m%dT%H%M%SZ)}

declare -A PID=()
WORK=""
MOUNTED=""
SHM_DIR=""

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Keep the logs and configs, then stop everything (lib.sh's cleanup removes WORK).
soak_cleanup() {
    if [[ -n "$WORK" && -d "$WORK" && -d "$OUT" ]]; then
        mkdir -p "$OUT/logs"
        cp "$WORK"/*.log "$WORK"/*.toml "$OUT/logs/" 2>/dev/null || true
        cp "$WORK/origin/error.log" "$OUT/logs/origin-error.log" 2>/dev/null || true
        cp "$WORK/origin/nginx.conf" "$OUT/logs/origin-nginx.conf" 2>/dev/null || true
    fi
    cleanup
}
trap soak_cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- tools

if ! command -v nginx >/dev/null; then
    [[ -z "${SKIP_INSTALL:-}" ]] || die "nginx is not installed (apt-get install nginx)"
    [[ $(id -u) -eq 0 ]] || die "nginx is missing: run as root (apt-get) or install it"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx
    # Debian starts the packaged service; the soak runs its own nginx.
    if [[ -r /run/nginx.pid ]]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi
fi
if ! python3 -c 'import matplotlib' 2>/dev/null && [[ -z "${SKIP_INSTALL:-}" ]]; then
    python3 -m pip install -q matplotlib || log "matplotlib not installed: no plot, CSV only"
fi

cd "$ROOT"
if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "building outpost and the load generator (release)"
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
[[ -x "$BIN" ]] || die "no $BIN (build it, or unset SKIP_BUILD)"
[[ -x "$LOAD" ]] || die "no load generator binary (cargo build --release -p edge-node --bench soak_load)"

for p in $ORIGIN_PORT $SHIELD_PORT $HUB_PORT $EDGE1_PORT $EDGE2_PORT $ADMIN1_PORT $ADMIN2_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is already in use (set *_PORT)"
    fi
done

mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/outpost-soak.XXXXXX)
chmod 755 "$WORK"

# ---------------------------------------------------------------- servers

fill() {
    sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|${2:-}|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        -e "s|@SHIELD_PORT@|$SHIELD_PORT|g" -e "s|@HUB_PORT@|$HUB_PORT|g" \
        -e "s|@ADMIN_PORT@|${3:-}|g" -e "s|@REGION@|${4:-}|g" -e "s|@MEMORY@|${5:-}|g" \
        -e "s|@MAX_AGE@|$MAX_AGE|g" -e "s|@BODY@|$BODY_BYTES|g" -e "s|@USER@|$NGINX_USER|g" "$1"
}

NGINX_USER=www-data
id "$NGINX_USER" >/dev/null 2>&1 || NGINX_USER=nobody
mkdir -p "$WORK/origin/www" "$WORK/origin/tmp"
head -c "$BODY_BYTES" /dev/urandom >"$WORK/origin/www/body.bin"
chmod -R a+rX "$WORK/origin"
fill "$HERE/origin.conf.in" "$ORIGIN_PORT" >"$WORK/origin/nginx.conf"
nginx -t -q -p "$WORK/origin/" -c "$WORK/origin/nginx.conf" || die "origin nginx config test failed"
nginx -p "$WORK/origin/" -c "$WORK/origin/nginx.conf" -g 'daemon off;' >"$WORK/origin.log" 2>&1 &
PID[origin]=$!
wait_port "$ORIGIN_PORT" || die "origin did not start: $(cat "$WORK/origin/error.log")"

start_outpost() {
    local name=$1 port=$2
    "$BIN" run --config "$WORK/$name.toml" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
    wait_port "$port" || die "$name did not start: $(tail -5 "$WORK/$name.log")"
}
fill "$HERE/shield.toml.in" "" "" "" "$SHIELD_MEMORY" >"$WORK/shield.toml"
fill "$HERE/edge.toml.in" "$EDGE1_PORT" "$ADMIN1_PORT" eu "$EDGE_MEMORY" >"$WORK/edge1.toml"
fill "$HERE/edge.toml.in" "$EDGE2_PORT" "$ADMIN2_PORT" us "$EDGE_MEMORY" >"$WORK/edge2.toml"
chmod 600 "$WORK"/*.toml # they hold the admin token and the shield secret
start_outpost shield "$SHIELD_PORT"
wait_port "$HUB_PORT" || die "the shield's admin API did not start"
start_outpost edge1 "$EDGE1_PORT"
start_outpost edge2 "$EDGE2_PORT"

ORIGIN_WORKER=$(ps -o pid= --ppid "${PID[origin]}" | head -1 | tr -d ' ')
PROCS="shield=${PID[shield]},edge1=${PID[edge1]},edge2=${PID[edge2]},origin=$ORIGIN_WORKER"
TARGETS="http://127.0.0.1:$EDGE1_PORT,http://127.0.0.1:$EDGE2_PORT"
ADMINS="http://127.0.0.1:$ADMIN1_PORT,http://127.0.0.1:$ADMIN2_PORT"
MIX=(--hot-keys "$HOT_KEYS" --body-bytes "$BODY_BYTES" --hit "$HIT" --miss "$MISS")

# Answers seen through an edge, for the record: a hit, a miss, a range.
curl -s -o /dev/null -D - "http://127.0.0.1:$EDGE1_PORT/obj/h00001" >"$OUT/sample-headers.txt" || true
curl -s -o /dev/null -D - "http://127.0.0.1:$EDGE1_PORT/obj/h00001" >>"$OUT/sample-headers.txt" || true
curl -s -o /dev/null -D - -H 'Range: bytes=10-99' "http://127.0.0.1:$EDGE1_PORT/obj/h00001" \
    >>"$OUT/sample-headers.txt" || true

# ---------------------------------------------------------------- load

log "warming $HOT_KEYS hot keys on both edges"
"$LOAD" warm --targets "$TARGETS" "${MIX[@]}" --conns 32 2>>"$OUT/load.log"

if [[ -z "$RATE" ]]; then
    # The caches fill within seconds at full load; the peak that matters is the one once they
    # evict (a miss then also frees an entry), so the measured window starts after that.
    log "settling: $SETTLE_SECS s closed-loop, the caches fill and start to evict"
    "$LOAD" peak --targets "$TARGETS" "${MIX[@]}" --conns "$CONNS" \
        --duration "$SETTLE_SECS" --run-id settle 2>>"$OUT/load.log" >/dev/null
    log "measuring the mix's peak: $PEAK_SECS s closed-loop, $CONNS connections"
    PEAK=$("$LOAD" peak --targets "$TARGETS" "${MIX[@]}" --conns "$CONNS" \
        --duration "$PEAK_SECS" --run-id peak 2>>"$OUT/load.log" | sed -n 's/^peak_rps=//p')
    [[ -n "$PEAK" ]] || die "peak measurement failed (see $OUT/load.log)"
    log "closed-loop peak $PEAK req/s"
    # The closed-loop peak overstates what an open-loop client can keep up with on a machine
    # it shares with the servers (answers are not batched by a queue that is never empty), so
    # the peak the soak runs at a share of is the highest open-loop rate that keeps up: steps
    # of STEP_SECS s from RAMP_FROM % of the closed-loop peak, up by RAMP_STEP % each, until a
    # step falls behind (p99 over SUSTAIN_P99_MS, a dropped request or any error).
    OPEN_PEAK=""
    pct=$RAMP_FROM
    while ((pct <= 100)); do
        r=$((PEAK * pct / 100))
        row=$("$LOAD" run --targets "$TARGETS" "${MIX[@]}" --rate "$r" --duration "$STEP_SECS" \
            --interval "$STEP_SECS" --admins "$ADMINS" --token soak --purge-rate "$PURGE_RATE" \
            --tag-every "$TAG_EVERY" --conns "$CONNS" --run-id "ramp$pct" 2>>"$OUT/load.log" |
            tail -1)
        # the step's rate, errors (unexpected, connection, timeouts, dropped) and p99
        read -r got errs p99 < <(awk -F, '{ print $5, $9 + $10 + $11 + $12, $15 }' <<<"$row")
        echo "$pct,$r,$row" >>"$OUT/ramp.csv"
        if [[ -z "$p99" ]] || ((errs > 0)) ||
            awk -v p="$p99" -v m="$SUSTAIN_P99_MS" 'BEGIN { exit !(p > m) }'; then
            log "open loop at $r req/s ($pct % of the closed-loop peak): p99 ${p99:-?} ms, ${errs:-?} errors: falls behind"
            break
        fi
        log "open loop at $r req/s ($pct %): kept up at $got req/s, p99 $p99 ms"
        OPEN_PEAK=$r
        pct=$((pct + RAMP_STEP))
    done
    [[ -n "$OPEN_PEAK" ]] || die "even $RAMP_FROM % of the closed-loop peak falls behind (see $OUT/ramp.csv)"
    RATE=$((OPEN_PEAK * LOAD_PCT / 100))
    log "peak (open loop) $OPEN_PEAK req/s; soak rate $RATE req/s ($LOAD_PCT %)"
    sleep 5
else
    PEAK=""
    OPEN_PEAK=""
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo -dirty)"
    echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo), $(uname -sr)"
    echo "peak_rps: ${PEAK:-not measured} (closed loop)"
    echo "open_loop_peak_rps: ${OPEN_PEAK:-not measured} (the highest open-loop rate that kept up; ramp.csv)"
    echo "rate: $RATE"
    echo "load_pct: $LOAD_PCT"
    echo "duration: $DURATION"
    echo "interval: $INTERVAL"
    echo "mix: hit=$HIT miss=$MISS range=$((1000 - HIT - MISS)) per mille; purges $PURGE_RATE/s, every $TAG_EVERY th a tag purge"
    echo "objects: $BODY_BYTES bytes, max-age=$MAX_AGE, stale-if-error=600; $HOT_KEYS hot keys"
    echo "memory: edges $EDGE_MEMORY, shield $SHIELD_MEMORY"
    echo "procs: $PROCS"
} >"$OUT/meta.txt"

log "soak: $RATE req/s for $DURATION s, a row every $INTERVAL s -> $OUT/soak.csv"
# In the background so that a TERM reaches the trap (and stops everything) at once.
"$LOAD" run --targets "$TARGETS" "${MIX[@]}" --rate "$RATE" --duration "$DURATION" \
    --interval "$INTERVAL" --admins "$ADMINS" --token soak --purge-rate "$PURGE_RATE" \
    --tag-every "$TAG_EVERY" --conns "$CONNS" --run-id run --procs "$PROCS" --csv "$OUT/soak.csv" \
    2>>"$OUT/load.log" &
PID[load]=$!
wait "${PID[load]}" || die "the load generator failed (see $OUT/load.log)"
unset "PID[load]"

for name in shield edge1 edge2 origin; do
    kill -0 "${PID[$name]}" 2>/dev/null || die "$name exited during the soak (see $OUT/logs)"
done

if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 "$HERE/plot.py" "$OUT/soak.csv" "$OUT/soak.svg" "$OUT/meta.txt" >"$OUT/summary.md"
else
    python3 "$HERE/plot.py" --no-plot "$OUT/soak.csv" "$OUT/soak.svg" "$OUT/meta.txt" >"$OUT/summary.md"
fi
cat "$OUT/summary.md"
log "done: $OUT"
