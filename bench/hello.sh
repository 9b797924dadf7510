#!/usr/bin/env bash
# Hello-world throughput and latency through shoal against the same handler
# in a bare node http server, behind a byte relay (bench/relay: forwarding
# bytes to node's unix socket with no HTTP), behind a hop that rewrites
# heads as bytes (rawhop, bench/relay -heads), behind the same hop reaching
# node over lanes, node's FIFOs, as serve does (rawlane, bench/relay -heads
# -lanes: the least a hop like serve does; a unix socket costs a hop one
# more wakeup per request) and behind one plain Go proxy hop (bench/proxy:
# net/http/httputil's reverse proxy in front of that node), side by side in
# one run (wrk, loopback only), with the CPU time each spends per request
# from /proc, user + system and system alone: node's own for node; the
# hops' own for them (not node's behind them); serve's and the runtimes'
# for shoal (not node's).
# Each path runs in slices, the six in turn, and the figures are the
# medians over the slices (ratios and differences paired slice by slice), so
# that a burst of other load on the machine moves one slice, not a result.
# Usage: bench/hello.sh [seconds per path and concurrency, default 10] [slices, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
slices=${2:-5}
# wrk takes whole seconds: a slice is the share of one, rounded, and at
# least one second.
secs=$(awk -v d="${1:-10}" -v n="$slices" 'BEGIN { s = int(d / n + 0.5); print (s < 1 ? 1 : s) }')
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$work/" ./cmd/shoal ./cmd/shoal-runtime ./bench/proxy ./bench/relay
# examples/hello logs every request; the benchmark handler does not.
mkdir -p "$work/hello"
sed '/console.log/d' examples/hello/index.mjs > "$work/hello/index.mjs"
sed "s#../examples/hello/index.mjs#$work/hello/index.mjs#" bench/hello-node.mjs > "$work/node.mjs"

node "$work/node.mjs" 3901 "$work/node.sock" > /dev/null & pids+=($!)
node=$!
# The hops' Go schedulers run on as many CPUs as serve's
# (half, at least one).
export GOMAXPROCS=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
"$work/proxy" -listen 127.0.0.1:3903 -to http://127.0.0.1:3901 > "$work/proxy.log" 2>&1 & pids+=($!)
proxy=$!
for _ in $(seq 100); do [ -S "$work/node.sock" ] && break; sleep 0.1; done
"$work/relay" -listen 127.0.0.1:3904 -to "$work/node.sock" > "$work/relay.log" 2>&1 & pids+=($!)
relay=$!
"$work/relay" -heads -listen 127.0.0.1:3905 -to "$work/node.sock" > "$work/rawhop.log" 2>&1 & pids+=($!)
rawhop=$!
"$work/relay" -heads -lanes -listen 127.0.0.1:3906 -to "$work/node.sock" > "$work/rawlane.log" 2>&1 & pids+=($!)
rawlane=$!
unset GOMAXPROCS
XDG_CONFIG_HOME="$work/config" "$work/shoal" serve --listen 127.0.0.1:3902 --data "$work/data" \
  --deploy "$work/hello" > "$work/serve.log" 2>&1 & pids+=($!)
serve=$!
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:3902/hello/ >/dev/null && curl -sf http://127.0.0.1:3903/ >/dev/null &&
    curl -sf http://127.0.0.1:3904/ >/dev/null && curl -sf http://127.0.0.1:3905/ >/dev/null &&
    curl -sf http://127.0.0.1:3906/ >/dev/null && break
  sleep 0.1
done

# cpu prints the user + system and the system CPU time, in clock ticks, of
# what serves a path: node, a hop, or serve and its children that are shoal
# (the runtimes; not node).
cpu() {
  local pids=$node p u s all=0 sys=0
  case $1 in
  relay) pids=$relay ;;
  rawhop) pids=$rawhop ;;
  rawlane) pids=$rawlane ;;
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
# slice runs wrk on one path for one slice and appends to $work/res:
# conns slice path req/s p50-µs p99-µs cpu-µs/req sys-µs/req
slice() { # path url conns slice
  local threads=2; [ "$3" -eq 1 ] && threads=1
  local all0 sys0 all1 sys1
  read -r all0 sys0 < <(cpu "$1")
  wrk -t"$threads" -c"$3" -d"${secs}s" --latency "$2" > "$work/wrk.out"
  read -r all1 sys1 < <(cpu "$1")
  awk -v c="$3" -v i="$4" -v p="$1" -v t=$((all1 - all0)) -v st=$((sys1 - sys0)) -v hz="$tick" '
    function us(v) { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /[0-9]s$/) n *= 1e6; return n }
    /requests in/ { n = $1 } /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = us($2) } $1 == "99%" { p99 = us($2) }
    END { printf "%d %d %s %.0f %.0f %.0f %.1f %.1f\n", c, i, p, rps, p50, p99, t / hz * 1e6 / n, st / hz * 1e6 / n }
  ' "$work/wrk.out" >> "$work/res"
}
# median prints the median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# col prints field f of the results of path at conns c.
col() { awk -v c="$1" -v p="$2" -v f="$3" '$1 == c && $3 == p { print $f }' "$work/res"; }
# paired prints, slice by slice, expr of the two paths' field f at conns c.
paired() { # c path-a path-b f expr(a, b)
  join <(awk -v c="$1" -v p="$2" -v f="$4" '$1 == c && $3 == p { print $2, $f }' "$work/res" | sort) \
    <(awk -v c="$1" -v p="$3" -v f="$4" '$1 == c && $3 == p { print $2, $f }' "$work/res" | sort) |
    awk "{ a = \$2; b = \$3; print $5 }"
}

paths=(node:http://127.0.0.1:3901/ relay:http://127.0.0.1:3904/ rawhop:http://127.0.0.1:3905/
  rawlane:http://127.0.0.1:3906/ proxy:http://127.0.0.1:3903/ shoal:http://127.0.0.1:3902/hello/)
: > "$work/res"
for c in 1 16 64; do
  for path in "${paths[@]}"; do wrk -t1 -c"$c" -d1s "${path#*:}" > /dev/null; done
  for i in $(seq "$slices"); do
    # Each slice starts with another path, so that none always runs first.
    for k in "${!paths[@]}"; do
      path=${paths[$(((i + k) % ${#paths[@]}))]}
      slice "${path%%:*}" "${path#*:}" "$c" "$i"
    done
  done
done

printf "medians of %d slices of %s s each\n" "$slices" "$secs"
printf "%-7s %5s %10s %10s %10s %10s %10s\n" path conns req/s "p50 µs" "p99 µs" "cpu/req µs" "of it sys"
for c in 1 16 64; do
  for p in node relay rawhop rawlane proxy shoal; do
    printf "%-7s %5s %10.0f %10.0f %10.0f %10.1f %10.1f\n" "$p" "$c" "$(col "$c" $p 4 | median)" \
      "$(col "$c" $p 5 | median)" "$(col "$c" $p 6 | median)" "$(col "$c" $p 7 | median)" "$(col "$c" $p 8 | median)"
  done
done
echo
for c in 16 64; do
  printf "c=%d: shoal at %.1f%% of node's req/s (the proxy at %.1f%%, rawlane at %.1f%%, rawhop at %.1f%%, the relay at %.1f%%)\n" "$c" \
    "$(paired "$c" shoal node 4 '100 * a / b' | median)" "$(paired "$c" proxy node 4 '100 * a / b' | median)" \
    "$(paired "$c" rawlane node 4 '100 * a / b' | median)" "$(paired "$c" rawhop node 4 '100 * a / b' | median)" \
    "$(paired "$c" relay node 4 '100 * a / b' | median)"
done
printf "c=1: p50 added by shoal %.0f µs (by the proxy %.0f µs, by rawlane %.0f µs, by rawhop %.0f µs, by the relay %.0f µs)\n" \
  "$(paired 1 shoal node 5 'a - b' | median)" "$(paired 1 proxy node 5 'a - b' | median)" \
  "$(paired 1 rawlane node 5 'a - b' | median)" "$(paired 1 rawhop node 5 'a - b' | median)" \
  "$(paired 1 relay node 5 'a - b' | median)"
for c in 1 16 64; do
  printf "c=%d: Go CPU per invocation %.1f µs in shoal, %.1f µs in the proxy, %.1f µs in rawlane, %.1f µs in rawhop, %.1f µs in the relay\n" "$c" \
    "$(col "$c" shoal 7 | median)" "$(col "$c" proxy 7 | median)" "$(col "$c" rawlane 7 | median)" \
    "$(col "$c" rawhop 7 | median)" "$(col "$c" relay 7 | median)"
done
# What shoal spends over the least a hop that reaches node as serve does
# spends, slice by slice: its own work, with the cost of any such hop on
# this machine taken out.
for c in 1 16 64; do
  printf "c=%d: Go CPU per invocation over rawlane's %.1f µs in shoal (over rawhop's %.1f µs), %.1f µs in the proxy over rawhop's\n" "$c" \
    "$(paired "$c" shoal rawlane 7 'a - b' | median)" "$(paired "$c" shoal rawhop 7 'a - b' | median)" \
    "$(paired "$c" proxy rawhop 7 'a - b' | median)"
done
