#!/usr/bin/env bash
# Unmasking 1 MiB vs memcpy of the same buffer, measured in the same run, over several rounds.
# Usage: scripts/bench-mask.sh [rounds]   (default 5). Prints one ratio per round and the spread.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
ratios=()
for i in $(seq 1 "$rounds"); do
  cargo bench -q -p tidings-core --bench mask -- 'mask_1MiB/(memcpy|apply_mask)$' \
    --warm-up-time 1 --measurement-time 3 >/dev/null 2>&1
  est() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['median']['point_estimate'])" \
    "target/criterion/mask_1MiB/$1/new/estimates.json"; }
  memcpy=$(est memcpy); mask=$(est apply_mask)
  ratio=$(python3 -c "print(f'{$memcpy/$mask:.2f}')")
  gib() { python3 -c "print(f'{1/($1*1e-9)/1024:.1f}')"; }  # 1 MiB per $1 ns -> GiB/s
  echo "round $i: memcpy $(gib "$memcpy") GiB/s, apply_mask $(gib "$mask") GiB/s, mask/memcpy throughput ratio $ratio"
  ratios+=("$ratio")
done
python3 - "${ratios[@]}" <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[1:])
print(f"median ratio {statistics.median(r):.2f} (min {r[0]:.2f}, max {r[-1]:.2f}) over {len(r)} rounds")
PY
