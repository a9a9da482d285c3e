#!/usr/bin/env bash
# SSE fan-out benchmark: N Server-Sent Events subscribers of one hub room against N WebSocket
# subscribers of the same room, on the same server binary (examples/hub_fanout_server.rs: the
# room "fanout", WebSocket on /, SSE on GET /events), measured alternately in the same run.
#
# Usage: scripts/bench-sse.sh [rounds] [secs]     (defaults: 5 rounds, 5 s per measurement)
#
# One WebSocket publisher sends text messages of SIZE bytes (sequence number and send time in
# their first 32 bytes); the server broadcasts each to the room's other members: encoded once as
# a WebSocket frame for WebSocket members, once as `id: N\ndata: …\n\n` for SSE members. The load
# generator (bench/: fanout-load, closed loop with WINDOW messages in flight; `--sse` makes its
# subscribers raw-TCP SSE clients that decode the chunked body and the event lines themselves)
# checks every delivery's sequence number and measures latency from the publisher's send to each
# delivery. Each measurement starts a fresh server pinned to CPU 0, waits for its port, runs the
# generator pinned to CPU 1 for WARMUP + secs, then kills the server; the mode that goes first
# alternates every round (odd rounds SSE first). Prints a markdown summary: per mode the median
# deliveries/s over the rounds (min–max), p50 and p99 latency, server CPU and its time per
# delivery, memory per subscriber; then SSE / WebSocket per round (median, min–max). Raw JSON
# lines go to target/bench-sse/results.jsonl (and results.csv), the summary to
# target/bench-sse/summary.md, the server's and the generator's stderr to
# target/bench-sse/servers.log.
#
# Environment: SUBS (default 1000), SIZE (bytes, default 64, at least 32), WINDOW (messages in
# flight, default 16), WARMUP (seconds, default 1), BASE_PORT (default 21000; every measurement
# uses the next port), QUIET_WAIT, OTHER_MAX, RETRIES as in bench-fanout.sh: each measurement
# waits (at most QUIET_WAIT s, default 120) until other work uses less than OTHER_MAX cores
# (default 0.15); one during which other work took more is repeated up to RETRIES times (default
# 2), and if still contended is kept in the raw results but left out of the medians (unless all
# are contended).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_init bench-sse 21000 "${1:-5}" "${2:-5}"
subs=${SUBS:-1000}
size=${SIZE:-64}
window=${WINDOW:-16}
jsonl=$out/results.jsonl
: >"$jsonl"

warn() { echo "warning: $*" >&2; }

# --- cleanup: never leave a server or a generator running --------------------------------------
stop_children_on_exit

# --- tools, limits and builds --------------------------------------------------------------------
need_taskset
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }
hard=$(ulimit -Hn)
ulimit -n "$hard" 2>/dev/null || true
nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((nofile < subs + 100)); then
  warn "ulimit -n is $nofile: $subs subscribers need about $((subs + 100)) file descriptors"
fi

echo "building bench/ fanout-load and the example hub_fanout_server (release)…" >&2
cargo build -q --release --manifest-path bench/Cargo.toml --bin fanout-load
cargo build -q --release --example hub_fanout_server
load_bin=$root/bench/target/release/fanout-load
server_bin=$root/target/release/examples/hub_fanout_server

# --- header --------------------------------------------------------------------------------------
bench_identity
header="# SSE fan-out benchmark: SSE against WebSocket subscribers of one hub room

* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit
* machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(rustc --version); ulimit -n $nofile
* server: examples/hub_fanout_server (release), fresh for each measurement, on CPU 0; load
  generator (bench/ fanout-load) on CPU 1
* $subs subscribers, $size B text messages, one WebSocket publisher, $window in flight (closed
  loop); $rounds rounds × (${warmup} s warmup + ${secs} s) per mode, SSE and WebSocket alternating"
echo "$header"
echo

# --- measurements --------------------------------------------------------------------------------
# One measurement of `mode` (sse or websocket) on port $1; appends its JSON line (with round,
# mode, attempt and port added) to $jsonl and sets `other` (other work's CPU, maybe empty), `ok`
# (1 or 0) and `desc` (one line for the progress output).
measure() {
  local port=$1 rc=0 flags=()
  [[ $mode == sse ]] && flags=(--sse)
  echo "== round $r $mode 127.0.0.1:$port" >>"$log"
  taskset -c 0 "$server_bin" "127.0.0.1:$port" >>"$log" 2>&1 &
  server_pid=$!
  : >"$out/load.json"
  if wait_port "$port"; then
    taskset -c 1 timeout -k 5 $((warmup + secs + 300)) "$load_bin" --addr "127.0.0.1:$port" \
      --subs "$subs" --size "$size" --kind text --secs "$secs" --warmup-secs "$warmup" \
      --window "$window" --server-pid "$server_pid" "${flags[@]}" >"$out/load.json" 2>>"$log" &
    load_pid=$!
    wait "$load_pid" || rc=$?
    load_pid=
  else
    rc=unreachable
  fi
  cleanup
  read -r other ok desc < <(python3 - "$out/load.json" "$jsonl" "$rc" "$r" "$mode" "$attempts" \
    "$port" <<'PY'
import json, sys
path, jsonl, rc, rnd, mode, attempts, port = sys.argv[1:]
d = None
try:
    lines = [l for l in open(path).read().splitlines() if l.strip().startswith("{")]
    d = json.loads(lines[-1])
except Exception:
    pass
if d is None:
    d = {"ok": False, "error": f"fanout-load gave no result (exit status {rc})"}
d.update(round=int(rnd), mode=mode, attempts=int(attempts), port=int(port))
with open(jsonl, "a") as f:
    f.write(json.dumps(d) + "\n")
fmt = lambda k, spec: format(d[k], spec) if d.get(k) is not None else "n/a"
if d.get("ok"):
    desc = (f"{fmt('deliveries_per_sec', ',.0f')} deliveries/s, p50 {fmt('p50_us', ',.0f')} µs, "
            f"p99 {fmt('p99_us', ',.0f')} µs, lost {d.get('lost')}, disc {d.get('disconnected')}, "
            f"cpu: server {fmt('server_cpu', '.2f')}, generator {fmt('load_cpu', '.2f')}, "
            f"other {fmt('other_cpu', '.2f')}")
else:
    desc = f"FAILED: {d.get('error')}"
other = d.get("other_cpu")
print(f"{'-' if other is None else other} {int(bool(d.get('ok')))} {desc}")
PY
  )
  [[ $other == - ]] && other=
  return 0
}

measurement=0
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then order=(sse websocket); else order=(websocket sse); fi
  echo "round $r/$rounds: ${order[*]}" >&2
  for mode in "${order[@]}"; do
    measure_quietly "round $r $mode" 1
    printf '  %-10s %s\n' "$mode" "$desc" >&2
    [[ $ok == 1 ]] || warn "round $r $mode failed (see $log)"
  done
done

# --- summary -------------------------------------------------------------------------------------
summary=$(python3 - "$jsonl" "$csv" "$other_max" <<'PY'
import csv, json, statistics, sys

jsonl, csv_path, other_max = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
# The raw rows as CSV too, one column per field (the RSS series joined with ;).
columns = list(dict.fromkeys(k for r in rows for k in r))
with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(columns)
    for r in rows:
        w.writerow([";".join(map(str, v)) if isinstance(v, list) else
                    ("" if v is None else v) for v in (r.get(c) for c in columns)])

contended = lambda r: r.get("other_cpu") is not None and r["other_cpu"] > other_max
modes = ["sse", "websocket"]
used = {}
for m in modes:
    ok = [r for r in rows if r["mode"] == m and r.get("ok")]
    # The last attempt of each round; contended ones only if nothing else is left.
    by_round = {}
    for r in ok:
        by_round[r["round"]] = r
    clean = {k: r for k, r in by_round.items() if not contended(r)}
    used[m] = clean or by_round

def per_delivery_ns(r):
    if r.get("server_cpu") is None or not r.get("deliveries_per_sec"):
        return None
    return r["server_cpu"] / r["deliveries_per_sec"] * 1e9

def vals(rs, f):
    return sorted(v for v in (f(r) for r in rs) if v is not None)

def med(rs, f):
    v = vals(rs, f)
    return statistics.median(v) if v else None

def span(rs, f, spec):
    v = vals(rs, f)
    return f"{v[0]:{spec}}–{v[-1]:{spec}}" if v else "n/a"

def num(v, spec=",.0f"):
    return format(v, spec) if v is not None else "n/a"

key = lambda k: (lambda r: r.get(k))
name = {"sse": "SSE (`GET /events`)", "websocket": "WebSocket (`/`)"}
cols = ["subscribers", "median deliveries/s", "min–max", "p50 µs, median (min–max)",
        "p99 µs, median (min–max)", "server CPU", "server CPU ns / delivery",
        "generator CPU", "other CPU (max)", "RSS / subscriber KiB", "lost", "disconnected",
        "rounds used"]
print("| " + " | ".join(cols) + " |")
print("|---|" + "---:|" * (len(cols) - 1))
for m in modes:
    rs = list(used[m].values())
    failed = sum(1 for r in rows if r["mode"] == m and not r.get("ok"))
    n = f"{len(rs)}" + ("*" if any(contended(r) for r in rs) else "")
    if failed:
        n += f" ({failed} failed)"
    if not rs:
        print(f"| {name[m]} | n/a |" + " |" * (len(cols) - 3) + f" {n} |")
        continue
    others = vals(rs, key("other_cpu"))
    rss = med(rs, key("rss_per_sub_bytes"))
    print("| " + " | ".join([
        name[m], num(med(rs, key("deliveries_per_sec"))), span(rs, key("deliveries_per_sec"), ",.0f"),
        f"{num(med(rs, key('p50_us')))} ({span(rs, key('p50_us'), ',.0f')})",
        f"{num(med(rs, key('p99_us')))} ({span(rs, key('p99_us'), ',.0f')})",
        num(med(rs, key("server_cpu")), ".2f"), num(med(rs, per_delivery_ns)),
        num(med(rs, key("load_cpu")), ".2f"), num(others[-1] if others else None, ".2f"),
        num(rss / 1024 if rss is not None else None, ",.1f"),
        str(sum(r.get("lost") or 0 for r in rs)), str(sum(r.get("disconnected") or 0 for r in rs)),
        n]) + " |")
print()

# SSE over WebSocket, per round (the two measurements of a round are back to back).
rounds = sorted(set(used["sse"]) & set(used["websocket"]))
def ratios(f):
    out = []
    for k in rounds:
        a, b = f(used["sse"][k]), f(used["websocket"][k])
        if a is not None and b:
            out.append(a / b)
    return sorted(out)
print("| SSE / WebSocket, per round | median | min–max | rounds |")
print("|---|---:|---:|---:|")
for label, f in [("deliveries/s", key("deliveries_per_sec")), ("p50 latency", key("p50_us")),
                 ("p99 latency", key("p99_us")), ("server CPU per delivery", per_delivery_ns)]:
    v = ratios(f)
    if v:
        print(f"| {label} | **{statistics.median(v):.2f}** | {v[0]:.2f}–{v[-1]:.2f} | {len(v)} |")
    else:
        print(f"| {label} | n/a | n/a | 0 |")
print()
for r in rows:
    if not r.get("ok"):
        print(f"* round {r['round']} {r['mode']} failed: {r.get('error') or 'no details'}")
if any(contended(r) for m in modes for r in used[m].values()):
    print(f"* rounds marked * were contended (other work > {other_max} cores)")
print("* deliveries/s: messages received by all subscribers together per second over the "
      "measured window; latency: from the publisher's send to each delivery (closed loop: it "
      "follows the throughput); server CPU in cores over the window, and divided by the "
      "deliveries (ns of server CPU per delivery); RSS / subscriber: the server's resident "
      "memory after all subscribers connected minus before, per subscriber")
PY
)
echo "$summary"
{ echo "$header"; echo; echo "$summary"; } >"$out/summary.md"
echo "raw results: $jsonl, $csv; summary: $out/summary.md; server output: $log" >&2
