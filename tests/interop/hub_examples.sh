#!/usr/bin/env bash
# The hub examples as released binaries, driven by independent clients (Python `websockets`,
# tests/interop/hub_examples.py; for the SSE examples also urllib and a raw-socket event-stream
# client, tests/interop/hub_sse_examples.py; for secure_chat ssl + http.client and `websockets`
# over wss://, tests/interop/hub_secure_examples.py): chat (tidings-tokio), game_lobby
# (tidings-smol), hub_fanout_server, notifications (tidings-tokio, WebSocket + SSE), live_feed
# (tidings-smol, SSE) and secure_chat (tidings-tokio over TLS with its self-signed development
# certificate and development login alice / wonderland), each started on its own loopback port
# (9051-9056, override with TIDINGS_HUB_PORTS="a b c d e f"; ports left off the end keep their
# defaults), checked against its documented wire protocol, then stopped with SIGINT (the
# examples close their hub and exit). Assumes the release examples are built
# (`cargo build --release --examples`); the venv is the interop one (tests/interop/venv.sh).
# Logs to target/interop/; exits non-zero if any check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

. tests/interop/venv.sh
read -r CHAT_PORT LOBBY_PORT FANOUT_PORT NOTIFY_PORT FEED_PORT SECURE_PORT \
  <<<"${TIDINGS_HUB_PORTS:-9051 9052 9053 9054 9055 9056}"
EXAMPLES=target/release/examples
LOGS=target/interop
mkdir -p "$LOGS"
PIDS=()
trap 'for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done' EXIT

setup_venv || exit 1
failed=0
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check() { # $1 = example, $2 = port, $3 = check name, $4 = driver (default hub_examples.py)
  local ex=$1 port=$2 driver=${4:-tests/interop/hub_examples.py} pid rc=0
  if port_open "$port"; then echo "FAIL  $ex: port $port in use"; failed=1; return; fi
  "$EXAMPLES/$ex" "127.0.0.1:$port" >"$LOGS/$ex.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  for _ in $(seq 1 100); do
    port_open "$port" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  timeout 90 "$VENV/bin/python" "$driver" "$3" "$port" || rc=1
  kill -INT "$pid" 2>/dev/null
  if ! timeout 10 tail --pid="$pid" -f /dev/null; then
    echo "$ex did not stop on SIGINT"; kill "$pid" 2>/dev/null; rc=1
  fi
  if [ "$rc" -eq 0 ]; then echo "PASS  $ex"; else echo "FAIL  $ex (log: $LOGS/$ex.log)"; cat "$LOGS/$ex.log"; failed=1; fi
}

check chat "${CHAT_PORT:-9051}" chat
check game_lobby "${LOBBY_PORT:-9052}" game_lobby
check hub_fanout_server "${FANOUT_PORT:-9053}" fanout
check notifications "${NOTIFY_PORT:-9054}" notifications tests/interop/hub_sse_examples.py
check live_feed "${FEED_PORT:-9055}" live_feed tests/interop/hub_sse_examples.py
check secure_chat "${SECURE_PORT:-9056}" secure_chat tests/interop/hub_secure_examples.py
exit $failed
