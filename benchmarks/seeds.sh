#!/usr/bin/env bash
# Headline numbers as mean +- sd over seeds (data, training, sampling) on the built-in benchmark.
# Usage: bash benchmarks/seeds.sh [OUTDIR] [SEEDS...]   (default: runs/seeds, seeds 0 1 2)
# Each seed: `wsss data synth --seed S` + `wsss run --seed S --no-seg` with the demo's headline methods;
# then `wsss summarize` prints the table (and writes OUTDIR/summary.json).
set -euo pipefail
out=${1:-runs/seeds}
shift || true
seeds=${*:-0 1 2}
methods=cam,gradcam,saliency,smoothgrad,jigsaw,jigsaw-cam,amn
runs=()
for s in $seeds; do
  wsss data synth --out "$out/data_$s" --seed "$s"
  if [ ! -f "$out/run_$s/results.json" ] || ! grep -q '"total"' "$out/run_$s/results.json"; then
    wsss run --data "$out/data_$s" --out "$out/run_$s" --seed "$s" --no-seg --methods "$methods" --resume
  fi
  runs+=("$out/run_$s")
done
wsss summarize "${runs[@]}"
wsss summarize "${runs[@]}" --json > "$out/summary.json"
