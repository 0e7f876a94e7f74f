#!/usr/bin/env bash
# IRN vs dense CRF vs no post-processing on the built-in benchmark (issue 15): CAM, jigsaw-cam and AMN, each
# plain / +crf / +irn, per seed: the benchmark, one run (classifier, maps, AMN, one IRN per method trained on
# that method's maps, every score at the t chosen on tune), then the summary table, JSON and the cost-quality
# figure (benchmarks/irn_study.py). Needs the [crf] extra. Seeds run one after the other (SEEDS="0 1 2").
# Usage: [SEEDS="0 1 2"] [BENCH=v2] bash benchmarks/irn_study.sh [OUTDIR]   (default runs/irn)
set -euo pipefail
out=${1:-runs/irn}
bench=${BENCH:-v2}
seeds=${SEEDS:-0 1 2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for s in $seeds; do
  [ -d "$out/data_$s" ] || wsss data synth --out "$out/data_$s" --seed "$s" --benchmark "$bench"
  [ -f "$out/run_$s/report.md" ] || wsss run --data "$out/data_$s" --out "$out/run_$s" --seed "$s" --device cpu \
    --no-seg --methods cam,jigsaw-cam,amn --post crf,irn --resume
done
runs=$(for s in $seeds; do echo "$out/run_$s"; done)
# shellcheck disable=SC2086
wsss summarize $runs
# shellcheck disable=SC2086
python benchmarks/irn_study.py $runs --out benchmarks/results/irn_study
