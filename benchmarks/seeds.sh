#!/usr/bin/env bash
# Headline numbers as mean +- sd over seeds (data, training, sampling) on the built-in benchmark, as quoted in
# the README: for each seed, the benchmark (`wsss data synth --seed S`) and a run of every standalone method
# without the segmenter (CPU budget), then AMN (trained on the CAM maps, defaults chosen on tune by
# `wsss ablate --amn-grid`), then `wsss summarize`. Two seeds run side by side (one core each).
# Usage: [BENCH=v1|v2] bash benchmarks/seeds.sh [OUTDIR]   (default: the newest benchmark version, runs/s;
# the study in benchmarks/study.sh reuses OUTDIR)
set -euo pipefail
out=${1:-runs/s}
bench=${BENCH:-v2}
methods=cam,gradcam,saliency,jigsaw,jigsaw-cam,smoothgrad,cropsal
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
one_seed() {
  local s=$1
  [ -d "$out/data_$s" ] || wsss data synth --out "$out/data_$s" --seed "$s" --benchmark "$bench"
  [ -f "$out/run_$s/report.md" ] || wsss run --data "$out/data_$s" --out "$out/run_$s" --seed "$s" --no-seg \
    --methods "$methods" --force
  if [ ! -f "$out/run_$s/amn.pt" ]; then
    wsss train-amn --run "$out/run_$s"
    wsss maps --run "$out/run_$s" --method amn
    wsss pseudo --run "$out/run_$s" --method amn
  fi
}
one_seed 0 & pid=$!
one_seed 1
wait "$pid"  # fails the script when seed 0 failed
one_seed 2
wsss summarize "$out"/run_0 "$out"/run_1 "$out"/run_2
wsss summarize "$out"/run_0 "$out"/run_1 "$out"/run_2 --json > "$out/summary.json"
