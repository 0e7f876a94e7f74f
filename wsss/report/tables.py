"""Formatting of scores for people: percent cells, markdown tables, the study's tables. Scores come in as
fractions (results.json) and leave as text; nothing else in the toolkit formats a score."""

from __future__ import annotations

import math

DASH = "—"


def bad(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x) -> str:
    """A fraction in [0, 1] as percent with one decimal."""
    return DASH if bad(x) else f"{100 * x:.1f}"


def num(x, fmt: str = ".2f") -> str:
    return DASH if bad(x) else format(x, fmt)


def secs(x) -> str:
    if bad(x):
        return DASH
    return f"{x:.0f}" if x >= 1000 else f"{x:.3g}"


def cell(v) -> str:
    """A free-form table cell."""
    if bad(v):
        return DASH
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fusion_label(v: dict) -> str:
    """``geo(CAM, jigsaw)`` / ``geo(cam@jigsaw-aug, jigsaw@jigsaw-aug)`` for a fusion-grid entry."""
    base = v.get("base", "cam")
    return f"{v['fusion']}({'CAM' if base == 'cam' else base}, {v['filler']})"


_SCORES = ["tune mIoU", "t (tune)", "mIoU@t"]


def _scores(v: dict) -> list[str]:
    return [pct(v.get("tune_miou")), num(v.get("fixed_t")), pct(v.get("miou"))]


def _pr(v: dict) -> list[str]:
    return [pct(v.get("precision")), pct(v.get("recall")), pct(v.get("ndr_recall"))]


STUDY_TABLES = {
    # kind: (where its entries are, columns, row of an entry)
    "variants": ("variants", ["variant", *_SCORES, "best", "prec", "rec", "NDR rec", "robust width", "s/img"],
                 lambda name, v: [name, *_scores(v), pct(v.get("best_miou")), *_pr(v), num(v.get("robust_width")),
                                  num(v.get("seconds_per_image"), ".3f")]),
    "fusion": ("fusion_grid", ["fusion", *_SCORES, "prec", "rec", "NDR rec"],
               lambda name, v: [fusion_label(v), *_scores(v), *_pr(v)]),
    "region": ("region_grid", ["filler", "seed thr", "dilation", *_SCORES, "prec", "rec", "NDR rec"],
               lambda name, v: [v.get("filler"), num(v.get("seed_threshold")), v.get("dilation"), *_scores(v), *_pr(v)]),
}


def study_table(ablation: dict, table: dict) -> tuple[list[str], list[list]]:
    """Columns and rows of one of the study's tables (``results["ablation"]["tables"][i]``)."""
    where, columns, row = STUDY_TABLES[table.get("kind", "variants")]
    entries = ablation.get(where) or {}
    return columns, [row(name, entries[name]) for name in table.get("entries", []) if name in entries]
