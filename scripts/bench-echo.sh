#!/usr/bin/env bash
# End-to-end WebSocket echo benchmark: tidings' tokio, smol and compio (io_uring) example servers
# against peer crates, measured in the same run on the same machine (see bench/README.md).
#
# Usage: scripts/bench-echo.sh [rounds] [secs]     (defaults: 3 rounds, 5 s per measurement)
#
# Each measurement starts one server pinned to CPU 0, waits for its port, runs the load generator
# (bench/: echo-load, a tidings-core client) pinned to CPU 1 for 1 s of warmup plus `secs`, then
# kills the server. The order of the servers rotates every round. Prints a markdown table per
# scenario (median msgs/s over the rounds, min–max, ratios to the fastest peer and to the faster
# shape of async-tungstenite-smol); raw results go to target/bench-echo/results.csv.
#
# The permessage-deflate scenarios (pipe-1KiB-json uncompressed, pipe-1KiB-json-deflate with context
# takeover, pipe-1KiB-json-deflate-nct without) run against the tidings servers only: the peer
# crates here have no permessage-deflate. Their tables add the bytes on the wire per message, and
# a last table compares each deflate scenario with the uncompressed one, server by server.
#
# Environment: SERVERS="name ..." to measure a subset or add variants (echo-peer's
# `tokio-tungstenite/send`, `async-tungstenite-smol/send`, `tokio-websockets/forward`);
# SCENARIOS="name ..." to run a subset of the scenarios, where `deflate` stands for the three
# pipe-1KiB-json scenarios and `classic` for the five others (default: all);
# WARMUP=seconds (default 1); BASE_PORT (default 19000). Each measurement waits (at most
# QUIET_WAIT s, default 120) until other work uses less than OTHER_MAX cores (default 0.15); one
# during which other work took more than that is repeated, up to RETRIES times (default 2), and if
# still contended is kept in the CSV but left out of the medians (unless all are contended).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_init bench-echo 19000 "$@"

# scenario name, connections, messages in flight per connection, payload bytes, kind, payload
# (echo-load --payload), permessage-deflate (off, context, no-context), servers (all, tidings)
classic_scenarios=(
  "rr-20B-text 100 1 20 text pattern off all"
  "pipe-16B-bin 64 8 16 binary pattern off all"
  "pipe-1KiB-text 64 8 1024 text pattern off all"
  "64KiB-bin 16 4 65536 binary pattern off all"
  "1MiB-bin 4 2 1048576 binary pattern off all"
)
deflate_scenarios=(
  "pipe-1KiB-json 64 8 1024 text json off tidings"
  "pipe-1KiB-json-deflate 64 8 1024 text json context tidings"
  "pipe-1KiB-json-deflate-nct 64 8 1024 text json no-context tidings"
)
tidings=(tidings-tokio tidings-smol tidings-compio)
peers=(tokio-tungstenite tokio-websockets fastwebsockets async-tungstenite-smol async-tungstenite-smol/local)
read -r -a servers <<<"${SERVERS:-${tidings[*]} ${peers[*]}}"

warn() { echo "warning: $*" >&2; }

# The scenarios to run, in the order above.
scenarios=()
read -r -a wanted <<<"${SCENARIOS:-classic deflate}"
for sc in "${classic_scenarios[@]}" "${deflate_scenarios[@]}"; do
  read -r name _ <<<"$sc"
  group=classic
  [[ $sc == *" tidings" ]] && group=deflate
  for w in "${wanted[@]}"; do
    if [[ $w == "$name" || $w == "$group" ]]; then
      scenarios+=("$sc")
      break
    fi
  done
done
for w in "${wanted[@]}"; do
  [[ $w == classic || $w == deflate ]] && continue
  found=
  for sc in "${classic_scenarios[@]}" "${deflate_scenarios[@]}"; do
    [[ ${sc%% *} == "$w" ]] && found=1
  done
  [[ -n $found ]] || { echo "unknown scenario $w in SCENARIOS" >&2; exit 2; }
done
((${#scenarios[@]} > 0)) || { echo "no scenario to run" >&2; exit 2; }

# --- cleanup: never leave a server or a generator running --------------------------------------
stop_children_on_exit

# --- tools and builds ----------------------------------------------------------------------------
need_taskset
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }

echo "building bench/ (release)…" >&2
cargo build -q --release --manifest-path bench/Cargo.toml --bins
peer_bin=$root/bench/target/release/echo-peer
load_bin=$root/bench/target/release/echo-load

# tidings' own example servers, and which servers can run (`runnable`, `server_cmd`).
echo_servers_init
if [[ " ${scenarios[*]} " == *" tidings "* && " ${runnable[*]} " != *" tidings-"* ]]; then
  warn "no tidings server to measure: the permessage-deflate scenarios will have no results"
fi

# --- header --------------------------------------------------------------------------------------
bench_identity
peer_versions=$(peer_versions tokio-tungstenite tokio-websockets fastwebsockets async-tungstenite tokio smol)
header="# WebSocket echo benchmark

* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit
* machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(rustc --version)
* peers: $peer_versions
* $rounds rounds × (${warmup} s warmup + ${secs} s) per server and scenario; server on CPU 0, load
  generator on CPU 1; servers: ${runnable[*]}
* scenarios: $(for sc in "${scenarios[@]}"; do printf '%s ' "${sc%% *}"; done)"
echo "$header"
echo

# --- measurements --------------------------------------------------------------------------------
echo "round,scenario,server,msgs_per_sec,mib_per_sec,server_cpu,load_cpu,other_cpu,attempts,conns,inflight,size,kind,payload,deflate,wire_out_per_msg,wire_in_per_msg" >"$csv"

port_of() { echo $((base_port + 10 * $1 + $2)); }

# One measurement of server $1 on port $2 for the current scenario; sets `row` to the CSV fields
# from msgs_per_sec to other_cpu and `wire` to wire_out_per_msg,wire_in_per_msg, or both to
# nothing if it failed.
measure() {
  local s=$1 port=$2 cmd fields
  read -r -a cmd <<<"$(server_cmd "$s")"
  echo "== round $r $name $s 127.0.0.1:$port" >>"$log"
  taskset -c 0 "${cmd[@]}" "127.0.0.1:$port" >>"$log" 2>&1 &
  server_pid=$!
  row=
  wire=
  local extra=(--payload "$payload")
  case $deflate in
    context) extra+=(--deflate) ;;
    no-context) extra+=(--deflate-no-context) ;;
  esac
  if wait_port "$port"; then
    taskset -c 1 "$load_bin" --addr "127.0.0.1:$port" --conns "$conns" --inflight "$inflight" \
      --size "$size" --kind "$kind" --secs "$secs" --warmup-secs "$warmup" \
      --server-pid "$server_pid" "${extra[@]}" >"$out/load.json" 2>>"$log" &
    load_pid=$!
    if wait "$load_pid"; then
      fields=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(",".join("" if d.get(k) is None else str(d[k]) for k in
      ("msgs_per_sec", "mib_per_sec", "server_cpu", "load_cpu", "other_cpu",
       "wire_out_per_msg", "wire_in_per_msg")))' "$out/load.json")
      row=$(cut -d, -f1-5 <<<"$fields")
      wire=$(cut -d, -f6-7 <<<"$fields")
    fi
    load_pid=
  else
    warn "$s did not accept on port $port"
  fi
  cleanup
}

n=${#runnable[@]}
for ((r = 1; r <= rounds; r++)); do
  rotate_order "$r"
  echo "round $r/$rounds: ${order[*]}" >&2
  for ((si = 0; si < ${#scenarios[@]}; si++)); do
    read -r name conns inflight size kind payload deflate only <<<"${scenarios[si]}"
    for s in "${order[@]}"; do
      # Scenarios for tidings only (permessage-deflate, which the peers lack) skip the peers.
      [[ $only == tidings && $s != tidings-* ]] && continue
      idx=0
      for ((k = 0; k < n; k++)); do [[ ${runnable[k]} == "$s" ]] && idx=$k; done
      # Measure again, up to $retries times, while other work took more than $other_max cores.
      attempts=0
      while :; do
        attempts=$((attempts + 1))
        wait_quiet
        measure "$s" "$(port_of "$idx" "$si")"
        other=$(cut -d, -f5 <<<"$row")
        if [[ -n $other ]] && ((attempts <= retries)) \
          && awk -v o="$other" -v m="$other_max" 'BEGIN { exit !(o > m) }'; then
          warn "round $r $name $s: other work took $other cores; measuring again"
          sleep 1
          continue
        fi
        break
      done
      echo "$r,$name,$s,${row:-,,,,},$attempts,$conns,$inflight,$size,$kind,$payload,$deflate,${wire:-,}" >>"$csv"
      if [[ -z $row ]]; then
        warn "round $r $name $s: no result (see $log)"
      else
        wire_note=
        [[ $deflate != off || $payload != pattern ]] &&
          wire_note=$(printf '   wire B/msg: out %.0f, in %.0f' "${wire%%,*}" "${wire##*,}")
        printf '  %-26s %-23s %10.0f msgs/s   cpu: server %s, generator %s, other %s%s\n' \
          "$name" "$s" "${row%%,*}" "$(cut -d, -f3 <<<"$row")" "$(cut -d, -f4 <<<"$row")" \
          "${other:-n/a}" "$wire_note" >&2
      fi
    done
  done
done

# --- summary -------------------------------------------------------------------------------------
summary=$(python3 - "$csv" "${runnable[*]}" "${peers[*]}" "$other_max" <<'PY'
import csv, statistics, sys
from collections import defaultdict

path, servers, peers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
other_max = float(sys.argv[4])
rows = list(csv.DictReader(open(path)))
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
data = defaultdict(lambda: defaultdict(list))
contended = lambda r: r["other_cpu"] != "" and float(r["other_cpu"]) > other_max
for r in rows:
    if r["msgs_per_sec"]:
        data[r["scenario"]][r["server"]].append(r)
# Measurements during which other work competed are left out, unless nothing else is left.
dropped = defaultdict(int)
for sc in data:
    for s, rs in data[sc].items():
        clean = [r for r in rs if not contended(r)]
        if clean:
            dropped[sc] += len(rs) - len(clean)
            data[sc][s] = clean

def med(rs, key):
    vals = [float(r[key]) for r in rs if r[key] != ""]
    return statistics.median(vals) if vals else None

def num(v):
    return f"{v:,.0f}" if v is not None else "n/a"

cpu = lambda v: f"{v:.2f}" if v is not None else "n/a"
wire_mode = lambda r: r.get("payload", "pattern") not in ("", "pattern") or r.get("deflate", "off") not in ("", "off")

def table_row(s, rs, cells):
    """The cells common to both tables around the scenario-specific ones."""
    vals = sorted(float(r["msgs_per_sec"]) for r in rs)
    scpu, lcpu = med(rs, "server_cpu"), med(rs, "load_cpu")
    others = [float(r["other_cpu"]) for r in rs if r["other_cpu"] != ""]
    used = f"{len(vals)}" + ("*" if any(contended(r) for r in rs) else "")
    return (f"| {s} | {num(med(rs, 'msgs_per_sec'))} | {num(vals[0])}–{num(vals[-1])} "
            f"| {med(rs, 'mib_per_sec'):,.1f} | {cells} | {cpu(scpu)} | {cpu(lcpu)} "
            f"| {cpu(max(others) if others else None)} | {used} |")

for sc in scenarios:
    d = data[sc]
    first = next(r for r in rows if r["scenario"] == sc)
    wired = wire_mode(first)
    extra = ""
    if wired:
        extra = f", payload {first['payload']}, permessage-deflate {first['deflate']}"
    print(f"### {sc}: {first['size']} B {first['kind']}, {first['conns']} conns × {first['inflight']} in flight{extra}\n")
    # The servers this scenario ran on (tidings-only scenarios skip the peers).
    ran = {r["server"] for r in rows if r["scenario"] == sc}
    shown = [s for s in servers if s in ran]
    medians = {s: med(d[s], "msgs_per_sec") for s in shown if d[s]}
    peer_meds = {s: v for s, v in medians.items() if s in peers}
    fastest = max(peer_meds, key=peer_meds.get) if peer_meds else None
    if wired:
        print("| server | median msgs/s | min–max msgs/s | median MiB/s "
              "| wire B/msg client→server | wire B/msg server→client "
              "| server CPU | generator CPU | other CPU (max) | rounds used |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| server | median msgs/s | min–max msgs/s | median MiB/s | × fastest peer "
              "| server CPU | generator CPU | other CPU (max) | rounds used |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in shown:
        rs = d[s]
        if not rs:
            print(f"| {s} | n/a | | | | |{' |' if wired else ''} | | 0 |")
            continue
        if wired:
            cells = f"{num(med(rs, 'wire_out_per_msg'))} | {num(med(rs, 'wire_in_per_msg'))}"
        else:
            cells = f"{medians[s] / peer_meds[fastest]:.2f}" if fastest else "n/a"
        print(table_row(s, rs, cells))
    print()
    if wired:
        skipped = [s for s in servers if s not in ran]
        print("* tidings servers only: the peer crates measured here have no permessage-deflate"
              + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
        print("* wire B/msg: bytes written to / read from the sockets per round trip (frame "
              "headers and masking keys included, TCP/IP headers not)")
    if dropped[sc]:
        print(f"* {dropped[sc]} measurement(s) left out: other work took more than {other_max} cores")
    if any(contended(r) for s in shown for r in d[s]):
        print(f"* rounds marked * are all contended (other work > {other_max} cores): not comparable")
    if not wired:
        # async-tungstenite on smol: the faster of its two shapes (global executor, or one
        # executor on the main thread as tidings-smol's example server runs).
        ats = [a for a in ("async-tungstenite-smol", "async-tungstenite-smol/local") if medians.get(a)]
        ref = max(ats, key=medians.get) if ats else "async-tungstenite-smol"
        for t in ("tidings-tokio", "tidings-smol", "tidings-compio"):
            if t not in shown:
                continue
            m = medians.get(t)
            parts = []
            for label, other in ((f"fastest peer ({fastest})", fastest), (ref, ref)):
                o = medians.get(other) if other else None
                parts.append(f"{label} {m / o:.2f}" if m and o else f"{label} n/a")
            print(f"* {t} median / " + "; / ".join(parts))
    print()

# permessage-deflate against the same scenario uncompressed (same connections, payload, size).
shape = lambda r: (r["conns"], r["inflight"], r["size"], r["kind"], r.get("payload", ""))
firsts = {sc: next(r for r in rows if r["scenario"] == sc) for sc in scenarios}
pairs = []
for sc, f in firsts.items():
    if f.get("deflate", "off") in ("", "off"):
        continue
    base = [b for b, g in firsts.items() if g.get("deflate", "off") in ("", "off") and shape(g) == shape(f)]
    if base:
        pairs.append((base[0], sc))
if pairs:
    print("### permessage-deflate vs uncompressed\n")
    print("| server | scenario | median msgs/s | msgs/s × uncompressed "
          "| wire B/msg client→server | × uncompressed | wire B/msg server→client | × uncompressed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    ratio = lambda a, b: f"{a / b:.2f}" if a is not None and b else "n/a"
    for s in servers:
        for base in dict.fromkeys(b for b, _ in pairs):
            bm = {k: med(data[base][s], k) for k in ("msgs_per_sec", "wire_out_per_msg", "wire_in_per_msg")}
            if all(v is None for v in bm.values()):
                continue
            for sc in [base] + [sc for b, sc in pairs if b == base]:
                m = {k: med(data[sc][s], k) for k in bm}
                print(f"| {s} | {sc} | {num(m['msgs_per_sec'])} | {ratio(m['msgs_per_sec'], bm['msgs_per_sec'])} "
                      f"| {num(m['wire_out_per_msg'])} | {ratio(m['wire_out_per_msg'], bm['wire_out_per_msg'])} "
                      f"| {num(m['wire_in_per_msg'])} | {ratio(m['wire_in_per_msg'], bm['wire_in_per_msg'])} |")
    print()
    print("* × uncompressed: the server's median in that scenario over its median in the "
          "uncompressed one of the same run (same connections, messages in flight and payloads)")
    print()
PY
)
echo "$summary"
{ echo "$header"; echo; echo "$summary"; } >"$out/summary.md"
echo "raw results: $csv; summary: $out/summary.md; server output: $log" >&2
