#!/bin/sh
# Runs the CUDA training kernels on the CPU under emu.h against double-precision references
# (training_kernels_test.cpp). Needs python3 and a C++20 compiler; takes a few minutes (a thread per
# CUDA thread; run it niced on a shared machine). `run.sh attention` runs the attention cases only;
# `run.sh skinny` runs the skinny linear kernels and their fused forms instead (skinny_kernels_test.cpp).
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/colocate-cuda-emulation
mkdir -p "$out"
test=training_kernels_test.cpp
if [ "${1:-}" = skinny ]; then
    test=skinny_kernels_test.cpp
    shift
    python3 "$here/extract.py" skinny > "$out/kernels.cpp"
else
    python3 "$here/extract.py" > "$out/kernels.cpp"
fi
cp "$here/emu.h" "$out/"
sed 's|#include "kernels.cpp"|#include "'"$out"'/kernels.cpp"|' "$here/$test" > "$out/test.cpp"
${CXX:-clang++} -std=c++20 -O1 -pthread -o "$out/test" "$out/test.cpp"
"$out/test" "$@"
