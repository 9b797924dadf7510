#!/usr/bin/env bash
# Hello-world throughput and latency through shoal against the same handler
# in a bare node http server, side by side in one run (wrk, loopback only).
# Usage: bench/hello.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/shoal" ./cmd/shoal
# examples/hello logs every request; the benchmark handler does not.
mkdir -p "$work/hello"
sed '/console.log/d' examples/hello/index.mjs > "$work/hello/index.mjs"
sed "s#../examples/hello/index.mjs#$work/hello/index.mjs#" bench/hello-node.mjs > "$work/node.mjs"

node "$work/node.mjs" 3901 > /dev/null & pids+=($!)
XDG_CONFIG_HOME="$work/config" "$work/shoal" serve --listen 127.0.0.1:3902 --data "$work/data" \
  --deploy "$work/hello" > "$work/serve.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:3902/hello/ >/dev/null && curl -sf http://127.0.0.1:3901/ >/dev/null && break; sleep 0.1; done

run() { # name url conns
  local threads=2; [ "$3" -eq 1 ] && threads=1
  wrk -t"$threads" -c"$3" -d"${dur}s" --latency "$2" > "$work/wrk.out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
  printf "%-6s %5s %10s %10s %10s\n" "$1" "$3" "$rps" "$p50" "$p99"
}
printf "%-6s %5s %10s %10s %10s\n" path conns req/s p50 p99
for c in 1 16 64; do
  wrk -t1 -c"$c" -d1s http://127.0.0.1:3901/ > /dev/null
  wrk -t1 -c"$c" -d1s http://127.0.0.1:3902/hello/ > /dev/null
  run node "http://127.0.0.1:3901/" "$c"
  run shoal "http://127.0.0.1:3902/hello/" "$c"
done
