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

RULES='rules = [
  { name = "security", continue = true, response_headers = { set = { "Strict-Transport-Security" = "max-age=63072000", "X-Content-Type-Options" = "nosniff", "X-Frame-Options" = "DENY" }, remove = ["X-Powered-By"] } },
  { path = "/admin/", bypass = true },
  { path = "/api/", bypass = true, response_headers = { set = { "Access-Control-Allow-Origin" = "*" } } },
  { path = "/login", methods = ["POST"], limits = ["a"] },
  { path_glob = "/**/*.html", edge_ttl = "60s", edge_ttl_mode = "override" },
  { path_glob = "/static/**/*.{css,js}", edge_ttl = "1d", client_ttl = "1h" },
  { path_regex = "^/old/([a-z]+)/(\\d+)$", redirect = { to = "/new/$1/$2", status = 301 } },
  { path_regex = "^/u/(?P<user>[^/]+)/avatar$", edge_ttl = "10m" },
  { methods = ["DELETE", "PUT"], respond = { status = 405, body = "no" } },
  { header = { name = "X-Debug", value = "1" }, bypass = true },
  { cookie = { name = "session" }, bypass = true },
  { query_param = { name = "preview" }, bypass = true },
  { client = ["203.0.113.0/24", "198.51.100.0/24"], respond = { status = 403, body = "blocked" } },
  { path = "/shop/", respond = { status = 503, body = "back soon" } },
  { path = "/search", query_allow = ["q", "page"], query = "sort" },
  { path = "/img/", key_device = true },
  { path = "/i18n/", key_cookies = ["lang"] },
  { path = "/beta/", origins = ["http://127.0.0.1:9"] },
  { path = "/raw/", compress = false },
  { path = "/bytes/", edge_ttl = "5m" },
]'
AFTER_EDGE='limits = [{ name = "a", rate = "1000000/s", key = "client" }, { name = "b", rate = "1000000/s", key = "path" }]' \
AFTER_SITE="limits = [\"a\", \"b\"]
$RULES" \
    exec bash "$HERE/ab.sh" "$BIN" "$BIN"
