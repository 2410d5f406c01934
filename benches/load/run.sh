#!/usr/bin/env bash
# Load benchmark: Outpost vs nginx proxy_cache vs Varnish, side by side, on loopback.
#
#   bash benches/load/run.sh
#
# Needs root (apt-get, mount). One sample origin (`outpost sample-origin`) feeds all three
# caches. Every server is pinned to CPU 0 and the load generator to CPU 1. Phases:
#   1. hits: wrk -t1 against a warm cache, /bytes/1024 and /bytes/262144 at 32 and 256
#      connections, interleaved nginx, varnish, outpost per case, ROUNDS rounds; req/s,
#      p50/p99 latency and the server's own CPU time (utime+stime from /proc) per run.
#   2. memory: each server fresh, OBJECTS distinct 1 KiB objects stored, RSS growth (plus
#      nginx's tmpfs cache dir) per object.
#   3. collapse: each server (still fresh), COLLAPSE_CLIENTS concurrent requests for one
#      uncached /slow URL (2 s at the origin); origin requests and completion spread. Run
#      twice: all at once, and one leader with the rest STAGGER_MS later.
# Raw output goes to benches/results/load-<UTC time>/, the summary to summary.md there and
# to stdout. Knobs (environment): ROUNDS, DURATION, SIZES, CONNS, OBJECTS,
# COLLAPSE_CLIENTS, STAGGER_MS, SKIP_INSTALL=1, SKIP_BUILD=1, *_PORT, and the noise
# controls below.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/load
# shellcheck source=benches/load/lib.sh
source "$HERE/lib.sh"
BIN=$ROOT/target/release/outpost

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
SIZES=${SIZES:-"1024 262144"}
CONNS=${CONNS:-"32 256"}
OBJECTS=${OBJECTS:-10000}
COLLAPSE_CLIENTS=${COLLAPSE_CLIENTS:-200}
STAGGER_MS=${STAGGER_MS:-250}
ORIGIN_PORT=${ORIGIN_PORT:-18000}
NGINX_PORT=${NGINX_PORT:-18080}
VARNISH_PORT=${VARNISH_PORT:-18081}
OUTPOST_PORT=${OUTPOST_PORT:-18082}
# A run during which other processes used more than NOISE_PCT % of a benchmark CPU is
# repeated (up to MAX_ATTEMPTS per run, RETRY_BUDGET in all); before each run the script
# waits up to QUIET_WAIT s for a quiet second. The report uses each run's quietest attempt.
NOISE_PCT=${NOISE_PCT:-10}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-3}
RETRY_BUDGET=${RETRY_BUDGET:-24}
QUIET_WAIT=${QUIET_WAIT:-30}
SERVER_CPU=0
CLIENT_CPU=1
SERVERS=(nginx varnish outpost)

declare -A PORT=([nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT [outpost]=$OUTPOST_PORT)
declare -A PID=()
WORK=""
MOUNTED=""
SHM_DIR=""

exec 9>&2 # log() writes here even while a block's stderr is redirected
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&9; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- process helpers

# Sum of VmRSS (KiB) over the given pids.
rss_kib() {
    local p sum=0 v
    for p in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# Sum of Pss (KiB) over the given pids: shared pages counted once across processes.
pss_kib() {
    local p sum=0 v
    for p in "$@"; do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

threads_of() {
    local p sum=0 v
    for p in "$@"; do
        v=$(awk '/^Threads:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Requests the origin has served so far (this request included).
origin_count() {
    curl -s -m 5 -D - -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/healthz" |
        awk 'tolower($1) == "x-origin-requests:" { gsub(/\r/, "", $2); print $2 }'
}

# Does a GET of the path come from the server's cache?
is_hit() {
    local name=$1 path=$2 h
    h=$(curl -s -m 10 -D - -o /dev/null "http://127.0.0.1:${PORT[$name]}$path" | tr -d '\r' |
        tr 'A-Z' 'a-z')
    case $name in
        nginx) grep -q '^x-cache-status: hit$' <<<"$h" ;;
        varnish) grep -Eq '^x-varnish: [0-9]+ [0-9]+$' <<<"$h" ;;
        outpost) grep -Eq '^cache-status: [^;]*; *hit(;|$)' <<<"$h" ;;
    esac
}

warm() {
    local name=$1 path=$2 i
    for i in $(seq 20); do
        if is_hit "$name" "$path"; then
            return 0
        fi
        sleep 0.1
    done
    die "$name: $path is still not a cache hit after 20 requests"
}

# ---------------------------------------------------------------- servers

start_nginx() {
    local d=$WORK/nginx
    rm -rf "$d"
    mkdir -p "$d"
    # Fresh, empty cache.
    find "$CACHE_DIR" -mindepth 1 -delete
    sed -e "s|@WORK@|$d|g" -e "s|@CACHE_DIR@|$CACHE_DIR|g" -e "s|@PORT@|$NGINX_PORT|g" \
        -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@USER@|$NGINX_USER|g" \
        "$HERE/nginx.conf.in" >"$d/nginx.conf"
    nginx -t -q -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" || die "nginx config test failed"
    taskset -c "$SERVER_CPU" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' \
        >"$d/stdout.log" 2>&1 &
    PID[nginx]=$!
    wait_port "$NGINX_PORT" || die "nginx did not start: $(cat "$d/error.log")"
}

start_varnish() {
    local d=$WORK/varnish
    rm -rf "$d"
    # One thread pool for one core; enough threads started up front for 256 busy
    # connections so thread creation doesn't land inside a measurement.
    taskset -c "$SERVER_CPU" varnishd -F -n "$d" -T none \
        -a "127.0.0.1:$VARNISH_PORT" -b "127.0.0.1:$ORIGIN_PORT" -s malloc,256m \
        -p thread_pools=1 -p thread_pool_min=300 -p thread_pool_max=1000 \
        >"$WORK/varnish.log" 2>&1 &
    PID[varnish]=$!
    wait_port "$VARNISH_PORT" || die "varnish did not start: $(cat "$WORK/varnish.log")"
}

start_outpost() {
    local f=$WORK/outpost.toml
    sed -e "s|@PORT@|$OUTPOST_PORT|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        "$HERE/outpost.toml.in" >"$f"
    "$BIN" check-config "$f" >/dev/null || die "outpost check-config failed for $f"
    OUTPOST_LOG=${OUTPOST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --workers 1 run --config "$f" \
        >"$WORK/outpost.log" 2>&1 &
    PID[outpost]=$!
    wait_port "$OUTPOST_PORT" || die "outpost did not start: $(cat "$WORK/outpost.log")"
}

check_alive() {
    local name=$1
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
        log "$name (pid ${PID[$name]}) is gone; its log:"
        cat "$WORK/$name.log" "$WORK/$name/error.log" 2>/dev/null | tail -50 >&2 || true
        die "$name exited unexpectedly"
    fi
}

# ---------------------------------------------------------------- setup

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, mount, taskset on servers)"
[[ $(nproc) -ge 2 ]] || die "needs at least 2 CPUs"

if [[ -z "${SKIP_INSTALL:-}" ]]; then
    if ! command -v nginx >/dev/null || ! command -v varnishd >/dev/null || ! command -v wrk >/dev/null; then
        log "installing nginx, varnish, wrk"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y nginx varnish wrk
    fi
fi
for tool in nginx varnishd wrk curl python3 taskset ps awk; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

if [[ -z "${SKIP_BUILD:-}" ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi
[[ -x "$BIN" ]] || die "$BIN missing"

for p in "$ORIGIN_PORT" "$NGINX_PORT" "$VARNISH_PORT" "$OUTPOST_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is already in use"
    fi
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/outpost-load.XXXXXX)
chmod 755 "$WORK" # varnishd's child runs as vcache and must reach its -n dir
# Run a private copy, so a rebuild of target/release during the run can't mix two builds.
cp "$BIN" "$WORK/outpost"
BIN=$WORK/outpost
CACHE_DIR=$WORK/nginx-cache
mkdir -p "$CACHE_DIR"
if mount -t tmpfs -o size=512m,mode=0755 outpost-load-nginx "$CACHE_DIR"; then
    MOUNTED=$CACHE_DIR
else
    log "cannot mount a tmpfs; using /dev/shm for the nginx cache"
    CACHE_DIR=$(mktemp -d /dev/shm/outpost-load-nginx.XXXXXX)
    SHM_DIR=$CACHE_DIR
fi
NGINX_USER=www-data
id "$NGINX_USER" >/dev/null 2>&1 || NGINX_USER=nobody
chown "$NGINX_USER" "$CACHE_DIR"

RESULTS=$ROOT/benches/results/load-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS/wrk"
CLK_TCK=$(getconf CLK_TCK)

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "command: bash benches/load/run.sh"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel: $(uname -sr)"
    echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "varnish: $(varnishd -V 2>&1 | head -1)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    echo "outpost: $("$BIN" --version), sha256 $(sha256sum "$BIN" | cut -c1-12) (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src edge-node 2>/dev/null || echo ', uncommitted changes in src/ or edge-node/'))"
    echo "rounds: $ROUNDS; duration: ${DURATION}s; sizes: $SIZES; conns: $CONNS; objects: $OBJECTS; collapse clients: $COLLAPSE_CLIENTS"
    echo "noise: retry a run if other processes used > ${NOISE_PCT}% of a benchmark CPU (max $MAX_ATTEMPTS attempts, $RETRY_BUDGET retries in all; wait up to ${QUIET_WAIT}s for quiet)"
    echo "clk_tck: $CLK_TCK"
    echo "nginx cache dir: ${MOUNTED:+tmpfs }$CACHE_DIR"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/meta.txt"
log "results in $RESULTS"

start_origin

# ---------------------------------------------------------------- phase 1: hits

log "phase 1: cache hits (${ROUNDS} rounds x cases x 3 servers x ${DURATION}s)"
for name in "${SERVERS[@]}"; do
    "start_$name"
done
for name in "${SERVERS[@]}"; do
    for size in $SIZES; do
        warm "$name" "/bytes/$size"
        # Untimed warm-up at the highest concurrency: threads, buffers, connection state.
        taskset -c "$CLIENT_CPU" wrk -t1 -c"${CONNS##* }" -d2s "http://127.0.0.1:${PORT[$name]}/bytes/$size" \
            >/dev/null 2>&1 || true
        check_alive "$name"
    done
done

# Wait (at most QUIET_WAIT seconds) for a second in which nothing else uses more than
# NOISE_PCT % of either benchmark CPU: this machine may be shared.
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) a0 c0 a1 c1
    while :; do
        read -r a0 c0 < <(busy_ticks)
        sleep 1
        read -r a1 c1 < <(busy_ticks)
        if [[ $(((a1 - a0) * 100)) -le $((NOISE_PCT * CLK_TCK)) && $(((c1 - c0) * 100)) -le $((NOISE_PCT * CLK_TCK)) ]]; then
            return 0
        fi
        if [[ $SECONDS -ge $deadline ]]; then
            log "CPUs still busy with other work after ${QUIET_WAIT}s (cpu$SERVER_CPU $((a1 - a0)), cpu$CLIENT_CPU $((c1 - c0)) ticks/s); measuring anyway"
            return 0
        fi
    done
}

# One wrk run; appends a row to runs.tsv and sets OTHER_PCT: the larger share of CPU 0 or
# CPU 1 (percent of one CPU) used by anything but the server and wrk during the run.
measure() {
    local round=$1 size=$2 conns=$3 name=$4 attempt=$5
    local f=wrk/r${round}-${size}-c${conns}-${name}-a${attempt}.txt
    local pids o0 o1 b0s b0c b1s b1c ticks creal cuser csys rps
    pids=$(tree_pids "${PID[$name]}")
    o0=$(origin_count)
    cpu_snapshot $pids >"$WORK/cpu0"
    read -r b0s b0c < <(busy_ticks)
    TIMEFORMAT='%3R %3U %3S'
    { time taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency \
        "http://127.0.0.1:${PORT[$name]}/bytes/$size" >"$RESULTS/$f" 2>&1; } 2>"$WORK/time" || true
    cpu_snapshot $(tree_pids "${PID[$name]}") >"$WORK/cpu1"
    read -r b1s b1c < <(busy_ticks)
    o1=$(origin_count)
    ticks=$(cpu_delta "$WORK/cpu0" "$WORK/cpu1")
    read -r creal cuser csys <"$WORK/time"
    check_alive "$name"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$size" "$conns" "$name" \
        "$attempt" "$f" "$ticks" "$CLK_TCK" "$((o1 - o0 - 1))" "$creal" "$cuser" "$csys" \
        "$(echo $pids | tr ' ' ',')" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$((b1s - b0s))" "$((b1c - b0c))" >>"$RESULTS/runs.tsv"
    OTHER_PCT=$(awk -v t="$ticks" -v bs="$((b1s - b0s))" -v bc="$((b1c - b0c))" -v hz="$CLK_TCK" \
        -v r="$creal" -v u="$cuser" -v s="$csys" \
        'BEGIN { o0 = (bs - t) / hz / r; o1 = bc / hz / r - (u + s) / r;
                 o = o0 > o1 ? o0 : o1; if (o < 0) o = 0; printf "%d", o * 100 + 0.5 }')
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$RESULTS/$f")
    local note=""
    if [[ $attempt -gt 1 ]]; then note=" (attempt $attempt)"; fi
    log "round $round /bytes/$size c$conns $name: ${rps:-?} req/s, server cpu $ticks ticks, other load ${OTHER_PCT}%$note"
}

printf 'round\tsize\tconns\tserver\tattempt\twrk_file\tserver_ticks\tclk_tck\torigin_misses\tclient_real_s\tclient_user_s\tclient_sys_s\tserver_pids\tloadavg1\tserver_cpu_busy_ticks\tclient_cpu_busy_ticks\n' \
    >"$RESULTS/runs.tsv"
retries_left=$RETRY_BUDGET
for round in $(seq "$ROUNDS"); do
    for size in $SIZES; do
        for conns in $CONNS; do
            for name in "${SERVERS[@]}"; do
                attempt=1
                while :; do
                    wait_quiet
                    measure "$round" "$size" "$conns" "$name" "$attempt"
                    if [[ $OTHER_PCT -le $NOISE_PCT || $attempt -ge $MAX_ATTEMPTS || $retries_left -le 0 ]]; then
                        break
                    fi
                    retries_left=$((retries_left - 1))
                    attempt=$((attempt + 1))
                done
            done
        done
    done
done
for name in "${SERVERS[@]}"; do
    stop_server "$name"
done

# ---------------------------------------------------------------- phases 2 and 3: memory, collapse

log "phase 2+3: memory per cached object ($OBJECTS x 1 KiB) and collapse ($COLLAPSE_CLIENTS clients on /slow)"
printf 'server\tobjects\tthreads_before\tthreads_after\trss_before_kib\trss_after_kib\tpss_before_kib\tpss_after_kib\ttmpfs_before_kib\ttmpfs_after_kib\ttmpfs_apparent_bytes\torigin_fetches\tfill_json\n' \
    >"$RESULTS/memory.tsv"
printf 'server\tstagger_ms\tcollapse_json\n' >"$RESULTS/collapse.tsv"
for name in "${SERVERS[@]}"; do
    "start_$name"
    sleep 3 # let the server settle (varnish starts its thread pool, nginx its cache manager)
    pids=$(tree_pids "${PID[$name]}")
    th0=$(threads_of $pids)
    rss0=$(rss_kib $pids)
    pss0=$(pss_kib $pids)
    du0=0
    if [[ $name == nginx ]]; then du0=$(du -sk "$CACHE_DIR" | cut -f1); fi
    o0=$(origin_count)
    fill=$(taskset -c "$CLIENT_CPU" python3 "$HERE/fill.py" --server "$name" --port "${PORT[$name]}" \
        --count "$OBJECTS" --size 1024) || log "$name: fill incomplete: $fill"
    o1=$(origin_count)
    sleep 2
    check_alive "$name"
    pids=$(tree_pids "${PID[$name]}")
    th1=$(threads_of $pids)
    rss1=$(rss_kib $pids)
    pss1=$(pss_kib $pids)
    du1=0
    apparent=0
    if [[ $name == nginx ]]; then
        du1=$(du -sk "$CACHE_DIR" | cut -f1)
        apparent=$(du -sb --apparent-size "$CACHE_DIR" | cut -f1)
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$OBJECTS" "$th0" "$th1" "$rss0" "$rss1" \
        "$pss0" "$pss1" "$du0" "$du1" "$apparent" "$((o1 - o0 - 1))" "$fill" >>"$RESULTS/memory.tsv"
    log "$name: RSS $rss0 -> $rss1 KiB, tmpfs $du0 -> $du1 KiB, origin fetches $((o1 - o0 - 1)); $fill"

    # All clients at once, then a leader plus the rest STAGGER_MS later (a fresh URL each).
    for stagger in 0 "$STAGGER_MS"; do
        coll=$(taskset -c "$CLIENT_CPU" python3 "$HERE/collapse.py" --port "${PORT[$name]}" \
            --origin-port "$ORIGIN_PORT" --clients "$COLLAPSE_CLIENTS" --stagger-ms "$stagger" \
            --path "/slow?x=$name-$stagger-$RANDOM$RANDOM") || log "$name: collapse run had errors"
        printf '%s\t%s\t%s\n' "$name" "$stagger" "$coll" >>"$RESULTS/collapse.tsv"
        log "$name collapse (stagger ${stagger} ms): $coll"
    done
    check_alive "$name"
    stop_server "$name"
done

echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"
cp "$WORK/origin.log" "$RESULTS/" 2>/dev/null || true
for name in varnish outpost; do
    cp "$WORK/$name.log" "$RESULTS/" 2>/dev/null || true
done
cp "$WORK/nginx/error.log" "$RESULTS/nginx-error.log" 2>/dev/null || true

python3 "$HERE/report.py" "$RESULTS" | tee "$RESULTS/summary.md"
log "done: $RESULTS"
