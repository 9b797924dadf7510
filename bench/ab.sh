#!/usr/bin/env bash
# Two builds of serve side by side, each with the hello example (without its
# log line) deployed: the Go CPU per invocation (serve and its runtimes, not
# node) each spends under wrk over loopback, in rounds that take the two in
# turn, the order rotating, so that the machine's drift moves both alike.
# CPU comes from /proc/*/task/*/schedstat, in ns. It prints each round and
# then the median of the per-round differences (b - a) and in how many
# rounds b spent less: a change of 1-2 µs per invocation shows this way,
# where bench/hello.sh's medians move more than that from run to run.
# Usage: bench/ab.sh rev-a rev-b [rounds, default 20] [seconds per run, default 2] [connections, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,/^# Usage/p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
revs=("$1" "$2") rounds=${3:-20} secs=${4:-2} conns=${5:-1}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for i in 0 1; do git worktree remove --force "$work/src$i" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/hello"
sed '/console.log/d' examples/hello/index.mjs > "$work/hello/index.mjs"
for i in 0 1; do
  git worktree add -q --detach "$work/src$i" "${revs[$i]}"
  (cd "$work/src$i" && CGO_ENABLED=0 go build -o "$work/bin$i/" ./cmd/shoal ./cmd/shoal-runtime)
done
for i in 0 1; do
  port=$((3911 + i))
  # Its own session, so that cleanup ends serve and its instances.
  XDG_CONFIG_HOME="$work/config$i" setsid "$work/bin$i/shoal" serve --listen "127.0.0.1:$port" \
    --data "$work/data$i" --deploy "$work/hello" > "$work/serve$i.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/hello/" >/dev/null && break; sleep 0.1; done
done

# cpu prints the CPU time, in ns, of serve (pid $1) and its children that
# are shoal (the runtimes; not node).
cpu() {
  local p procs=$1
  for p in $(ps -o pid= --ppid "$1"); do grep -q shoal "/proc/$p/cmdline" 2>/dev/null && procs="$procs $p"; done
  for p in $procs; do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{ s += $1 } END { printf "%.0f\n", s }'
}
threads=2; [ "$conns" -eq 1 ] && threads=1
# run prints serve i's Go CPU per invocation, in µs, over one wrk run.
run() {
  local i=$1 url="http://127.0.0.1:$((3911 + $1))/hello/" c0 c1 n
  wrk -t"$threads" -c"$conns" -d1s "$url" > /dev/null
  c0=$(cpu "${pids[$i]}")
  n=$(wrk -t"$threads" -c"$conns" -d"${secs}s" "$url" | awk '/requests in/ { print $1 }')
  c1=$(cpu "${pids[$i]}")
  awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.2f\n", (b - a) / 1000 / n }'
}

echo "Go CPU per invocation, µs, at c=$conns: a=${revs[0]} b=${revs[1]}"
: > "$work/rounds"
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then a=$(run 0); b=$(run 1); else b=$(run 1); a=$(run 0); fi
  echo "$a $b" | tee -a "$work/rounds"
done
# The median of the differences, sorted outside awk (mawk has no asort).
median=$(awk '{ print $2 - $1 }' "$work/rounds" | sort -g |
  awk '{ d[NR] = $1 } END { print (NR % 2) ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2 }')
awk -v m="$median" '{ lower += ($2 < $1); sa += $1; sb += $2 }
  END { printf "means: a %.1f, b %.1f µs; median of b - a: %+.1f µs; b lower in %d of %d rounds\n", sa / NR, sb / NR, m, lower, NR }' \
  "$work/rounds"
