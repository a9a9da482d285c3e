# Sourced by the end-to-end benchmark scripts (bench-echo.sh, bench-fanout.sh, bench-sse.sh,
# bench-redis.sh): their common
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
