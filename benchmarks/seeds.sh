#!/usr/bin/env bash
# Headline numbers as mean +- sd over seeds (data, training, sampling) on the built-in benchmark:
# one full `wsss demo --seed S` per seed (data, classifier, maps, AMN, segmenter), then `wsss summarize`.
# Usage: bash benchmarks/seeds.sh [OUTDIR] [SEEDS...]   (default: runs/seeds, seeds 0 1 2)
set -euo pipefail
out=${1:-runs/seeds}
shift || true
seeds=${*:-0 1 2}
runs=()
for s in $seeds; do
  if [ ! -f "$out/demo_$s/report.md" ]; then
    wsss demo --out "$out/demo_$s" --seed "$s" --force
  fi
  runs+=("$out/demo_$s")
done
wsss summarize "${runs[@]}"
wsss summarize "${runs[@]}" --json > "$out/summary.json"
