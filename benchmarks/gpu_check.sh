#!/usr/bin/env bash
# One short scripted check on a CUDA machine (<= 5 min on an H200): every ratio of issue 16 on ResNet-50 and
# Lite0 (wsss vs pytorch-grad-cam / captum at 1, 2, 4 classes, fp32 and wsss with bf16 autocast; jigsaw and
# SmoothGrad over the floor; marginal cost of the 2nd / 4th class, both backward modes; peak CUDA memory), the
# localizer throughput table, and a short run with bf16 maps.
# Usage (repo root, GPU machine): OUT=/tmp/out bash benchmarks/gpu_check.sh   (FULL=1: also the classifier run)
set -euo pipefail
OUT=${OUT:-/tmp/wsss_gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$PWD PYTHONUNBUFFERED=1
python3 - <<'PY' | tee "$OUT/env.log"
import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
PY
# 1-3: vs references (ResNet-50 224 px, Lite0 ImageNet K = 1000 on a 300x451 photo), fp32 then bf16 autocast
python3 benchmarks/vs_references.py --device cuda --models resnet50 lite0 --samples 16 --repeats 5 \
  --out "$OUT/vs_references_cuda.json" 2>&1 | grep -v Warning | tee "$OUT/vs_references_cuda.log"
python3 benchmarks/vs_references.py --device cuda --amp --models resnet50 lite0 --samples 16 --repeats 5 \
  --out "$OUT/vs_references_cuda_bf16.json" 2>&1 | grep -v Warning | tee "$OUT/vs_references_cuda_bf16.log"
# every registered method over the floor (jigsaw <= 1.1x the floor per sample.class is the target)
python3 -m wsss bench --device cuda --samples 32 --out "$OUT/bench_cuda.json" | tee "$OUT/bench.log"
python3 -m wsss bench --device cuda --arch resnet50 --size 320 --samples 16 --out "$OUT/bench_cuda_resnet50.json" \
  | tee -a "$OUT/bench.log"
if [[ "${FULL:-0}" == "1" ]]; then  # classifier training + maps with bf16 autocast (a few more minutes)
  python3 -m wsss data synth --out /tmp/wsss_gpu_data --images 240
  cat > /tmp/wsss_gpu.yaml <<'YAML'
maps:
  methods: [cam, saliency, smoothgrad, jigsaw, jigsaw-cam]
  batch_size: 32
  amp: true
train_segmenter: false
YAML
  python3 -m wsss run --data /tmp/wsss_gpu_data --out /tmp/wsss_gpu_run --config /tmp/wsss_gpu.yaml --device cuda \
    --force 2>&1 | grep -v "it/s\]" | tee "$OUT/run.log"
  cp /tmp/wsss_gpu_run/results.json "$OUT/results_cuda_amp.json"
fi
echo "results in $OUT (copy them to benchmarks/results/)"
