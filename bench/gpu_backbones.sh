#!/usr/bin/env bash
# Training-step time of every backbone, plain vs + TFAM + GIRL, on a lent GPU (bf16 autocast, paper preset:
# each backbone at its own clip length and crop), after bench/gpu_check.sh has made .gpu/venv.
# X3D-M also runs with the Triton depthwise fast path (piumr-fast).
#
# usage: bench/gpu_backbones.sh LOG [BATCH] [ITERS]
# Each backbone has a 45 s limit; a backbone that runs out of it or fails is logged and the next one runs.
set -uo pipefail
LOG=${1:?usage: bench/gpu_backbones.sh LOG [BATCH] [ITERS]}
BATCH=${2:-16}
ITERS=${3:-5}
cd "$(dirname "$0")/.."
PIUMR=${PIUMR:-.gpu/venv/bin/piumr}
: >"$LOG"
for spec in x3d_m:x3d,piumr,piumr-fast r2plus1d_18:x3d,piumr swin3d_t:x3d,piumr mvit_v2_s:x3d,piumr; do
  b=${spec%%:*}
  v=${spec#*:}
  echo "== $b ($v) batch $BATCH iters $ITERS" >>"$LOG"
  t0=$(date +%s)
  timeout 45 "$PIUMR" bench train --preset paper --backbone "$b" --device cuda --batch "$BATCH" --iters "$ITERS" \
    --variants "$v" >>"$LOG" 2>&1
  echo "== $b exit $? after $(( $(date +%s) - t0 )) s" >>"$LOG"
done
