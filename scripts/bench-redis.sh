#!/usr/bin/env bash
# Hub fan-out across two nodes through Redis, against the same load on one in-process hub,
# measured in the same run (see bench/README.md, "Fan-out across nodes through Redis", and
# BENCHMARKS.md).
#
# Usage: scripts/bench-redis.sh [rounds] [secs]     (defaults: 3 rounds, 5 s per measurement)
#
# Starts its own redis-server on a free loopback port (no persistence; installed with apt if
# missing; stopped at the end), builds the example hub_fanout_server and bench/'s fanout-load
# (release), then, every round, in an order that alternates from round to round:
#
# * in-process: one hub_fanout_server, SUBS subscribers (default 1,000), all on it;
# * two nodes: two hub_fanout_server processes with `--redis redis://127.0.0.1:PORT` (one hub
#   through Redis), the subscribers split round-robin over them (500 + 500), the publisher on the
#   first. Every message the publisher sends is delivered by the first node to its own members at
#   once and published to Redis once; Redis sends it to both nodes (each has members in the room,
#   so each subscribes to its channel); the second node delivers it to its members, the first
#   skips its own echo.
#
# One publisher sends SIZE-byte binary messages (default 64); the generator (fanout-load, closed
# loop, WINDOW messages in flight, default 16) checks every delivery's sequence number and
# measures latency from the publisher's send to each delivery; `--warmup-secs` (WARMUP, default
# 1) runs before the measured window, after every subscriber is connected (and every node has
# subscribed to the room's channel: it does so when its first member joins, long before).
#
# Pinning: the servers (one, or both nodes) AND redis-server on CPU 0 (REDIS_CPU to move Redis),
# the generator on CPU 1: the server side gets the same one core in both configurations, so the
# throughput ratio is that of the total work per delivery, Redis included.
#
# Redis CPU: fanout-load reads the redis-server process's CPU time at the start and end of its
# measured window (`--extra-pid`; the sum of its threads' /proc/PID/task/*/schedstat, to the
# nanosecond, as utime + stime's 10 ms ticks are too coarse for a few ms per second), so it
# covers exactly the window; divided by the deliveries (and by the published messages) of the
# window. The in-process measurement of the same round gives Redis's idle CPU over its window
# (its timers), subtracted for "above idle". Redis commands: `total_commands_processed` (INFO
# stats) and the PUBLISH calls (INFO commandstats) before and after the whole run, over the
# messages published in it (subscriptions and presence writes included in the former).
#
# Then (PUBSUB=1, the default; PUBSUB=0 skips it, FANOUT=0 skips the fan-out part) a pub/sub
# matching micro-benchmark on the same Redis: two subscriber connections (two "nodes") and
# redis-benchmark publishing PUBSUB_N (default 200,000) 64-byte messages to random channels of
# ROOMS (default 1,000) rooms, a fresh Redis for each measurement on CPU 0 and the clients on
# CPU 1, Redis CPU per PUBLISH read from /proc around each publishing run, for: no subscriber; each connection SUBSCRIBEd to
# every room's channel by name; each to half the rooms (disjoint halves: a node subscribed only
# where it has members); one PSUBSCRIBE `prefix:room:*` per connection; 1,000 PSUBSCRIBE
# patterns per connection (one per room); SSUBSCRIBE + SPUBLISH to every room (sharded).
#
# Output: a markdown summary (also target/bench-redis/summary.md), raw rows in
# target/bench-redis/results.csv (fan-out) and target/bench-redis/pubsub.csv, servers' and the
# generator's stderr in target/bench-redis/servers.log, Redis's in target/bench-redis/redis.log.
#
# Environment: SUBS, SIZE, WINDOW, WARMUP, REDIS_CPU, REDIS_PORT (first port tried, default
# 26379), BASE_PORT (default 22000; every measurement takes two fresh ports), QUIET_WAIT,
# OTHER_MAX, RETRIES as in bench-fanout.sh (a measurement during which other work took more than
# OTHER_MAX cores is repeated up to RETRIES times, and if still contended kept in the CSV but left
# out of the medians unless all are), PUBSUB, FANOUT, PUBSUB_N, ROOMS.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_init bench-redis 22000 "$@"
subs=${SUBS:-1000}
size=${SIZE:-64}
window=${WINDOW:-16}
redis_cpu=${REDIS_CPU:-0}
do_fanout=${FANOUT:-1}
do_pubsub=${PUBSUB:-1}
pubsub_n=${PUBSUB_N:-200000}
rooms=${ROOMS:-1000}
jsonl=$out/results.jsonl
pubsub_csv=$out/pubsub.csv
redis_log=$out/redis.log
: >"$jsonl"

warn() { echo "warning: $*" >&2; }

# --- cleanup: never leave a server, a generator or Redis running -------------------------------
server_pid=
server_pids=()
load_pid=
redis_pid=
sub_pid=
cleanup() { # the measurement's processes
  local p
  stop "$load_pid"
  for p in "${server_pids[@]}"; do stop "$p"; done
  stop "$sub_pid"
  server_pid=
  server_pids=()
  load_pid=
  sub_pid=
}
finish() {
  cleanup
  stop "$redis_pid"
  redis_pid=
}
trap finish EXIT
trap 'finish; trap - INT; kill -INT $$' INT
trap 'finish; exit 143' TERM

# --- tools, limits and builds --------------------------------------------------------------------
need_taskset
if ! command -v redis-server >/dev/null; then
  echo "installing redis-server…" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }
have_cli=
command -v redis-cli >/dev/null && have_cli=1
if [[ $do_pubsub == 1 ]] && ! command -v redis-benchmark >/dev/null; then
  warn "redis-benchmark not found (package redis-tools): skipping the pub/sub part"
  do_pubsub=0
fi
hard=$(ulimit -Hn)
ulimit -n "$hard" 2>/dev/null || true
nofile=$(ulimit -n)
if [[ $nofile != unlimited ]] && ((nofile < subs + 100)); then
  warn "ulimit -n is $nofile: $subs subscribers need about $((subs + 100)) file descriptors"
fi

if [[ $do_fanout == 1 ]]; then
  echo "building bench/ fanout-load and the example hub_fanout_server (release)…" >&2
  cargo build -q --release --manifest-path bench/Cargo.toml --bin fanout-load
  cargo build -q --release --example hub_fanout_server
fi
load_bin=$root/bench/target/release/fanout-load
server_bin=$root/target/release/examples/hub_fanout_server

# Whether something accepts on loopback port $1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A fresh Redis (the previous one stopped) on the first free port from REDIS_PORT on; sets
# `redis_pid`, `redis_port` and `redis_url`.
start_redis() {
  local i
  stop "$redis_pid"
  redis_pid=
  redis_port=${REDIS_PORT:-26379}
  while listening "$redis_port"; do redis_port=$((redis_port + 1)); done
  taskset -c "$redis_cpu" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" \
    --appendonly no --daemonize no >>"$redis_log" 2>&1 &
  redis_pid=$!
  for ((i = 0; i < 100; i++)); do
    listening "$redis_port" && break
    alive "$redis_pid" || { echo "redis-server did not start (see $redis_log)" >&2; exit 1; }
    sleep 0.05
  done
  listening "$redis_port" || { echo "redis-server does not accept on $redis_port" >&2; exit 1; }
  redis_url=redis://127.0.0.1:$redis_port
}
: >"$redis_log"
start_redis
redis_version=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')

# Redis's total_commands_processed (empty without redis-cli).
redis_commands() {
  [[ -n $have_cli ]] || return 0
  redis-cli -p "$redis_port" INFO stats 2>/dev/null | tr -d '\r' \
    | sed -n 's/^total_commands_processed://p'
}

# Redis's PUBLISH and SPUBLISH calls so far (INFO commandstats; empty without redis-cli).
redis_publishes() {
  [[ -n $have_cli ]] || return 0
  redis-cli -p "$redis_port" INFO commandstats 2>/dev/null | tr -d '\r' \
    | awk -F'[=,:]' '$1 == "cmdstat_publish" || $1 == "cmdstat_spublish" { n += $3 } END { print n + 0 }'
}

# CPU seconds process $1 has used so far: the sum of its threads' time on a CPU in nanoseconds
# (/proc/PID/task/*/schedstat, first field), or utime + stime (10 ms ticks) without schedstat.
proc_cpu() {
  local rest
  if cat /proc/"$1"/task/*/schedstat >/dev/null 2>&1; then
    cat /proc/"$1"/task/*/schedstat | awk '{ ns += $1 } END { printf "%.6f", ns / 1e9 }'
  else
    rest=$(sed 's/.*) //' "/proc/$1/stat")
    awk '{ printf "%.2f", ($12 + $13) / 100 }' <<<"$rest"
  fi
}

# --- header --------------------------------------------------------------------------------------
bench_identity
header="# Hub fan-out across two nodes through Redis, against one in-process hub

* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit
* machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(rustc --version); ulimit -n $nofile;
  redis-server $redis_version (no persistence) on CPU $redis_cpu
* servers: examples/hub_fanout_server (release), fresh for each measurement, on CPU 0 (one
  in-process, or two nodes with --redis); load generator (bench/ fanout-load) on CPU 1
* $subs subscribers, $size B binary messages, one publisher (on the first node), $window in flight
  (closed loop); $rounds rounds × (${warmup} s warmup + ${secs} s) per configuration, the order
  alternating"
echo "$header"
echo

# --- fan-out measurements ------------------------------------------------------------------------
# One measurement of `config` (in-process or two-nodes) on ports $1 and $1 + 1; appends its JSON
# line (with round, config, attempts, ports and Redis's commands added) to $jsonl and sets
# `other`, `ok` and `desc`.
measure() {
  local port=$1 rc=0 addrs pids cmds0= cmds1= pubs0= pubs1= p
  echo "== round $r $config 127.0.0.1:$port" >>"$log"
  if [[ $config == in-process ]]; then
    taskset -c 0 "$server_bin" "127.0.0.1:$port" >>"$log" 2>&1 &
    server_pids=($!)
    addrs=127.0.0.1:$port
  else
    taskset -c 0 "$server_bin" "127.0.0.1:$port" --redis "$redis_url" >>"$log" 2>&1 &
    server_pids=($!)
    taskset -c 0 "$server_bin" "127.0.0.1:$((port + 1))" --redis "$redis_url" >>"$log" 2>&1 &
    server_pids+=($!)
    addrs=127.0.0.1:$port,127.0.0.1:$((port + 1))
  fi
  : >"$out/load.json"
  local up=1
  for p in "${!server_pids[@]}"; do
    server_pid=${server_pids[$p]}
    wait_port $((port + p)) || up=
  done
  if [[ -n $up ]]; then
    pids=$(IFS=,; echo "${server_pids[*]}")
    cmds0=$(redis_commands)
    pubs0=$(redis_publishes)
    taskset -c 1 timeout -k 5 $((warmup + secs + 300)) "$load_bin" --addr "$addrs" \
      --subs "$subs" --size "$size" --kind binary --secs "$secs" --warmup-secs "$warmup" \
      --window "$window" --server-pid "$pids" --extra-pid "$redis_pid" \
      >"$out/load.json" 2>>"$log" &
    load_pid=$!
    wait "$load_pid" || rc=$?
    load_pid=
    cmds1=$(redis_commands)
    pubs1=$(redis_publishes)
  else
    rc=unreachable
  fi
  cleanup
  read -r other ok desc < <(python3 - "$out/load.json" "$jsonl" "$rc" "$r" "$config" \
    "$attempts" "$port" "${cmds0:-}" "${cmds1:-}" "${pubs0:-}" "${pubs1:-}" <<'PY'
import json, sys
path, jsonl, rc, rnd, config, attempts, port, c0, c1, p0, p1 = sys.argv[1:]
d = None
try:
    lines = [l for l in open(path).read().splitlines() if l.strip().startswith("{")]
    d = json.loads(lines[-1])
except Exception:
    pass
if d is None:
    d = {"ok": False, "error": f"fanout-load gave no result (exit status {rc})"}
d.update(round=int(rnd), config=config, attempts=int(attempts), port=int(port))
d["redis_commands"] = int(c1) - int(c0) if c0 and c1 else None
d["redis_publishes"] = int(p1) - int(p0) if p0 and p1 else None
d["redis_cpu"] = d.pop("extra_cpu", None)
with open(jsonl, "a") as f:
    f.write(json.dumps(d) + "\n")
fmt = lambda k, spec: format(d[k], spec) if d.get(k) is not None else "n/a"
if d.get("ok"):
    desc = (f"{fmt('deliveries_per_sec', ',.0f')} deliveries/s, p99 {fmt('p99_us', ',.0f')} µs, "
            f"lost {d.get('lost')}, disc {d.get('disconnected')}, cpu: servers "
            f"{fmt('server_cpu', '.2f')}, redis {fmt('redis_cpu', '.3f')}, generator "
            f"{fmt('load_cpu', '.2f')}, other {fmt('other_cpu', '.2f')}; redis commands "
            f"{d.get('redis_commands')} ({d.get('redis_publishes')} PUBLISH) for {d.get('sent_total')} "
            "messages")
else:
    desc = f"FAILED: {d.get('error')}"
other = d.get("other_cpu")
print(f"{'-' if other is None else other} {int(bool(d.get('ok')))} {desc}")
PY
  )
  [[ $other == - ]] && other=
  return 0
}

if [[ $do_fanout == 1 ]]; then
  measurement=0
  for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then order=(in-process two-nodes); else order=(two-nodes in-process); fi
    echo "round $r/$rounds: ${order[*]}" >&2
    for config in "${order[@]}"; do
      measure_quietly "round $r $config" 2
      printf '  %-11s %s\n' "$config" "$desc" >&2
      [[ $ok == 1 ]] || warn "round $r $config failed (see $log)"
    done
  done
fi

fanout_summary=
if [[ $do_fanout == 1 ]]; then
  fanout_summary=$(python3 - "$jsonl" "$csv" "$other_max" <<'PY'
import csv, json, statistics, sys

jsonl, csv_path, other_max = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [json.loads(l) for l in open(jsonl) if l.strip()]

def per(r, num, den, scale):
    if r.get(num) is None or not r.get(den):
        return None
    return r[num] / r[den] * scale

for r in rows:
    # Redis CPU per delivery and per published message (µs), the servers' (and Redis's) CPU per
    # delivery (ns), Redis commands per published message.
    r["redis_cpu_us_per_delivery"] = per(r, "redis_cpu", "deliveries_per_sec", 1e6)
    r["redis_cpu_us_per_msg"] = per(r, "redis_cpu", "msgs_per_sec", 1e6)
    r["server_cpu_ns_per_delivery"] = per(r, "server_cpu", "deliveries_per_sec", 1e9)
    side = (r["server_cpu"] + (r.get("redis_cpu") or 0)) if r.get("server_cpu") is not None else None
    r["side_cpu_ns_per_delivery"] = (side / r["deliveries_per_sec"] * 1e9
                                     if side is not None and r.get("deliveries_per_sec") else None)
    r["redis_commands_per_msg"] = per(r, "redis_commands", "sent_total", 1)
    r["redis_publishes_per_msg"] = per(r, "redis_publishes", "sent_total", 1)
# Redis's idle CPU (its timers) over the in-process measurement of the same round, subtracted.
idle = {r["round"]: r.get("redis_cpu") for r in rows if r["config"] == "in-process" and r.get("ok")}
for r in rows:
    i = idle.get(r["round"])
    r["redis_idle_cpu"] = i
    r["redis_cpu_us_per_msg_above_idle"] = (
        (r["redis_cpu"] - i) / r["msgs_per_sec"] * 1e6
        if r["config"] != "in-process" and i is not None and r.get("redis_cpu") is not None
        and r.get("msgs_per_sec") else None)

first = ["round", "config", "attempts", "port", "ok", "error", "stalled", "nodes",
         "deliveries_per_sec", "msgs_per_sec", "p50_us", "p99_us", "p999_us", "max_us", "lost",
         "disconnected", "sent_total", "server_cpu", "redis_cpu", "load_cpu", "other_cpu",
         "machine_cpu", "redis_cpu_us_per_delivery", "redis_cpu_us_per_msg",
         "redis_cpu_us_per_msg_above_idle", "redis_idle_cpu", "server_cpu_ns_per_delivery",
         "side_cpu_ns_per_delivery", "redis_commands", "redis_commands_per_msg",
         "redis_publishes", "redis_publishes_per_msg"]
columns = first + [k for k in dict.fromkeys(k for r in rows for k in r) if k not in first]
with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(columns)
    for r in rows:
        w.writerow([";".join(map(str, v)) if isinstance(v, list) else
                    int(v) if isinstance(v, bool) else
                    ("" if v is None else v) for v in (r.get(c) for c in columns)])

contended = lambda r: r.get("other_cpu") is not None and r["other_cpu"] > other_max
configs = ["in-process", "two-nodes"]
used = {}
for c in configs:
    by_round = {}
    for r in rows:
        if r["config"] == c and r.get("ok"):
            by_round[r["round"]] = r  # the last attempt of each round
    clean = {k: r for k, r in by_round.items() if not contended(r)}
    used[c] = clean or by_round

key = lambda k: (lambda r: r.get(k))
def vals(rs, f):
    return sorted(v for v in (f(r) for r in rs) if v is not None)
def med(rs, f):
    v = vals(rs, f)
    return statistics.median(v) if v else None
def num(v, spec=",.0f"):
    return format(v, spec) if v is not None else "n/a"
def cell(rs, f, spec=",.0f", scale=1):
    v = [x * scale for x in vals(rs, f)]
    if not v:
        return "n/a"
    if len(v) == 1:
        return num(v[0], spec)
    return f"{num(statistics.median(v), spec)} ({num(v[0], spec)}–{num(v[-1], spec)})"

# Ratios within each round (the two configurations measured back to back).
rounds = sorted(set(used["in-process"]) & set(used["two-nodes"]))
def ratios(f):
    out = []
    for k in rounds:
        a, b = f(used["two-nodes"][k]), f(used["in-process"][k])
        if a is not None and b:
            out.append(a / b)
    return sorted(out)
def ratio_cell(f):
    v = ratios(f)
    if not v:
        return "n/a"
    return f"**{statistics.median(v):.2f}** ({v[0]:.2f}–{v[-1]:.2f})"

name = {"in-process": "one hub, in-process", "two-nodes": "two nodes through Redis"}
cols = ["configuration", "deliveries/s", "× in-process", "p50 ms", "p99 ms", "p99 × in-process",
        "server CPU (cores)", "Redis CPU (cores)", "Redis CPU µs / delivery",
        "Redis CPU µs / message", "Redis CPU µs / message above idle",
        "server + Redis CPU ns / delivery", "Redis commands / message", "PUBLISH / message",
        "generator CPU", "other CPU (max)", "lost", "disconnected", "rounds used"]
print("| " + " | ".join(cols) + " |")
print("|---|" + "---:|" * (len(cols) - 1))
for c in configs:
    rs = list(used[c].values())
    failed = sum(1 for r in rows if r["config"] == c and not r.get("ok"))
    n = f"{len(rs)}" + ("*" if any(contended(r) for r in rs) else "")
    if failed:
        n += f" ({failed} failed)"
    if not rs:
        print(f"| {name[c]} | n/a |" + " |" * (len(cols) - 3) + f" {n} |")
        continue
    others = vals(rs, key("other_cpu"))
    is_ref = c == "in-process"
    print("| " + " | ".join([
        name[c], cell(rs, key("deliveries_per_sec")),
        "1" if is_ref else ratio_cell(key("deliveries_per_sec")),
        cell(rs, key("p50_us"), ",.1f", 1e-3), cell(rs, key("p99_us"), ",.1f", 1e-3),
        "1" if is_ref else ratio_cell(key("p99_us")),
        cell(rs, key("server_cpu"), ".2f"), cell(rs, key("redis_cpu"), ".3f"),
        cell(rs, key("redis_cpu_us_per_delivery"), ".3f"),
        cell(rs, key("redis_cpu_us_per_msg"), ".1f"),
        "–" if is_ref else cell(rs, key("redis_cpu_us_per_msg_above_idle"), ".1f"),
        cell(rs, key("side_cpu_ns_per_delivery"), ",.0f"),
        cell(rs, key("redis_commands_per_msg"), ".3f"),
        cell(rs, key("redis_publishes_per_msg"), ".3f"),
        cell(rs, key("load_cpu"), ".2f"), num(others[-1] if others else None, ".2f"),
        str(sum(r.get("lost") or 0 for r in rs)), str(sum(r.get("disconnected") or 0 for r in rs)),
        n]) + " |")
print()
for r in rows:
    if not r.get("ok"):
        print(f"* round {r['round']} {r['config']} failed: {r.get('error') or 'no details'}")
if any(contended(r) for c in configs for r in used[c].values()):
    print(f"* rounds marked * were contended (other work > {other_max} cores)")
print("* medians over the rounds (min–max); × in-process: two nodes over in-process within each "
      "round (median, min–max); deliveries/s: messages received by all subscribers together per "
      "second over the measured window; latency from the publisher's send to each delivery "
      "(closed loop: it follows the throughput); CPU in cores over the measured window (server: "
      "both nodes together); Redis CPU per delivery and per published message: its threads' "
      "time on a CPU over the window (schedstat, ns), above idle: minus Redis's CPU over the "
      "in-process measurement of the same round; Redis commands per message: "
      "total_commands_processed over the whole run (subscriptions, presence), PUBLISH per "
      "message: PUBLISH calls over the whole run, both over the messages published in it; lost, "
      "disconnected: sums over the rounds used")
PY
  )
  echo "$fanout_summary"
  echo
fi

# --- pub/sub matching: SUBSCRIBE by name against PSUBSCRIBE, Redis CPU per PUBLISH ---------------
pubsub_summary=
if [[ $do_pubsub == 1 ]]; then
  # Subscriber connections (one python process, on CPU 1): read and discard, counting messages
  # (the marker of a 64-byte bulk payload), "ready" once every subscription is confirmed, the
  # counts on SIGTERM.
  cat >"$out/subscriber.py" <<'PY'
import selectors, signal, socket, sys
port, ready_path, count_path, command = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
groups = [g.split() for g in sys.argv[5:]]  # one connection per argument: its channels/patterns
marker, acks = b"\r\n$64\r\n", b"subscribe\r\n"
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
sel = selectors.DefaultSelector()
state = []
for names in groups:
    s = socket.create_connection(("127.0.0.1", int(port)))
    parts = [command.encode()] + [n.encode() for n in names]
    s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
    s.setblocking(False)
    st = {"want": len(names), "acks": 0, "msgs": 0, "tail": b"", "atail": b""}
    state.append(st)
    sel.register(s, selectors.EVENT_READ, st)
ready = False
while not stop:
    for k, _ in sel.select(0.1):
        try:
            data = k.fileobj.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            stop = True
            break
        st = k.data
        # Each marker counted once: the carried tails are shorter than the markers.
        buf = st["tail"] + data
        st["msgs"] += buf.count(marker)
        st["tail"] = buf[-(len(marker) - 1):]
        if st["acks"] < st["want"]:
            abuf = st["atail"] + data
            st["acks"] += abuf.count(acks)
            st["atail"] = abuf[-(len(acks) - 1):]
    if not ready and all(st["acks"] >= st["want"] for st in state):
        ready = True
        open(ready_path, "w").write("ready\n")
open(count_path, "w").write(" ".join(str(st["msgs"]) for st in state) + "\n")
PY
  payload=$(head -c 64 /dev/zero | tr '\0' x) # the subscribers count `$64` bulk strings
  prefix=bench
  # The rooms' channel names as redis-benchmark's -r writes them (12 digits).
  mapfile -t names < <(seq -f "$prefix:room:%012g" 0 $((rooms - 1)))
  half=$((rooms / 2))
  all_names="${names[*]}"
  first_half="${names[*]:0:half}"
  second_half="${names[*]:half}"
  # name, subscribe command, connection 1, connection 2, publish command
  pubsub_scenarios=(
    "none|-|-|-|PUBLISH"
    "subscribe-all|SUBSCRIBE|$all_names|$all_names|PUBLISH"
    "subscribe-half|SUBSCRIBE|$first_half|$second_half|PUBLISH"
    "psubscribe-1|PSUBSCRIBE|$prefix:room:*|$prefix:room:*|PUBLISH"
    "psubscribe-$rooms|PSUBSCRIBE|$all_names|$all_names|PUBLISH"
    "ssubscribe-all|SSUBSCRIBE|$all_names|$all_names|SPUBLISH"
  )
  echo "pubsub,round,scenario,publishes,secs,redis_cpu_s,redis_cpu_us_per_publish,delivered,commands,other_cpu_on_redis_core" >"$pubsub_csv"
  for ((r = 1; r <= rounds; r++)); do
    echo "pub/sub round $r/$rounds" >&2
    for sc in "${pubsub_scenarios[@]}"; do
      IFS='|' read -r sname scmd conn1 conn2 pcmd <<<"$sc"
      # A fresh Redis for every measurement: Redis 7.0 keeps the hash table of its patterns at
      # its largest size once they are gone, and every PUBLISH walks it (after 1,000 patterns,
      # about 3 µs more per PUBLISH with no pattern left).
      start_redis
      wait_quiet
      rm -f "$out/sub.ready" "$out/sub.count"
      if [[ $scmd != - ]]; then
        taskset -c 1 python3 "$out/subscriber.py" "$redis_port" "$out/sub.ready" "$out/sub.count" \
          "$scmd" "$conn1" "$conn2" 2>>"$log" &
        sub_pid=$!
        for ((i = 0; i < 200; i++)); do
          [[ -e $out/sub.ready ]] && break
          alive "$sub_pid" || break
          sleep 0.05
        done
        [[ -e $out/sub.ready ]] || warn "pub/sub $sname: the subscribers are not ready"
      fi
      c0=$(redis_commands)
      m0=$(grep "^cpu$redis_cpu " /proc/stat)
      t0=$(date +%s.%N)
      cpu0=$(proc_cpu "$redis_pid")
      taskset -c 1 redis-benchmark -p "$redis_port" -c 2 -P 16 -n "$pubsub_n" -r "$rooms" -q \
        "$pcmd" "$prefix:room:__rand_int__" "$payload" 2>&1 | tr '\r' '\n' | tail -n 1 >>"$log" \
        || warn "redis-benchmark failed"
      cpu1=$(proc_cpu "$redis_pid")
      t1=$(date +%s.%N)
      m1=$(grep "^cpu$redis_cpu " /proc/stat)
      c1=$(redis_commands)
      delivered=0
      if [[ -n $sub_pid ]]; then
        sleep 0.5 # the last messages reach the subscribers
        stop "$sub_pid"
        sub_pid=
        delivered=$(awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }' \
          "$out/sub.count" 2>/dev/null || echo "")
      fi
      # Other work on Redis's core (the clients are on the other one): its busy time minus
      # Redis's, over the publishing run.
      read -r secs_run cpu_s per_pub other < <(awk -v a="$m0" -v b="$m1" -v t0="$t0" -v t1="$t1" \
        -v c0="$cpu0" -v c1="$cpu1" -v n="$pubsub_n" 'BEGIN {
          split(a, x); split(b, y); busy = 0
          for (i = 2; i <= 9; i++) if (i != 5 && i != 6) busy += y[i] - x[i]
          dt = t1 - t0; cpu = c1 - c0
          printf "%.3f %.4f %.3f %.2f\n", dt, cpu, cpu / n * 1e6, (busy / 100 - cpu) / dt }')
      echo "pubsub,$r,$sname,$pubsub_n,$secs_run,$cpu_s,$per_pub,$delivered,$((${c1:-0} - ${c0:-0})),$other" >>"$pubsub_csv"
      printf '  %-16s %s µs Redis CPU per publish (%s s over %s s), %s delivered\n' \
        "$sname" "$per_pub" "$cpu_s" "$secs_run" "$delivered" >&2
    done
  done
  pubsub_summary=$(python3 - "$pubsub_csv" "$pubsub_n" "$rooms" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n, rooms = int(sys.argv[2]), int(sys.argv[3])
names = list(dict.fromkeys(r["scenario"] for r in rows))
what = {
    "none": "no subscriber",
    "subscribe-all": f"SUBSCRIBE, each connection to all {rooms:,} channels by name",
    "subscribe-half": f"SUBSCRIBE, each connection to {rooms // 2:,} (disjoint halves)",
    "psubscribe-1": "PSUBSCRIBE, one pattern `bench:room:*` per connection",
    f"psubscribe-{rooms}": f"PSUBSCRIBE, {rooms:,} patterns (one per room) per connection",
    "ssubscribe-all": f"SSUBSCRIBE (sharded) to all {rooms:,}, SPUBLISH",
}
base = statistics.median(float(r["redis_cpu_us_per_publish"]) for r in rows if r["scenario"] == "none")
print("| subscribers (2 connections) | Redis CPU µs / publish | min–max | over no subscriber, µs | "
      "deliveries / publish | µs / delivery over no subscriber | publishes/s | other CPU on Redis's core (max) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for s in names:
    rs = [r for r in rows if r["scenario"] == s]
    v = sorted(float(r["redis_cpu_us_per_publish"]) for r in rs)
    m = statistics.median(v)
    d = statistics.median(int(r["delivered"] or 0) for r in rs) / n
    rate = statistics.median(n / float(r["secs"]) for r in rs)
    extra = m - base
    per_delivery = f"{extra / d:.2f}" if d and s != "none" else "–"
    print(f"| {what.get(s, s)} | {m:.2f} | {v[0]:.2f}–{v[-1]:.2f} | "
          f"{'–' if s == 'none' else f'{extra:+.2f}'} | {d:.2f} | {per_delivery} | {rate:,.0f} | "
          f"{max(float(r['other_cpu_on_redis_core']) for r in rs):.2f} |")
print()
print(f"* {n:,} publishes of 64 B per measurement to random channels of {rooms:,} rooms "
      "(redis-benchmark -c 2 -P 16 -r ROOMS), medians over the rounds; Redis CPU: its threads' "
      "time on a CPU (schedstat, ns) around the publishing run; deliveries / publish: messages "
      "the two subscriber connections received, over the publishes")
PY
  )
  echo "$pubsub_summary"
fi

{
  echo "$header"
  echo
  [[ -n $fanout_summary ]] && { echo "$fanout_summary"; echo; }
  [[ -n $pubsub_summary ]] && echo "$pubsub_summary"
} >"$out/summary.md"
pubsub_out=
[[ $do_pubsub == 1 ]] && pubsub_out=", $pubsub_csv"
echo "raw results: $csv$pubsub_out; summary: $out/summary.md; server output: $log" >&2
