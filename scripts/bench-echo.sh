#!/usr/bin/env bash
# End-to-end WebSocket echo benchmark: tidings' tokio and smol example servers against peer crates,
# measured in the same run on the same machine (see bench/README.md).
#
# Usage: scripts/bench-echo.sh [rounds] [secs]     (defaults: 3 rounds, 5 s per measurement)
#
# Each measurement starts one server pinned to CPU 0, waits for its port, runs the load generator
# (bench/: echo-load, a tidings-core client) pinned to CPU 1 for 1 s of warmup plus `secs`, then
# kills the server. The order of the servers rotates every round. Prints a markdown table per
# scenario (median msgs/s over the rounds, min–max, ratios to the fastest peer and to
# async-tungstenite-smol); raw results go to target/bench-echo/results.csv.
#
# Environment: SERVERS="name ..." to measure a subset or add variants (echo-peer's
# `tokio-tungstenite/send`, `async-tungstenite-smol/send`, `tokio-websockets/forward`);
# WARMUP=seconds (default 1); BASE_PORT (default 19000).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rounds=${1:-3}
secs=${2:-5}
warmup=${WARMUP:-1}
base_port=${BASE_PORT:-19000}
out=target/bench-echo
mkdir -p "$out"
csv=$out/results.csv
log=$out/servers.log
: >"$log"

# scenario name, connections, messages in flight per connection, payload bytes, kind
scenarios=(
  "rr-20B-text 100 1 20 text"
  "pipe-16B-bin 64 8 16 binary"
  "pipe-1KiB-text 64 8 1024 text"
  "64KiB-bin 16 4 65536 binary"
  "1MiB-bin 4 2 1048576 binary"
)
tidings=(tidings-tokio tidings-smol)
peers=(tokio-tungstenite tokio-websockets fastwebsockets async-tungstenite-smol)
read -r -a servers <<<"${SERVERS:-${tidings[*]} ${peers[*]}}"

warn() { echo "warning: $*" >&2; }

# --- cleanup: never leave a server or a generator running --------------------------------------
server_pid=
load_pid=
cleanup() {
  local pid
  for pid in $load_pid $server_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pid=
  load_pid=
}
trap cleanup EXIT
trap 'cleanup; trap - INT; kill -INT $$' INT
trap 'cleanup; exit 143' TERM

# --- tools and builds ----------------------------------------------------------------------------
if ! command -v taskset >/dev/null; then
  echo "installing taskset (util-linux)…" >&2
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }

echo "building bench/ (release)…" >&2
cargo build -q --release --manifest-path bench/Cargo.toml --bins
peer_bin=$root/bench/target/release/echo-peer
load_bin=$root/bench/target/release/echo-load

# tidings' own example servers: a binary is used only if it built in this run (a stale one from an
# earlier build would measure old code).
declare -A tidings_bin=()
build_example() {
  local args=() e
  for e in "$@"; do args+=(--example "$e"); done
  cargo build -q --release "${args[@]}" >>"$log" 2>&1
}
echo "building tidings example servers (release)…" >&2
if build_example tokio_echo_server smol_echo_server; then
  tidings_bin[tidings-tokio]=$root/target/release/examples/tokio_echo_server
  tidings_bin[tidings-smol]=$root/target/release/examples/smol_echo_server
else
  build_example tokio_echo_server && tidings_bin[tidings-tokio]=$root/target/release/examples/tokio_echo_server
  build_example smol_echo_server && tidings_bin[tidings-smol]=$root/target/release/examples/smol_echo_server
fi

# The command line of a server, or nothing if it cannot run.
server_cmd() {
  case $1 in
    tidings-*)
      local bin=${tidings_bin[$1]:-}
      [[ -n $bin && -x $bin ]] && echo "$bin"
      ;;
    *) echo "$peer_bin $1" ;;
  esac
}
runnable=()
for s in "${servers[@]}"; do
  if [[ -n $(server_cmd "$s") ]]; then
    runnable+=("$s")
  else
    warn "skipping $s: its example server did not build (see $log)"
  fi
done
((${#runnable[@]} > 0)) || { echo "no server to measure" >&2; exit 1; }

# --- header --------------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (work tree modified)"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
peer_versions=$(python3 - bench/Cargo.lock <<'PY'
import re, sys
text = open(sys.argv[1]).read()
want = ["tokio-tungstenite", "tokio-websockets", "fastwebsockets", "async-tungstenite", "tokio", "smol"]
found = dict(re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text))
print(", ".join(f"{n} {found[n]}" for n in want if n in found))
PY
)
header="# WebSocket echo benchmark

* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit
* machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(rustc --version)
* peers: $peer_versions
* $rounds rounds × (${warmup} s warmup + ${secs} s) per server and scenario; server on CPU 0, load
  generator on CPU 1; servers: ${runnable[*]}"
echo "$header"
echo

# --- measurements --------------------------------------------------------------------------------
echo "round,scenario,server,msgs_per_sec,mib_per_sec,server_cpu,load_cpu,conns,inflight,size,kind" >"$csv"

port_of() { echo $((base_port + 10 * $1 + $2)); }

# Waits (at most 5 s) until the server accepts on its port; fails if it exits first.
wait_port() {
  local port=$1 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$server_pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

n=${#runnable[@]}
for ((r = 1; r <= rounds; r++)); do
  # Rotate the order of the servers every round to spread drift over all of them.
  order=()
  for ((k = 0; k < n; k++)); do order+=("${runnable[(k + r - 1) % n]}"); done
  echo "round $r/$rounds: ${order[*]}" >&2
  for ((si = 0; si < ${#scenarios[@]}; si++)); do
    read -r name conns inflight size kind <<<"${scenarios[si]}"
    for s in "${order[@]}"; do
      idx=0
      for ((k = 0; k < n; k++)); do [[ ${runnable[k]} == "$s" ]] && idx=$k; done
      port=$(port_of "$idx" "$si")
      read -r -a cmd <<<"$(server_cmd "$s")"
      echo "== round $r $name $s 127.0.0.1:$port" >>"$log"
      taskset -c 0 "${cmd[@]}" "127.0.0.1:$port" >>"$log" 2>&1 &
      server_pid=$!
      result=
      if wait_port "$port"; then
        taskset -c 1 "$load_bin" --addr "127.0.0.1:$port" --conns "$conns" --inflight "$inflight" \
          --size "$size" --kind "$kind" --secs "$secs" --warmup-secs "$warmup" \
          --server-pid "$server_pid" >"$out/load.json" 2>>"$log" &
        load_pid=$!
        if wait "$load_pid"; then result=$(<"$out/load.json"); fi
        load_pid=
      else
        warn "$s did not accept on port $port"
      fi
      cleanup
      if [[ -z $result ]]; then
        warn "round $r $name $s: no result (see $log)"
        echo "$r,$name,$s,,,,,$conns,$inflight,$size,$kind" >>"$csv"
        continue
      fi
      python3 - "$r" "$name" "$s" "$result" >>"$csv" <<'PY'
import json, sys
r, name, server, line = sys.argv[1:]
d = json.loads(line)
fmt = lambda v: "" if v is None else v
print(",".join(str(x) for x in [r, name, server, d["msgs_per_sec"], d["mib_per_sec"],
    fmt(d.get("server_cpu")), fmt(d.get("load_cpu")), d["conns"], d["inflight"], d["size"], d["kind"]]))
PY
      printf '  %-16s %-24s %12.0f msgs/s\n' "$name" "$s" \
        "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["msgs_per_sec"])' "$result")" >&2
    done
  done
done

# --- summary -------------------------------------------------------------------------------------
summary=$(python3 - "$csv" "${runnable[*]}" "${peers[*]}" <<'PY'
import csv, statistics, sys
from collections import defaultdict

path, servers, peers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows = list(csv.DictReader(open(path)))
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
data = defaultdict(lambda: defaultdict(list))
for r in rows:
    if r["msgs_per_sec"]:
        data[r["scenario"]][r["server"]].append(r)

def med(rs, key):
    vals = [float(r[key]) for r in rs if r[key] != ""]
    return statistics.median(vals) if vals else None

def num(v):
    return f"{v:,.0f}" if v is not None else "n/a"

for sc in scenarios:
    d = data[sc]
    first = next(r for r in rows if r["scenario"] == sc)
    print(f"### {sc}: {first['size']} B {first['kind']}, {first['conns']} conns × {first['inflight']} in flight\n")
    medians = {s: med(d[s], "msgs_per_sec") for s in servers if d[s]}
    peer_meds = {s: v for s, v in medians.items() if s in peers}
    fastest = max(peer_meds, key=peer_meds.get) if peer_meds else None
    print("| server | median msgs/s | min–max msgs/s | median MiB/s | × fastest peer | server CPU | generator CPU | rounds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in servers:
        rs = d[s]
        if not rs:
            print(f"| {s} | n/a | | | | | | 0 |")
            continue
        vals = sorted(float(r["msgs_per_sec"]) for r in rs)
        m = medians[s]
        ratio = f"{m / peer_meds[fastest]:.2f}" if fastest else "n/a"
        scpu, lcpu = med(rs, "server_cpu"), med(rs, "load_cpu")
        cpu = lambda v: f"{v:.2f}" if v is not None else "n/a"
        print(f"| {s} | {num(m)} | {num(vals[0])}–{num(vals[-1])} | {med(rs, 'mib_per_sec'):,.1f} "
              f"| {ratio} | {cpu(scpu)} | {cpu(lcpu)} | {len(vals)} |")
    print()
    ref = "async-tungstenite-smol"
    for t in ("tidings-tokio", "tidings-smol"):
        if t not in servers:
            continue
        m = medians.get(t)
        parts = []
        for label, other in ((f"fastest peer ({fastest})", fastest), (ref, ref)):
            o = medians.get(other) if other else None
            parts.append(f"{label} {m / o:.2f}" if m and o else f"{label} n/a")
        print(f"* {t} median / " + "; / ".join(parts))
    print()
PY
)
echo "$summary"
{ echo "$header"; echo; echo "$summary"; } >"$out/summary.md"
echo "raw results: $csv; summary: $out/summary.md; server output: $log" >&2
