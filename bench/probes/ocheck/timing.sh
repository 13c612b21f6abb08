#!/bin/bash
# usage: timing.sh ROUNDS TAG=BINARY ... -- alternate the binaries round by round on core 1, one thread each.
rounds=$1; shift
export COLOCATE_CPU_THREADS=1
log=${LOG:-timing.log}
echo "# $(date -u +%FT%TZ) rounds=$rounds binaries: $*; taskset -c 1, COLOCATE_CPU_THREADS=1; load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $log
for r in $(seq 1 $rounds); do
  for tb in "$@"; do
    tag=${tb%%=*}; bin=${tb#*=}
    echo "== $tag round $r decode $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)" >> $log
    taskset -c 1 $bin bench decode --device cpu --preset opt-125m --batch 1,4 --prompt-tokens 16 --new-tokens 32 2>&1 | tail -2 >> $log
    echo "== $tag round $r matmul $(date -u +%T)" >> $log
    taskset -c 1 $bin bench matmul --rows 16 --dtypes f32,bf16 --seconds 0.3 2>&1 | grep -E "N=|^N" >> $log
  done
done
echo "# done $(date -u +%T)" >> $log
