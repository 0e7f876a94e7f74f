"""The recipes study's table (benchmarks/recipes_study.sh): every scored key of the given runs with its quality
and its cost side by side, mean +- sd over the runs (seeds) where there are several.

    python benchmarks/recipes_table.py runs/rec/run_0 [runs/rec/run_1 ...] --out benchmarks/results/recipes_v2

writes OUT.json and OUT.txt (a markdown table). Quality: the tune split's best mIoU (what choices are made on; none
for +crf keys, refined at the base key's tune-chosen t), fixed-t mIoU (t chosen on tune, scored on train),
precision / recall at that t, NDR recall, robust width, AP. Cost: seconds to train what the maps need (the
classifier named after the @, the plain one otherwise, + AMN where the key is an AMN method) and map seconds per
image (+ CRF seconds where the key says +crf), as recorded by the run on this machine. The mIoU of every run is
listed too (column "per seed", in the order of the runs given), and `wsss ablate --fusion-grid` entries, where the
runs have them, follow in a second table (fixed-t and tune mIoU).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

COLUMNS = [("tune", "tune mIoU"), ("miou", "mIoU@fixed"), ("precision", "P"), ("recall", "R"), ("ndr_recall", "NDR R"),
           ("robust_width", "width"), ("ap", "AP"), ("train_seconds", "train s"), ("seconds_per_image", "maps s/img")]


def _key_parts(key: str) -> tuple[str, str, str | None]:
    base, _, clf = key.partition("@")
    method, _, post = base.partition("+")
    return method, clf or "plain", post or None


def row(res: dict, key: str) -> dict:
    m = res["methods"][key]
    method, clf, _ = _key_parts(key)
    classifiers = res.get("classifiers", {})
    train = classifiers.get(clf, {}).get("seconds")
    if method.startswith("amn"):
        amn_name = _key_parts(key)[0] + ("" if clf == "plain" else f"@{clf}")
        amn = res.get("amn") if amn_name == "amn" else res.get("amn_variants", {}).get(amn_name)
        train = None if train is None or not amn else train + amn.get("seconds", 0.0)
    tune = (m.get("tune") or {}).get("best") or {}
    return {
        "tune": tune.get("miou"), "miou": m["fixed"]["miou"], "precision": m["fixed"]["precision"], "recall": m["fixed"]["recall"],
        "ndr_recall": m.get("ndr_recall"), "robust_width": m.get("robust_width"), "ap": m.get("ap"),
        "t": m["fixed"]["t"], "train_seconds": train, "seconds_per_image": m.get("seconds_per_image"),
    }


def _stat(values: list) -> dict | None:
    """``{"mean", "sd", "n"}`` of the values that are not None (sd 0 for one value); None if there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}


def summarize(runs: list[Path]) -> dict:
    per_run = [json.loads((r / "results.json").read_text()) for r in runs]
    keys = sorted({k for res in per_run for k in res.get("methods", {})})
    table = {}
    for key in keys:
        rows = [row(res, key) for res in per_run if key in res.get("methods", {})]
        cell = {}
        for col in [c for c, _ in COLUMNS] + ["t"]:
            cell[col] = _stat([r[col] for r in rows])
        cell["per_seed"] = [res["methods"][key]["fixed"]["miou"] if key in res.get("methods", {}) else None
                            for res in per_run]
        table[key] = cell
    fusions = {}
    for key in sorted({k for res in per_run for k in (res.get("ablation") or {}).get("fusion_grid", {})}):
        entries = [(res.get("ablation") or {}).get("fusion_grid", {}).get(key) for res in per_run]
        cell = {}
        for col in ("miou", "tune_miou"):
            cell[col] = _stat([e.get(col) for e in entries if e])
        cell["per_seed"] = [e["miou"] if e else None for e in entries]
        fusions[key] = cell
    return {"runs": [str(r) for r in runs], "methods": table, "fusion_grid": fusions}


def _fmt(col: str, c) -> str:
    if c is None:
        return "—"
    pm = f" ± {c['sd'] * (100 if col in PCT else 1):.1f}" if c["n"] > 1 else ""
    if col in PCT:
        return f"{100 * c['mean']:.1f}{pm}"
    if col == "robust_width":
        return f"{c['mean']:.2f}"
    if col == "seconds_per_image":
        return f"{c['mean']:.4f}"
    return f"{c['mean']:.0f}"


PCT = ("tune", "miou", "precision", "recall", "ndr_recall", "ap")


def markdown(summary: dict) -> str:
    rows = sorted(summary["methods"].items(), key=lambda kv: -kv[1]["miou"]["mean"])
    n = max(c["miou"]["n"] for _, c in rows) if rows else 0
    head = "| key | " + " | ".join(h for _, h in COLUMNS) + " | t | per seed |"
    out = [f"{len(summary['runs'])} run(s) ({', '.join(summary['runs'])}); n = seeds per key (max {n})", "", head,
           "|" + "---|" * (len(COLUMNS) + 3)]
    for key, c in rows:
        out.append(f"| {key} | " + " | ".join(_fmt(col, c[col]) for col, _ in COLUMNS)
                   + f" | {c['t']['mean']:.2f} | {_seeds(c['per_seed'])} |")
    fusions = sorted(summary.get("fusion_grid", {}).items(), key=lambda kv: -kv[1]["miou"]["mean"])
    if fusions:
        out += ["", "`wsss ablate --fusion-grid`: CAM fused with a stored map (t chosen on tune)", "",
                "| fusion | mIoU@fixed | tune mIoU | per seed |", "|---|---|---|---|"]
        for key, c in fusions:
            out.append(f"| {key} | {_fmt('miou', c['miou'])} | {_fmt('tune', c['tune_miou'])} | {_seeds(c['per_seed'])} |")
    return "\n".join(out) + "\n"


def _seeds(values: list) -> str:
    return " / ".join("—" if v is None else f"{100 * v:.1f}" for v in values)


def tune_table(run_dir: Path) -> tuple[dict, str]:
    """Best mIoU on the tune split (and its t) of every stored maps folder of the run that covers the tune
    split: what the ablation chooses on (never the scored split)."""
    from wsss.metrics import threshold_values
    from wsss.run.rundir import Run
    from wsss.run.stages.score import tune_threshold

    run = Run(run_dir)
    ds = run.dataset(run.cfg.tune_split)
    cfg = run.cfg.pseudo
    thresholds = threshold_values(cfg.t_start, cfg.t_stop, cfg.t_step)
    rows = {}
    for folder in sorted(p for p in (run.path / "maps").iterdir() if p.is_dir()):
        if any(not (folder / f"{i}.npz").exists() for i in ds.ids):
            continue
        tune = tune_threshold(ds, folder, cfg.norm_for(folder.name), thresholds, cfg.t_step, progress=False)
        rows[folder.name] = {"miou": tune["best"]["miou"], "t": tune["best"]["t"], "robust_width": tune["robust_width"]}
    lines = [f"tune split of {run_dir} ({len(ds.ids)} images): best mIoU and its t per maps key", "",
             "| key | tune mIoU | t | width |", "|---|---|---|---|"]
    for key, r in sorted(rows.items(), key=lambda kv: -kv[1]["miou"]):
        lines.append(f"| {key} | {100 * r['miou']:.1f} | {r['t']:.2f} | {r['robust_width']:.2f} |")
    return rows, "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="write OUT.json and OUT.txt")
    ap.add_argument("--tune", action="store_true", help="the tune split's best mIoU of every stored maps key of "
                    "one run (what the ablation chooses on)")
    args = ap.parse_args()
    if args.tune:
        summary, text = tune_table(args.runs[0])
    else:
        summary = summarize(args.runs)
        text = markdown(summary)
    emit(text, summary, args.out)


def emit(text: str, data: dict, out: Path | None) -> None:
    """Print ``text``; with ``out``, also write ``OUT.txt`` (the text) and ``OUT.json`` (``data``)."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
        out.with_suffix(".txt").write_text(text)


if __name__ == "__main__":
    main()
