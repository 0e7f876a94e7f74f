#!/usr/bin/env bash
# IRN vs dense CRF vs no post-processing on the built-in benchmark (issue 15): CAM, jigsaw-cam and AMN, each
# plain / +crf / +irn, per seed: the benchmark, one run (classifier, maps, AMN, the IRN, every score at the t
# chosen on tune), then the summary table, JSON and the cost-quality figure (benchmarks/irn_study.py). Needs
# the [crf] extra. Seeds run one after the other (SEEDS="0 1 2").
# IRN_FROM=cam (default here): one IRN, trained on CAM labels (IRN's protocol), walks every method's maps;
# IRN_FROM=self (the config default): one IRN per method on its own maps (AMN's protocol for AMN), which also
# needs jigsaw's maps on the 480 training images (about 3x the jigsaw cost: too slow for the shared CPU here).
# FROM_RUNS=DIR: reuse the runs of benchmarks/recipes_study.sh (DIR/run_<seed>: the same benchmark, classifier,
# CAM and jigsaw maps and AMN; made with irn.from_maps=cam) and add only the IRN, jigsaw-cam and the scores, and
# traj-cam (CAM averaged over the classifier's snapshots, the round-two study's best new map) plain/+crf/+irn.
# Usage: [SEEDS="0 1 2"] [BENCH=v2] [IRN_FROM=cam|self] bash benchmarks/irn_study.sh [OUTDIR]   (default runs/irn)
#        FROM_RUNS=runs/rec [SEEDS="0 1 2"] bash benchmarks/irn_study.sh
set -euo pipefail
out=${1:-runs/irn}
bench=${BENCH:-v2}
seeds=${SEEDS:-0 1 2}
irn_from=${IRN_FROM:-cam}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ -n "${FROM_RUNS:-}" ]; then
  out=$FROM_RUNS
  for s in $seeds; do
    r=$out/run_$s
    grep -q "from_maps: $irn_from" <(sed -n '/^irn:/,/^[a-z]/p' "$r/config.yaml") \
      || { echo "$r/config.yaml: irn.from_maps is not $irn_from" >&2; exit 2; }
    [ -f "$r/irn-$irn_from.pt" ] || wsss train-irn --run "$r" --from-maps "$irn_from"
    # cam, amn and traj-cam are scored plain and +crf by recipes_study.sh; jigsaw-cam is new here (fused from the
    # stored cam and jigsaw maps; stored maps are kept)
    wsss maps --run "$r" --method jigsaw
    wsss maps --run "$r" --method jigsaw-cam
    wsss pseudo --run "$r" --method jigsaw-cam
    wsss pseudo --run "$r" --method jigsaw-cam --crf
    for m in cam jigsaw-cam amn traj-cam; do  # traj-cam: the best new map of the recipes study (on tune)
      wsss pseudo --run "$r" --method "$m" --irn
    done
  done
else
  for s in $seeds; do
    [ -d "$out/data_$s" ] || wsss data synth --out "$out/data_$s" --seed "$s" --benchmark "$bench"
    [ -f "$out/run_$s/report.md" ] || wsss run --data "$out/data_$s" --out "$out/run_$s" --seed "$s" --device cpu \
      --no-seg --methods cam,jigsaw-cam,amn --post crf,irn --set "irn.from_maps=$irn_from" --resume
  done
fi
runs=$(for s in $seeds; do echo "$out/run_$s"; done)
# shellcheck disable=SC2086
wsss summarize $runs
# shellcheck disable=SC2086
python benchmarks/irn_study.py $runs --out benchmarks/results/irn_study
