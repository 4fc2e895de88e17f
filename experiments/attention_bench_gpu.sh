#!/usr/bin/env bash
# Recipe for results/bench/attention_cuda.{csv,txt} and attention_cuda_bf16.{csv,txt} (not run
# yet: no GPU so far): every conf/attn mixer alone (plus the four projections) on one CUDA GPU
# at the width of LRA's Text model (hidden 256, 4 heads) and LRA's batch of 32, n = 1024..8192;
# float32, then bfloat16 parameters and inputs (the LST layers still transform in float32).
# A few minutes on an H100-class GPU. On GPU the Hadamard transform runs as matrix products
# (the compiled kernel is for CPUs): the tables' `kernels` column says `unused on cuda`.
# LRA's Table 2 protocol for whole models on GPU is in lra_grid.sh (`bench steps --size lra`).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m lra_bench.bench attention --device cuda --lengths 1024,2048,4096,8192 --batch 32 --hidden 256 --heads 4 \
    --repeats 20 --out results/bench/attention_cuda.csv
python -m lra_bench.bench attention --device cuda --dtype bfloat16 --lengths 1024,2048,4096,8192 --batch 32 \
    --hidden 256 --heads 4 --repeats 20 --out results/bench/attention_cuda_bf16.csv
