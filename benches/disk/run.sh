#!/usr/bin/env bash
# Disk tier benchmark: disk-hit throughput for 256 KiB and 16 MiB objects (a memory tier too
# small to hold them, so every hit reads and verifies blocks from disk), and the time to the
# first answered request and to a complete index after a restart with 100,000 stored objects.
# Needs: wrk, curl, python3. Run: bash benches/disk/run.sh   (traffic to 127.0.0.1 only)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q
BIN=target/release/outpost
WORK=$(mktemp -d /tmp/outpost-disk-bench.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

$BIN sample-origin --listen 127.0.0.1:18200 >/dev/null 2>&1 & PIDS+=($!)

write_cfg() { # memory disk
  cat > "$WORK/node.toml" <<CFG
[admin]
listen = "127.0.0.1:18291"
token = "bench"
[edge]
listen = ["127.0.0.1:18290"]
memory_bytes = "$1"
disk_path = "$WORK/cache"
disk_bytes = "$2"
[[edge.sites]]
hosts = ["127.0.0.1"]
origins = ["http://127.0.0.1:18200"]
CFG
}

echo "== disk-hit throughput (memory tier 1MiB: objects over 128KiB are served from disk)"
write_cfg 1MiB 8GiB
taskset -c 0 $BIN --workers 1 run --config "$WORK/node.toml" >/dev/null 2>&1 & EDGE=$!; PIDS+=($EDGE)
sleep 1
for size in 262144 16777216; do
  url="http://127.0.0.1:18290/bytes/$size"
  curl -s -o /dev/null "$url"; sleep 0.5
  status=$(curl -s -D - -o /dev/null "$url" | grep -i cache-status | tr -d '\r')
  t0=$(awk '{print $14+$15}' /proc/$EDGE/stat)
  out=$(taskset -c 1 wrk -t1 -c16 -d10s --latency "$url")
  t1=$(awk '{print $14+$15}' /proc/$EDGE/stat)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  tput=$(echo "$out" | awk '/Transfer\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  cpu=$(( t1 - t0 ))
  echo "size=$size  $status  req/s=$rps  transfer/s=$tput  p99=$p99  req/server-cpu-s=$(python3 -c "print(round($rps*10/($cpu/100)))")"
done
kill $EDGE; wait $EDGE 2>/dev/null || true

echo "== restart with 100,000 stored objects"
rm -rf "$WORK/cache"
write_cfg 64MiB 4GiB
$BIN run --config "$WORK/node.toml" >/dev/null 2>&1 & EDGE=$!; PIDS+=($EDGE)
sleep 1
python3 - <<'PY'
import http.client, threading
def load(w):
    c = http.client.HTTPConnection("127.0.0.1", 18290)
    for i in range(w, 100000, 8):
        c.request("GET", f"/bytes/1024?i={i}"); c.getresponse().read()
ts = [threading.Thread(target=load, args=(w,)) for w in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
for _ in $(seq 1 600); do
  w=$(curl -s -H 'Authorization: Bearer bench' http://127.0.0.1:18291/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["edge"][0]["cache"]["disk"]["writes"])')
  [ "$w" -ge 100000 ] && break; sleep 0.1
done
echo "stored: $w objects, $(du -sh "$WORK/cache" | cut -f1) on disk"
kill -9 $EDGE; wait $EDGE 2>/dev/null || true
start=$(date +%s.%N)
$BIN run --config "$WORK/node.toml" >/dev/null 2>&1 & EDGE=$!; PIDS+=($EDGE)
until curl -s -o /dev/null http://127.0.0.1:18290/bytes/1024?i=1; do sleep 0.005; done
first=$(date +%s.%N)
until curl -s -H 'Authorization: Bearer bench' http://127.0.0.1:18291/stats | grep -q '"ready":true'; do sleep 0.01; done
ready=$(date +%s.%N)
hits=0
for i in $(seq 2 101); do
  curl -s -D - -o /dev/null "http://127.0.0.1:18290/bytes/1024?i=$i" | grep -qi 'cache-status: outpost-edge; hit' && hits=$((hits+1))
done
python3 -c "print(f'after SIGKILL: first request answered {($first-$start)*1000:.0f} ms after start; index of 100,000 objects ready after {($ready-$start)*1000:.0f} ms; {$hits}/100 sampled objects then served as hits')"
