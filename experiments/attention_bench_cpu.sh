#!/usr/bin/env bash
# Recipe for results/bench/attention_cpu.csv: every conf/attn mixer alone (plus the four
# projections), n = 256..8192, batch 2, hidden 256, 4 heads, float32, 2 threads.
# Run on an otherwise idle machine: timings are medians of 7 runs and move by ~10% under load.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m lra_bench.bench attention --lengths 256,512,1024,2048,4096,8192 --batch 2 --hidden 256 --heads 4 \
    --threads 2 --repeats 7 --out results/bench/attention_cpu.csv
