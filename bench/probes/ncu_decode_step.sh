#!/usr/bin/env bash
# GPU time of each kernel of one eager decode step, by ncu (no nsys on the GPU machine): runs `bench decode`
# at one batch size with CUDA graphs off, skips the prefill and the first steps, profiles LAUNCHES kernels,
# and prints name, grid, block and duration per kernel, then the sum per kernel name.
#   bash bench/probes/ncu_decode_step.sh COLOCATE BATCH [SKIP] [LAUNCHES] [extra bench args...]
set -uo pipefail
bin=$1 batch=$2 skip=${3:-900} count=${4:-230}
shift 4 2>/dev/null || shift $#
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
csv=$(mktemp)
COLOCATE_CUDA_GRAPHS=0 $ncu --launch-skip "$skip" --launch-count "$count" --metrics gpu__time_duration.sum --csv \
  "$bin" bench decode --device cuda --dtype bf16 --batch "$batch" --new-tokens 16 "$@" > "$csv" 2>/dev/null
python3 - "$csv" "$batch" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, body = rows[0], rows[1:]
ix = {k: i for i, k in enumerate(head)}
total = 0.0
per = collections.OrderedDict()
for r in body:
    if r[ix["Metric Name"]] != "gpu__time_duration.sum":
        continue
    unit, value = r[ix["Metric Unit"]], float(r[ix["Metric Value"]].replace(",", ""))
    us = value / 1e3 if unit in ("ns", "nsecond") else value * 1e3 if unit in ("ms", "msecond") else value
    name = r[ix["Kernel Name"]][:70]
    print(f"ncu batch={sys.argv[2]} {us:9.2f} us  grid {r[ix['Grid Size']]:>16} block {r[ix['Block Size']]:>12}  {name}")
    total += us
    n, t = per.get(name, (0, 0.0))
    per[name] = (n + 1, t + us)
print(f"ncu batch={sys.argv[2]} total {total:.1f} us over {len(body)} kernels")
for name, (n, t) in sorted(per.items(), key=lambda kv: -kv[1][1]):
    print(f"ncu batch={sys.argv[2]} sum {t:9.1f} us {n:4d}x  {name}")
PY
rm -f "$csv"
