#!/usr/bin/env bash
# Where an echo server's time goes under one load shape: for each server, one run under
# `strace -f -c` (system calls per message, and which) and one under `perf` (the share of the
# server's CPU samples spent in the kernel, and page faults per 1,000 messages). Complements
# scripts/bench-echo.sh, whose ratios it explains: it measures no throughput of its own (strace
# slows the server down).
#
# Usage: scripts/profile-echo.sh [secs]     (default 3 s of load per run)
#
# Environment: SERVERS="name ..." (default: tidings-tokio tidings-smol tidings-compio
# fastwebsockets tokio-websockets; names as in bench-echo.sh); the load shape CONNS (100),
# INFLIGHT (1), SIZE (20), KIND (text); BASE_PORT (19600). Each server is pinned to CPU 0 and the
# generator (bench/: echo-load) to CPU 1. Needs strace and perf (Debian's strace and linux-perf,
# installed when missing). Prints a markdown table; the raw strace and perf outputs stay in
# target/profile-echo/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_init profile-echo 19600 1 "${1:-3}"
conns=${CONNS:-100}
inflight=${INFLIGHT:-1}
size=${SIZE:-20}
kind=${KIND:-text}
read -r -a servers <<<"${SERVERS:-tidings-tokio tidings-smol tidings-compio fastwebsockets tokio-websockets}"

warn() { echo "warning: $*" >&2; }

need_taskset
if ! command -v strace >/dev/null || ! command -v perf >/dev/null; then
  echo "installing strace and perf…" >&2
  apt-get update -qq && apt-get install -y -qq strace linux-perf >/dev/null
fi
echo "building bench/ (release)…" >&2
cargo build -q --release --manifest-path bench/Cargo.toml --bin echo-peer --bin echo-load >>"$log" 2>&1
peer_bin=$root/bench/target/release/echo-peer
load_bin=$root/bench/target/release/echo-load
echo_servers_init
stop_children_on_exit

# Runs the generator against `port` for `secs` and prints its msgs/s.
load() { # $1 = port
  taskset -c 1 "$load_bin" --addr "127.0.0.1:$1" --conns "$conns" --inflight "$inflight" \
    --size "$size" --kind "$kind" --secs "$secs" --warmup-secs 0 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["msgs_per_sec"])'
}

echo "| server | syscalls per message | the most frequent (per message) | kernel share of CPU samples | page faults per 1,000 messages |"
echo "|---|---:|---|---:|---:|"
port=$base_port
for s in "${runnable[@]}"; do
  read -r -a cmd <<<"$(server_cmd "$s")"
  wait_quiet

  # 1. System calls: the server under strace, stopped through its own process so that strace
  # writes its summary.
  port=$((port + 1))
  taskset -c 0 strace -f -c -o "$out/$s.strace" "${cmd[@]}" "127.0.0.1:$port" >>"$log" 2>&1 &
  server_pid=$!
  if ! wait_port "$port"; then
    warn "$s did not start under strace (see $log)"
    stop "$server_pid"
    continue
  fi
  rate=$(load "$port")
  pkill -TERM -P "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  syscalls=$(python3 - "$out/$s.strace" "$rate" "$secs" <<'PY'
import sys
rows = []
for line in open(sys.argv[1]):
    f = line.split()
    # "% time  seconds  usecs/call  calls  [errors]  syscall"
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        rows.append((int(f[3]), f[-1]))
msgs = float(sys.argv[2]) * float(sys.argv[3])
total = sum(c for c, _ in rows)
top = ", ".join(f"{name} {c / msgs:.2f}" for c, name in sorted(rows, reverse=True)[:3])
print(f"{total / msgs:.2f}|{top}")
PY
)

  # 2. Kernel share and page faults: the server alone, sampled for the middle of the load.
  port=$((port + 1))
  taskset -c 0 "${cmd[@]}" "127.0.0.1:$port" >>"$log" 2>&1 &
  server_pid=$!
  if ! wait_port "$port"; then
    warn "$s did not start (see $log)"
    stop "$server_pid"
    continue
  fi
  load "$port" >"$out/$s.rate" &
  load_pid=$!
  sleep 0.5
  window=$((secs > 2 ? secs - 1 : 1))
  perf stat -e page-faults -x, -o "$out/$s.faults" -p "$server_pid" -- sleep "$window" &
  stat_pid=$!
  perf record -q -e cpu-clock -p "$server_pid" -o "$out/$s.perf" -- sleep "$window" >/dev/null 2>&1
  wait "$stat_pid" || true
  wait "$load_pid" || true
  load_pid=
  stop "$server_pid"
  server_pid=
  rate=$(cat "$out/$s.rate")
  kernel=$(perf report -i "$out/$s.perf" --sort dso --stdio 2>/dev/null |
    awk '/\[kernel/ { gsub("%", "", $1); print $1; exit }')
  faults=$(awk -F, '/page-faults/ { print $1 }' "$out/$s.faults")
  per_k=$(awk -v f="$faults" -v r="$rate" -v w="$window" 'BEGIN { printf "%.1f", f / (r * w) * 1000 }')
  echo "| $s | ${syscalls%%|*} | ${syscalls#*|} | ${kernel:-?} % | $per_k |"
done
echo
echo "* shape: $conns connections × $inflight in flight, $size B $kind; ${secs} s per run; commit $(git rev-parse --short HEAD)"
