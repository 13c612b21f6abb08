#!/usr/bin/env bash
# Installs NVRTC (the CUDA run-time compiler) and the CUDA headers into a private venv, .venv-nvrtc/ at
# the repository root, so that CUDAKernelCompileTests can compile every kernel on a machine with no GPU.
# NVRTC needs no driver. The wheels put the library at nvidia/cu13/lib/libnvrtc.so.13 and the headers
# (cuda_bf16.h, cuda_fp16.h, ...) at nvidia/cu13/include; the tests find both relative to the repo
# root, or through COLOCATE_LIBNVRTC / COLOCATE_CUDA_INCLUDE. Idempotent: a second run is quick.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-nvrtc"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "nvidia-cuda-nvrtc>=13,<14" "nvidia-cuda-runtime>=13,<14"
lib=$(ls "$venv"/lib/python3*/site-packages/nvidia/cu13/lib/libnvrtc.so.13 2>/dev/null | head -n 1)
include=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cu13/include 2>/dev/null | head -n 1)
if [ -z "$lib" ] || [ ! -f "$include/cuda_bf16.h" ]; then
    echo "install-nvrtc: libnvrtc.so.13 or cuda_bf16.h missing under $venv" >&2
    exit 1
fi
echo "COLOCATE_LIBNVRTC=$lib"
echo "COLOCATE_CUDA_INCLUDE=$include"
