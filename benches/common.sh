# Helpers shared by the bench scripts (benches/load, benches/dns): the throwaway TLS
# certificate every TLS case uses, and a flame graph from perf data. Sourced; no globals.
# shellcheck shell=bash

# A self-signed ECDSA P-256 certificate for bench.test and 127.0.0.1, valid 7 days, the same
# for Outpost and nginx: bench_cert CERT_PEM KEY_PEM.
bench_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -keyout "$2" -out "$1" -subj /CN=bench.test \
        -addext subjectAltName=DNS:bench.test,IP:127.0.0.1 >/dev/null 2>&1
}

# A flame graph of a perf.data file: flame_graph DATA SVG [TITLE]. Fails (no graph) when
# inferno is not on PATH (`cargo install inferno`) or perf script or inferno fails.
flame_graph() {
    command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null ||
        return 1
    perf script -i "$1" 2>/dev/null | inferno-collapse-perf |
        inferno-flamegraph ${3:+--title "$3"} >"$2"
}
