#!/usr/bin/env bash
# Recipe for results/bench/attention_cpu.csv (and attention_cpu_malloc_keep.csv, below): every
# conf/attn mixer alone (plus the four projections), n = 256..8192, batch 2, hidden 256,
# 4 heads, float32, 2 threads.
# Run on an otherwise idle machine: timings are medians of 7 runs and move by ~10% under load.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m lra_bench.bench attention --lengths 256,512,1024,2048,4096,8192 --batch 2 --hidden 256 --heads 4 \
    --threads 2 --repeats 7 --out results/bench/attention_cpu.csv
# The same from n = 2048 up, with glibc's malloc keeping freed memory (README.md, "CPU runs
# and malloc"): results/bench/attention_cpu_malloc_keep.csv.
export GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296
python -m lra_bench.bench attention --lengths 2048,4096,8192 --batch 2 --hidden 256 --heads 4 \
    --threads 2 --repeats 7 --out results/bench/attention_cpu_malloc_keep.csv
