#!/usr/bin/env bash
# Hello-world throughput and latency through shoal against the same handler
# in a bare node http server and behind one plain Go proxy hop (bench/proxy:
# net/http/httputil's reverse proxy in front of that node), side by side in
# one run (wrk, loopback only), with the CPU time each spends per request
# from /proc, user + system and system alone: node's own for node; the
# proxy's for proxy (not node's behind it); serve's and the runtimes' for
# shoal (not node's).
# Usage: bench/hello.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$work/" ./cmd/shoal ./cmd/shoal-runtime ./bench/proxy
# examples/hello logs every request; the benchmark handler does not.
mkdir -p "$work/hello"
sed '/console.log/d' examples/hello/index.mjs > "$work/hello/index.mjs"
sed "s#../examples/hello/index.mjs#$work/hello/index.mjs#" bench/hello-node.mjs > "$work/node.mjs"

node "$work/node.mjs" 3901 > /dev/null & pids+=($!)
node=$!
# The proxy's Go scheduler runs on as many CPUs as serve's (half, at least one).
GOMAXPROCS=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 )) "$work/proxy" -listen 127.0.0.1:3903 -to http://127.0.0.1:3901 \
  > "$work/proxy.log" 2>&1 & pids+=($!)
proxy=$!
XDG_CONFIG_HOME="$work/config" "$work/shoal" serve --listen 127.0.0.1:3902 --data "$work/data" \
  --deploy "$work/hello" > "$work/serve.log" 2>&1 & pids+=($!)
serve=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:3902/hello/ >/dev/null && curl -sf http://127.0.0.1:3903/ >/dev/null && break
  sleep 0.1
done

# cpu prints the user + system and the system CPU time, in clock ticks, of
# what serves a path: node, the proxy, or serve and its children that are
# shoal (the runtimes; not node).
cpu() {
  local pids=$node p u s all=0 sys=0
  case $1 in
  proxy) pids=$proxy ;;
  shoal) pids="$serve $(ps -o pid= --ppid "$serve" | tr '\n' ' ')" ;;
  esac
  for p in $pids; do
    [ "$1" != shoal ] || [ "$p" = "$serve" ] || grep -q shoal "/proc/$p/cmdline" 2>/dev/null || continue
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo 0 0)
    all=$((all + u + s)) sys=$((sys + s))
  done
  echo "$all $sys"
}

tick=$(getconf CLK_TCK)
declare -A rps p50 percpu
run() { # name url conns
  local threads=2; [ "$3" -eq 1 ] && threads=1
  local all0 sys0 all1 sys1 n
  read -r all0 sys0 < <(cpu "$1")
  wrk -t"$threads" -c"$3" -d"${dur}s" --latency "$2" > "$work/wrk.out"
  read -r all1 sys1 < <(cpu "$1")
  rps[$1$3]=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50[$1$3]=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  percpu[$1$3]=$(awk -v t=$((all1 - all0)) -v hz="$tick" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  printf "%-6s %5s %10s %10s %10s %10s %10s\n" "$1" "$3" "${rps[$1$3]}" "${p50[$1$3]}" \
    "$(awk '$1=="99%" {print $2}' "$work/wrk.out")" "${percpu[$1$3]}" \
    "$(awk -v t=$((sys1 - sys0)) -v hz="$tick" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')"
}
us() { # wrk's latency ("40.00us", "1.20ms") in microseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /[0-9]s$/) n *= 1e6; print n }'
}
printf "%-6s %5s %10s %10s %10s %10s %10s\n" path conns req/s p50 p99 "cpu/req µs" "of it sys"
for c in 1 16 64; do
  for path in node:http://127.0.0.1:3901/ proxy:http://127.0.0.1:3903/ shoal:http://127.0.0.1:3902/hello/; do
    wrk -t1 -c"$c" -d1s "${path#*:}" > /dev/null
    run "${path%%:*}" "${path#*:}" "$c"
  done
done
echo
for c in 16 64; do
  awk -v s="${rps[shoal$c]}" -v n="${rps[node$c]}" -v p="${rps[proxy$c]}" -v c="$c" \
    'BEGIN {printf "c=%d: shoal at %.1f%% of node'"'"'s req/s (the proxy at %.1f%%)\n", c, 100 * s / n, 100 * p / n}'
done
awk -v s="$(us "${p50[shoal1]}")" -v n="$(us "${p50[node1]}")" -v p="$(us "${p50[proxy1]}")" \
  'BEGIN {printf "c=1: p50 added by shoal %.0f µs (by the proxy %.0f µs)\n", s - n, p - n}'
for c in 1 16 64; do
  echo "c=$c: Go CPU per invocation ${percpu[shoal$c]} µs in shoal, ${percpu[proxy$c]} µs in the proxy"
done
