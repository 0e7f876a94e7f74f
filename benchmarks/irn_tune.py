"""IRN's small-data settings chosen on the tune split: for each variant (``irn.*`` overrides), train the
boundary branch on a run's stored maps of the train split (nothing saved), walk the tune split's maps and
sweep the background score t; print the best tune mIoU, its t and the seconds.

    PYTHONPATH=. python benchmarks/irn_tune.py runs/irn/run_0 --maps cam \\
        --variant radius=5 --variant radius=10 --variant radius=5,crf=true

Each ``--variant`` is ``key=value[,key=value]`` over ``irn.*`` (values read as YAML). Output: one line per
variant (and ``--out FILE.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml


def parse_variant(text: str) -> dict:
    out = {}
    for item in text.split(","):
        k, _, v = item.partition("=")
        out[f"irn.{k.strip()}"] = yaml.safe_load(v)
    return out


def main() -> None:
    from wsss.config import irn_settings
    from wsss.irn import irn_scores, predict_boundary
    from wsss.mapsio import load_maps
    from wsss.metrics import threshold_values
    from wsss.pseudo import make_sweep_matrices, sweep_image
    from wsss.run.rundir import Run
    from wsss.run.stages import classifier
    from wsss.train.irn import fit_irn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--maps", default="cam")
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    base = Run(args.run)
    rows = []
    for text in args.variant or [""]:
        run = Run(args.run)
        run.cfg = base.cfg.with_updates(**parse_variant(text)) if text else base.cfg
        cfg = irn_settings(run.cfg.irn, args.maps).model_copy(update={"from_maps": args.maps})
        t0 = time.time()
        branch, res = fit_irn(run.dataset(run.cfg.train_split), run.maps_dir(args.maps), classifier.load(run), cfg,
                              run.device, seed=run.cfg.seed, progress=False)
        t_train = time.time() - t0
        tune = run.dataset(run.cfg.tune_split)
        thresholds = threshold_values(run.cfg.pseudo.t_start, run.cfg.pseudo.t_stop, run.cfg.pseudo.t_step)
        cms = make_sweep_matrices(tune.num_classes + 1, thresholds)
        t1 = time.time()
        for image_id in tune.ids:
            image = tune.image(image_id)
            m, classes = load_maps(run.maps_dir(args.maps) / f"{image_id}.npz")
            bd = predict_boundary(branch, image, run.device, flip=cfg.flip_boundary)
            sweep_image(irn_scores(m, classes, bd, image.shape[:2], cfg), classes, tune.mask(image_id), thresholds, cms)
        t_walk = (time.time() - t1) / len(tune.ids)
        miou = {t: cm.miou() for t, cm in cms.items()}
        best = max(miou, key=lambda t: miou[t])
        row = {"variant": text or "default", "tune_miou": float(miou[best]), "t": best, "miou_at_0.25": float(miou[0.25]),
               "train_seconds": round(t_train, 1), "walk_seconds_per_image": round(t_walk, 4),
               "label_fractions": res["label_fractions"], "final_loss": res["loss_history"][-1]}
        rows.append(row)
        print(f"{row['variant']:<36} tune mIoU {100 * row['tune_miou']:.1f} (t={best:.2f}; t=0.25: "
              f"{100 * row['miou_at_0.25']:.1f})  train {t_train:.0f} s  walk {t_walk:.3f} s/img  "
              f"loss {row['final_loss']:.3f}  labels {row['label_fractions']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"run": str(args.run), "maps": args.maps, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
