#!/usr/bin/env bash
# GPU run for issue 15's measurements (one H200): decode at opt-125m and qwen2-0.5b shapes beside HF
# generate's best (bench/anchor_decode.py) in the same call, variable-length rollouts beside the fixed
# figure, and the cold start from LLM(…) to the first token.
# Stage first (../shared/device/stage.sh), then on the device, with carry [".device-stage"]:
#   bash bench/gpu/session5-benchx.sh PART      PART: opt | qwen | cold | all (each part fits one 10-minute call)
set -uo pipefail
part=${1:-all}
out=${OUT:-/tmp/out}
mkdir -p "$out"
gunzip -c .device-stage/colocate.gz > /tmp/colocate && chmod +x /tmp/colocate
export PYTHONUNBUFFERED=1
C=/tmp/colocate
step() { echo; echo "=== $*"; local t0=$SECONDS; timeout "${LIMIT:-300}" "$@"; local rc=$?; echo "=== rc=$rc in $((SECONDS - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$part" = opt ] || [ "$part" = all ]; then
  step $C bench decode --device cuda --dtype bf16 --preset opt-125m --batch 1,32,256 --variable-lengths
  LIMIT=420 step python3 bench/anchor_decode.py --preset opt-125m --batch 1,32,256
fi
if [ "$part" = qwen ] || [ "$part" = all ]; then
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 --variable-lengths
  LIMIT=420 step python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,256
fi
if [ "$part" = cold ] || [ "$part" = all ]; then
  step $C bench cold-start --device cuda --preset opt-125m --dtype bf16 --runs 3
  step $C bench cold-start --device cuda --preset qwen2-0.5b --dtype bf16 --runs 2
fi
