#!/usr/bin/env bash
# Cost of telemetry on cache hits, measured side by side: in every run two edges serve the same
# cached 1 KiB object at once, one with telemetry off and one in the mode under test, both
# pinned to CPU 0 and loaded by their own wrk on CPU 1. The figure is requests served per
# CPU-second of each edge process (all its threads, telemetry thread included, from
# /proc/PID/task/*/schedstat), and the ratio mode/off. Running both at once cancels the drift
# of a shared machine, which between sequential runs exceeds the effect measured; the "off"
# mode (off against off) shows what is left of the noise.
#
#   bash benches/load/telemetry.sh
#
# Modes (MODES="..."):
#   off           no [telemetry] (the control)
#   on            OTLP/gRPC to a local sink; traces (default sampling_ratio), metrics, logs
#   on-1pct       on, sampling_ratio = 0.01
#   on-100pct     on, sampling_ratio = 1.0 (every request traced)
#   down          on, the collector's port closed (every export fails)
#   down-100pct   down, sampling_ratio = 1.0
#   metrics-only, logs-only, traces-0 (sampling_ratio = 0), traces-100pct: one signal alone
#
# Needs wrk and taskset. Builds target/release/outpost and the otlp_sink example unless
# SKIP_BUILD=1. Knobs: ROUNDS, DURATION (seconds), CONNS (per wrk), PATH_, *_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/target/release/outpost
SINK=$ROOT/target/release/examples/otlp_sink
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
PATH_=${PATH_:-/bytes/1024}
ORIGIN_PORT=${ORIGIN_PORT:-18100}
EDGE_PORT=${EDGE_PORT:-18182}
EDGE2_PORT=${EDGE2_PORT:-18183}
SINK_PORT=${SINK_PORT:-18317}
DEAD_PORT=${DEAD_PORT:-18318}
read -r -a MODES <<<"${MODES:-off on on-1pct on-100pct down down-100pct}"

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bin outpost --example otlp_sink)
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" sample-origin --listen 127.0.0.1:$ORIGIN_PORT >/dev/null 2>&1 & PIDS+=($!)
taskset -c 1 "$SINK" 127.0.0.1:$SINK_PORT >"$WORK/sink.log" 2>&1 & PIDS+=($!)
sleep 0.5

cpu_ns() { # pid -> CPU time of all the process's threads, nanoseconds
  cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'
}

telemetry() { # mode -> the [telemetry] section of that mode
  local live="otlp_endpoint = \"http://127.0.0.1:$SINK_PORT\"\n"
  local dead="otlp_endpoint = \"http://127.0.0.1:$DEAD_PORT\"\nexport_timeout = \"2s\"\n"
  local head="[telemetry]\nservice_name = \"bench\"\n"
  case $1 in
    off) ;;
    on) printf "%b" "$head$live" ;;
    on-1pct) printf "%b" "$head${live}sampling_ratio = 0.01\n" ;;
    on-100pct) printf "%b" "$head${live}sampling_ratio = 1.0\n" ;;
    down) printf "%b" "$head$dead" ;;
    down-100pct) printf "%b" "$head${dead}sampling_ratio = 1.0\n" ;;
    metrics-only) printf "%b" "$head${live}traces = false\nlogs = false\n" ;;
    logs-only) printf "%b" "$head${live}traces = false\nmetrics = false\n" ;;
    traces-1pct) printf "%b" "$head${live}sampling_ratio = 0.01\nmetrics = false\nlogs = false\n" ;;
    traces-0) printf "%b" "$head${live}sampling_ratio = 0.0\nmetrics = false\nlogs = false\n" ;;
    traces-100pct) printf "%b" "$head${live}sampling_ratio = 1.0\nmetrics = false\nlogs = false\n" ;;
    *) echo "unknown mode $1" >&2; exit 2 ;;
  esac
}

config() { # mode port -> config file
  local f=$WORK/$1-$2.toml
  { telemetry "$1"
    printf "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"bench\"\n[edge]\nlisten = [\"127.0.0.1:%s\"]\nmemory_bytes = \"256MiB\"\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"http://127.0.0.1:%s\"]\n" "$2" "$ORIGIN_PORT"
  } >"$f"
  echo "$f"
}

start_edge() { # mode port tag -> pid of an edge pinned to CPU 0, serving the object from cache
  local cfg pid
  cfg=$(config "$1" "$2")
  OUTPOST_LOG=warn taskset -c 0 "$BIN" --workers 1 run --config "$cfg" >"$WORK/$3.stdout" 2>"$WORK/$3.stderr" &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$2$PATH_" && break; sleep 0.05; done
  curl -s -o /dev/null "http://127.0.0.1:$2$PATH_"
  echo "$pid"
}

spans_dropped() { # tag -> the edge's outpost_telemetry_dropped_total{signal="spans"}
  local admin
  admin=$(grep -o 'admin listening on http://[0-9.:]*' "$WORK/$1.stdout" | sed 's/admin listening on //')
  curl -s -H 'Authorization: Bearer bench' "$admin/metrics" | awk '/^outpost_telemetry_dropped_total\{signal="spans"\}/ {print $2}'
}

per_cpu() { # requests ns0 ns1 -> requests per CPU-second
  awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN {printf "%.0f", n / ((b - a) / 1e9)}'
}

run_pair() { # mode round: an "off" edge and a $mode edge side by side, loaded at once
  local mode=$1 round=$2 a b a0 b0 a1 b1 wa wb dropped
  a=$(start_edge off "$EDGE_PORT" "off-$mode-$round")
  b=$(start_edge "$mode" "$EDGE2_PORT" "$mode-$round")
  a0=$(cpu_ns "$a"); b0=$(cpu_ns "$b")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$EDGE_PORT$PATH_" >"$WORK/wa" & wa=$!
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$EDGE2_PORT$PATH_" >"$WORK/wb" & wb=$!
  wait "$wa" "$wb"
  a1=$(cpu_ns "$a"); b1=$(cpu_ns "$b")
  dropped=$(spans_dropped "$mode-$round")
  kill "$a" "$b"; wait "$a" "$b" 2>/dev/null || true
  local na nb ca cb p99
  na=$(awk '/requests in/ {print $1}' "$WORK/wa"); nb=$(awk '/requests in/ {print $1}' "$WORK/wb")
  ca=$(per_cpu "$na" "$a0" "$a1"); cb=$(per_cpu "$nb" "$b0" "$b1")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/wb")
  echo "$mode $round $ca $cb $(awk -v a="$ca" -v b="$cb" 'BEGIN {printf "%.4f", b / a}') $p99 ${dropped:--}" | tee -a "$WORK/results.txt"
}

echo "mode round off-req/CPU-s mode-req/CPU-s ratio mode-p99 spans-dropped"
for r in $(seq "$ROUNDS"); do
  for m in "${MODES[@]}"; do run_pair "$m" "$r"; done
done
echo
col() { # mode column -> that column's values over the rounds, sorted
  awk -v m="$1" -v c="$2" '$1 == m {print $c}' "$WORK/results.txt" | sort -g
}
median() { col "$1" "$2" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| mode | req per edge CPU-s: off / mode (medians of $ROUNDS) | mode vs off (median) | ratio range | mode p99 (last run) |"
echo "|---|---|---|---|---|"
for m in "${MODES[@]}"; do
  r=$(median "$m" 5)
  echo "| $m | $(median "$m" 3) / $(median "$m" 4) | $(awk -v r="$r" 'BEGIN {printf "%+.1f%%", (r-1)*100}') | $(col "$m" 5 | head -1)..$(col "$m" 5 | tail -1) | $(awk -v m="$m" '$1 == m {p=$6} END {print p}' "$WORK/results.txt") |"
done
tail -1 "$WORK/sink.log"
