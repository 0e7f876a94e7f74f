#!/usr/bin/env bash
# How benchmark v2 was chosen (wsss/data/synth.py): candidate changes to v1, each scored by CAM alone
# (classifier val mAP, CAM precision / recall / mIoU at its tune-chosen threshold on `train`), seed 0.
# Saliency is computed too, for the record; it played no part in the choice.
# Usage: bash benchmarks/benchmark_v2.sh [OUTDIR]   (default runs/p; two candidates side by side)
set -euo pipefail
out=${1:-runs/p}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
probe() {
  local name=$1; shift
  [ -d "$out/data_$name" ] || wsss data synth --out "$out/data_$name" --seed 0 --benchmark v1 "$@"
  [ -f "$out/run_$name/report.md" ] || wsss run --data "$out/data_$name" --out "$out/run_$name" --seed 0 --no-seg \
    --methods cam,saliency --force
}
probe v1 & a=$!
probe off85 --part-offset 0.85; wait "$a"
probe off85d --part-offset 0.85 --distractors 0.5 & a=$!
probe big70 --body-radius 0.44,0.56 --part-offset 0.7; wait "$a"
probe big45 --body-radius 0.44,0.56 & a=$!
probe s144 --size 144; wait "$a"
probe s160 --size 160  # = v2
for n in v1 off85 off85d big70 big45 s144 s160; do
  echo "== $n: $(grep '^| plain |' "$out/run_$n/report.md")"  # classifier: arch, jigsaw-aug, val mAP, seconds
  wsss summarize "$out/run_$n" | grep -E "^(method|threshold|cam|saliency) "
done
