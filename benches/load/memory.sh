#!/usr/bin/env bash
# Memory per cached object: how much RSS an Outpost edge gains per stored 1 KiB object, the
# way issue 18 measures it (an nginx origin sending ordinary headers).
#
#   bash benches/load/memory.sh [BIN ...]        # default: target/release/outpost
#   OBJECTS=50000 REPEAT=5 bash benches/load/memory.sh a/outpost b/outpost
#
# Origin: nginx (Debian's package; installed when missing and run as root), one worker, every
# /o/<n> the same 1,024-byte file with nginx's own headers: Server, Date, Content-Type,
# Content-Length, Last-Modified, Connection, ETag, Expires, Cache-Control (max-age=3600),
# Accept-Ranges. For each binary, REPEAT (3) times: a fresh edge (`--workers 1`,
# memory_bytes 1GiB so nothing is evicted), 5 s to settle, RSS (VmRSS) read, OBJECTS (20000)
# distinct objects fetched (fill.py, 8 connections; a second pass must be all hits), 2 s,
# RSS read again. Bytes per object = RSS growth / OBJECTS (it includes the index, the
# allocator's overhead and anything the fill itself grew, e.g. buffers per connection).
# Prints one line per run and the median per binary. Knobs: OBJECTS, REPEAT,
# ORIGIN_PORT (18200), EDGE_PORT (18201).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=benches/load/lib.sh
source "$ROOT/benches/load/lib.sh" # wait_port
HERE=$ROOT/benches/load
OBJECTS=${OBJECTS:-20000}
REPEAT=${REPEAT:-3}
ORIGIN_PORT=${ORIGIN_PORT:-18200}
EDGE_PORT=${EDGE_PORT:-18201}
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=("$ROOT/target/release/outpost")
for b in "${BINS[@]}"; do [[ -x $b ]] || { echo "not an executable: $b" >&2; exit 2; }; done

if ! command -v nginx >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

WORK=$(mktemp -d)
chmod 755 "$WORK"
NGINX_PID=""
EDGE_PID=""
cleanup() {
    [[ -n $EDGE_PID ]] && kill "$EDGE_PID" 2>/dev/null
    [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

mkdir -p "$WORK/www"
head -c 1024 /dev/urandom >"$WORK/www/blob"
chmod -R a+rX "$WORK/www"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $WORK/www;
        location /o/ { expires 1h; try_files /blob =404; }
    }
}
CONF
nginx -c "$WORK/nginx.conf" &
NGINX_PID=$!
wait_port "$ORIGIN_PORT"
echo "origin headers:"
curl -sI "http://127.0.0.1:$ORIGIN_PORT/o/1" | sed 's/^/  /'

cat >"$WORK/edge.toml" <<CONF
[edge]
listen = ["127.0.0.1:$EDGE_PORT"]
memory_bytes = "1GiB"

[[edge.sites]]
hosts = ["127.0.0.1", "localhost"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
CONF

printf 'binary\trun\tobjects\trss_before_kib\trss_after_kib\tbytes_per_object\n'
for bin in "${BINS[@]}"; do
    per=()
    for run in $(seq "$REPEAT"); do
        "$bin" --workers 1 run --config "$WORK/edge.toml" >"$WORK/edge.log" 2>&1 &
        EDGE_PID=$!
        wait_port "$EDGE_PORT" || { cat "$WORK/edge.log" >&2; exit 1; }
        sleep 5
        before=$(rss_kib "$EDGE_PID")
        python3 "$HERE/fill.py" --server outpost --port "$EDGE_PORT" --count "$OBJECTS" \
            --size 1024 --path "/o/{i}" >"$WORK/fill.json" \
            || { echo "fill failed: $(cat "$WORK/fill.json")" >&2; exit 1; }
        sleep 2
        after=$(rss_kib "$EDGE_PID")
        kill "$EDGE_PID"
        wait "$EDGE_PID" 2>/dev/null || true
        EDGE_PID=""
        b=$(( (after - before) * 1024 / OBJECTS ))
        per+=("$b")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$bin" "$run" "$OBJECTS" "$before" "$after" "$b"
    done
    median=$(printf '%s\n' "${per[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
    echo "median: $median bytes per cached 1 KiB object ($bin)"
done
