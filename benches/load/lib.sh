# Shared by the load benchmarks (run.sh, tls.sh): CPU accounting, starting and stopping
# servers, clean-up. Sourced after the caller has set its globals: PID (associative array of
# running servers), WORK (temp dir), MOUNTED and SHM_DIR (tmpfs, if any), BIN (outpost),
# ORIGIN_PORT, SERVER_CPU, CLIENT_CPU, and a die() function.
# shellcheck shell=bash
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh" # bench_cert, flame_graph

# Busy ticks (everything but idle and iowait) of the server and client CPUs: "cpu0 cpu1".
busy_ticks() {
    awk '$1 == "cpu'"$SERVER_CPU"'" { a = $2 + $3 + $4 + $7 + $8 + $9 }
         $1 == "cpu'"$CLIENT_CPU"'" { b = $2 + $3 + $4 + $7 + $8 + $9 }
         END { print a, b }' /proc/stat
}

# Stop one process tree we started: SIGTERM to its root, then SIGKILL to what is left.
stop_tree() {
    local root=$1 pids p
    pids=$(tree_pids "$root")
    [[ -n "$pids" ]] || return 0
    kill -TERM "$root" 2>/dev/null || true
    for _ in $(seq 50); do
        local alive=""
        for p in $pids; do
            if kill -0 "$p" 2>/dev/null; then alive="$alive $p"; fi
        done
        if [[ -z "$alive" ]]; then break; fi
        sleep 0.1
    done
    for p in $pids; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait "$root" 2>/dev/null || true
}

stop_server() {
    local name=$1
    if [[ -n "${PID[$name]:-}" ]]; then
        stop_tree "${PID[$name]}"
        unset "PID[$name]"
    fi
}

wait_port() {
    local port=$1
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_origin() {
    taskset -c "$CLIENT_CPU" "$BIN" --workers 1 sample-origin --listen "127.0.0.1:$ORIGIN_PORT" \
        >"$WORK/origin.log" 2>&1 &
    # shellcheck disable=SC2154 # PID is the caller's associative array; origin is a key.
    PID[origin]=$!
    wait_port "$ORIGIN_PORT" || die "origin did not start: $(cat "$WORK/origin.log")"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local name
    for name in "${!PID[@]}"; do
        stop_tree "${PID[$name]}"
    done
    if [[ -n "$MOUNTED" ]]; then
        umount "$MOUNTED" 2>/dev/null || umount -l "$MOUNTED" 2>/dev/null || true
    fi
    if [[ -n "$SHM_DIR" && -d "$SHM_DIR" ]]; then
        rm -rf "$SHM_DIR"
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}

# The pid and all its descendants.
tree_pids() {
    local p=$1 c
    [[ -d /proc/$p ]] || return 0
    echo "$p"
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
        tree_pids "$c"
    done
}

# "pid utime+stime" (clock ticks) for each running pid given.
cpu_snapshot() {
    local p
    for p in "$@"; do
        # Fields after "pid (comm) ": state is $1, utime $12, stime $13.
        if [[ -r /proc/$p/stat ]]; then
            sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk -v p="$p" '{print p, $12 + $13}' || true
        fi
    done
}

# Ticks used between two snapshots: per pid, so a process that starts or ends between
# them does not skew the sum.
cpu_delta() {
    awk 'NR == FNR { a[$1] = $2; next } { d += $2 - (($1 in a) ? a[$1] : 0) } END { print d + 0 }' "$1" "$2"
}
