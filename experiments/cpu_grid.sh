#!/usr/bin/env bash
# Recipe for results/cpu_grid/: the CPU-sized grid on generated data -- ListOps
# (experiment=listops_cpu) and Pathfinder (experiment=pathfinder_cpu), every attention
# variant, 3 seeds -- plus the speed/memory mode at 1K-4K (byte-level Text shapes, --size
# cpu: small model and batch 4, without attention dropout as in both presets), then the
# report. About 4.5 hours of 2 CPU cores (ListOps ~2 h, Pathfinder ~2.5 h; see the presets'
# comments); run on an otherwise idle machine (timings move ~10% under load).
# SEEDS / EXPS / ATTN / OUT narrow or move it.
# Stopped part way, the same command continues it (finished runs are re-entered in seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ATTN=${ATTN:-softmax,fnet,dct,dst,hadamard,mixed,dct_attention,hadamard_attention,mixed_spectral}
SEEDS=${SEEDS:-0,1,2}
EXPS=${EXPS:-listops_cpu pathfinder_cpu}
OUT=${OUT:-outputs/cpu_grid}
for exp in $EXPS; do
    python -m lra_bench -m experiment="$exp" attn="$ATTN" seed="$SEEDS" paths.root="$OUT" \
        logger=none trainer.progress=false trainer.threads=2
done
python -m lra_bench.bench steps --task text --attn "$ATTN" --lengths 1000,2000,3000,4000 --size cpu \
    --steps 5 --warmup 2 --threads 2 --out "$OUT/speed" model.attention_dropout=0.0
python -m lra_bench.report "$OUT" --out results/cpu_grid
