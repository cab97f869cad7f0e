#!/usr/bin/env bash
# Benchmark (not a test) of the buyer server's HTTP API with wrk: GET /v1/items/{id} and
# a search, each with 50 connections for WRK_DURATION (default 20s), against a fresh
# `agora up` (release build) on free ports of 127.0.0.1 with a catalogue of 500 pens.
# Needs wrk (Debian: apt-get install wrk). docs/performance.md has the results.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${WRK_DURATION:-20s}
connections=${WRK_CONNECTIONS:-50}
threads=${WRK_THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

# AGORA_BINARY runs a given agora binary instead of building one.
binary=${AGORA_BINARY:-target/release/agora}
[ -n "${AGORA_BINARY:-}" ] || cargo build --quiet --release -p agora
# shellcheck source=loadtest/up.sh
source loadtest/up.sh
start_agora "$binary"
setup=$(python3 loadtest/setup.py --seller "http://$SELLER_HTTP" --buyer "http://$BUYER_HTTP" \
    --items 500)
eval "$setup"

echo "machine: $(nproc) cores, $(uname -srm); wrk -t$threads -c$connections -d$duration"
bench() {
    echo
    echo "== $1"
    wrk -t"$threads" -c"$connections" -d"$duration" --latency \
        -H "Authorization: Bearer $AGORA_BUYER_SESSION" "$2"
}
bench "GET item" "http://$BUYER_HTTP/v1/items/$AGORA_ITEM"
bench "search (category 1, keyword pen, 20 of 500 matches)" \
    "http://$BUYER_HTTP/v1/items?category=1&keyword=pen"
bench "search (two keywords)" "http://$BUYER_HTTP/v1/items?category=1&keyword=pen&keyword=blue"
bench "healthz (HTTP layer alone, no database call)" "http://$BUYER_HTTP/healthz"
