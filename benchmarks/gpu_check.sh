#!/usr/bin/env bash
# One short scripted check on a CUDA machine: classifier training, maps with bfloat16 autocast, throughput.
# Usage (repo root, GPU machine): OUT=/tmp/out bash benchmarks/gpu_check.sh
set -euo pipefail
OUT=${OUT:-/tmp/wsss_gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD PYTHONUNBUFFERED=1
python3 - <<'PY'
import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
python3 -m wsss data synth --out /tmp/wsss_gpu_data --images 240
cat > /tmp/wsss_gpu.yaml <<'YAML'
maps:
  methods: [cam, saliency, smoothgrad, jigsaw, jigsaw-cam]
  batch_size: 32
  amp: true
train_segmenter: false
YAML
python3 -m wsss run --data /tmp/wsss_gpu_data --out /tmp/wsss_gpu_run --config /tmp/wsss_gpu.yaml --device cuda --force \
  2>&1 | grep -v "it/s\]" | tee "$OUT/run.log"
cp /tmp/wsss_gpu_run/results.json "$OUT/results_cuda_amp.json"
python3 -m wsss bench --device cuda --samples 32 --out "$OUT/bench_cuda.json" | tee "$OUT/bench.log"
python3 -m wsss bench --device cuda --arch resnet50 --size 320 --samples 16 --out "$OUT/bench_cuda_resnet50.json" | tee -a "$OUT/bench.log"
