# Sourced by the end-to-end benchmark scripts (bench-echo.sh, bench-fanout.sh, bench-sse.sh,
# bench-redis.sh, bench-idle.sh): their common
# arguments and knobs, waiting for a server's port and for a quiet machine. The waits use the
# caller's `server_pid` and `warn`.

# Sets the common arguments and knobs: `rounds` and `secs` from the script's arguments (defaults
# 3 and 5), `warmup` (WARMUP, 1), `base_port` (BASE_PORT, default $2), `other_max` (OTHER_MAX,
# 0.15), `retries` (RETRIES, 2), `quiet_wait` (QUIET_WAIT, 120), and the output files in
# target/$1: `out`, `csv` (results.csv) and `log` (servers.log, emptied).
bench_init() { # $1 = output folder name, $2 = default base port, then the script's arguments
  root=$PWD
  rounds=${3:-3}
  secs=${4:-5}
  warmup=${WARMUP:-1}
  base_port=${BASE_PORT:-$2}
  other_max=${OTHER_MAX:-0.15}
  retries=${RETRIES:-2}
  quiet_wait=${QUIET_WAIT:-120}
  out=target/$1
  mkdir -p "$out"
  csv=$out/results.csv
  log=$out/servers.log
  : >"$log"
}

# Whether a child process is still running (not exited, not a zombie).
alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

# Waits (at most 5 s) until the server accepts on port $1; fails if it exits first.
wait_port() {
  local port=$1 i
  for ((i = 0; i < 100; i++)); do
    alive "$server_pid" || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# Busy CPU of the whole machine over 0.5 s, in cores (from /proc/stat: all but idle and iowait).
machine_busy() {
  local a b
  a=$(head -n1 /proc/stat)
  sleep 0.5
  b=$(head -n1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    split(a, x); split(b, y); busy = 0
    for (i = 2; i <= 9; i++) if (i != 5 && i != 6) busy += y[i] - x[i]
    printf "%.2f", busy / 100 / 0.5 }'
}

# Waits, at most $quiet_wait seconds, until other work on the machine uses less than $other_max
# cores, so that a measurement does not start in the middle of someone else's build.
wait_quiet() {
  local start=$SECONDS busy
  while :; do
    busy=$(machine_busy)
    awk -v o="$busy" -v m="$other_max" 'BEGIN { exit !(o <= m) }' && return 0
    if ((SECONDS - start >= quiet_wait)); then
      warn "the machine is still busy ($busy cores) after ${quiet_wait} s; measuring anyway"
      return 0
    fi
    sleep 2
  done
}

# Runs `measure ARGS… PORT` on the next fresh port (`base_port + stride × measurement`), again
# (up to $retries times, after a quiet wait each time) while other work took more than
# $other_max cores. Uses and sets the caller's `measurement`, `port`, `ok` and `other`.
measure_quietly() { # $1 = label for the warning, $2 = ports per measurement, then measure's ARGS
  local label=$1 stride=$2 attempts=0
  shift 2
  while :; do
    attempts=$((attempts + 1))
    wait_quiet
    port=$((base_port + stride * measurement))
    measurement=$((measurement + 1))
    measure "$@" "$port"
    if [[ $ok == 1 && $other != "" ]] && ((attempts <= retries)) \
      && awk -v o="$other" -v m="$other_max" 'BEGIN { exit !(o > m) }'; then
      warn "$label: other work took $other cores; measuring again"
      sleep 1
      continue
    fi
    break
  done
}

# Installs taskset (util-linux) when it is missing: the scripts pin servers and generators.
need_taskset() {
  command -v taskset >/dev/null && return 0
  echo "installing taskset (util-linux)…" >&2
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
}

# Stops a child process: SIGTERM, up to 5 s to exit, then SIGKILL.
stop() { # SIGTERM, up to 5 s to exit, then SIGKILL
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Never leaves a server or a generator running: from now on the caller's `server_pid` and
# `load_pid` (both emptied here) are stopped on exit, on Ctrl-C and on SIGTERM.
stop_children_on_exit() {
  server_pid=
  load_pid=
  trap cleanup EXIT
  trap 'cleanup; trap - INT; kill -INT $$' INT
  trap 'cleanup; exit 143' TERM
}
cleanup() {
  stop "$load_pid"
  stop "$server_pid"
  server_pid=
  load_pid=
}

# Builds tidings' echo example servers (release, into the caller's `log`) and sets `runnable` to
# those of `servers` that can run; `server_cmd NAME` prints a server's command line (a tidings
# example, or `$peer_bin NAME` for a peer). A tidings binary is used only if it built in this run:
# a stale one from an earlier build would measure old code.
echo_servers_init() {
  declare -gA tidings_bin=()
  echo "building tidings example servers (release)…" >&2
  if build_example tokio_echo_server smol_echo_server; then
    tidings_bin[tidings-tokio]=$root/target/release/examples/tokio_echo_server
    tidings_bin[tidings-smol]=$root/target/release/examples/smol_echo_server
  else
    build_example tokio_echo_server && tidings_bin[tidings-tokio]=$root/target/release/examples/tokio_echo_server
    build_example smol_echo_server && tidings_bin[tidings-smol]=$root/target/release/examples/smol_echo_server
  fi
  # The core on io_uring (examples/compio, a package of its own: compio needs a newer Rust).
  if [[ " ${servers[*]} " == *" tidings-compio "* ]]; then
    cargo build -q --release -p tidings-compio-example >>"$log" 2>&1 &&
      tidings_bin[tidings-compio]=$root/target/release/compio_echo_server
  fi
  runnable=()
  local s
  for s in "${servers[@]}"; do
    if [[ -n $(server_cmd "$s") ]]; then
      runnable+=("$s")
    else
      warn "skipping $s: its example server did not build (see $log)"
    fi
  done
  ((${#runnable[@]} > 0)) || { echo "no server to measure" >&2; exit 1; }
}
build_example() {
  local args=() e
  for e in "$@"; do args+=(--example "$e"); done
  cargo build -q --release "${args[@]}" >>"$log" 2>&1
}
server_cmd() {
  case $1 in
    tidings-*)
      local bin=${tidings_bin[$1]:-}
      [[ -n $bin && -x $bin ]] && echo "$bin"
      ;;
    *) echo "$peer_bin $1" ;;
  esac
}

# Sets `commit` (short hash, "(work tree modified)" when it is) and `cpu` (the CPU model) for a
# script's header.
bench_identity() {
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD 2>/dev/null || commit="$commit (work tree modified)"
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
}

# Prints "name version, ..." for the named packages of bench/Cargo.lock (several versions of one
# package joined with "/").
peer_versions() {
  python3 - bench/Cargo.lock "$@" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
found = {}
for n, v in re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', text):
    found.setdefault(n, []).append(v)
print(", ".join(f"{n} {'/'.join(found[n])}" for n in sys.argv[2:] if n in found))
PY
}

# Sets `order` to `runnable` rotated by round $1, so that drift spreads over every server.
rotate_order() {
  local k n=${#runnable[@]}
  order=()
  for ((k = 0; k < n; k++)); do order+=("${runnable[(k + $1 - 1) % n]}"); done
}
