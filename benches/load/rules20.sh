#!/usr/bin/env bash
# The cost of 20 site rules and 2 rate limiters on the 1 KiB hit path (issue 15): the same
# binary side by side through ab.sh, "before" with neither, "after" with both. The rules are
# a realistic mix: one that matches every request (security headers, continue), eighteen that
# do not match the hit's path (prefix, glob, regex, method, header, cookie, query, client),
# and one that matches it last (an edge TTL default). Both limiters count every request.
# Usage: benches/load/rules20.sh BIN   (knobs of ab.sh: ROUNDS, DURATION, CONNS, PATH_)
set -euo pipefail
BIN=${1:?usage: rules20.sh path/to/outpost}
HERE=$(cd "$(dirname "$0")" && pwd)

LIMITS='limits = [{ name = "a", rate = "1000000/s", key = "client" }, { name = "b", rate = "1000000/s", key = "path" }]'
AFTER_EDGE="$LIMITS" AFTER_SITE="$(grep -v '^#' "$HERE/rules20-site.toml")" \
    exec bash "$HERE/ab.sh" "$BIN" "$BIN"
