#!/usr/bin/env bash
# permessage-deflate interop with the Python `websockets` library, both directions, both runtimes:
#   websockets client (tests/interop/websockets_peer.py, four negotiation variants)
#     -> target/release/examples/tokio_echo_server and smol_echo_server
#   target/release/examples/tokio_echo_client and smol_echo_client --deflate
#     -> websockets echo server (its default compression)
# Assumes the release examples are built (`cargo build --release --examples`). Sets up a venv with
# websockets pinned (cached in ~/.cache/tidings/, override with TIDINGS_INTEROP_VENV), uses
# loopback ports 9041-9043 (override with TIDINGS_INTEROP_PORTS="a b c"), logs to
# target/interop/. Prints a PASS/FAIL line per check and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

. tests/interop/venv.sh
read -r TOKIO_PORT SMOL_PORT PY_PORT <<<"${TIDINGS_INTEROP_PORTS:-9041 9042 9043}"
EXAMPLES=target/release/examples
LOGS=target/interop
PEER=tests/interop/websockets_peer.py
mkdir -p "$LOGS"

start=$(date +%s)
PIDS=()
RESULTS=()
passed=0 failed=0
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { # $1 = 0 for pass, $2 = name
  if [ "$1" -eq 0 ]; then
    RESULTS+=("PASS  $2"); passed=$((passed + 1))
  else
    RESULTS+=("FAIL  $2"); failed=$((failed + 1))
  fi
}
finish() {
  echo
  echo "=== websockets interop summary ($(( $(date +%s) - start )) s)"
  printf '%s\n' "${RESULTS[@]}"
  echo "interop: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
  exit $?
}

echo "=== venv: websockets $WEBSOCKETS_VERSION"
setup_venv
record $? "venv with websockets==$WEBSOCKETS_VERSION ($VENV)"
[ "$failed" -eq 0 ] || finish
PY="$VENV/bin/python"

for ex in tokio_echo_server smol_echo_server tokio_echo_client smol_echo_client; do
  [ -x "$EXAMPLES/$ex" ] || { echo "$EXAMPLES/$ex missing: run cargo build --release --examples"; record 1 "built $ex"; }
done
[ "$failed" -eq 0 ] || finish

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Waits until $2 (a pid we started) is ready: its log $3 has the line $4 when given (the websockets
# server, whose log a probing connection would clutter), else port $1 accepts connections. Fails
# if the process died or 10 s passed.
wait_ready() {
  for _ in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    if [ -n "${4:-}" ]; then grep -q "$4" "$3" && return 0; else port_open "$1" && return 0; fi
    sleep 0.1
  done
  return 1
}
# Starts "$@" in the background, output in $LOGS/$1.log, after checking port $2 is free; sets
# SERVER_PID. READY_LINE: see wait_ready.
start_server() { # $1 = log name, $2 = port, rest = command
  local name=$1 port=$2; shift 2
  if port_open "$port"; then
    echo "port $port is already in use"; return 1
  fi
  "$@" >"$LOGS/$name.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_ready "$port" "$SERVER_PID" "$LOGS/$name.log" "${READY_LINE:-}" ||
    { echo "$name did not start:"; cat "$LOGS/$name.log"; return 1; }
}
stop() { kill "$1" 2>/dev/null; timeout 10 tail --pid="$1" -f /dev/null 2>/dev/null; wait "$1" 2>/dev/null; }

# --- websockets client -> tidings echo servers ----------------------------------------------------
for rt in tokio smol; do
  port_var=${rt^^}_PORT
  port=${!port_var}
  name="websockets client -> ${rt}_echo_server (permessage-deflate variants)"
  echo; echo "=== $name"
  if start_server "${rt}_echo_server" "$port" "$EXAMPLES/${rt}_echo_server" "127.0.0.1:$port"; then
    timeout 120 "$PY" "$PEER" client "ws://127.0.0.1:$port/" 2>&1 | tee "$LOGS/websockets_client-$rt.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 124 ] && echo "timed out"
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "${rt}_echo_server died:"; cat "$LOGS/${rt}_echo_server.log"; rc=1; }
    stop "$SERVER_PID"
  else
    rc=1
  fi
  record "$rc" "$name"
done

# --- tidings echo clients -> websockets server ----------------------------------------------------
name="websockets echo server (default compression)"
echo; echo "=== tidings clients -> $name"
if READY_LINE="echo server on ws://" \
  start_server websockets_server "$PY_PORT" "$PY" "$PEER" server "$PY_PORT"; then
  for rt in tokio smol; do
    timeout 30 "$EXAMPLES/${rt}_echo_client" "ws://127.0.0.1:$PY_PORT/" --deflate \
      >"$LOGS/${rt}_echo_client.log" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] && echo "${rt}_echo_client timed out"
    if [ "$rc" -eq 0 ]; then
      echo "${rt}_echo_client --deflate: $(grep -c '^echo:' "$LOGS/${rt}_echo_client.log") echoes checked;" \
        "$(grep -m1 '^Sec-WebSocket-Extensions' "$LOGS/${rt}_echo_client.log")"
    else
      echo "${rt}_echo_client --deflate failed (exit $rc):"; cat "$LOGS/${rt}_echo_client.log"
    fi
    record "$rc" "${rt}_echo_client --deflate -> websockets server"
  done
  # SIGTERM: the server prints what it saw per connection and exits 1 if a check failed.
  kill -TERM "$SERVER_PID" 2>/dev/null
  if timeout 10 tail --pid="$SERVER_PID" -f /dev/null; then
    wait "$SERVER_PID"; rc=$?
  else
    echo "websockets server did not stop"; rc=1
  fi
  cat "$LOGS/websockets_server.log"
  record "$rc" "$name: each connection negotiated deflate and sent compressed frames"
else
  record 1 "$name started"
fi

finish
