"""Tune mIoU of jigsaw and jigsaw-cam against jigsaw's N, on a run's tune split (how the demo's N was chosen).

    PYTHONPATH=. python benchmarks/demo_samples_tune.py RUN 16 8

RUN needs classifier.pt and stored cam maps (and stored jigsaw maps for the N the run used, 16 unless its config
sets ``maps.options.jigsaw.samples``: those are scored as they are); other N are computed on the tune images into RUN/maps/jigsaw_s<N>, fused with the stored
cam maps (geo) into RUN/maps/jigsaw-cam_s<N>, and scored with the threshold chosen on tune.
"""

import json
import sys
from pathlib import Path

import torch

from wsss import localize
from wsss.metrics import threshold_values
from wsss.run.rundir import Run
from wsss.run.stages import classifier, maps, score
from wsss.run.stages.fuse import fuse_dirs

if __name__ == "__main__":
    run = Run(Path(sys.argv[1]))
    tune = run.dataset(run.cfg.tune_split)
    ids = list(tune.ids)
    cfg = run.cfg.pseudo
    th = threshold_values(cfg.t_start, cfg.t_stop, cfg.t_step)
    clf = classifier.load(run, "plain")
    stored = localize.spec("jigsaw").effective_options(run.cfg.maps.options.get("jigsaw", {}))["samples"]
    for n in [int(a) for a in sys.argv[2:]]:
        d = run.path / "maps" / ("jigsaw" if n == stored else f"jigsaw_s{n}")
        if n != stored:
            loc = localize.create("jigsaw", clf, samples=n, seed=run.cfg.seed)
            maps.write_maps(loc, ids, run.lookup(ids), d, torch.device("cpu"), 16, progress=False)
        fd = run.path / "maps" / f"jigsaw-cam_s{n}"
        fuse_dirs("geo", run.maps_dir("cam"), d, fd, ids)
        r = {"jigsaw": score.tune_threshold(tune, d, "p99", th, cfg.t_step, progress=False)["best"],
             "jigsaw-cam": score.tune_threshold(tune, fd, "max", th, cfg.t_step, progress=False)["best"]}
        print(n, json.dumps(r), flush=True)
