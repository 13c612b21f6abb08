#!/bin/sh
# Runs the CUDA training kernels on the CPU under emu.h against double-precision references
# (training_kernels_test.cpp). Needs python3 and a C++20 compiler; takes a few minutes (a thread per
# CUDA thread; run it niced on a shared machine). `run.sh attention` runs the attention cases only.
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/colocate-cuda-emulation
mkdir -p "$out"
python3 "$here/extract.py" > "$out/kernels.cpp"
cp "$here/emu.h" "$out/"
sed 's|#include "kernels.cpp"|#include "'"$out"'/kernels.cpp"|' "$here/training_kernels_test.cpp" > "$out/test.cpp"
${CXX:-clang++} -std=c++20 -O1 -pthread -o "$out/test" "$out/test.cpp"
"$out/test" "$@"
