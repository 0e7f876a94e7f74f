#!/usr/bin/env bash
# The jigsaw / AMN study on the built-in benchmark, as quoted in the README and the issue notes.
# Needs the three seed runs of seeds.sh (with AMN) in the same OUTDIR (run_0..2 with their data_S). The README's
# study ran on benchmark v1: `BENCH=v1 bash benchmarks/seeds.sh runs/s`, then this script on runs/s.
# First the AMN study on seed 0 (its tune column chose the AMN defaults in wsss/config.py):
#   wsss ablate --run runs/s/run_0 --amn-grid
# then two halves that touch different run directories, so they can run side by side on two cores:
#   bash benchmarks/study.sh A [OUTDIR]   # everything else on seed 0: AMN on jigsaw-cam, grids, groups
#   bash benchmarks/study.sh B [OUTDIR]   # seeds 1-2 fusion grid, CPU bench, Lite0 random vs
#                                         # ImageNet, a deeper classifier, the part-size knob
#   bash benchmarks/study.sh C [OUTDIR]   # the jigsaw-augmented classifier on every seed (after A's 2x2)
# Every command resumes where it stopped (finished variants are kept in results.json).
set -euo pipefail
half=${1:?usage: study.sh A|B [OUTDIR]}
out=${2:-runs/s}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core per half

if [ "$half" = A ]; then
  r=$out/run_0
  wsss ablate --run "$r" --amn-grid  # (done first, see above; resumes instantly)
  wsss train-amn --run "$r" --from-maps jigsaw-cam   # AMN on our maps
  wsss maps --run "$r" --method amn-jigsaw-cam
  wsss pseudo --run "$r" --method amn-jigsaw-cam
  wsss ablate --run "$r" --fusion-grid --region-grid --norm-grid
  wsss ablate --run "$r" --group 'randomized weights (sanity)'
  wsss ablate --run "$r" --group 'samples N'
  wsss ablate --run "$r" --group '2x2 classifier x maps'
  wsss ablate --run "$r" --group 'grid schedule' --samples 8
  wsss ablate --run "$r" --group 'options' --samples 8
  # CAM fused with the finer-grid jigsaw maps (does a patch well inside the receptive field help?)
  wsss ablate --run "$r" --fusion-grid --filler 'jigsaw grids=(8,)' --filler 'jigsaw grids=(16,)' \
    --filler 'jigsaw grids=(8, 12, 16)' --filler 'jigsaw grids=(4, 6, 8)' --filler 'jigsaw N=32'
  # the segmenter on seed 0's pseudo-masks (and on the true masks: the fully supervised bound)
  for m in cam jigsaw-cam amn; do
    wsss maps --run "$r" --method "$m" --split train_aug
    wsss train-seg --run "$r" --masks "$m"
  done
  wsss train-seg --run "$r" --masks gt
elif [ "$half" = C ]; then  # the jigsaw-augmented classifier (P = 0.5) on every seed: CAM and jigsaw under it
  for s in 1 2 0; do
    r=$out/run_$s
    [ -f "$r/classifier@jigsaw-aug.pt" ] || wsss train-cls --run "$r" --jigsaw-aug 0.5
    for m in cam jigsaw; do
      wsss maps --run "$r" --method $m --classifier jigsaw-aug
      wsss pseudo --run "$r" --method $m@jigsaw-aug
    done
    wsss ablate --run "$r" --fusion-grid --fusion-base cam@jigsaw-aug --filler jigsaw@jigsaw-aug
  done
elif [ "$half" = B ]; then
  for s in 1 2; do
    wsss ablate --run "$out/run_$s" --fusion-grid --region-grid
  done
  mkdir -p benchmarks/results
  wsss bench --arch smallcnn --size 128 --out benchmarks/results/localizers_smallcnn_cpu.json
  for init in imagenet random; do  # does ImageNet pretraining change the ranking? (same size, stride, recipe)
    [ -f "$out/lite0_$init/report.md" ] || wsss run --config "configs/synth_lite0_$init.yaml" \
      --data "$out/data_0" --out "$out/lite0_$init" --no-seg --force
    wsss ablate --run "$out/lite0_$init" --fusion-grid
  done
  # a deeper classifier (larger receptive field), same data and recipe
  [ -f "$out/deep_0/report.md" ] || wsss run --config configs/synth_smallcnn_deep.yaml --data "$out/data_0" \
    --out "$out/deep_0" --no-seg --force
  wsss ablate --run "$out/deep_0" --fusion-grid --group 'randomized weights (sanity)' --samples 4  # + its receptive field
  # the part-discriminativeness knob (default 0.03 of the object's area; the defaults stay frozen)
  for pf in 0.1 0.015; do
    [ -d "$out/data_pf$pf" ] || wsss data synth --out "$out/data_pf$pf" --part-frac "$pf"
    [ -f "$out/pf$pf/report.md" ] || wsss run --data "$out/data_pf$pf" --out "$out/pf$pf" --no-seg --force \
      --methods cam,gradcam,saliency,jigsaw
    wsss ablate --run "$out/pf$pf" --fusion-grid
  done
fi
