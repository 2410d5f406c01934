#!/usr/bin/env bash
# Cost of telemetry on cache hits: requests/s and p99 of one edge with telemetry off, on
# (OTLP/gRPC to a local sink, every trace sampled, and 1 % sampled), and on with the collector
# down (every trace sampled, exports failing). MODES="metrics-only traces-1pct" split the cost;
# "down-1pct" is the collector down at 1 % sampling.
#
#   bash benches/load/telemetry.sh
#
# Needs wrk and taskset. Builds target/release/outpost and the otlp_sink example unless
# SKIP_BUILD=1. The edge (one worker thread, plus its telemetry thread) is pinned to CPU 0;
# wrk and the sink to CPU 1. Modes are interleaved, ROUNDS rounds of DURATION seconds at CONNS
# connections on /bytes/1024. Knobs: ROUNDS, DURATION, CONNS, PATH_, *_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$ROOT/target/release/outpost
SINK=$ROOT/target/release/examples/otlp_sink
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PATH_=${PATH_:-/bytes/1024}
ORIGIN_PORT=${ORIGIN_PORT:-18100}
EDGE_PORT=${EDGE_PORT:-18182}
SINK_PORT=${SINK_PORT:-18317}
DEAD_PORT=${DEAD_PORT:-18318}
read -r -a MODES <<<"${MODES:-off on on-1pct down}"

command -v wrk >/dev/null || { echo "wrk is needed (apt-get install -y wrk)" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --bin outpost --example otlp_sink)
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN" sample-origin --listen 127.0.0.1:$ORIGIN_PORT >/dev/null 2>&1 & PIDS+=($!)
taskset -c 1 "$SINK" 127.0.0.1:$SINK_PORT >"$WORK/sink.log" 2>&1 & PIDS+=($!)
sleep 0.5

config() { # mode -> config file
  local mode=$1 f=$WORK/$1.toml tel=""
  case $mode in
    on) tel="[telemetry]\nservice_name = \"bench\"\notlp_endpoint = \"http://127.0.0.1:$SINK_PORT\"\n" ;;
    on-1pct) tel="[telemetry]\nservice_name = \"bench\"\notlp_endpoint = \"http://127.0.0.1:$SINK_PORT\"\nsampling_ratio = 0.01\n" ;;
    metrics-only) tel="[telemetry]\nservice_name = \"bench\"\notlp_endpoint = \"http://127.0.0.1:$SINK_PORT\"\ntraces = false\nlogs = false\n" ;;
    traces-1pct) tel="[telemetry]\nservice_name = \"bench\"\notlp_endpoint = \"http://127.0.0.1:$SINK_PORT\"\nsampling_ratio = 0.01\nmetrics = false\nlogs = false\n" ;;
    down) tel="[telemetry]\nservice_name = \"bench\"\notlp_endpoint = \"http://127.0.0.1:$DEAD_PORT\"\nexport_timeout = \"2s\"\n" ;;
    down-1pct) tel="[telemetry]\nservice_name = \"bench\"\notlp_endpoint = \"http://127.0.0.1:$DEAD_PORT\"\nexport_timeout = \"2s\"\nsampling_ratio = 0.01\n" ;;
  esac
  printf "%b[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"bench\"\n[edge]\nlisten = [\"127.0.0.1:$EDGE_PORT\"]\nmemory_bytes = \"256MiB\"\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"http://127.0.0.1:$ORIGIN_PORT\"]\n" "$tel" >"$f"
  echo "$f"
}

run_one() { # mode round
  local mode=$1 round=$2 cfg pid out
  cfg=$(config "$mode")
  OUTPOST_LOG=warn taskset -c 0 "$BIN" --workers 1 run --config "$cfg" >"$WORK/$mode-$round.stdout" 2>"$WORK/$mode-$round.stderr" &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$EDGE_PORT$PATH_" && break; sleep 0.05; done
  curl -s -o /dev/null "http://127.0.0.1:$EDGE_PORT$PATH_"
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$EDGE_PORT$PATH_")
  admin=$(grep -o 'admin listening on http://[0-9.:]*' "$WORK/$mode-$round.stdout" | sed 's/admin listening on //')
  dropped=$(curl -s -H 'Authorization: Bearer bench' "$admin/metrics" | awk '/^outpost_telemetry_dropped_total\{signal="spans"\}/ {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  echo "$mode $round $rps $p99 ${dropped:--}" | tee -a "$WORK/results.txt"
}

echo "mode round req/s p99 spans-dropped"
for r in $(seq "$ROUNDS"); do
  for m in "${MODES[@]}"; do run_one "$m" "$r"; done
done
echo
echo "| mode | req/s (median of $ROUNDS) | vs off | p99 (last round) |"
echo "|---|---|---|---|"
off=$(awk '$1 == "off" {print $3}' "$WORK/results.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for m in "${MODES[@]}"; do
  med=$(awk -v m="$m" '$1 == m {print $3}' "$WORK/results.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  p99=$(awk -v m="$m" '$1 == m {p=$4} END {print p}' "$WORK/results.txt")
  pct=$(awk -v a="$med" -v b="$off" 'BEGIN {printf "%+.1f%%", (a/b-1)*100}')
  echo "| $m | $med | $pct | $p99 |"
done
tail -1 "$WORK/sink.log"
