#!/usr/bin/env bash
# Headline numbers as mean +- sd over seeds (data, training, sampling) on the built-in benchmark, as quoted in
# the README: seed 0 is the full demo (with the segmentation stage); the other seeds run the same headline
# methods without the segmenter (CPU budget). Then `wsss summarize` prints the table.
# Usage: bash benchmarks/seeds.sh [OUTDIR]   (default: runs/seeds)
set -euo pipefail
out=${1:-runs/seeds}
methods=cam,gradcam,saliency,jigsaw,jigsaw-cam,amn
[ -f "$out/demo_0/report.md" ] || wsss demo --out "$out/demo_0" --seed 0 --force
for s in 1 2; do
  wsss data synth --out "$out/data_$s" --seed "$s"
  [ -f "$out/run_$s/report.md" ] || wsss run --data "$out/data_$s" --out "$out/run_$s" --seed "$s" --no-seg \
    --methods "$methods" --force
done
wsss summarize "$out/demo_0" "$out/run_1" "$out/run_2"
wsss summarize "$out/demo_0" "$out/run_1" "$out/run_2" --json > "$out/summary.json"
