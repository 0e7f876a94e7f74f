"""Peak memory and time of IRN's random walk (:func:`wsss.irn.irn_mask`) per image, on CPU.

Each configuration runs in a fresh process; its peak is the growth of the process's peak resident set
(``ru_maxrss``) during ``irn_mask``, over what the inputs and a warm-up call on a 16-px image already
took (so it includes the mask, the maps at stride 4 and the upsampled scores, not only the walk). Also printed: the working set the
walk's ``max_bytes`` bounds (:func:`wsss.irn.walk_work_bytes`) and the dense ``HW x HW`` float32 transition
matrix IRN forms (its squaring needs about three of them).

    PYTHONPATH=. python benchmarks/irn_memory.py                 # 160 and 512 px, K = 3, 1 thread
    PYTHONPATH=. python benchmarks/irn_memory.py --sizes 160 512 1024 --max-mib none 1 --classes 3
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def one(size: int, max_mib: float | None, classes: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from wsss.config import IRNConfig
    from wsss.irn import irn_mask, walk_band_rows, walk_work_bytes

    torch.set_num_threads(1)
    cfg = IRNConfig(sem_seg_bg=0.25, max_bytes=None if max_mib is None else int(max_mib * 2**20))
    rng = np.random.default_rng(0)
    maps = rng.random((classes, size, size)).astype(np.float32)
    h = math.ceil(size / cfg.stride)
    boundary = torch.from_numpy(rng.random((h, h)).astype(np.float32) ** 4)
    # warm-up on a tiny image, so that one-time costs (kernels, thread pools) are not counted
    irn_mask(maps[:, :16, :16], np.arange(1, classes + 1), boundary[:4, :4], (16, 16), cfg)
    base = _rss_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mask = irn_mask(maps, np.arange(1, classes + 1), boundary, (size, size), cfg)
        times.append(time.perf_counter() - t0)
    rows = walk_band_rows(h, h, classes, cfg.walk_radius, cfg.max_bytes)
    return {
        "size": size, "grid": h, "classes": classes, "max_mib": max_mib, "band_rows": rows,
        "bands": math.ceil(h / rows), "seconds": min(times), "peak_rss_growth_mib": (_rss_bytes() - base) / 2**20,
        "work_mib": walk_work_bytes(h, h, classes, cfg.walk_radius, rows) / 2**20,
        "irn_dense_matrix_mib": (h * h) ** 2 * 4 / 2**20, "mask_ok": bool(mask.shape == (size, size)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[160, 512])
    ap.add_argument("--max-mib", nargs="+", default=["none", "1"], help="walk max_bytes in MiB ('none': unbounded)")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        size, mib = int(args.one[0]), None if args.one[1] == "none" else float(args.one[1])
        print(json.dumps(one(size, mib, args.classes, args.repeats)))
        return
    print(f"{'size':>5} {'grid':>5} {'max_bytes':>10} {'bands':>5} {'s/image':>8} {'peak MiB':>9} "
          f"{'work MiB':>9} {'IRN dense MiB':>14}")
    for size in args.sizes:
        for mib in args.max_mib:
            out = subprocess.run([sys.executable, __file__, "--one", str(size), mib, "--classes",
                                  str(args.classes), "--repeats", str(args.repeats)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            label = "none" if r["max_mib"] is None else f"{r['max_mib']:g} MiB"
            print(f"{r['size']:>5} {r['grid']:>5} {label:>10} {r['bands']:>5} {r['seconds']:>8.2f} "
                  f"{r['peak_rss_growth_mib']:>9.1f} {r['work_mib']:>9.1f} {r['irn_dense_matrix_mib']:>14.0f}")


if __name__ == "__main__":
    main()
