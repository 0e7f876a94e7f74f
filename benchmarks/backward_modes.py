"""One vmapped backward for all present classes vs one backward per class (the gradient core's ``backward``
option), alternating the two in one process, best of ``repeats``:

    PYTHONPATH=. python benchmarks/backward_modes.py [--arch smallcnn] [--size 128] [--device cpu]

Prints batched / loop time per number of classes per image (jigsaw, N = 8, 8 images).
"""

from __future__ import annotations

import argparse
import time

import torch

from wsss import localize, models


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--ks", nargs="+", type=int, default=[2, 3])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = models.create(args.arch, 20).to(dev).eval()
    x = torch.rand(args.images, 3, args.size, args.size, device=dev)
    res = {}
    for k in args.ks:
        y = torch.zeros(args.images, 20, device=dev)
        for i in range(args.images):
            y[i, torch.randperm(20)[:k]] = 1
        locs = {m: localize.create("jigsaw", model, samples=args.samples, chunk_size=args.samples, backward=m)
                for m in ("loop", "batched")}
        times: dict[str, list[float]] = {m: [] for m in locs}
        for _ in range(args.repeats):
            for m, loc in locs.items():
                t0 = time.perf_counter()
                loc.attribute(x, y)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times[m].append(time.perf_counter() - t0)
        best = {m: min(v) for m, v in times.items()}
        res[k] = best["batched"] / best["loop"]
        print(f"{args.arch} {args.size}px {args.device}, {k} classes/image: loop {best['loop']:.3f} s, "
              f"batched {best['batched']:.3f} s, batched/loop {res[k]:.3f}", flush=True)
    return res


if __name__ == "__main__":
    main()
