#!/usr/bin/env bash
# Core benchmarks as ratios against a reference measured in the same run, over several rounds:
#   * unmasking 1 MiB vs memcpy of the same buffer (benches/mask.rs);
#   * in-memory server echo, tidings-core vs tungstenite (benches/echo.rs);
#   * a permessage-deflate round trip of 1 KiB JSON vs the same uncompressed (benches/deflate.rs):
#     the ratio is the share of the uncompressed speed that compression keeps.
# Usage: scripts/bench-core.sh [rounds]   (default 5). Prints every round, then median/min/max.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
crit=target/criterion
median_ns() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['median']['point_estimate'])" "$crit/$1/new/estimates.json"; }
declare -A series=()
for i in $(seq 1 "$rounds"); do
  cargo bench -q -p tidings-core --bench mask -- 'mask_1MiB/(memcpy|apply_mask)$' \
    --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1
  cargo bench -q -p tidings-core --bench echo -- --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1
  cargo bench -q -p tidings-core --bench deflate -- --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1
  line="round $i:"
  # ratio = reference time / our time (> 1 means faster than the reference)
  for pair in "mask_1MiB/memcpy mask_1MiB/apply_mask unmask-vs-memcpy" \
              "echo_text_20B_x1000/tungstenite echo_text_20B_x1000/tidings echo-20B-vs-tungstenite" \
              "echo_text_1KiB_x1000/tungstenite echo_text_1KiB_x1000/tidings echo-1KiB-vs-tungstenite" \
              "echo_binary_64KiB_x16/tungstenite echo_binary_64KiB_x16/tidings echo-64KiB-vs-tungstenite" \
              "roundtrip_1KiB_json/plain roundtrip_1KiB_json/deflate_l1 deflate-l1-vs-plain" \
              "roundtrip_1KiB_json/plain roundtrip_1KiB_json/deflate_l6 deflate-l6-vs-plain" \
              "roundtrip_1KiB_json/plain roundtrip_1KiB_json/deflate_l1_no_context deflate-l1-nct-vs-plain"; do
    set -- $pair
    r=$(python3 -c "print(f'{$(median_ns "$1")/$(median_ns "$2"):.2f}')")
    series[$3]="${series[$3]:-} $r"
    line="$line $3=$r"
  done
  echo "$line"
done
for k in "${!series[@]}"; do
  python3 - "$k" ${series[$k]} <<'PY'
import statistics, sys
name, r = sys.argv[1], sorted(float(x) for x in sys.argv[2:])
print(f"{name}: median {statistics.median(r):.2f} (min {r[0]:.2f}, max {r[-1]:.2f}) over {len(r)} rounds")
PY
done | sort
