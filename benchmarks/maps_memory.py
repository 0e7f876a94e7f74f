"""Peak resident memory of `wsss maps` at 1x and 4x the images: it must not grow with the dataset.

    PYTHONPATH=. python benchmarks/maps_memory.py [--images 48] [--method jigsaw] [--factor 4]

Writes the built-in benchmark with N and factor*N train_aug images (same seed, same image size), trains a
1-epoch classifier on the small one (weights do not matter for memory) and copies it to the large run, then
runs `wsss maps --split train_aug` on each in a fresh process and reads its peak RSS (ru_maxrss of the
child). Writes benchmarks/results/maps_memory_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def wsss(*args: str, env=None) -> None:
    subprocess.run([sys.executable, "-m", "wsss", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def peak_of(*args: str) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``python -m wsss <args>`` in a child that runs alone (one child at a time:
    RUSAGE_CHILDREN's maximum is over finished children, so each measurement runs in its own wrapper)."""
    code = ("import resource, runpy, sys, time; sys.argv = ['wsss', *sys.argv[1:]]; t = time.time()\n"
            "try:\n    runpy.run_module('wsss', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time() - t)")
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout
    line = [x for x in out.splitlines() if x.startswith("PEAK")][-1].split()
    return int(line[1]) / 1024, float(line[2])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--method", default="jigsaw")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wsss_mapsmem_"))
    res = {"method": args.method, "load_before": os.getloadavg()[0], "runs": {}}
    first = None
    for n in (args.images, args.images * args.factor):
        data, run = work / f"data{n}", work / f"run{n}"
        if not data.exists():
            wsss("data", "synth", "--out", str(data), "--images", str(n))
        if first is None:
            first = (data, run)
            if not (run / "classifier.pt").exists():
                wsss("train-cls", "--run", str(run), "--data", str(data), "--epochs", "1", "--device", "cpu")
        elif not (run / "config.yaml").exists():  # the same classifier and config, on the larger dataset
            shutil.copytree(first[1], run, ignore=shutil.ignore_patterns("maps"))
            cfg = (run / "config.yaml").read_text().replace(str(first[0]), str(data))
            (run / "config.yaml").write_text(cfg)
        shutil.rmtree(run / "maps", ignore_errors=True)
        mb, secs = peak_of("maps", "--run", str(run), "--method", args.method, "--split", "train_aug",
                           "--device", "cpu")
        res["runs"][n] = {"peak_rss_mb": mb, "seconds": secs}
        print(f"{n:>5} images: peak RSS {mb:.1f} MB, {secs:.1f} s", flush=True)
    small, large = (res["runs"][n]["peak_rss_mb"] for n in (args.images, args.images * args.factor))
    res["ratio"] = large / small
    res["load_after"] = os.getloadavg()[0]
    print(f"peak RSS {args.factor}x / 1x images: {res['ratio']:.3f} (target <= 1.10)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "maps_memory_cpu.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"-> {out}")
    return res


if __name__ == "__main__":
    main()
