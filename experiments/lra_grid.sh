#!/usr/bin/env bash
# Recipe for the LRA paper grid: 6 tasks x every attention variant x 3 seeds with LRA's
# released settings (conf/task/<t>.yaml), on a Slurm cluster of GPUs
# (pip install -e '.[sweep]'; set PARTITION), then LRA's Table 2 protocol (byte-level Text,
# batch 32, 1K-4K) and the report. Needs the data: LRA_DATA = the unpacked lra_release with
# aclImdb/ and cifar-10-batches-py/ beside its folders (see README, Tasks and data).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LRA_DATA:?set LRA_DATA to the unpacked lra_release folder}"
ATTN=${ATTN:-softmax,fnet,dct,dst,hadamard,mixed,dct_attention,hadamard_attention,mixed_spectral}
SEEDS=${SEEDS:-0,1,2}
OUT=${OUT:-outputs/lra_grid}
python -m lra_bench -m hydra/launcher=slurm hydra.launcher.partition="${PARTITION:-gpu}" \
    task=listops,text,retrieval,image,pathfinder,pathx attn="$ATTN" seed="$SEEDS" \
    paths.data_root="$LRA_DATA" paths.root="$OUT" trainer.progress=false
python -m lra_bench.bench steps --task text --attn "$ATTN" --lengths 1000,2000,3000,4000 \
    --size lra --device cuda --out "$OUT/speed"
python -m lra_bench.report "$OUT" --out results/lra_grid
