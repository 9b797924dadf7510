#!/usr/bin/env bash
# Hello-world throughput and latency through shoal against the same handler
# in a bare node http server, side by side in one run (wrk, loopback only),
# and the Go CPU time shoal spends per invocation: serve's and the runtimes'
# user + system time from /proc, over the requests of each run.
# Usage: bench/hello.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$work/" ./cmd/shoal ./cmd/shoal-runtime
# examples/hello logs every request; the benchmark handler does not.
mkdir -p "$work/hello"
sed '/console.log/d' examples/hello/index.mjs > "$work/hello/index.mjs"
sed "s#../examples/hello/index.mjs#$work/hello/index.mjs#" bench/hello-node.mjs > "$work/node.mjs"

node "$work/node.mjs" 3901 > /dev/null & pids+=($!)
XDG_CONFIG_HOME="$work/config" "$work/shoal" serve --listen 127.0.0.1:3902 --data "$work/data" \
  --deploy "$work/hello" > "$work/serve.log" 2>&1 & pids+=($!)
serve=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:3902/hello/ >/dev/null && curl -sf http://127.0.0.1:3901/ >/dev/null && break; sleep 0.1; done

# goCPU prints the CPU time, in clock ticks, of serve and of its children
# that are shoal (the runtimes; not node).
goCPU() {
  local total=0 p
  for p in $serve $(ps -o pid= --ppid "$serve"); do
    [ "$p" = "$serve" ] || grep -q shoal "/proc/$p/cmdline" 2>/dev/null || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

tick=$(getconf CLK_TCK)
declare -A rps p50
run() { # name url conns
  local threads=2; [ "$3" -eq 1 ] && threads=1
  local before after n cpu=""
  before=$(goCPU)
  wrk -t"$threads" -c"$3" -d"${dur}s" --latency "$2" > "$work/wrk.out"
  after=$(goCPU)
  rps[$1$3]=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50[$1$3]=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  if [ "$1" = shoal ]; then
    cpu=$(awk -v t=$((after - before)) -v hz="$tick" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  fi
  printf "%-6s %5s %10s %10s %10s %12s\n" "$1" "$3" "${rps[$1$3]}" "${p50[$1$3]}" \
    "$(awk '$1=="99%" {print $2}' "$work/wrk.out")" "$cpu"
}
us() { # wrk's latency ("40.00us", "1.20ms") in microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /[0-9]s$/) n *= 1e6; print n }'
}
printf "%-6s %5s %10s %10s %10s %12s\n" path conns req/s p50 p99 "go-cpu/inv µs"
for c in 1 16 64; do
  wrk -t1 -c"$c" -d1s http://127.0.0.1:3901/ > /dev/null
  wrk -t1 -c"$c" -d1s http://127.0.0.1:3902/hello/ > /dev/null
  run node "http://127.0.0.1:3901/" "$c"
  run shoal "http://127.0.0.1:3902/hello/" "$c"
done
echo
for c in 16 64; do
  awk -v s="${rps[shoal$c]}" -v n="${rps[node$c]}" -v c="$c" 'BEGIN {printf "c=%d: shoal at %.1f%% of node'"'"'s req/s\n", c, 100 * s / n}'
done
awk -v s="$(us "${p50[shoal1]}")" -v n="$(us "${p50[node1]}")" 'BEGIN {printf "c=1: p50 added by shoal %.0f µs\n", s - n}'
