#!/usr/bin/env bash
# Session 6's GPU runs (one H200). Usage on the device: bash bench/gpu/session6.sh PART...
#   check:  cuda-check parity and models (CUDA-graph decode vs eager included).
#   probe:  what a decode step's kernels take (ncu, eager) at batch 1 and 256, and cuBLAS at the same shapes.
#   decode: bench decode beside HF generate's best (anchor_hf.py) in the same call, opt-125m then qwen2-0.5b.
#   ab:     the grouped attention kernel against the lane kernel (COLOCATE_ATTENTION_KERNEL=lanes).
#   fused:  the fused skinny linears against the unfused ops (COLOCATE_FUSED_SKINNY=0), and an ncu batch-1 step.
#   rl:     bench rl beside anchor_grpo; train: bench train beside anchor_train.
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
check)
  step $C cuda-check --parity-only > $out/parity.log 2>&1; grep -E "FAIL|passed|failed|checks" $out/parity.log | tail -12
  step $C cuda-check --models $S/fixtures > $out/models.log 2>&1; grep -E "FAIL|passed|failed|graphs" $out/models.log | tail -12
  ;;
probe)
  STEP_TIMEOUT=120 step python3 bench/probes/gemm_shapes.py
  STEP_TIMEOUT=200 step bash bench/probes/ncu_decode_step.sh $C 256 900 230 > $out/ncu-256.log 2>&1; grep -E "total|sum" $out/ncu-256.log | head -24
  STEP_TIMEOUT=200 step bash bench/probes/ncu_decode_step.sh $C 1 900 230 > $out/ncu-1.log 2>&1; grep -E "total|sum" $out/ncu-1.log | head -24
  ;;
decode)
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 --variable-lengths 2>&1 | tail -12
  STEP_TIMEOUT=300 step python3 $S/anchor_hf.py gen 2>&1 | grep anchor
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 2>&1 | tail -6
  STEP_TIMEOUT=300 step python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,256 2>&1 | grep anchor
  ;;
probe2)
  # One decode step of each batch size, kernel by kernel (the prefill at batch 256 is 8 chunks of 4096 tokens).
  STEP_TIMEOUT=200 step bash bench/probes/ncu_decode_step.sh $C 256 2100 220 > $out/ncu2-256.log 2>&1; grep -E "total|sum" $out/ncu2-256.log | head -20
  STEP_TIMEOUT=200 step bash bench/probes/ncu_decode_step.sh $C 32 1000 220 > $out/ncu2-32.log 2>&1; grep -E "total|sum" $out/ncu2-32.log | head -20
  STEP_TIMEOUT=200 step bash bench/probes/ncu_decode_step.sh $C 1 900 230 > $out/ncu2-1.log 2>&1; grep -E "total|sum" $out/ncu2-1.log | head -20
  ;;
profile)
  # Eager steps: GPU and host time per op (what a step costs the CPU without graphs).
  COLOCATE_PROFILE_OPS=1 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | grep -v "^  op profile (warm" | tail -45
  ;;
ab)
  COLOCATE_ATTENTION_KERNEL=lanes step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -5
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -5
  ;;
fused)
  # The fused skinny linears (q/k/v, fc1 + activation, gate/up + SwiGLU) against the unfused ops, opt-125m and
  # qwen2-0.5b, then the kernels of one eager batch-1 step (fewer launches per layer: 3 for OPT, 4 for Qwen2).
  COLOCATE_FUSED_SKINNY=0 step $C bench decode --device cuda --dtype bf16 --batch 1,8,32 2>&1 | tail -5
  step $C bench decode --device cuda --dtype bf16 --batch 1,8,32 2>&1 | tail -5
  COLOCATE_FUSED_SKINNY=0 step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,8 2>&1 | tail -4
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,8 2>&1 | tail -4
  STEP_TIMEOUT=200 step bash bench/probes/ncu_decode_step.sh $C 1 900 230 > $out/ncu-1-fused.log 2>&1; grep -E "total|sum" $out/ncu-1-fused.log | head -24
  ;;
rl)
  step $C bench rl --device cuda 2>&1 | tail -16
  STEP_TIMEOUT=150 step python3 $S/anchor_grpo.py 32 8 2>&1 | grep -v "^W1202" | tail -6
  ;;
train)
  step $C bench train --device cuda --preset opt-125m --batch-size 16 --seq 512 --dtype bf16-mixed 2>&1 | tail -6
  step python3 $S/anchor_train.py eager 2>&1 | grep "^anchor"
  ;;
final)
  # The session's last engine call: checks, A/B of this session's switches, then each benchmark beside its anchor.
  step $C cuda-check --parity-only > $out/parity.log 2>&1; grep -E "FAIL|passed|failed" $out/parity.log | tail -12
  step $C cuda-check --models $S/fixtures > $out/models.log 2>&1; grep -E "FAIL|passed|failed" $out/models.log | tail -6
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  COLOCATE_BIAS_EPILOGUE=0 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  COLOCATE_SKINNY_MAX_ROWS=8 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  COLOCATE_FUSED_SKINNY=0 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 --variable-lengths 2>&1 | tail -10
  STEP_TIMEOUT=200 step python3 $S/anchor_hf.py gen 2>&1 | grep anchor
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 2>&1 | tail -3
  COLOCATE_FUSED_SKINNY=0 step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 2>&1 | tail -3
  STEP_TIMEOUT=200 step python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,256 2>&1 | grep "anchor hf"
  step $C bench rl --device cuda 2>&1 | tail -12
  STEP_TIMEOUT=120 step python3 $S/anchor_grpo.py 32 8 2>&1 | grep -v "^W1202" | tail -3
  step $C bench sync --device cuda --method push --tp 1 2>&1 | tail -6
  COLOCATE_RPC_LEGACY=1 step $C bench sync --device cuda --method push --tp 1 2>&1 | tail -6
  step $C demo --device cuda --tp 1 2>&1 | tail -4
  STEP_TIMEOUT=100 step bash bench/probes/ncu_decode_step.sh $C 256 4000 230 > $out/ncu3-256.log 2>&1; grep -E "total|sum" $out/ncu3-256.log | head -16
  STEP_TIMEOUT=60 step bash bench/probes/ncu_decode_step.sh $C 1 900 230 > $out/ncu3-1.log 2>&1; grep -E "total|sum" $out/ncu3-1.log | head -16
  ;;
biascopies)
  # The f32 bias copies (cuBLASLt epilogue) checked, then A/B and the benchmarks again beside their anchors.
  step $C cuda-check --parity-only > $out/parity.log 2>&1; grep -E "FAIL|bias copy|passed|failed" $out/parity.log | tail -8
  step $C cuda-check --models $S/fixtures > $out/models.log 2>&1; grep -E "FAIL|passed|failed" $out/models.log | tail -4
  COLOCATE_BIAS_EPILOGUE=0 step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -3
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -3
  STEP_TIMEOUT=150 step python3 $S/anchor_hf.py gen 2>&1 | grep anchor
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -3
  step $C bench decode --device cuda --dtype bf16 --preset qwen2-0.5b --batch 1,256 2>&1 | tail -2
  STEP_TIMEOUT=150 step python3 bench/anchor_decode.py --preset qwen2-0.5b --batch 1,256 2>&1 | grep "anchor hf"
  step $C bench rl --device cuda 2>&1 | tail -10
  STEP_TIMEOUT=100 step python3 $S/anchor_grpo.py 32 8 2>&1 | grep -v "^W1202" | tail -2
  ;;
recheck)
  # After the f16 fix: the checks, and one decode run.
  step $C cuda-check --parity-only > $out/parity.log 2>&1; grep -E "FAIL|refreshBiasCopies|passed|failed" $out/parity.log | tail -8
  step $C cuda-check --models $S/fixtures > $out/models.log 2>&1; grep -E "FAIL|passed|failed" $out/models.log | tail -4
  step $C bench decode --device cuda --dtype bf16 --batch 1,32,256 2>&1 | tail -4
  ;;
rlaccept)
  # Issue 14's acceptance on the GPU: SFT an opt-125m-shaped model on reversal to a partial accuracy, then GRPO;
  # held-out accuracy before/after. Configurations "SFT_STEPS:RL_LR" run side by side on the one GPU.
  $C init-model --arch opt --preset opt-125m --out /tmp/m125 >/dev/null
  $C rl-data --task reversal --rows 20000 --out /tmp/rev.jsonl >/dev/null
  for config in ${RL_CONFIGS:-100:2e-5 60:3e-5 60:1e-5}; do
    sft=${config%%:*} lr=${config##*:} tag=sft${config%%:*}-lr${config##*:}
    (
      timeout 200 $C train --model /tmp/m125 --data /tmp/rev.jsonl --out /tmp/sft-$tag --steps $sft --batch-size 64 --lr 5e-4 --shuffle \
        --device cuda --dtype bf16-mixed --schedule cosine --warmup-steps 10 > $out/rl-$tag-sft.log 2>&1
      timeout 400 $C rl --model /tmp/sft-$tag --task reversal --out $out/rl-$tag --steps ${RL_STEPS:-200} --prompts-per-step 32 --group-size 8 \
        --max-tokens 6 --lr $lr --warmup-steps 5 --eval-every 50 --eval-prompts 200 --seed 7 --device cuda --tp 1 \
        --memory-utilization 0.25 > $out/rl-$tag.log 2>&1
      rm -rf $out/rl-$tag/checkpoint
      echo "=== rlaccept $tag: $(tail -3 $out/rl-$tag.log | tr '\n' ' ')"
    ) &
  done
  wait
  ;;
esac
done
