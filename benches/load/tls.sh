#!/usr/bin/env bash
# TLS load benchmark: Outpost vs nginx (Debian's package, OpenSSL), side by side, on loopback.
#
#   bash benches/load/tls.sh
#
# Needs root (apt-get, mount, taskset). Both servers get the same ECDSA P-256 certificate and
# key (made here with `openssl req`, CN and SAN bench.test, SAN IP 127.0.0.1), one worker
# (`outpost --workers 1`, nginx `worker_processes 1`), CPU 0; clients and the sample origin
# (`outpost sample-origin`) run on CPU 1. Server CPU time is utime+stime from /proc/PID/stat of
# the server's whole process tree. TLS 1.3 (nginx allows only 1.3; Outpost negotiates it).
#
# Phase 1, both servers, interleaved (the order flips every round), ROUNDS rounds:
#   hs       a new TLS connection for every request: full TLS 1.3 handshake, one HTTP/1.1 GET of
#            a warm 1 KiB object (/bytes/1024), close. Tool: h2load in rate mode
#            (`h2load --h1 -c N -n N -r R --rate-period 10ms`: N connections, one request each,
#            R/100 new ones every 10 ms), at the same offered rate for both servers: HS_RATE,
#            or HS_LOAD_PCT % of the slower server's rate in a flood calibration run. An
#            OpenSSL client spends more CPU per handshake than the server (it verifies the
#            server's signature), so one client core cannot saturate the server: the figure
#            is CPU per handshake at equal load, and req/s is the offered rate.
#            Why h2load and not wrk: wrk with `Connection: close` reconnects with SSL_clear()
#            on its old SSL object, which keeps the session, so it resumes (PSK, no certificate,
#            no signature) on every reconnect. h2load makes a new SSL object per client and
#            never sets a session. Checked by the servers: before measuring, nginx logs
#            $ssl_session_reused for requests carrying ?tlscheck= (tlscheck.txt: one wrk and
#            one h2load run; h2load must show "." (full handshake) and one request per
#            connection on every line, or the script stops; wrk shows "r"); and during every
#            hs run, for both servers, the kernel's TCP PassiveOpens counter (/proc/net/snmp)
#            grows by one per request (tcp_accepts in runs.tsv, "accepts per req" in the
#            summary; other processes on the machine may add a few). The client is the same for both servers, so Outpost's
#            connections are full handshakes too (no PSK is ever offered).
#   hs-only  the handshake alone, no HTTP: `openssl s_time -new` (sequential, one connection
#            at a time, no resumption by construction), DURATION s.
#   h1       1 KiB hits over TLS, HTTP/1.1 keep-alive: `wrk -t1 -cCONNS` on https://.
#   h2       1 KiB hits over TLS, HTTP/2 (ALPN h2): `h2load -t1 -cCONNS -mSTREAMS -D DURATION`;
#            p50/p99 from its --log-file (per-request times), which h2load does not summarise.
# Phase 2, Outpost only: an edge (plain HTTP to the clients) in front of a shield, both on
#   CPU 0, every request a new URL (/bytes/1024?r=<run>-<counter>, wrk Lua), so both miss and
#   the shield fetches from the origin. Three modes, restarted fresh for every run, rotated:
#     http   http:// shield, `shield_secret`;
#     tls    https:// shield verified with the fleet CA (`shield_ca`), secret over TLS;
#     mtls   https:// shield with `client_ca`: the edge shows its fleet certificate
#            (`shield_client_cert` / `_key`), no secret.
#   Certificates from `outpost ca init` / `outpost ca issue`. At MISS_CONNS connections (CPU 0
#   saturated: edge+shield CPU per miss) and at 1 connection (latency: wrk p50/p99). Edges
#   keep pooled keep-alive connections to the shield (not configurable), so the handshakes are
#   amortised: `new_conns` counts the edge-to-shield connections opened during each run. The
#   handshake's own cost is measured apart: `openssl s_time -new` against the shield's TLS
#   listener, with the edge's client certificate in mtls mode (shield CPU per handshake).
#
# Each run: wait up to QUIET_WAIT s for a second in which other work uses at most NOISE_PCT %
# of CPU 0 and of CPU 1; a run during which it used more is repeated (MAX_ATTEMPTS per run,
# RETRY_BUDGET in all); the quietest attempt counts. Medians of the rounds.
# Raw output: benches/results/tls-<UTC time>/ (raw/, runs.tsv, meta.txt, tlscheck.txt,
# log.txt, summary.md); the summary is printed at the end.
# Knobs (environment): ROUNDS (3), DURATION (10), CONNS (32), STREAMS (10), HIT_BYTES (1024: the
# object of the hs, h1 and h2 cases, /bytes/HIT_BYTES), MISS_CONNS (32),
# HS_RATE (calibrated), HS_LOAD_PCT (75), PHASES ("1 2"), CASES (phase 1's, "hs hs-only h1 h2"),
# NOISE_PCT (10), MAX_ATTEMPTS (2),
# RETRY_BUDGET (12), QUIET_WAIT (10), SKIP_INSTALL=1, SKIP_BUILD=1, OUTPOST_BIN (a binary to use
# instead of building; OUTPOST_GIT names its commit in meta.txt), PERF=1 (after phase 1:
# `perf record -g -e cpu-clock` on each server during an extra hs run and an extra h2 run, not
# counted; top symbols and binaries in perf-<case>-<server>-{symbol,dso}.txt; PERF_CASES picks
# the cases, of hs, h1 and h2: "hs h2"), *_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/load
# shellcheck source=benches/load/lib.sh
source "$HERE/lib.sh"
BIN=${OUTPOST_BIN:-$ROOT/target/release/outpost}

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
MISS_CONNS=${MISS_CONNS:-32}
HS_RATE=${HS_RATE:-}
HS_LOAD_PCT=${HS_LOAD_PCT:-75}
PHASES=${PHASES:-"1 2"}
CASES=${CASES:-"hs hs-only h1 h2"}
PERF_CASES=${PERF_CASES:-"hs h2"}
NOISE_PCT=${NOISE_PCT:-10}
MAX_ATTEMPTS=${MAX_ATTEMPTS:-2}
RETRY_BUDGET=${RETRY_BUDGET:-12}
QUIET_WAIT=${QUIET_WAIT:-10}
PERF=${PERF:-}
ORIGIN_PORT=${ORIGIN_PORT:-18400}
NGINX_PORT=${NGINX_PORT:-18410}
NGINX_TLS_PORT=${NGINX_TLS_PORT:-18411}
OUTPOST_PORT=${OUTPOST_PORT:-18420}
OUTPOST_TLS_PORT=${OUTPOST_TLS_PORT:-18421}
SHIELD_PORT=${SHIELD_PORT:-18430}
SHIELD_TLS_PORT=${SHIELD_TLS_PORT:-18431}
EDGE_PORT=${EDGE_PORT:-18440}
SECRET=bench-shield-secret-0123456789
SERVER_CPU=0
CLIENT_CPU=1
SERVERS=(nginx outpost)
MODES=(http tls mtls)
# The object the hit cases (h1, h2) and hs fetch; phase 2's misses are always 1 KiB.
HIT_BYTES=${HIT_BYTES:-1024}
OBJ=/bytes/$HIT_BYTES
MISS_OBJ=/bytes/1024

declare -A PORT=([nginx]=$NGINX_PORT [outpost]=$OUTPOST_PORT)
declare -A TLS_PORT=([nginx]=$NGINX_TLS_PORT [outpost]=$OUTPOST_TLS_PORT)
declare -A PID=()
WORK=""
MOUNTED=""
SHM_DIR=""
RESULTS=""

exec 9>&2 # log() writes here even while a block's stderr is redirected
log() {
    local line
    line=$(printf '[%s] %s' "$(date -u +%H:%M:%S)" "$*")
    printf '%s\n' "$line" >&9
    if [[ -n "$RESULTS" ]]; then printf '%s\n' "$line" >>"$RESULTS/log.txt"; fi
}
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------- process helpers

# TCP connections accepted by this machine so far (PassiveOpens).
passive_opens() {
    awk '$1 == "Tcp:" && $2 ~ /^[0-9]+$/ { print $7 }' /proc/net/snmp
}

# Local ports of the established connections to a port (sorted).
conns_to() {
    ss -Htn state established "( dport = :$1 )" 2>/dev/null | awk '{ n = split($3, a, ":"); print a[n] }' | sort
}

trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

check_alive() {
    local name=$1
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
        log "$name (pid ${PID[$name]}) is gone; its log:"
        cat "$WORK/$name.log" "$WORK/nginx/error.log" 2>/dev/null | tail -50 >&2 || true
        die "$name exited unexpectedly"
    fi
}

# ---------------------------------------------------------------- servers

start_nginx() {
    local d=$WORK/nginx
    rm -rf "$d"
    mkdir -p "$d"
    find "$CACHE_DIR" -mindepth 1 -delete
    sed -e "s|@WORK@|$d|g" -e "s|@CACHE_DIR@|$CACHE_DIR|g" -e "s|@PORT@|$NGINX_PORT|g" \
        -e "s|@TLS_PORT@|$NGINX_TLS_PORT|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        -e "s|@USER@|$NGINX_USER|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" \
        "$HERE/nginx-tls.conf.in" >"$d/nginx.conf"
    nginx -t -q -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" || die "nginx config test failed"
    taskset -c "$SERVER_CPU" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' \
        >"$d/stdout.log" 2>&1 &
    PID[nginx]=$!
    wait_port "$NGINX_PORT" || die "nginx did not start: $(cat "$d/error.log")"
    wait_port "$NGINX_TLS_PORT" || die "nginx TLS did not start: $(cat "$d/error.log")"
}

start_outpost() {
    local f=$WORK/outpost.toml
    sed -e "s|@PORT@|$OUTPOST_PORT|g" -e "s|@TLS_PORT@|$OUTPOST_TLS_PORT|g" \
        -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" \
        "$HERE/outpost-tls.toml.in" >"$f"
    "$BIN" check-config "$f" >/dev/null || die "outpost check-config failed for $f"
    OUTPOST_LOG=${OUTPOST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --workers 1 run --config "$f" \
        >"$WORK/outpost.log" 2>&1 &
    PID[outpost]=$!
    wait_port "$OUTPOST_PORT" || die "outpost did not start: $(cat "$WORK/outpost.log")"
    wait_port "$OUTPOST_TLS_PORT" || die "outpost TLS did not start: $(cat "$WORK/outpost.log")"
}

# Config of one role (shield, edge) in one mode (http, tls, mtls): the template's lines tagged
# with the mode are kept, the other tagged lines stay comments.
mode_config() {
    local role=$1 mode=$2 f=$WORK/$1-$2.toml
    sed -E -e "s/^#\[([a-z,]*,)?$mode(,[a-z,]*)?\] //" -e "s|@FLEET@|$FLEET|g" \
        -e "s|@SECRET@|$SECRET|g" -e "s|@SHIELD_PORT@|$SHIELD_PORT|g" \
        -e "s|@SHIELD_TLS_PORT@|$SHIELD_TLS_PORT|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
        -e "s|@EDGE_PORT@|$EDGE_PORT|g" "$HERE/$role-tls.toml.in" >"$f"
    "$BIN" check-config "$f" >/dev/null || die "outpost check-config failed for $f"
    echo "$f"
}

start_tier() {
    local mode=$1 sf ef
    sf=$(mode_config shield "$mode")
    ef=$(mode_config edge "$mode")
    OUTPOST_LOG=${OUTPOST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --workers 1 run --config "$sf" \
        >"$WORK/shield.log" 2>&1 &
    PID[shield]=$!
    if [[ $mode == http ]]; then
        wait_port "$SHIELD_PORT" || die "shield did not start: $(cat "$WORK/shield.log")"
    else
        wait_port "$SHIELD_TLS_PORT" || die "shield did not start: $(cat "$WORK/shield.log")"
    fi
    OUTPOST_LOG=${OUTPOST_LOG:-warn} taskset -c "$SERVER_CPU" "$BIN" --workers 1 run --config "$ef" \
        >"$WORK/edge.log" 2>&1 &
    PID[edge]=$!
    wait_port "$EDGE_PORT" || die "edge did not start: $(cat "$WORK/edge.log")"
}

# Does a GET of the path (plain listener) come from the server's cache?
is_hit() {
    local name=$1 path=$2 h
    h=$(curl -s -m 10 -D - -o /dev/null "http://127.0.0.1:${PORT[$name]}$path" | tr -d '\r' | tr '[:upper:]' '[:lower:]')
    case $name in
        nginx) grep -q '^x-cache-status: hit$' <<<"$h" ;;
        outpost) grep -Eq '^cache-status: [^;]*; *hit(;|$)' <<<"$h" ;;
    esac
}

warm() {
    local name=$1 path=$2
    for _ in $(seq 20); do
        if is_hit "$name" "$path"; then
            return 0
        fi
        sleep 0.1
    done
    die "$name: $path is still not a cache hit after 20 requests"
}

# ---------------------------------------------------------------- measuring

# Wait (at most QUIET_WAIT s) for a second in which nothing else uses more than NOISE_PCT %
# of either benchmark CPU (with the servers idle, everything busy there is someone else).
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
            log "CPUs busy with other work (cpu$SERVER_CPU $((a1 - a0)), cpu$CLIENT_CPU $((c1 - c0)) ticks/s); measuring anyway"
            return 0
        fi
    done
}

# Fields from a client's output: "requests elapsed_s rps p50_ms p99_ms mean_ms errors".
parse_output() {
    local tool=$1 f=$2
    awk -v tool="$tool" '
        function ms(v) { # milliseconds from 123us, 1.5ms, 2.01s
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
            return "-"
        }
        BEGIN { req = "-"; el = "-"; rps = "-"; p50 = "-"; p99 = "-"; mean = "-"; err = 0 }
        tool == "wrk" && / requests in / { req = $1; el = $4; sub(/s,?$/, "", el) }
        tool == "wrk" && /^Requests\/sec:/ { rps = $2 }
        tool == "wrk" && /^ +50%/ { p50 = ms($2) }
        tool == "wrk" && /^ +99%/ { p99 = ms($2) }
        tool == "wrk" && /^ +Latency / { mean = ms($2) }
        tool == "wrk" && /^ +Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        tool == "wrk" && /^ +Non-2xx/ { err += $NF }
        tool == "h2load" && /^finished in / { el = $3; sub(/s,$/, "", el); rps = $4 }
        tool == "h2load" && /^requests: / { req = $8; err += $10 + $12 + $14 }
        tool == "h2load" && /^status codes: / { err += $5 + $7 + $9 }
        tool == "h2load" && /^time for request: / { mean = ms($6) }
        tool == "stime" && / connections in .* real seconds/ { req = $1 }
        END { print req, el, rps, p50, p99, mean, err }' "$f"
}

# "p50_ms p99_ms" of the per-request times (third column, µs) in an h2load --log-file.
log_percentiles() {
    cut -f3 "$1" | sort -n | awk '{ v[NR] = $1 }
        END { if (NR == 0) { print "- -"; exit }
              i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
              i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
              printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }'
}

# One measured client run.
#   measure CASE SERVER ROUND ATTEMPT TOOL ROLES SHIELD_PORT -- command...
# ROLES: "name:pid,..." of the server processes whose CPU counts (their whole trees).
# SHIELD_PORT: count the connections opened to it during the run, and those open at its end
# ("-": none).
# Appends a row to runs.tsv; sets OTHER_PCT (the larger share of CPU 0 or CPU 1, in percent
# of one CPU, used by anything but the servers, the client and the origin) and LAST_ROW.
measure() {
    local case=$1 server=$2 round=$3 attempt=$4 tool=$5 roles=$6 sport=$7
    shift 8
    local f=raw/${case}-${server}-r${round}-a${attempt}.txt
    local rp role pid ticks=0 detail="" po0 po1 b0s b0c b1s b1c creal cuser csys
    for rp in ${roles//,/ }; do
        role=${rp%%:*}
        pid=${rp#*:}
        # shellcheck disable=SC2046
        cpu_snapshot $(tree_pids "$pid") >"$WORK/cpu0-$role"
    done
    # shellcheck disable=SC2046
    cpu_snapshot $(tree_pids "${PID[origin]}") >"$WORK/cpu0-origin"
    local before_conns="" after_conns=""
    if [[ $sport != - ]]; then before_conns=$(conns_to "$sport"); fi
    po0=$(passive_opens)
    read -r b0s b0c < <(busy_ticks)
    TIMEFORMAT='%3R %3U %3S'
    { time "$@" >"$RESULTS/$f" 2>&1; } 2>"$WORK/time" || true
    read -r b1s b1c < <(busy_ticks)
    po1=$(passive_opens)
    if [[ $sport != - ]]; then after_conns=$(conns_to "$sport"); fi
    for rp in ${roles//,/ }; do
        role=${rp%%:*}
        pid=${rp#*:}
        # shellcheck disable=SC2046
        cpu_snapshot $(tree_pids "$pid") >"$WORK/cpu1-$role"
        local t
        t=$(cpu_delta "$WORK/cpu0-$role" "$WORK/cpu1-$role")
        ticks=$((ticks + t))
        detail="${detail:+$detail,}$role:$t"
    done
    # shellcheck disable=SC2046
    cpu_snapshot $(tree_pids "${PID[origin]}") >"$WORK/cpu1-origin"
    local oticks
    oticks=$(cpu_delta "$WORK/cpu0-origin" "$WORK/cpu1-origin")
    read -r creal cuser csys <"$WORK/time"
    local new_conns=- pool=-
    if [[ $sport != - ]]; then
        new_conns=$(comm -13 <(echo "$before_conns") <(echo "$after_conns") | grep -c . || true)
        pool=$(grep -c . <<<"$after_conns" || true)
    fi
    local req el rps p50 p99 mean err
    read -r req el rps p50 p99 mean err < <(parse_output "$tool" "$RESULTS/$f")
    if [[ $tool == h2load && -s $WORK/h2load.log ]]; then
        read -r p50 p99 < <(log_percentiles "$WORK/h2load.log")
        rm -f "$WORK/h2load.log"
    fi
    if [[ $tool == stime ]]; then
        el=$creal
        rps=$(awk -v n="$req" -v t="$creal" 'BEGIN { if (n ~ /^[0-9]+$/ && t > 0) printf "%.1f", n / t; else print "-" }')
    fi
    OTHER_PCT=$(awk -v t="$ticks" -v o="$oticks" -v bs="$((b1s - b0s))" -v bc="$((b1c - b0c))" \
        -v hz="$CLK_TCK" -v r="$creal" -v u="$cuser" -v s="$csys" \
        'BEGIN { o0 = (bs - t) / hz / r; o1 = (bc - o) / hz / r - (u + s) / r;
                 x = o0 > o1 ? o0 : o1; if (x < 0) x = 0; printf "%d", x * 100 + 0.5 }')
    LAST_ROW=$(printf '%s\t' "$case" "$server" "$round" "$attempt" "$f" "$req" "$el" "$rps" \
        "$ticks" "$detail" "$CLK_TCK" "$p50" "$p99" "$mean" "$err" "$((po1 - po0))" "$new_conns" \
        "$pool" "$creal" "$cuser" "$csys" "$oticks" "$((b1s - b0s))" "$((b1c - b0c))")
    LAST_ROW="${LAST_ROW}${OTHER_PCT}"
    printf '%s\n' "$LAST_ROW" >>"$RESULTS/runs.tsv"
    local per note=""
    per=$(awk -v n="$req" -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { if (t > 0 && n ~ /^[0-9]+$/) printf "%.0f", n / (t / hz); else print "-" }')
    if [[ $attempt -gt 1 ]]; then note=" (attempt $attempt)"; fi
    if [[ $err != 0 ]]; then note="$note, $err errors"; fi
    log "round $round $case $server: $req req, ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms; cpu $detail ticks = $per req per CPU-s; accepts $((po1 - po0)); other load ${OTHER_PCT}%$note"
}

# measure, repeated while other load was above NOISE_PCT (within the attempt budgets).
measured() {
    local case=$1 server=$2 round=$3
    shift 3
    local attempt=1
    while :; do
        wait_quiet
        measure "$case" "$server" "$round" "$attempt" "$@"
        if [[ $OTHER_PCT -le $NOISE_PCT || $attempt -ge $MAX_ATTEMPTS || $RETRIES_LEFT -le 0 ]]; then
            break
        fi
        RETRIES_LEFT=$((RETRIES_LEFT - 1))
        attempt=$((attempt + 1))
    done
}

# The client (on CPU 1) of a phase-1 case against a server; sets CLIENT_CMD.
#   client_cmd CASE SERVER
# hs: HS_N connections of one request each, HS_RATE/s. h2: per-request times go to
# $WORK/h2load.log (--log-file), which give the percentiles h2load does not print.
client_cmd() {
    local url="https://127.0.0.1:${TLS_PORT[$2]}$OBJ"
    case $1 in
        hs) CLIENT_CMD=(h2load -t1 --h1 -c "$HS_N" -n "$HS_N" -r "$((HS_RATE / 100))"
                --rate-period 10ms "$url") ;;
        hs-only) CLIENT_CMD=(openssl s_time -connect "127.0.0.1:${TLS_PORT[$2]}" -new -time "$DURATION") ;;
        h1) CLIENT_CMD=(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url") ;;
        h2) CLIENT_CMD=(h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" --log-file="$WORK/h2load.log" "$url") ;;
    esac
    CLIENT_CMD=(taskset -c "$CLIENT_CPU" "${CLIENT_CMD[@]}")
}

# ---------------------------------------------------------------- setup

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, mount, taskset on servers)"
[[ $(nproc) -ge 2 ]] || die "needs at least 2 CPUs"

if [[ -z "${SKIP_INSTALL:-}" ]]; then
    pkgs=()
    command -v nginx >/dev/null || pkgs+=(nginx)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v h2load >/dev/null || pkgs+=(nghttp2-client)
    command -v openssl >/dev/null || pkgs+=(openssl)
    if [[ -n "$PERF" ]] && ! command -v perf >/dev/null; then pkgs+=(linux-perf); fi
    if [[ ${#pkgs[@]} -gt 0 ]]; then
        log "installing ${pkgs[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}"
    fi
fi
for tool in nginx wrk h2load openssl curl python3 taskset ps awk ss comm; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if [[ -n "$PERF" ]]; then command -v perf >/dev/null || die "perf not found"; fi

if [[ -z "${SKIP_BUILD:-}" && -z "${OUTPOST_BIN:-}" ]]; then
    log "cargo build --release --bin outpost"
    (cd "$ROOT" && cargo build --release --bin outpost) || die "cargo build --release --bin outpost failed"
fi
[[ -x "$BIN" ]] || die "$BIN missing"

for p in "$ORIGIN_PORT" "$NGINX_PORT" "$NGINX_TLS_PORT" "$OUTPOST_PORT" "$OUTPOST_TLS_PORT" \
    "$SHIELD_PORT" "$SHIELD_TLS_PORT" "$EDGE_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is already in use"
    fi
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/outpost-tls.XXXXXX)
chmod 755 "$WORK"
# A private copy, so a rebuild of target/release during the run can't mix two builds.
cp "$BIN" "$WORK/outpost"
SRC_BIN=$BIN
BIN=$WORK/outpost
CACHE_DIR=$WORK/nginx-cache
mkdir -p "$CACHE_DIR"
if mount -t tmpfs -o size=512m,mode=0755 outpost-tls-nginx "$CACHE_DIR"; then
    MOUNTED=$CACHE_DIR
else
    log "cannot mount a tmpfs; using /dev/shm for the nginx cache"
    CACHE_DIR=$(mktemp -d /dev/shm/outpost-tls-nginx.XXXXXX)
    SHM_DIR=$CACHE_DIR
fi
NGINX_USER=www-data
id "$NGINX_USER" >/dev/null 2>&1 || NGINX_USER=nobody
chown "$NGINX_USER" "$CACHE_DIR"

# The servers' certificate: ECDSA P-256, self-signed, for bench.test and 127.0.0.1.
CERT=$WORK/bench.test.pem
KEY=$WORK/bench.test.key
bench_cert "$CERT" "$KEY" || die "openssl req failed"
chmod 644 "$KEY" # the key is a throwaway; nginx's master reads it as root anyway
# The fleet CA and node certificates for phase 2.
FLEET=$WORK/fleet
"$BIN" ca init --dir "$FLEET" >/dev/null || die "outpost ca init failed"
"$BIN" ca issue shield --dir "$FLEET" --ip 127.0.0.1 >/dev/null || die "outpost ca issue shield failed"
"$BIN" ca issue edge --dir "$FLEET" >/dev/null || die "outpost ca issue edge failed"

RESULTS=$ROOT/benches/results/tls-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS/raw"
CLK_TCK=$(getconf CLK_TCK)
RETRIES_LEFT=$RETRY_BUDGET
printf 'case\tserver\tround\tattempt\traw\trequests\telapsed_s\trps\tserver_ticks\tticks_by_role\tclk_tck\tp50_ms\tp99_ms\tmean_ms\terrors\ttcp_accepts\tnew_conns\tpooled_conns\tclient_real_s\tclient_user_s\tclient_sys_s\torigin_ticks\tcpu0_busy_ticks\tcpu1_busy_ticks\tother_pct\n' \
    >"$RESULTS/runs.tsv"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "command: bash benches/load/tls.sh"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel: $(uname -sr)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(nginx -V 2>&1 | grep -o 'built with OpenSSL [^ ]*' || true)"
    echo "openssl: $(openssl version)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    echo "h2load: $(h2load --version 2>&1 | head -1)"
    if [[ -n "${OUTPOST_BIN:-}" ]]; then
        echo "outpost: $("$BIN" --version), sha256 $(sha256sum "$BIN" | cut -c1-12), $SRC_BIN (git ${OUTPOST_GIT:-unknown})"
    else
        echo "outpost: $("$BIN" --version), sha256 $(sha256sum "$BIN" | cut -c1-12), built here (git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- edge-node origin-shield src agent 2>/dev/null || echo ', uncommitted changes in the tree'))"
    fi
    echo "rounds: $ROUNDS; duration: ${DURATION}s; conns: $CONNS; streams: $STREAMS; miss conns: $MISS_CONNS; phases: $PHASES"
    echo "noise: retry a run if other processes used > ${NOISE_PCT}% of a benchmark CPU (max $MAX_ATTEMPTS attempts, $RETRY_BUDGET retries in all; wait up to ${QUIET_WAIT}s for quiet)"
    echo "clk_tck: $CLK_TCK"
    echo "certificate: $(openssl x509 -in "$CERT" -noout -subject -ext subjectAltName 2>/dev/null | tr '\n' ' '), key $(openssl pkey -in "$KEY" -noout -text 2>/dev/null | grep -m1 -o 'ASN1 OID: .*\|NIST CURVE: .*' || true)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RESULTS/meta.txt"
log "results in $RESULTS"

start_origin

# ---------------------------------------------------------------- phase 1: nginx vs outpost

if [[ " $PHASES " == *" 1 "* ]]; then
    for name in "${SERVERS[@]}"; do
        "start_$name"
        warm "$name" "$OBJ"
        check_alive "$name"
    done
    # What was negotiated (each client, each server).
    for name in "${SERVERS[@]}"; do
        {
            echo "== $name: openssl s_client (wrk's and s_time's library defaults)"
            openssl s_client -connect "127.0.0.1:${TLS_PORT[$name]}" -servername bench.test -brief \
                </dev/null 2>&1 | grep -E 'Protocol version|Ciphersuite|Peer signature type|Server Temp Key|Negotiated' || true
            echo "== $name: h2load --h1"
            taskset -c "$CLIENT_CPU" h2load -t1 --h1 -c1 -n1 "https://127.0.0.1:${TLS_PORT[$name]}$OBJ" 2>&1 |
                grep -E '^(TLS Protocol|Cipher|Server Temp Key|Application protocol)' || true
            echo "== $name: h2load (h2)"
            taskset -c "$CLIENT_CPU" h2load -t1 -c1 -n1 "https://127.0.0.1:${TLS_PORT[$name]}$OBJ" 2>&1 |
                grep -E '^(TLS Protocol|Cipher|Server Temp Key|Application protocol)' || true
        } >>"$RESULTS/negotiated.txt"
    done
    grep -q 'TLSv1.3' "$RESULTS/negotiated.txt" || die "no TLS 1.3 negotiated: $(cat "$RESULTS/negotiated.txt")"

    # Does the client do a full handshake for every request? nginx tells, per connection.
    {
        check=$WORK/nginx/tlscheck.log
        : >"$check"
        echo "== wrk -c8 -d2s with Connection: close (not used: resumes)"
        cat >"$WORK/close.lua" <<'EOF'
wrk.headers["Connection"] = "close"
EOF
        taskset -c "$CLIENT_CPU" wrk -t1 -c8 -d2s -s "$WORK/close.lua" \
            "https://127.0.0.1:$NGINX_TLS_PORT$OBJ?tlscheck=wrk" 2>&1 | grep -E 'requests in' || true
        sleep 0.5
        echo "lines (requests): $(wc -l <"$check"); connections: $(awk '{print $1}' "$check" | sort -u | wc -l); resumed (r): $(awk '$6 == "r"' "$check" | wc -l); full (.): $(awk '$6 == "."' "$check" | wc -l)"
        : >"$check"
        echo "== h2load --h1 -c 1000 -n 1000 -r 10 --rate-period 10ms (used for hs)"
        taskset -c "$CLIENT_CPU" h2load -t1 --h1 -c 1000 -n 1000 -r 10 --rate-period 10ms \
            "https://127.0.0.1:$NGINX_TLS_PORT$OBJ?tlscheck=h2load" 2>&1 | grep -E '^requests:' || true
        sleep 0.5
        echo "lines (requests): $(wc -l <"$check"); connections: $(awk '{print $1}' "$check" | sort -u | wc -l); resumed (r): $(awk '$6 == "r"' "$check" | wc -l); full (.): $(awk '$6 == "."' "$check" | wc -l); requests per connection > 1: $(awk '$2 != 1' "$check" | wc -l)"
        echo "sample lines (connection, its request number, protocol, cipher, curve, reused, HTTP, status):"
        head -3 "$check"
    } >"$RESULTS/tlscheck.txt" 2>&1
    hs_full=$(awk '/^lines/ { n++ } n == 2 && /^lines/ { print }' "$RESULTS/tlscheck.txt")
    log "handshake check (nginx): $hs_full"
    if ! grep -Eq 'resumed \(r\): 0; full \(\.\): 1000; requests per connection > 1: 0' <<<"$hs_full"; then
        die "h2load did not make 1000 full handshakes of one request each: see $RESULTS/tlscheck.txt"
    fi

    # Untimed warm-up of every case, and the handshake rate (flood: as fast as h2load can).
    for name in "${SERVERS[@]}"; do
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "https://127.0.0.1:${TLS_PORT[$name]}$OBJ" >/dev/null 2>&1 || true
        taskset -c "$CLIENT_CPU" h2load -t1 -c"$CONNS" -m"$STREAMS" -D2 "https://127.0.0.1:${TLS_PORT[$name]}$OBJ" >/dev/null 2>&1 || true
        taskset -c "$CLIENT_CPU" h2load -t1 --h1 -c 4000 -n 4000 -r 300 --rate-period 10ms \
            "https://127.0.0.1:${TLS_PORT[$name]}$OBJ" >"$RESULTS/raw/calibrate-$name.txt" 2>&1 || true
        check_alive "$name"
    done
    if [[ -z "$HS_RATE" ]]; then
        HS_RATE=$(awk -v pct="$HS_LOAD_PCT" '/^finished in/ { r = $4 + 0; if (min == "" || r < min) min = r }
            END { x = int(min * pct / 100 / 100) * 100; if (x < 100) x = 100; print x }' \
            "$RESULTS"/raw/calibrate-*.txt)
        log "handshake flood: $(awk '/^finished in/ { printf "%s %s req/s; ", FILENAME, $4 }' "$RESULTS"/raw/calibrate-*.txt | sed "s|$RESULTS/raw/calibrate-||g; s|\.txt||g")offered rate for hs: $HS_RATE/s (${HS_LOAD_PCT}% of the slower)"
    fi
    HS_N=$((HS_RATE * DURATION))
    echo "hs: h2load --h1 -c $HS_N -n $HS_N -r $((HS_RATE / 100)) --rate-period 10ms (offered $HS_RATE new connections/s)" >>"$RESULTS/meta.txt"

    read -r -a CASE_LIST <<<"$CASES"
    log "phase 1: ${ROUNDS} rounds x ${#CASE_LIST[@]} cases x 2 servers x ${DURATION}s"
    for round in $(seq "$ROUNDS"); do
        order=("${SERVERS[@]}")
        if ((round % 2 == 0)); then order=(outpost nginx); fi
        for case in "${CASE_LIST[@]}"; do
            for name in "${order[@]}"; do
                roles="$name:${PID[$name]}"
                case $case in
                    hs | h2) tool=h2load ;;
                    hs-only) tool=stime ;;
                    h1) tool=wrk ;;
                esac
                client_cmd "$case" "$name"
                rm -f "$WORK/h2load.log"
                measured "$case" "$name" "$round" "$tool" "$roles" - -- "${CLIENT_CMD[@]}"
                check_alive "$name"
            done
        done
    done

    if [[ -n "$PERF" ]]; then
        for pcase in $PERF_CASES; do
            for name in "${SERVERS[@]}"; do
                log "perf record -g on $name during a $pcase run"
                data=$WORK/perf-$pcase-$name.data
                perf record -g -e cpu-clock -o "$data" -p "$(tree_pids "${PID[$name]}" | paste -sd,)" \
                    >/dev/null 2>&1 &
                perf_pid=$!
                sleep 0.5
                client_cmd "$pcase" "$name"
                "${CLIENT_CMD[@]}" >"$RESULTS/raw/perf-$pcase-$name.txt" 2>&1 || true
                rm -f "$WORK/h2load.log"
                kill -INT "$perf_pid" 2>/dev/null || true
                wait "$perf_pid" 2>/dev/null || true
                # Self time per symbol, then per binary (dso).
                for key in symbol dso; do
                    perf report -i "$data" --no-children --sort "$key" --stdio 2>/dev/null |
                        grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' |
                        head -40 >"$RESULTS/perf-$pcase-$name-$key.txt" || true
                done
                rm -f "$data"
            done
        done
    fi

    for name in "${SERVERS[@]}"; do
        stop_server "$name"
    done
    cp "$WORK/outpost.log" "$RESULTS/" 2>/dev/null || true
    cp "$WORK/nginx/error.log" "$RESULTS/nginx-error.log" 2>/dev/null || true
fi

# ---------------------------------------------------------------- phase 2: edge to shield, misses

if [[ " $PHASES " == *" 2 "* ]]; then
    cat >"$WORK/miss.lua" <<'EOF'
-- Every request a new URL: /bytes/1024?r=<run>-<counter>.
local n = 0
local run = os.getenv("MISS_RUN") or tostring(os.time())
request = function()
    n = n + 1
    return wrk.format("GET", "/bytes/1024?r=" .. run .. "-" .. n)
end
EOF
    log "phase 2: edge to shield on misses, ${ROUNDS} rounds x 3 modes x (c$MISS_CONNS, c1) x ${DURATION}s, and the shield's handshakes alone"
    for round in $(seq "$ROUNDS"); do
        # Rotate the modes' order every round.
        order=()
        for i in 0 1 2; do order+=("${MODES[$(((i + round - 1) % 3))]}"); done
        for mode in "${order[@]}"; do
            start_tier "$mode"
            sport=$SHIELD_TLS_PORT
            if [[ $mode == http ]]; then sport=$SHIELD_PORT; fi
            # The miss goes through the shield; the shield admits only what the mode says.
            h=$(curl -s -m 10 -D - -o /dev/null "http://127.0.0.1:$EDGE_PORT$MISS_OBJ?r=check-$mode-$round" | tr -d '\r')
            if ! grep -q '^cache-status: outpost-shield; fwd=miss' <<<"$h" ||
                ! grep -q '^cache-status: outpost-edge; fwd=miss' <<<"$h"; then
                die "$mode: a miss did not go through the shield: $h"
            fi
            if [[ $round -eq 1 ]]; then
                case $mode in
                    http) code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SHIELD_PORT$MISS_OBJ") ;;
                    tls) code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert "$FLEET/ca.pem" "https://127.0.0.1:$SHIELD_TLS_PORT$MISS_OBJ") ;;
                    mtls) code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' --cacert "$FLEET/ca.pem" "https://127.0.0.1:$SHIELD_TLS_PORT$MISS_OBJ" || true) ;;
                esac
                log "$mode: a request straight to the shield without secret or client certificate: HTTP $code (000: refused in the handshake)"
            fi
            # Untimed: the pool to the shield filled, the first requests out of the way.
            MISS_RUN="warm-$mode-$round-$RANDOM" taskset -c "$CLIENT_CPU" wrk -t1 -c"$MISS_CONNS" -d2s -s "$WORK/miss.lua" \
                "http://127.0.0.1:$EDGE_PORT/" >/dev/null 2>&1 || true
            roles="edge:${PID[edge]},shield:${PID[shield]}"
            for c in "$MISS_CONNS" 1; do
                export MISS_RUN="$mode-$round-c$c-$RANDOM$RANDOM"
                measured "miss-c$c" "$mode" "$round" wrk "$roles" "$sport" -- taskset -c "$CLIENT_CPU" \
                    wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$WORK/miss.lua" "http://127.0.0.1:$EDGE_PORT/"
                check_alive edge
                check_alive shield
            done
            if [[ $mode != http ]]; then
                cert=()
                if [[ $mode == mtls ]]; then cert=(-cert "$FLEET/edge.pem" -key "$FLEET/edge.key"); fi
                measured shield-hs "$mode" "$round" stime "shield:${PID[shield]}" - -- taskset -c "$CLIENT_CPU" \
                    openssl s_time -connect "127.0.0.1:$SHIELD_TLS_PORT" -new -time "$DURATION" \
                    -CAfile "$FLEET/ca.pem" "${cert[@]}"
                check_alive shield
            fi
            stop_server edge
            stop_server shield
            cp "$WORK/shield.log" "$RESULTS/shield-$mode.log" 2>/dev/null || true
            cp "$WORK/edge.log" "$RESULTS/edge-$mode.log" 2>/dev/null || true
        done
    done
fi

echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RESULTS/meta.txt"
cp "$WORK/origin.log" "$RESULTS/" 2>/dev/null || true

# ---------------------------------------------------------------- summary

python3 - "$RESULTS" "${HS_RATE:-}" "$CONNS" "$STREAMS" "$HIT_BYTES" <<'EOF' | tee "$RESULTS/summary.md"
import csv, statistics, sys
from collections import defaultdict

results, hs_rate, conns, streams = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
hit_bytes = int(sys.argv[5])
size = f"{hit_bytes // 1024} KiB" if hit_bytes % 1024 == 0 else f"{hit_bytes} B"
rows = list(csv.DictReader(open(f"{results}/runs.tsv"), delimiter="\t"))

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

# The quietest attempt of each (case, server, round).
best = {}
for r in rows:
    k = (r["case"], r["server"], r["round"])
    if k not in best or int(r["other_pct"]) < int(best[k]["other_pct"]):
        best[k] = r
runs = defaultdict(list)
for (case, server, _), r in sorted(best.items(), key=lambda kv: int(kv[0][2])):
    runs[(case, server)].append(r)

def per_cpu(r):
    n, t = num(r["requests"]), num(r["server_ticks"])
    return n / (t / float(r["clk_tck"])) if n and t else None

def role_us(r, role):
    n = num(r["requests"])
    for part in r["ticks_by_role"].split(","):
        name, t = part.split(":")
        if name == role and n:
            return float(t) / float(r["clk_tck"]) / n * 1e6
    return None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def f0(x):
    return "-" if x is None else f"{x:,.0f}"

def f2(x):
    return "-" if x is None else f"{x:.2f}"

def cpu_pct(r):
    t, el = num(r["server_ticks"]), num(r["client_real_s"])
    return t / float(r["clk_tck"]) / el * 100 if t is not None and el else None

out = []
labels = {
    "hs": f"new TLS connection per request (h2load --h1, {hs_rate}/s offered)",
    "hs-only": "TLS handshake only (openssl s_time -new)",
    "h1": f"{size} hits, HTTP/1.1 over TLS (wrk -c{conns})",
    "h2": f"{size} hits, HTTP/2 over TLS (h2load -c{conns} -m{streams})",
}
cases = [c for c in labels if (c, "nginx") in runs or (c, "outpost") in runs]
if cases:
    out.append("### Outpost vs nginx over TLS (medians of the rounds)\n")
    out.append("| case | server | req/s | server CPU % | req per server CPU-s | µs CPU per req | p50 / p99 or mean ms | accepts per req | errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for c in cases:
        pcs = {}
        for s in ("nginx", "outpost"):
            rs = runs.get((c, s), [])
            if not rs:
                continue
            pc = med([per_cpu(r) for r in rs])
            pcs[s] = (pc, [per_cpu(r) for r in rs])
            rps = med([num(r["rps"]) for r in rs])
            if c == "h1" or (c == "h2" and med([num(r["p99_ms"]) for r in rs]) is not None):
                lat = f"{f2(med([num(r['p50_ms']) for r in rs]))} / {f2(med([num(r['p99_ms']) for r in rs]))}"
            elif c in ("hs", "h2"):
                lat = f"{f2(med([num(r['mean_ms']) for r in rs]))} (mean)"
            else:
                lat = "-"
            acc = med([num(r["tcp_accepts"]) / num(r["requests"]) for r in rs if num(r["requests"])]) if c in ("hs", "hs-only") else None
            errs = sum(int(r["errors"]) for r in rs)
            out.append(f"| {labels[c]} | {s} | {f0(rps)} | {f0(med([cpu_pct(r) for r in rs]))} | {f0(pc)} | "
                       f"{f0(1e6 / pc if pc else None)} | {lat} | {f2(acc) if acc is not None else '-'} | {errs} |")
        if "nginx" in pcs and "outpost" in pcs and pcs["nginx"][0]:
            per_round = [o / n for o, n in zip(pcs["outpost"][1], pcs["nginx"][1]) if o and n]
            ratios.append((c, pcs["outpost"][0] / pcs["nginx"][0], per_round))
    out.append("")
    out.append("| case | Outpost / nginx, req per server CPU-s | per round |")
    out.append("|---|---:|---|")
    for c, r, pr in ratios:
        out.append(f"| {labels[c]} | {r:.2f}x | {', '.join(f'{x:.2f}' for x in pr)} |")
    out.append("")

miss = sorted({r["case"] for r in rows if r["case"].startswith("miss-")}, key=lambda c: -int(c[6:]))
if miss:
    out.append("### Edge to shield on a miss (Outpost; medians of the rounds)\n")
    out.append("| mode | conns | misses/s | p50 ms | p99 ms | edge µs CPU/miss | shield µs CPU/miss | edge+shield µs CPU/miss | misses per edge+shield CPU-s | edge-shield conns: new during run / open at end |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = {}
    for c in miss:
        for m in ("http", "tls", "mtls"):
            rs = runs.get((c, m), [])
            if not rs:
                continue
            pc = med([per_cpu(r) for r in rs])
            tot = 1e6 / pc if pc else None
            p50 = med([num(r["p50_ms"]) for r in rs])
            p99 = med([num(r["p99_ms"]) for r in rs])
            if m == "http":
                base[c] = (tot, p50, p99)
            delta = ""
            if m != "http" and c in base and tot is not None and base[c][0] is not None:
                delta = f" ({tot - base[c][0]:+.1f})"
            out.append(f"| {m} | {c[6:]} | {f0(med([num(r['rps']) for r in rs]))} | {f2(p50)} | {f2(p99)} | "
                       f"{f2(med([role_us(r, 'edge') for r in rs]))} | {f2(med([role_us(r, 'shield') for r in rs]))} | "
                       f"{f2(tot)}{delta} | {f0(pc)} | {', '.join(r['new_conns'] + '/' + r['pooled_conns'] for r in rs)} |")
    out.append("")
hs = [m for m in ("tls", "mtls") if ("shield-hs", m) in runs]
if hs:
    out.append("Shield handshakes alone (`openssl s_time -new`; mtls: with the edge's client certificate):\n")
    out.append("| mode | handshakes/s | shield µs CPU per handshake | shield CPU % |")
    out.append("|---|---:|---:|---:|")
    for m in hs:
        rs = runs[("shield-hs", m)]
        pc = med([per_cpu(r) for r in rs])
        out.append(f"| {m} | {f0(med([num(r['rps']) for r in rs]))} | {f2(1e6 / pc if pc else None)} | {f0(med([cpu_pct(r) for r in rs]))} |")
    out.append("")
retried = sum(1 for r in rows if int(r["attempt"]) > 1)
noisy = [r for r in best.values() if int(r["other_pct"]) > 10]
out.append(f"{len(rows)} runs, {retried} of them retries for noise; {len(noisy)} counted runs had other load above 10% of a CPU.")
print("\n".join(out))
EOF
log "done: $RESULTS"
