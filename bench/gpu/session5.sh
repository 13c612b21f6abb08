#!/usr/bin/env bash
# Session 5's GPU runs (one H200). Usage on the device: bash bench/gpu/session5.sh PART...
#   engine: cuda-check (kernels, models incl. CUDA-graph decode vs eager), bench decode with graphs,
#           without, and an eager per-op profile; the demo.
#   anchors: HF generate (opt-125m and qwen2-0.5b shapes) beside bench decode in the same call.
#   train: bench train beside anchor_train; rl: bench rl beside anchor_grpo.
set -uo pipefail
out=${OUT:-/tmp/out}
mkdir -p "$out"
gunzip -c .device-stage/colocate.gz > /tmp/colocate && chmod +x /tmp/colocate
export PYTHONUNBUFFERED=1
S=.device-stage
C=/tmp/colocate
step() { echo; echo "=== $*"; local t0=$SECONDS; timeout ${STEP_TIMEOUT:-300} "$@"; local rc=$?; echo "=== rc=$rc in $((SECONDS - t0)) s"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
for part in "$@"; do
case $part in
engine)
  step $C cuda-check --parity-only > $out/parity.log 2>&1; grep -E "FAIL|passed|failed|checks" $out/parity.log | tail -25
  step $C cuda-check --models $S/fixtures 2>&1 | tail -45
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 --variable-lengths 2>&1 | tail -14
  COLOCATE_CUDA_GRAPHS=0 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -5
  COLOCATE_PROFILE_OPS=1 step $C bench decode --device cuda --dtype bf16 --batch 1,256 2>&1 | tail -34
  step $C bench cold-start --device cuda --preset opt-125m --dtype bf16 --runs 3 2>&1 | tail -14
  step $C demo --device cuda --tp 1 2>&1 | tail -12
  ;;
anchors)
  # Each beside its anchor in the same call: opt-125m (the shared anchor_hf.py), then qwen2-0.5b (bench/anchor_decode.py).
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 --variable-lengths 2>&1 | tail -12
  STEP_TIMEOUT=400 step python3 $S/anchor_hf.py gen 2>&1 | grep anchor
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 --variable-lengths 2>&1 | tail -10
  STEP_TIMEOUT=400 step python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,256 2>&1 | grep anchor
  step $C bench cold-start --device cuda --preset qwen2-0.5b --dtype bf16 --runs 2 2>&1 | tail -12
  ;;
train)
  step $C bench train --device cuda --preset opt-125m --batch-size 16 --seq 512 --dtype bf16-mixed 2>&1 | tail -20
  step python3 $S/anchor_train.py eager 2>&1 | grep "^anchor"
  ;;
rl)
  step $C bench rl --device cuda 2>&1 | tail -25
  step python3 $S/anchor_grpo.py 32 8 2>&1 | grep -v "^W1202" | tail -8
  ;;
final)
  # The session's last call: checks, then each benchmark beside its anchor, most important first.
  step $C cuda-check --parity-only > $out/parity.log 2>&1; grep -E "FAIL|passed|failed" $out/parity.log | tail -25
  step $C cuda-check --models $S/fixtures > $out/models.log 2>&1; grep -E "FAIL|passed|failed|graphs" $out/models.log | tail -20
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 --variable-lengths 2>&1 | tail -12
  COLOCATE_SKINNY_LINEAR=0 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  COLOCATE_CUDA_GRAPHS=0 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  COLOCATE_PROFILE_OPS=1 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | grep -v "^  op profile (warm" | tail -40
  STEP_TIMEOUT=200 step python3 $S/anchor_hf.py gen 2>&1 | grep anchor
  step $C bench train --device cuda --preset opt-125m --batch-size 16 --seq 512 --dtype bf16-mixed 2>&1 | tail -6
  step python3 $S/anchor_train.py eager 2>&1 | grep "^anchor"
  step $C bench rl --device cuda 2>&1 | tail -16
  STEP_TIMEOUT=120 step python3 $S/anchor_grpo.py 32 8 2>&1 | grep -v "^W1202" | tail -6
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 --variable-lengths 2>&1 | tail -9
  STEP_TIMEOUT=200 step python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,256 2>&1 | grep anchor
  step $C bench cold-start --device cuda --preset qwen2-0.5b --dtype bf16 --runs 2 2>&1 | grep -E "bench cold-start|LLM"
  ;;
rlaccept)
  # Issue 14's acceptance on the GPU: SFT an opt-125m-shaped model on reversal, then GRPO; held-out accuracy before/after.
  $C init-model --arch opt --preset opt-125m --out /tmp/m125 >/dev/null
  $C rl-data --task reversal --rows 20000 --out /tmp/rev.jsonl >/dev/null
  STEP_TIMEOUT=240 step $C train --model /tmp/m125 --data /tmp/rev.jsonl --out /tmp/sft --steps ${SFT_STEPS:-300} --batch-size 64 \
    --lr ${SFT_LR:-5e-4} --shuffle --device cuda --dtype bf16-mixed --schedule cosine --warmup-steps 20 2>&1 | tail -6
  STEP_TIMEOUT=400 step $C rl --model /tmp/sft --task reversal --out $out/rl --steps ${RL_STEPS:-200} --prompts-per-step 32 --group-size 8 \
    --max-tokens 6 --lr ${RL_LR:-1e-4} --warmup-steps 5 --eval-every 50 --eval-prompts 200 --seed 7 --device cuda --tp 1 --engine-dtype bf16 2>&1 | tail -25
  rm -rf $out/rl/checkpoint
  ;;
esac
done
