#!/usr/bin/env bash
# Recipe for results/listops_quick/: ListOps at trainer=quick (small model, 20k generated
# expressions of 10-60 tokens, 1500 steps) x every attention variant x 3 seeds, plus the
# CPU speed/memory mode at 1K-4K (byte-level Text shapes, model=small, batch 4), then the
# report. About 40 minutes of 2 idle CPU cores; run nothing else meanwhile (two jobs of 2
# threads on 2 cores slow each other several-fold).
set -euo pipefail
cd "$(dirname "$0")/.."
ATTN=${ATTN:-softmax,fnet,dct,dst,hadamard,mixed,dct_attention,hadamard_attention,mixed_spectral}
SEEDS=${SEEDS:-0,1,2}
OUT=${OUT:-outputs/listops_quick}
python -m lra_bench -m task=listops trainer=quick attn="$ATTN" seed="$SEEDS" paths.root="$OUT" \
    logger=none trainer.progress=false trainer.threads=2
python -m lra_bench.bench steps --task text --attn "$ATTN" --lengths 1000,2000,3000,4000 --size cpu \
    --steps 5 --warmup 2 --threads 2 --out "$OUT/speed"
python -m lra_bench.report "$OUT" --out results/listops_quick
