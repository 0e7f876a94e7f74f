"""Mean and sample sd over runs of the same study with different seeds (``wsss summarize``)."""

from __future__ import annotations

import numpy as np

from wsss.report.tables import fusion_label

METHOD_FIELDS = {"miou": lambda m: m.fixed.miou, "best": lambda m: m.best.miou,
                 "precision": lambda m: m.fixed.precision, "recall": lambda m: m.fixed.recall,
                 "ndr_recall": lambda m: m.ndr_recall, "robust_width": lambda m: m.robust_width, "ap": lambda m: m.ap,
                 "oracle_miou": lambda m: m.oracle_miou, "spread": lambda m: m.spread_0_1_0_5}
STUDY_FIELDS = {"miou": ("miou",), "best": ("best_miou",), "precision": ("precision",), "recall": ("recall",),
                "ndr_recall": ("ndr_recall",)}


def stat(values: list) -> dict | None:
    """``{"mean", "sd", "n"}`` of the values that are not None (sd with ddof 1; 0 for one value)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=float)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


def _get(d, path):
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def study_entries(abl: dict) -> dict[str, dict]:
    """A run's study entries (``results["ablation"]``) by name: ``fusion geo(CAM, saliency)``, ``region(cropsal)``
    (the region fusion at its tune-chosen setting), ``variant <name>`` (study groups, AMN grid)."""
    out = {f"fusion {fusion_label(v)}": v for v in (abl.get("fusion_grid") or {}).values()}
    chosen: dict[str, dict] = {}
    for v in (abl.get("region_grid") or {}).values():
        best = chosen.get(v["filler"])
        if best is None or (v.get("tune_miou") or -1) > (best.get("tune_miou") or -1):
            chosen[v["filler"]] = v
    out.update({f"region({f})": v for f, v in chosen.items()})
    out.update({f"variant {k}": v for k, v in (abl.get("variants") or {}).items()})
    return out


def summarize_runs(runs: list) -> dict:
    """Mean and sd over runs (each with ``path`` and ``typed_results()``) of each method's fixed-t scores, each
    segmenter's val mIoU and each study entry."""
    results = [r.typed_results() for r in runs]
    keys = sorted({k for res in results for k in res.methods})
    methods = {k: {f: stat([get(res.methods[k]) for res in results if k in res.methods]) for f, get in METHOD_FIELDS.items()}
               for k in keys}
    seg_keys = sorted({k for res in results for k in res.segmentation})
    seg = {k: stat([res.segmentation[k].val_miou for res in results if k in res.segmentation]) for k in seg_keys}
    rows = [study_entries(res.ablation) for res in results]
    study = {k: {f: stat([_get(r.get(k, {}), path) for r in rows]) for f, path in STUDY_FIELDS.items()}
             for k in sorted({k for r in rows for k in r})}
    return {"runs": [str(r.path) for r in runs], "methods": methods, "segmentation": seg, "study": study}
