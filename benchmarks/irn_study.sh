#!/usr/bin/env bash
# IRN vs dense CRF vs no post-processing on the built-in benchmark (issue 15): CAM, jigsaw-cam and AMN, each
# plain / +crf / +irn, per seed: the benchmark, one run (classifier, maps, AMN, the IRN, every score at the t
# chosen on tune), then the summary table, JSON and the cost-quality figure (benchmarks/irn_study.py). Needs
# the [crf] extra. Seeds run one after the other (SEEDS="0 1 2").
# IRN_FROM=cam (default here): one IRN, trained on CAM labels (IRN's protocol), walks every method's maps;
# IRN_FROM=self (the config default): one IRN per method on its own maps (AMN's protocol for AMN), which also
# needs jigsaw's maps on the 480 training images (about 3x the jigsaw cost: too slow for the shared CPU here).
# Usage: [SEEDS="0 1 2"] [BENCH=v2] [IRN_FROM=cam|self] bash benchmarks/irn_study.sh [OUTDIR]   (default runs/irn)
set -euo pipefail
out=${1:-runs/irn}
bench=${BENCH:-v2}
seeds=${SEEDS:-0 1 2}
irn_from=${IRN_FROM:-cam}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for s in $seeds; do
  [ -d "$out/data_$s" ] || wsss data synth --out "$out/data_$s" --seed "$s" --benchmark "$bench"
  [ -f "$out/run_$s/report.md" ] || wsss run --data "$out/data_$s" --out "$out/run_$s" --seed "$s" --device cpu \
    --no-seg --methods cam,jigsaw-cam,amn --post crf,irn --set "irn.from_maps=$irn_from" --resume
done
runs=$(for s in $seeds; do echo "$out/run_$s"; done)
# shellcheck disable=SC2086
wsss summarize $runs
# shellcheck disable=SC2086
python benchmarks/irn_study.py $runs --out benchmarks/results/irn_study
