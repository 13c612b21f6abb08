#!/usr/bin/env bash
# Session 4's GPU run (one H200): training parity and speed, generation speed, the demo; each beside its
# anchor in the same call. Usage on the device: bash bench/gpu/session4.sh PART (train|decode|rl|all)
set -uo pipefail
part=${1:-all}
out=${OUT:-/tmp/out}
mkdir -p "$out"
gunzip -c .device-stage/colocate.gz > /tmp/colocate && chmod +x /tmp/colocate
export PYTHONUNBUFFERED=1
S=.device-stage
C=/tmp/colocate
step() { echo; echo "=== $*"; local t0=$SECONDS; timeout 300 "$@"; local rc=$?; echo "=== rc=$rc in $((SECONDS - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$part" = train ] || [ "$part" = all ]; then
  step $C cuda-check --parity-only 2>&1 | tail -80
  step $C cuda-check --models $S/fixtures 2>&1 | tail -40
  # grads and train on the GPU in f32 against PyTorch's golden files
  for m in opt-tiny llama-tiny qwen2-tiny; do
    step $C grads --device cuda --model $S/fixtures/$m --input $S/fixtures/$m/golden.safetensors --output /tmp/grads-$m.safetensors
    python3 - "$S/fixtures/$m/golden.safetensors" /tmp/grads-$m.safetensors <<'PY'
import sys; from safetensors.numpy import load_file
g=load_file(sys.argv[1]); o=load_file(sys.argv[2])
print("loss", float(o["loss"].reshape(-1)[0]), "golden", float(g["loss"].reshape(-1)[0]), "diff", abs(float(o["loss"].reshape(-1)[0])-float(g["loss"].reshape(-1)[0])))
worst=max((abs(o[k]-g[k]).max()/max(abs(g[k]).max(),1e-30), k) for k in g if k.startswith("grad."))
print("worst relative grad error", worst)
PY
  done
  step $C bench train --device cuda --preset opt-125m --batch-size 16 --seq 512 --dtype bf16-mixed 2>&1 | tail -20
  step $C bench train --device cuda --preset opt-125m --batch-size 16 --seq 512 --dtype f32 --steps 5 2>&1 | tail -8
  step python3 $S/anchor_train.py eager 2>&1 | grep -v "^W1202" | tail -4
  step python3 $S/anchor_train.py compile 2>&1 | grep "^anchor"
fi
if [ "$part" = decode ] || [ "$part" = all ]; then
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -12
  step python3 $S/anchor_hf.py gen 2>&1 | tail -14
  step $C demo --device cuda --tp 1 2>&1 | tail -25
  step $C demo --device cuda --tp 1 --sync push --engine-dtype bf16 2>&1 | tail -12
fi
if [ "$part" = rl ] || [ "$part" = all ] || [ "$part" = decode ]; then
  step $C bench rl --device cuda 2>&1 | tail -25
  step python3 $S/anchor_grpo.py 32 8 2>&1 | grep -v "^W1202" | tail -8
  step python3 $S/anchor_train.py eager 2>&1 | grep "^anchor"
fi
