#!/usr/bin/env bash
# The GPU numbers in one command: Keras on JAX, bf16 mixed precision, XLA, channels-last,
# batch 256 at 224 px; ours side by side with keras.applications, the PyTorch peer, grouped
# convolutions, and the largest batch that fits. Results land in benchmarks/results/.
#
#   benchmarks/gpu.sh           on a GPU machine (about 30 minutes on one H100)
#   benchmarks/gpu.sh --smoke   the same commands at tiny sizes on a CPU (results in a temp folder)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export KERAS_BACKEND=jax

if [[ "${1:-}" == "--smoke" ]]; then
  OUT=${OUT:-$(mktemp -d)}; TAG=smoke; PRESET=gpu-smoke
  PEER=(--models resnet50 --batch-size 2 --image-size 32 --steps 2 --warmup 1 --no-compile)
  CONV=(--batch-size 2 --scale 8 --steps 2 --dtype float32)
  MAXB=(--models resnet18 --image-size 32 --precision float32 --start 2 --limit 2 --timeout 300)
else
  OUT=${OUT:-benchmarks/results}; TAG=$(date +%F); PRESET=gpu
  PEER=(--models resnet50 resnext50_32x4d --batch-size 256 --image-size 224)
  CONV=(--batch-size 256 --dtype bfloat16)
  MAXB=(--models resnet50 resnext101_32x8d --image-size 224 --precision mixed_bfloat16 --start 256)
fi
mkdir -p "$OUT"
"$PY" -m restransfer bench train --preset "$PRESET" --out "$OUT/gpu-train-$TAG.json"
"$PY" benchmarks/torch_peer.py "${PEER[@]}" --out "$OUT/gpu-torch-$TAG.json"
"$PY" benchmarks/grouped_conv.py "${CONV[@]}" --out "$OUT/gpu-grouped-conv-$TAG.json"
"$PY" -m restransfer bench maxbatch "${MAXB[@]}" --out "$OUT/gpu-maxbatch-$TAG.json"
echo "results in $OUT"
