"""Pseudo-mask mIoU split by how many classes an image shows: a map can gain by covering whole objects (what
single-class images reward: the class is given, so any objectness map labels them right) or by telling the
present classes apart (what images with two or more classes need). Each key at its fixed t (chosen on tune),
scored on the run's score split; mean +- sd over the runs.

    python benchmarks/by_class_count.py runs/rec/run_0 runs/rec/run_1 runs/rec/run_2 --keys cam amn cam@jc-ramp0 \
        --out benchmarks/results/by_class_count_v2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from recipes_table import emit  # benchmarks/ is on the path when this file is run as a script


def split_scores(run_dir: Path, keys: list[str]) -> dict[str, dict[str, float]]:
    from wsss.mapsio import load_maps
    from wsss.metrics import ConfusionMatrix
    from wsss.pseudo import maps_to_mask, normalize_maps
    from wsss.results import ResultKey
    from wsss.run.rundir import Run

    run = Run(run_dir)
    ds = run.dataset(run.cfg.score_split)
    methods = run.results()["methods"]
    counts = {i: len(ds.labels(i).nonzero()[0]) for i in ds.ids}
    out = {}
    for key in keys:
        if key not in methods:
            continue
        t, norm = methods[key]["fixed"]["t"], run.cfg.pseudo.norm_for(key)
        folder = run.maps_dir(ResultKey.parse(key).maps_key)
        cms = {"1": ConfusionMatrix(ds.num_classes + 1), "2+": ConfusionMatrix(ds.num_classes + 1)}
        for i in ds.ids:
            maps, classes = load_maps(folder / f"{i}.npz")
            cms["1" if counts[i] == 1 else "2+"].update(maps_to_mask(normalize_maps(maps, norm), classes, t), ds.mask(i))
        out[key] = {"t": t, **{k: cm.miou() for k, cm in cms.items()},
                    "images": {"1": sum(c == 1 for c in counts.values()), "2+": sum(c > 1 for c in counts.values())}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--keys", nargs="+", required=True)
    ap.add_argument("--out", type=Path, help="write OUT.json and OUT.txt")
    args = ap.parse_args()
    per_run = {str(r): split_scores(r, args.keys) for r in args.runs}
    lines = [f"mIoU at the fixed t by classes per image; runs: {', '.join(per_run)}", "",
             "| key | 1 class | 2+ classes | per run (1 / 2+) |", "|---|---|---|---|"]
    for key in args.keys:
        rows = [r[key] for r in per_run.values() if key in r]
        if not rows:
            continue
        cell = []
        for part in ("1", "2+"):
            v = [100 * r[part] for r in rows]
            cell.append(f"{statistics.fmean(v):.1f}" + (f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else ""))
        per = "; ".join(f"{100 * r['1']:.1f} / {100 * r['2+']:.1f}" for r in rows)
        lines.append(f"| {key} | {cell[0]} | {cell[1]} | {per} |")
    images = next(iter(next(iter(per_run.values())).values()), {}).get("images")
    lines += ["", f"images per run (first run): {images}"]
    text = "\n".join(lines) + "\n"
    emit(text, per_run, args.out)


if __name__ == "__main__":
    main()
