#!/bin/bash
# Deterministic cost of colocate's CPU kernels: callgrind instruction counts of one workload, one thread.
# usage: CG_DIR=/tmp/ocheck bench/probes/ocheck/callgrind.sh TAG /path/to/colocate WORKLOAD
#   WORKLOAD: tiny | small | smallbf16 | mm | d125 (see the case below); writes $CG_DIR/TAG-WORKLOAD.out
# Then: compare.py WORKLOAD TAG_A TAG_B UNSTRIPPED_BIN_A UNSTRIPPED_BIN_B (per-function Ir, executed check branches),
# checksites.py, hotloop.py, fndiff.sh, loops.py (disassembly). Log of session 6: bench/results/2026-12-02-s6-O-vs-Ounchecked.log
set -e
tag=$1; bin=$2; wl=$3; here=$(cd "$(dirname "$0")" && pwd); CG_DIR=${CG_DIR:-/tmp/ocheck}; mkdir -p "$CG_DIR"
case $wl in
  tiny) args="bench decode --device cpu --preset opt-tiny --batch 1,4 --prompt-tokens 32 --new-tokens 8" ;;
  small) args="bench decode --device cpu --preset opt-small --batch 1,4 --prompt-tokens 16 --new-tokens 8" ;;
  smallbf16) args="bench decode --device cpu --preset opt-small --dtype bf16 --batch 1,4 --prompt-tokens 16 --new-tokens 8" ;;
  mm) args="bench matmul --shapes 1x768x768,4x768x3072,16x768x768,16x3072x768 --dtypes f32,bf16 --seconds 0.001 --no-model" ;;
  d125) args="bench decode --device cpu --preset opt-125m --batch 1,4 --prompt-tokens 16 --new-tokens 8" ;;
  *) echo "unknown workload $wl" >&2; exit 2 ;;
esac
# valgrind 3.19 cannot read the binary's mixed DWARF: a copy without debug info (symbols kept).
objcopy --strip-debug "$bin" "$CG_DIR/colocate-$tag"
# valgrind 3.19 writes into rt_sigsuspend's mask; libdispatch passes a read-only one. Pass a writable copy.
[ -f "$CG_DIR/sigsuspend_copy.so" ] || gcc -O2 -shared -fPIC -o "$CG_DIR/sigsuspend_copy.so" "$here/sigsuspend_copy.c"
COLOCATE_CPU_THREADS=1 LD_PRELOAD="$CG_DIR/sigsuspend_copy.so" valgrind --tool=callgrind --dump-instr=yes \
  --callgrind-out-file="$CG_DIR/$tag-$wl.out" "$CG_DIR/colocate-$tag" $args > "$CG_DIR/$tag-$wl.txt" 2> "$CG_DIR/$tag-$wl.err"
grep -E "Collected|refs" "$CG_DIR/$tag-$wl.err" || true
