"""Compare the scores of two run directories (``results.json``), leaf by leaf, ignoring times.

Used to check that a refactoring leaves the numbers as they were::

    wsss demo --quick --seed 0 --out runs/before     # on the old commit
    wsss demo --quick --seed 0 --out runs/after      # on the new one
    python benchmarks/freeze_compare.py runs/before runs/after [--tol 1e-6]

Prints every score that differs by more than ``--tol`` (and every key present on one side only), then a
one-line verdict; exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIME_KEYS = {"timings", "seconds", "train_seconds", "seconds_per_image", "crf_seconds_per_image", "device"}


def leaves(node, path=()):
    """``(path, value)`` of every scalar leaf, skipping times (they differ from run to run)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in TIME_KEYS:
                yield from leaves(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, str(i)))
    else:
        yield "/".join(path), node


def compare(a: dict, b: dict, tol: float) -> list[str]:
    la, lb = dict(leaves(a)), dict(leaves(b))
    out = [f"only in first:  {k} = {la[k]!r}" for k in sorted(set(la) - set(lb))]
    out += [f"only in second: {k} = {lb[k]!r}" for k in sorted(set(lb) - set(la))]
    for k in sorted(set(la) & set(lb)):
        x, y = la[k], lb[k]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if abs(x - y) > tol:
                out.append(f"differs: {k}: {x!r} -> {y!r} ({y - x:+.3g})")
        elif x != y:
            out.append(f"differs: {k}: {x!r} -> {y!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tol", type=float, default=1e-6, help="largest difference of a score that counts as equal")
    args = ap.parse_args(argv)
    a = json.loads((args.before / "results.json").read_text())
    b = json.loads((args.after / "results.json").read_text())
    diffs = compare(a, b, args.tol)
    print("\n".join(diffs))
    n = sum(1 for _ in leaves(a))
    print(f"{len(diffs)} of {n} score leaves differ (tolerance {args.tol:g})")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
