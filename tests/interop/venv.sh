# Sourced by the interop scripts: a venv with the Python `websockets` library pinned, cached in
# ~/.cache/tidings/ (override with TIDINGS_INTEROP_VENV). `setup_venv` creates it if needed.
WEBSOCKETS_VERSION=15.0.1
VENV=${TIDINGS_INTEROP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tidings/websockets-$WEBSOCKETS_VERSION-venv}

setup_venv() {
  if "$VENV/bin/python" -c "import websockets, sys; sys.exit(websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
    return 0
  fi
  local python
  python=$(command -v python3.11 || command -v python3) || { echo "no python3 found"; return 1; }
  echo "setting up $VENV ($($python --version))"
  rm -rf "$VENV" && mkdir -p "$(dirname "$VENV")" &&
    timeout 120 "$python" -m venv "$VENV" &&
    timeout 300 "$VENV/bin/pip" install --quiet "websockets==$WEBSOCKETS_VERSION" &&
    "$VENV/bin/python" -c "import websockets" ||
    { echo "could not set up the venv (is the package index reachable?)"; return 1; }
}
