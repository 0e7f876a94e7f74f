"""torchrun with 2 CPU processes (gloo): map generation sharded by rank equals one process; DDP training runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from wsss.mapsio import load_maps
from wsss.run.rundir import Run
from wsss.run.stages import classifier, maps

from .conftest import PLUGIN_DIR, tiny_config


def torchrun(*args, cwd):
    # the plugin's methods are in tiny_config's options: the child processes must find them too
    path = os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           "-m", "wsss", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun test uses gloo on Linux/macOS")
def test_two_process_maps_equal_one_process(tiny_data, tmp_path):
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, **{"classifier.epochs": 1}))
    classifier.train(run, progress=False)
    maps.compute(run, "jigsaw", progress=False)
    single = run.maps_dir("jigsaw")
    shutil.move(single, tmp_path / "single")
    proc = torchrun("maps", "--run-dir", str(run.path), "--method", "jigsaw", "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "single").glob("*.npz"))
    assert names == sorted(p.name for p in single.glob("*.npz"))
    assert len(list(single.glob("_timing.rank*.json"))) == 2  # both ranks worked
    for name in names:
        a, ca = load_maps(tmp_path / "single" / name)
        b, cb = load_maps(single / name)
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


def test_two_process_ddp_training(tiny_data, tmp_path):
    run = Run.create(tmp_path / "r", tiny_config(tiny_data, **{"classifier.epochs": 1}))
    proc = torchrun("train-cls", "--run-dir", str(run.path), "--device", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run.classifier_path().exists()
    assert run.results()["classifiers"]["plain"]["world_size"] == 2
