#!/usr/bin/env bash
# Idle-connection memory benchmark: what an open, idle WebSocket connection costs a server in
# resident memory, for tidings' tokio and smol example servers and the peer crates, in the same
# run on the same machine (see bench/README.md, "Idle-connection memory").
#
# Usage: scripts/bench-idle.sh [rounds] [connections]     (defaults: 3 rounds, 10000 connections)
#
# Each measurement starts one server pinned to CPU 0 on a fresh port, waits for the port, reads
# the server's memory (VmRSS from /proc/PID/status; Anonymous and Private_Dirty from
# /proc/PID/smaps_rollup), runs the generator (bench/: idle-load) pinned to CPU 1, which opens the
# connections (handshake, then one text echo each, 16 bytes by default, checked) and holds them
# idle, waits
# until all are set up, polls the server's RSS until it is stable (at least 2 s), reads the memory
# again, then stops both. bytes/conn = (after - before) / established connections. The order of
# the servers rotates every round. Prints a markdown table (median KiB per connection over the
# rounds, min-max, ratio to the lightest peer, threads); raw results go to
# target/bench-idle/results.csv, the report to target/bench-idle/summary.md, the servers' and the
# generator's stderr to target/bench-idle/servers.log.
#
# Environment: SERVERS="name ..." to measure a subset (default: tidings-tokio tidings-smol
# tokio-tungstenite tokio-websockets fastwebsockets async-tungstenite-smol; echo-peer's variants
# may be added); BASE_PORT (default 24000; one fresh port per measurement, so that the sockets
# left in TIME_WAIT by one measurement never meet the next); CONCURRENCY (handshakes in flight,
# default 256); SIZE (bytes of the one echo per connection, default 16: a larger one shows what a
# connection that once carried such a message keeps while idle); SETTLE_MIN / SETTLE_MAX (seconds
# of RSS polling after the connections are up, defaults 2 and 10); READY_TIMEOUT (seconds to wait
# for the connections, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
bench_init bench-idle 24000 "${1:-3}"
conns=${2:-10000}
concurrency=${CONCURRENCY:-256}
size=${SIZE:-16}
settle_min=${SETTLE_MIN:-2}
settle_max=${SETTLE_MAX:-10}
ready_timeout=${READY_TIMEOUT:-300}
[[ $conns =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ && $size =~ ^[0-9]+$ ]] ||
  { echo "usage: scripts/bench-idle.sh [rounds] [connections]" >&2; exit 2; }

tidings=(tidings-tokio tidings-smol)
peers=(tokio-tungstenite tokio-websockets fastwebsockets async-tungstenite-smol)
read -r -a servers <<<"${SERVERS:-${tidings[*]} ${peers[*]}}"

warn() { echo "warning: $*" >&2; }

# --- cleanup: never leave a server or a generator running --------------------------------------
stop_children_on_exit

# --- limits --------------------------------------------------------------------------------------
need_taskset
command -v python3 >/dev/null || { echo "python3 is needed for the summary" >&2; exit 1; }

# Every connection is a file descriptor in the server and in the generator: both are started from
# this shell and inherit the raised limit.
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]] || ((hard >= 65536)); then
  ulimit -n 65536
else
  ulimit -n "$hard"
fi
nofile=$(ulimit -n)
if ((nofile < conns + 100)); then
  echo "ulimit -n is $nofile (hard limit $hard): $conns connections need $((conns + 100))" >&2
  exit 1
fi

# Ephemeral ports: all connections come from 127.0.0.1 to one port unless the local port range is
# too small for them, then from several loopback addresses (idle-load --sources).
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
ports=$((port_hi - port_lo + 1))
sources=1
if ((conns > ports * 8 / 10)); then
  sources=$(((conns + ports * 8 / 10 - 1) / (ports * 8 / 10)))
  warn "$conns connections exceed 80 % of the $ports ephemeral ports: $sources source addresses"
fi

# --- builds --------------------------------------------------------------------------------------
echo "building bench/ (release)…" >&2
cargo build -q --release --manifest-path bench/Cargo.toml --bin idle-load --bin echo-peer
peer_bin=$root/bench/target/release/echo-peer
load_bin=$root/bench/target/release/idle-load

# tidings' own example servers, and which servers can run (`runnable`, `server_cmd`).
echo_servers_init

# --- header --------------------------------------------------------------------------------------
bench_identity
peer_versions=$(peer_versions tokio-tungstenite tokio-websockets fastwebsockets async-tungstenite tokio smol)
libc=$(getconf GNU_LIBC_VERSION 2>/dev/null || true)
header="# Idle-connection memory benchmark

* date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $commit
* machine: $(nproc) CPUs, ${cpu:-unknown CPU}; $(rustc --version); ${libc:-unknown libc}'s malloc
  (every server uses the system allocator); ulimit -n $nofile
* peers: $peer_versions
* $rounds rounds × $conns connections per server (handshake + one $size B text echo each, then idle),
  $concurrency set up at a time, from $sources source address(es); server on CPU 0, generator on
  CPU 1; servers: ${runnable[*]}"
echo "$header"
echo

# --- measurements --------------------------------------------------------------------------------
columns=(round server connections established failed rss_before_kb rss_after_kb bytes_per_conn size
  anon_before_kb anon_after_kb anon_bytes_per_conn private_dirty_before_kb private_dirty_after_kb
  threads server_fds connect_secs settle_secs closed_by_server port)
(IFS=,; echo "${columns[*]}") >"$csv"

# "VmRSS Anonymous Private_Dirty" of a process, in KiB ("" for a field that cannot be read).
memory() {
  local pid=$1 rss anon dirty
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
  anon=$(awk '/^Anonymous:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
  dirty=$(awk '/^Private_Dirty:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
  echo "${rss:--} ${anon:--} ${dirty:--}"
}
vm_rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# (after - before) KiB over n connections, in bytes per connection ("" if unknown).
per_conn() {
  [[ $1 != - && $2 != - && $3 -gt 0 ]] || return 0
  echo $((($2 - $1) * 1024 / $3))
}

# A JSON field of the file $1.
field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2" \
    2>/dev/null || true
}

# One measurement of server $1 on port $2; appends a CSV row.
measure() {
  local s=$1 port=$2 cmd before after ready=$out/ready.json i start prev now settle threads fds
  local established=0 failed=$conns connect_secs= closed=
  read -r -a cmd <<<"$(server_cmd "$s")"
  echo "== round $r $s 127.0.0.1:$port" >>"$log"
  taskset -c 0 "${cmd[@]}" "127.0.0.1:$port" >>"$log" 2>&1 &
  server_pid=$!
  rm -f "$ready" "$out/load.out"
  before="- - -"
  after="- - -"
  threads=
  fds=
  settle=
  if wait_port "$port"; then
    # Let the server be done with wait_port's probe connection.
    sleep 0.3
    before=$(memory "$server_pid")
    taskset -c 1 "$load_bin" --addr "127.0.0.1:$port" --conns "$conns" --concurrency "$concurrency" \
      --sources "$sources" --size "$size" --ready "$ready" >"$out/load.out" 2>>"$log" &
    load_pid=$!
    start=$SECONDS
    while [[ ! -f $ready ]] && alive "$load_pid" && alive "$server_pid" \
      && ((SECONDS - start < ready_timeout)); do
      sleep 0.1
    done
    if [[ -f $ready ]] && alive "$server_pid"; then
      established=$(field "$ready" established)
      failed=$(field "$ready" failed)
      connect_secs=$(field "$ready" connect_secs)
      # Poll the RSS every 0.5 s: at least $settle_min s, then until it moved by less than
      # max(64 KiB, 0.2 %) over the last second, at most $settle_max s.
      start=$(date +%s.%N)
      prev=$(vm_rss "$server_pid")
      local history=("$prev")
      while :; do
        sleep 0.5
        now=$(vm_rss "$server_pid")
        history+=("$now")
        settle=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        local k=${#history[@]} old
        old=${history[k > 2 ? k - 3 : 0]}
        if awk -v t="$settle" -v lo="$settle_min" -v hi="$settle_max" -v a="$old" -v b="$now" \
          'BEGIN { d = b - a; if (d < 0) d = -d; m = b * 0.002; if (m < 64) m = 64
                   exit !(t >= hi || (t >= lo && d <= m)) }'; then
          break
        fi
      done
      after=$(memory "$server_pid")
      threads=$(awk '/^Threads:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || true)
      fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l || true)
    else
      warn "round $r $s: the connections were not set up (see $log)"
    fi
    # The generator prints its final report (closed_by_server) on SIGTERM.
    stop "$load_pid"
    load_pid=
    closed=$(tail -n1 "$out/load.out" 2>/dev/null | python3 -c \
      'import json, sys; print(json.loads(sys.stdin.read()).get("closed_by_server", ""))' \
      2>/dev/null || true)
  else
    warn "round $r $s did not accept on port $port"
  fi
  stop "$server_pid"
  server_pid=
  local rb ra ab aa db da
  read -r rb ab db <<<"$before"
  read -r ra aa da <<<"$after"
  local bpc apc
  bpc=$(per_conn "$rb" "$ra" "${established:-0}")
  apc=$(per_conn "$ab" "$aa" "${established:-0}")
  [[ $rb == - ]] && rb=
  [[ $ra == - ]] && ra=
  [[ $ab == - ]] && ab=
  [[ $aa == - ]] && aa=
  [[ $db == - ]] && db=
  [[ $da == - ]] && da=
  echo "$r,$s,$conns,$established,$failed,$rb,$ra,$bpc,$size,$ab,$aa,$apc,$db,$da,$threads,$fds,$connect_secs,$settle,$closed,$port" >>"$csv"
  if [[ -n $bpc ]]; then
    printf '  %-24s %6d/%d conns   RSS %7s → %7s KiB   %6.1f KiB/conn (anonymous %s KiB/conn)   threads %s, fds %s, settled %s s\n' \
      "$s" "$established" "$conns" "$rb" "$ra" "$(awk -v b="$bpc" 'BEGIN { print b / 1024 }')" \
      "$(awk -v b="${apc:-0}" 'BEGIN { printf "%.1f", b / 1024 }')" "$threads" "$fds" "$settle" >&2
  else
    warn "round $r $s: no result (see $log)"
  fi
}

measurement=0
for ((r = 1; r <= rounds; r++)); do
  rotate_order "$r"
  echo "round $r/$rounds: ${order[*]}" >&2
  for s in "${order[@]}"; do
    measure "$s" $((base_port + measurement))
    measurement=$((measurement + 1))
  done
done

# --- summary -------------------------------------------------------------------------------------
summary=$(python3 - "$csv" "${runnable[*]}" "${peers[*]}" "$conns" "$size" <<'PY'
import csv, statistics, sys
from collections import defaultdict

path, servers, peers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
conns, size = int(sys.argv[4]), int(sys.argv[5])
rows = list(csv.DictReader(open(path)))
data = defaultdict(list)
for r in rows:
    if r["bytes_per_conn"]:
        data[r["server"]].append(r)

def med(rs, key):
    vals = [float(r[key]) for r in rs if r[key] != ""]
    return statistics.median(vals) if vals else None

kib = lambda b: f"{b / 1024:,.1f}" if b is not None else "n/a"
medians = {s: med(data[s], "bytes_per_conn") for s in servers if data[s]}
peer_meds = {s: v for s, v in medians.items() if s in peers}
lightest = min(peer_meds, key=peer_meds.get) if peer_meds else None

print(f"### RSS per idle connection ({conns:,} connections, after the handshake and one {size:,} B echo)\n")
print("| server | median KiB/conn | min–max KiB/conn | × lightest peer | anonymous KiB/conn "
      "| RSS before → after (MiB) | threads | established | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in servers:
    rs = data[s]
    if not rs:
        print(f"| {s} | n/a | | | | | | | 0 |")
        continue
    vals = sorted(float(r["bytes_per_conn"]) for r in rs)
    ratio = f"{medians[s] / peer_meds[lightest]:.2f}" if lightest and peer_meds[lightest] > 0 else "n/a"
    before, after = med(rs, "rss_before_kb"), med(rs, "rss_after_kb")
    threads = sorted({r["threads"] for r in rs if r["threads"]})
    est = min(int(r["established"]) for r in rs)
    print(f"| {s} | {kib(medians[s])} | {kib(vals[0])}–{kib(vals[-1])} | {ratio} "
          f"| {kib(med(rs, 'anon_bytes_per_conn'))} | {before / 1024:,.1f} → {after / 1024:,.1f} "
          f"| {'/'.join(threads)} | {est:,}{'' if est == conns else ' of ' + format(conns, ',')} "
          f"| {len(rs)} |")
print()
if lightest:
    print(f"* × lightest peer: the server's median over the smallest peer median of this run ({lightest})")
print("* KiB/conn: (VmRSS with the connections idle − VmRSS before they connected) / established "
      "connections, 1 KiB = 1024 B; anonymous: the same with `Anonymous` of /proc/PID/smaps_rollup")
failed = sum(int(r["failed"] or 0) for r in rows)
closed = sum(int(r["closed_by_server"] or 0) for r in rows)
if failed or closed:
    print(f"* connections failed: {failed}; closed by the server while idle: {closed} (see the CSV)")
missing = [r for r in rows if not r["bytes_per_conn"]]
if missing:
    print(f"* {len(missing)} measurement(s) without a result (see servers.log)")
print()
PY
)
echo "$summary"
{ echo "$header"; echo; echo "$summary"; } >"$out/summary.md"
echo "raw results: $csv; summary: $out/summary.md; server output: $log" >&2
