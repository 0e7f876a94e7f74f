"""Localizer throughput as ratios to the floor, one process: `python benchmarks/localizers.py` (= `wsss bench`).

Writes benchmarks/results/localizers_<arch>_<device>.json and prints a table.
"""

import sys
from pathlib import Path

from wsss.bench import format_bench, run_bench

if __name__ == "__main__":
    arch = sys.argv[1] if len(sys.argv) > 1 else "smallcnn"
    device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    out = Path(__file__).parent / "results" / f"localizers_{arch}_{device}.json"
    print(format_bench(run_bench(arch=arch, device=device, out=out)))
