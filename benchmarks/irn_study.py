"""Summary of the IRN study (benchmarks/irn_study.sh): each method plain / +crf / +irn over seeds.

Per result key and run: mIoU, precision and recall at the fixed t (chosen on tune; for +crf the base
method's, for +irn the walk's background score chosen on tune), and the cost in seconds per image:

* ``infer``: the maps (+ the CRF, or + IRN's boundary prediction and walk), per scored image;
* ``train``: the training stages the key needs beyond the shared classifier, amortized over the training
  split's images (the images the pseudo-masks are made for): AMN for ``amn*``, the IRN for ``+irn``;
* ``classifier``: the shared classifier's training per training image (the same for every key);
* ``total`` = infer + train + classifier.

Writes ``OUT.txt`` (a markdown table, mean +- sd over runs), ``OUT.json`` (per run and aggregated) and ``OUT.png`` (mIoU
against total seconds per image, log x, with the cost-quality frontier of the means).

    python benchmarks/irn_study.py runs/irn/run_0 runs/irn/run_1 --out benchmarks/results/irn_study
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METHODS = ("cam", "jigsaw-cam", "amn", "traj-cam")
POSTS = ("", "+crf", "+irn")


def run_rows(run: Path) -> dict[str, dict]:
    import yaml

    res = json.loads((run / "results.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    data = Path(cfg["data"])
    n_train = len((data / "ImageSets" / "Segmentation" / f"{cfg['train_split']}.txt").read_text().split())
    cls = (res.get("classifiers") or {}).get("plain", {}).get("seconds") or res["timings"].get("train-cls@plain", 0)
    amn = (res.get("amn") or {}).get("seconds")
    out = {}
    for m in METHODS:
        for post in POSTS:
            key = m + post
            r = res["methods"].get(key)
            if r is None:
                continue
            train = 0.0
            if m.startswith("amn"):
                train += (amn or 0.0) / n_train
            if post == "+irn":
                train += r.get("training_seconds_per_image") or 0.0
            infer = r.get("seconds_per_image") or 0.0
            out[key] = {
                "t": r["fixed"]["t"], "miou": r["fixed"]["miou"], "precision": r["fixed"]["precision"],
                "recall": r["fixed"]["recall"], "best_miou": r["best"]["miou"],
                "tune_miou": (r.get("tune") or {}).get("best", {}).get("miou"),
                "infer_spi": infer, "train_spi": train, "classifier_spi": cls / n_train,
                "total_spi": infer + train + cls / n_train,
                "walk_spi": r.get("walk_seconds_per_image"),
            }
    return out


def mean_sd(values: list[float]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/irn_study"))
    args = ap.parse_args()
    per_run = {str(r): run_rows(r) for r in args.runs}
    keys = [m + p for m in METHODS for p in POSTS if any(m + p in rows for rows in per_run.values())]
    fields = ("miou", "precision", "recall", "t", "infer_spi", "train_spi", "classifier_spi", "total_spi", "walk_spi")
    agg = {k: {f: mean_sd([rows[k][f] for rows in per_run.values() if k in rows]) for f in fields} for k in keys}
    for k in keys:  # the frontier of the means: no key at most as costly is better
        a = agg[k]
        a["frontier"] = not any(agg[o]["total_spi"]["mean"] <= a["total_spi"]["mean"]
                                and agg[o]["miou"]["mean"] > a["miou"]["mean"] for o in keys if o != k)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"runs": per_run, "mean_sd": agg}, indent=1) + "\n")

    def pm(c, scale=100.0, fmt=".1f"):
        if c["mean"] is None:
            return "-"
        return f"{scale * c['mean']:{fmt}} +- {scale * c['sd']:{fmt}}"

    lines = [f"# {len(args.runs)} run(s): {', '.join(str(r) for r in args.runs)}",
             "# mIoU / precision / recall at the fixed t (tune-chosen; +crf at the base method's t, +irn: the walk's",
             "# background score chosen on tune), percent, mean +- sd over runs. Seconds per image: infer = maps",
             "# (+ CRF | + IRN boundary + walk) per image; train = AMN / IRN training amortized over the training",
             "# split; cls = the shared classifier's training per training image; total = infer + train + cls.",
             "# frontier: no key with a lower mean total cost has a higher mean mIoU.",
             "",
             "| key | mIoU | precision | recall | t | infer s/img | train s/img | cls s/img | total s/img | frontier |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k in sorted(keys, key=lambda k: agg[k]["total_spi"]["mean"]):
        a = agg[k]
        lines.append(f"| {k} | {pm(a['miou'])} | {pm(a['precision'])} | {pm(a['recall'])} | {pm(a['t'], 1, '.2f')} | "
                     f"{pm(a['infer_spi'], 1, '.3f')} | {pm(a['train_spi'], 1, '.3f')} | "
                     f"{pm(a['classifier_spi'], 1, '.2f')} | {pm(a['total_spi'], 1, '.2f')} | "
                     f"{'*' if a['frontier'] else ''} |")
    text = "\n".join(lines) + "\n"
    args.out.with_suffix(".txt").write_text(text)
    print(text, end="")
    figure(agg, keys, args.out.with_suffix(".png"), len(args.runs))


def figure(agg: dict, keys: list[str], path: Path, n_runs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    markers = {"": "o", "+crf": "s", "+irn": "D"}
    for k in keys:
        m = next(m for m in sorted(METHODS, key=len, reverse=True) if k.startswith(m))
        post = k[len(m):]
        a = agg[k]
        x, y = a["total_spi"]["mean"], 100 * a["miou"]["mean"]
        ax.errorbar(x, y, yerr=100 * a["miou"]["sd"], fmt=markers[post], color=colours[m], capsize=2, ms=6)
        ax.annotate(k, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = sorted((k for k in keys if agg[k]["frontier"]), key=lambda k: agg[k]["total_spi"]["mean"])
    if len(front) > 1:
        ax.plot([agg[k]["total_spi"]["mean"] for k in front], [100 * agg[k]["miou"]["mean"] for k in front], "-",
                color="0.6", lw=1, zorder=0, label="frontier")
    for post, mk in markers.items():
        ax.plot([], [], mk, color="0.4", label=post.lstrip("+") or "plain")
    ax.set_xscale("log")
    ax.set(xlabel="seconds per image, training stages amortized (log; CPU, 1 thread)", ylabel="mIoU@fixed t (%)",
           title=f"Cost vs quality on benchmark v2 ({n_runs} seed{'s' if n_runs > 1 else ''})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
