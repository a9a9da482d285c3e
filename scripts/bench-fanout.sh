#!/usr/bin/env bash
# End-to-end WebSocket fan-out benchmark: tidings' hub example server against the usual
# tokio-tungstenite + tokio::sync::broadcast server, measured in the same run on the same machine
# (see bench/README.md, "Fan-out benchmark").
#
# Usage: scripts/bench-fanout.sh [rounds] [secs]     (defaults: 3 rounds, 5 s per measurement)
#
# One publisher, N subscribers: every message the publisher sends reaches every subscriber. Each
# measurement starts one server pinned to CPU 0, waits for its port, runs the load generator
# (bench/: fanout-load, a tidings-core client; closed loop, 16 messages in flight) pinned to CPU 1
# for 1 s of warmup plus `secs`, then kills the server. The order of the servers rotates every
# round. Prints a markdown table per scenario (median deliveries/s over the rounds, min–max, ratio
# to the baseline, latency, the server's memory per subscriber, losses, disconnections, CPU); raw
# results go to target/bench-fanout/results.csv, the report to target/bench-fanout/summary.md, the
# servers' (and the generator's) stderr to target/bench-fanout/servers.log.
#
# Scenarios (all binary messages): 1k-64B, 1k-1KiB, 10k-64B, 10k-1KiB (subscribers × message size)
# and slow-1k-64B (1k-64B plus one subscriber that never reads; its reference is 1k-64B). Two more
# are run only when named: slow-100-1KiB and its reference 100-1KiB, where the slow consumer is
# offered a few MiB per second and so overflows the kernel's socket buffers within the run (at
# 64 B × 1,000 subscribers it is offered tens of KiB per second: the server's socket send buffer
# holds all of it for minutes, and neither server has anything to do about it).
#
# Environment: SERVERS="name ..." (default: tidings-hub tokio-tungstenite-broadcast; the variant
# tidings-hub/inline runs the hub server with --inline, writes from the publisher's task);
# SCENARIOS="name ..." (names, or `default` for the five above, `all` for all seven; a slow
# scenario brings in its reference); WARMUP=seconds (default 1); WINDOW=messages in flight
# (default 16); BASE_PORT (default 20000; every measurement uses the next port, so that the
# TIME_WAIT sockets of 10,000 connections never get in the way); QUIET_WAIT, OTHER_MAX, RETRIES
# as in bench-echo.sh: each measurement waits (at most QUIET_WAIT s, default 120) until other work
# uses less than OTHER_MAX cores (default 0.15); one during which other work took more than that is
# repeated, up to RETRIES times (default 2), and if still contended is kept in the CSV but left out
# of the medians (unless all are contended).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_init bench-fanout 20000 "$@"
window=${WINDOW:-16}

# name, subscribers, message bytes, kind, slow consumers, in the default set
all_scenarios=(
  "1k-64B 1000 64 binary 0 yes"
  "1k-1KiB 1000 1024 binary 0 yes"
  "10k-64B 10000 64 binary 0 yes"
  "10k-1KiB 10000 1024 binary 0 yes"
  "slow-1k-64B 1000 64 binary 1 yes"
  "100-1KiB 100 1024 binary 0 no"
  "slow-100-1KiB 100 1024 binary 1 no"
)
baseline=tokio-tungstenite-broadcast
read -r -a servers <<<"${SERVERS:-tidings-hub $baseline}"

warn() { echo "warning: $*" >&2; }

# The scenarios to run, in the order above; a slow scenario brings in its reference.
read -r -a wanted <<<"${SCENARIOS:-default}"
declare -A want=()
for w in "${wanted[@]}"; do
  found=
  for sc in "${all_scenarios[@]}"; do
    read -r name _ _ _ _ default <<<"$sc"
    if [[ $w == "$name" || $w == all || ($w == default && $default == yes) ]]; then
      want[$name]=1
      [[ $name == slow-* ]] && want[${name#slow-}]=1
      found=1
    fi
  done
  [[ -n $found ]] || { echo "unknown scenario $w in SCENARIOS" >&2; exit 2; }
done
scenarios=()
max_conns=0
for sc in "${all_scenarios[@]}"; do
  read -r name subs _ _ slow _ <<<"$sc"
  if [[ -n ${want[$name]:-} ]]; then
    scenarios+=("$sc")
    ((subs + slow > max_conns)) && max_conns=$((subs + slow))
  fi
done
((${#scenarios[@]} > 0)) || { echo "no scenario to run" >&2; exit 2; }

# --- cleanup: never leave a server or a generator running --------------------------------------
stop_children_on_exit

# --- tools, limits and builds --------------------------------------------------------------------
need_taskset
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }

# Every connection is a file descriptor in the server and in the generator (both inherit this).
hard=$(ulimit -Hn)
ulimit -n "$hard" 2>/dev/null || ulimit -n 1048576 2>/dev/null || true
nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((nofile < max_conns + 100)); then
  warn "ulimit -n is $nofile (hard limit $hard): scenarios with $max_conns connections will fail"
fi

echo "building bench/ (release)…" >&2
cargo build -q --release --manifest-path bench/Cargo.toml --bins
peer_bin=$root/bench/target/release/fanout-peer
load_bin=$root/bench/target/release/fanout-load

# tidings' hub example: used only if it built in this run (a stale binary would measure old code).
hub_bin=
if [[ " ${servers[*]} " == *" tidings-hub"* ]]; then
  echo "building tidings example hub_fanout_server (release)…" >&2
  if cargo build -q --release --example hub_fanout_server >>"$log" 2>&1; then
    hub_bin=$root/target/release/examples/hub_fanout_server
  fi
fi

# The command line of a server, or nothing if it cannot run.
server_cmd() {
  case $1 in
    tidings-hub) [[ -n $hub_bin && -x $hub_bin ]] && echo "$hub_bin" ;;
    # Variant for checking the design choice: broadcasts written from the sender's task instead of
    # by each connection's driver task (OutboxLimits::write_inline).
    tidings-hub/inline) [[ -n $hub_bin && -x $hub_bin ]] && echo "$hub_bin --inline" ;;
    tokio-tungstenite-broadcast) echo "$peer_bin" ;;
  esac
}
runnable=()
for s in "${servers[@]}"; do
  if [[ -n $(server_cmd "$s") ]]; then
    runnable+=("$s")
  elif [[ $s == tidings-hub* ]]; then
    warn "skipping tidings-hub: the example hub_fanout_server did not build (see $log)"
  else
    warn "skipping unknown server $s (known: tidings-hub $baseline)"
  fi
done
((${#runnable[@]} > 0)) || { echo "no server to measure" >&2; exit 1; }

# --- header --------------------------------------------------------------------------------------
bench_identity
peer_versions=$(peer_versions tokio-tungstenite tungstenite tokio)
header="# WebSocket fan-out benchmark

* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit
* machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(rustc --version); ulimit -n $nofile
* baseline ($baseline, bench/src/bin/fanout-peer.rs): $peer_versions, broadcast capacity 1024
* $rounds rounds × (${warmup} s warmup + ${secs} s) per server and scenario; server on CPU 0, load
  generator on CPU 1; one publisher, $window messages in flight (closed loop); servers: ${runnable[*]}
* scenarios: $(for sc in "${scenarios[@]}"; do printf '%s ' "${sc%% *}"; done)"
echo "$header"
echo

# --- measurements --------------------------------------------------------------------------------
columns=(round scenario server ok stalled deliveries_per_sec msgs_per_sec p50_us p99_us p999_us
  max_us lost disconnected slow_disconnected slow_received sent_total rss_before_kb
  rss_after_connect_kb rss_end_kb rss_per_sub_bytes rss_max_kb rss_growth_kb server_cpu load_cpu
  other_cpu connect_secs attempts subs slow size kind window port error rss_series_kb)
(IFS=,; echo "${columns[*]}") >"$csv"

# fanout-load's JSON line (in file $1; $2 its exit status, $3 the CSV columns, then the
# measurement's parameters) as a CSV row (first line of output) and, on a second line,
# "other_cpu ok description": other work's CPU use (- if unknown), 1 or 0, and a one-line
# description for the progress output.
to_row() {
  python3 - "$@" <<'PY'
import csv, io, json, sys
path, rc, columns, *meta = sys.argv[1:]
columns = columns.split(",")
d = None
try:
    lines = [l for l in open(path).read().splitlines() if l.strip().startswith("{")]
    d = json.loads(lines[-1])
except Exception:
    pass
if d is None:
    d = {"ok": False, "error": f"fanout-load gave no result (exit status {rc})"}
keys = ["round", "scenario", "server", "attempts", "port", "subs", "slow", "size", "kind", "window"]
row = dict(zip(keys, meta))
for c in columns:
    if c in row:
        continue
    v = d.get(c)
    if isinstance(v, bool):
        v = int(v)
    elif isinstance(v, list):
        v = ";".join(str(x) for x in v)
    elif isinstance(v, str):
        v = v.replace("\n", " ")
    row[c] = "" if v is None else v
buf = io.StringIO()
csv.writer(buf, lineterminator="\n").writerow([row[c] for c in columns])
print(buf.getvalue(), end="")
ok = bool(d.get("ok"))
other = d.get("other_cpu")
fmt = lambda k, spec: format(d[k], spec) if d.get(k) is not None else "n/a"
if ok:
    desc = (f"{fmt('deliveries_per_sec', ',.0f')} deliveries/s, p99 {fmt('p99_us', ',.0f')} µs, "
            f"rss/sub {fmt('rss_per_sub_bytes', ',.0f')} B, lost {d.get('lost')}, "
            f"disc {d.get('disconnected')}, cpu: server {fmt('server_cpu', '.2f')}, "
            f"generator {fmt('load_cpu', '.2f')}, other {fmt('other_cpu', '.2f')}")
    if d.get("slow"):
        desc += (f"; slow: closed {d.get('slow_disconnected')}, rss growth "
                 f"{d.get('rss_growth_kb')} KiB")
else:
    desc = f"FAILED: {d.get('error')}"
print(f"{'-' if other is None else other} {int(ok)} {desc}")
PY
}

# One measurement of server $1 on port $2 for the current scenario; sets `row` (the CSV row),
# `other` (other work's CPU use, maybe empty) and `ok` (1 or 0).
measure() {
  local s=$1 port=$2 cmd rc=0 result
  read -r -a cmd <<<"$(server_cmd "$s")"
  echo "== round $r $name $s 127.0.0.1:$port" >>"$log"
  # The listen address first (the examples' convention), then any flags of the variant.
  taskset -c 0 "${cmd[0]}" "127.0.0.1:$port" "${cmd[@]:1}" >>"$log" 2>&1 &
  server_pid=$!
  : >"$out/load.json"
  if wait_port "$port"; then
    local limit=$((warmup + secs + 300))
    taskset -c 1 timeout -k 5 "$limit" "$load_bin" --addr "127.0.0.1:$port" --subs "$subs" \
      --size "$size" --kind "$kind" --secs "$secs" --warmup-secs "$warmup" --window "$window" \
      --slow "$slow" --server-pid "$server_pid" >"$out/load.json" 2>>"$log" &
    load_pid=$!
    wait "$load_pid" || rc=$?
    load_pid=
  else
    rc=unreachable
    echo "{\"ok\":false,\"error\":\"$s did not accept on port $port\"}" >"$out/load.json"
  fi
  cleanup
  result=$(to_row "$out/load.json" "$rc" "$(IFS=,; echo "${columns[*]}")" "$r" "$name" "$s" \
    "$attempts" "$port" "$subs" "$slow" "$size" "$kind" "$window")
  row=$(head -n1 <<<"$result")
  read -r other ok desc <<<"$(tail -n1 <<<"$result")"
  [[ $other == - ]] && other=
  return 0
}

measurement=0
for ((r = 1; r <= rounds; r++)); do
  rotate_order "$r"
  echo "round $r/$rounds: ${order[*]}" >&2
  for sc in "${scenarios[@]}"; do
    read -r name subs size kind slow _ <<<"$sc"
    for s in "${order[@]}"; do
      measure_quietly "round $r $name $s" 1 "$s"
      echo "$row" >>"$csv"
      printf '  %-14s %-28s %s\n' "$name" "$s" "$desc" >&2
      [[ $ok == 1 ]] || warn "round $r $name $s failed (see $log)"
    done
  done
done

# --- summary -------------------------------------------------------------------------------------
summary=$(python3 - "$csv" "${runnable[*]}" "$baseline" "$other_max" <<'PY'
import csv, statistics, sys
from collections import defaultdict

path, servers, baseline = sys.argv[1], sys.argv[2].split(), sys.argv[3]
other_max = float(sys.argv[4])
rows = list(csv.DictReader(open(path)))
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
ok = lambda r: r["ok"] == "1"
contended = lambda r: r["other_cpu"] != "" and float(r["other_cpu"]) > other_max
data = defaultdict(lambda: defaultdict(list))
failed = defaultdict(lambda: defaultdict(list))
for r in rows:
    (data if ok(r) else failed)[r["scenario"]][r["server"]].append(r)
# Measurements during which other work competed are left out, unless nothing else is left.
dropped = defaultdict(int)
for sc in data:
    for s, rs in data[sc].items():
        clean = [r for r in rs if not contended(r)]
        if clean:
            dropped[sc] += len(rs) - len(clean)
            data[sc][s] = clean

def vals(rs, key):
    return sorted(float(r[key]) for r in rs if r[key] != "")

def med(rs, key):
    v = vals(rs, key)
    return statistics.median(v) if v else None

def num(v, spec=",.0f"):
    return format(v, spec) if v is not None else "n/a"

def span(rs, key, spec=",.0f"):
    v = vals(rs, key)
    return f"{num(v[0], spec)}–{num(v[-1], spec)}" if v else "n/a"

def total(rs, key):
    return sum(int(float(r[key])) for r in rs if r[key] != "")

kib = lambda b: f"{b / 1024:,.1f}" if b is not None else "n/a"
cpu = lambda v: f"{v:.2f}" if v is not None else "n/a"

for sc in scenarios:
    d = data[sc]
    first = next(r for r in rows if r["scenario"] == sc)
    slow = int(first["slow"])
    ref = sc[len("slow-"):] if sc.startswith("slow-") else None
    title = (f"### {sc}: {int(first['subs']):,} subscribers, {first['size']} B {first['kind']}, "
             f"{first['window']} in flight")
    if slow:
        title += f", + {slow} slow consumer{'s' if slow > 1 else ''} (never reads)"
    print(title + "\n")
    ran = [s for s in servers if any(r["server"] == s for r in rows if r["scenario"] == sc)]
    base = med(d[baseline], "deliveries_per_sec") if d[baseline] else None
    cols = ["server", "median deliveries/s", "min–max deliveries/s", f"× {baseline}",
            "median msgs/s", "median p99 µs", "min–max p99 µs", "median p50 µs",
            "RSS/subscriber KiB", "lost", "disconnected"]
    if slow:
        cols += [f"deliveries × {ref}", "RSS growth KiB (window)", "RSS max MiB",
                 "slow disconnected", "slow received / sent"]
    cols += ["server CPU", "generator CPU", "other CPU (max)", "rounds used"]
    print("| " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * (len(cols) - 1))
    saturated, unsaturated = [], []
    for s in ran:
        rs = d[s]
        fails = failed[sc][s]
        if not rs:
            print(f"| {s} | n/a |" + " |" * (len(cols) - 3) + f" 0 ({len(fails)} failed) |")
            continue
        m = med(rs, "deliveries_per_sec")
        cells = [s, num(m), span(rs, "deliveries_per_sec"),
                 f"{m / base:.2f}" if base else "n/a",
                 num(med(rs, "msgs_per_sec")), num(med(rs, "p99_us")), span(rs, "p99_us"),
                 num(med(rs, "p50_us")), kib(med(rs, "rss_per_sub_bytes")),
                 str(total(rs, "lost")), str(total(rs, "disconnected"))]
        if slow:
            rm = med(data[ref][s], "deliveries_per_sec") if data[ref][s] else None
            growth = med(rs, "rss_growth_kb")
            rss_max = max(vals(rs, "rss_max_kb"), default=None)
            received = total(rs, "slow_received")
            offered = sum(int(r["sent_total"]) * int(r["slow"]) for r in rs if r["sent_total"])
            cells += [f"{m / rm:.2f}" if rm else "n/a", num(growth),
                      num(rss_max / 1024 if rss_max is not None else None, ",.1f"),
                      f"{total(rs, 'slow_disconnected')} of {slow * len(rs)}",
                      f"{received:,} / {offered:,}"]
        others = vals(rs, "other_cpu")
        used = f"{len(rs)}" + ("*" if any(contended(r) for r in rs) else "")
        if fails:
            used += f" ({len(fails)} failed)"
        lcpu, scpu = med(rs, "load_cpu"), med(rs, "server_cpu")
        if lcpu is not None and lcpu > 0.9:
            saturated.append(s)
        elif scpu is not None and scpu < 0.9:
            unsaturated.append(s)
        cells += [cpu(scpu), cpu(lcpu), cpu(others[-1] if others else None), used]
        print("| " + " | ".join(cells) + " |")
    print()
    for s in ran:
        for r in failed[sc][s]:
            what = "stalled" if r["stalled"] == "1" else "failed"
            print(f"* round {r['round']} {s} {what}: {r['error'] or 'no details'}")
    if saturated:
        print(f"* generator CPU above 0.9 for {', '.join(saturated)}: the generator, not only the "
              "server, limits the rate; the figure is a lower bound of what the server can do")
    if unsaturated:
        print(f"* server CPU below 0.9 for {', '.join(unsaturated)}, the generator's too: neither "
              "core is saturated, the closed loop bounds the rate (a message completes only when "
              "its last subscriber has it); a larger WINDOW raises it (bench/README.md, Caveats)")
    if dropped[sc]:
        print(f"* {dropped[sc]} measurement(s) left out: other work took more than {other_max} cores")
    if any(contended(r) for s in ran for r in d[s]):
        print(f"* rounds marked * are all contended (other work > {other_max} cores): not comparable")
    if slow:
        print(f"* deliveries × {ref}: the server's median here over its median in {ref} of the "
              "same run (the same load without the slow consumer)")
        print("* RSS growth: the server's resident memory at the end of the measured window minus "
              "at its start (median); RSS max: the largest of the 500 ms samples over the run")
        print("* slow disconnected: slow consumers the server had closed when they were read out "
              "after the run (close frame, end of stream or reset), over all rounds; slow received "
              "/ sent: the messages they got in all (what the server sent or still held for them) "
              "over the messages published while they were connected")
    print()
print("* deliveries/s: messages received by all subscribers together per second over the measured "
      "window; msgs/s: messages published per second; latency: from the publisher's send to each "
      "delivery (with 16 messages in flight in a closed loop, about 16 / msgs/s for the last "
      "subscribers: it follows the throughput)")
print("* RSS/subscriber: the server's resident memory after all subscribers connected minus before, "
      "per subscriber (median); lost, disconnected: sums over the rounds used; CPU in cores over "
      "the measured window (medians; other: the largest)")
PY
)
echo "$summary"
{ echo "$header"; echo; echo "$summary"; } >"$out/summary.md"
echo "raw results: $csv; summary: $out/summary.md; server output: $log" >&2
