#!/usr/bin/env bash
# The GPU numbers in one command: Keras on JAX, bf16 mixed precision, XLA, channels-last,
# batch 256 at 224 px; ours side by side with keras.applications, the PyTorch peer, grouped
# convolutions, and the largest batch that fits. Results land in benchmarks/results/.
#
#   benchmarks/gpu.sh               on a GPU machine (about 30 minutes on one H100)
#   benchmarks/gpu.sh --lease       the headline cases in one short device lease (about 6 minutes on
#                                   one H200): measured matmul rate, ResNet-50 (+ keras.applications),
#                                   ResNeXt-50, steps_per_execution 1 vs 4, batch 1024, torch.compile
#   benchmarks/gpu.sh --smoke       the full run's commands at tiny sizes on a CPU (results in a temp folder)
#   benchmarks/gpu.sh --lease-smoke the lease's commands at tiny sizes on a CPU
# Every file is written as soon as its part is measured, so a run cut short keeps what it has.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export KERAS_BACKEND=jax
MODE=${1:-full}

case "$MODE" in
  --smoke|--lease-smoke)
    OUT=${OUT:-$(mktemp -d)}; TAG=smoke; MATMUL=(--size 256 --repeats 2 --warmup 1)
    PRESET=gpu-smoke; [[ "$MODE" == --lease-smoke ]] && PRESET=gpu-lease-smoke
    PEER=(--models resnet50 --batch-size 2 --image-size 32 --steps 2 --warmup 1 --no-compile)
    CONV=(--batch-size 2 --scale 8 --steps 2 --dtype float32)
    MAXB=(--models resnet18 --image-size 32 --precision float32 --start 2 --limit 2 --timeout 300) ;;
  --lease)
    OUT=${OUT:-benchmarks/results}; TAG=$(date +%F); MATMUL=(); PRESET=gpu-lease
    PEER=(--models resnet50 --batch-size 256 --image-size 224 --steps 30 --warmup 5) ;;
  full)
    OUT=${OUT:-benchmarks/results}; TAG=$(date +%F); MATMUL=(); PRESET=gpu
    PEER=(--models resnet50 resnext50_32x4d --batch-size 256 --image-size 224)
    CONV=(--batch-size 256 --dtype bfloat16)
    MAXB=(--models resnet50 resnext101_32x8d --image-size 224 --precision mixed_bfloat16 --start 256) ;;
  *) echo "usage: benchmarks/gpu.sh [--lease|--smoke|--lease-smoke]" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
# MFU is quoted against the bf16 matmul rate this device reaches, not only its datasheet peak.
"$PY" benchmarks/matmul_peak.py "${MATMUL[@]}" --out "$OUT/gpu-matmul-$TAG.json"
PEAK=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['tflops_median'])" \
  "$OUT/gpu-matmul-$TAG.json")
"$PY" -m restransfer bench train --preset "$PRESET" --peak-tflops "$PEAK" --out "$OUT/gpu-train-$TAG.json"
"$PY" benchmarks/torch_peer.py "${PEER[@]}" --out "$OUT/gpu-torch-$TAG.json"
if [[ "$MODE" != --lease* ]]; then
  "$PY" benchmarks/grouped_conv.py "${CONV[@]}" --out "$OUT/gpu-grouped-conv-$TAG.json"
  "$PY" -m restransfer bench maxbatch "${MAXB[@]}" --out "$OUT/gpu-maxbatch-$TAG.json"
fi
echo "results in $OUT"
