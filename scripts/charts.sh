#!/usr/bin/env bash
# Charts (PNG) of the end-to-end benchmarks, drawn from the raw CSVs their scripts write (see
# bench/README.md, "Charts").
#
# Usage: scripts/charts.sh [--echo PATH] [--fanout PATH] [--idle PATH] [--out DIR] [--font PATH]
#                          [--other-max CORES]
#
# Builds and runs bench/'s `charts` binary (release). Inputs, by default:
#   target/bench-echo/results.csv   (scripts/bench-echo.sh)   → echo-throughput.png, echo-cpu.png
#   target/bench-idle/results.csv   (scripts/bench-idle.sh)   → idle-memory.png
#   target/bench-fanout/results.csv (scripts/bench-fanout.sh) → fanout.png
# written into docs/bench/ (--out DIR for another folder); a missing CSV skips its charts with a
# note on stderr. Bars are medians over the rounds, whiskers min–max; measurements during which
# other work took more than OTHER_MAX cores (default 0.15, or --other-max) are left out as in the
# scripts' summaries. Lists the files written.
#
# Text is drawn from a TrueType file: DejaVu Sans, /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
# from Debian's fonts-dejavu-core, installed here (apt-get) when missing, or --font PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
if [[ " $* " != *" --font "* && ! -f $font ]] && command -v apt-get >/dev/null && ((EUID == 0)); then
  echo "installing the charts' font (fonts-dejavu-core)…" >&2
  apt-get update -qq && apt-get install -y -qq fonts-dejavu-core >/dev/null
fi

status=0
written=$(cargo run --release --manifest-path bench/Cargo.toml --bin charts -- "$@") || status=$?
if [[ -n $written ]]; then
  echo "charts written:" >&2
  mapfile -t files <<<"$written"
  ls -l -- "${files[@]}"
fi
exit "$status"
