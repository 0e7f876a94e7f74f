"""Shared fixtures: a tiny built-in benchmark (made once per session, offline, in seconds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))
# A third-party method installed the way a user's package would be (a module + its dist-info with a
# `wsss.methods` entry point): every registry-wide test runs it too (tests/plugin/toy_wsss_method.py).
PLUGIN_DIR = Path(__file__).parent / "plugin"
sys.path.insert(0, str(PLUGIN_DIR))

TINY = dict(size=48, images=24, num_classes=3, body_radius=(0.28, 0.36))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny inputs: intra-op threads only add synchronization (and stall on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from wsss.data.synth import SynthConfig, write_benchmark

    root = tmp_path_factory.mktemp("tiny_synth")
    write_benchmark(root, SynthConfig(**TINY), progress=False)
    return root


def tiny_config(data, **updates):
    """A run config that trains for seconds: the tiny test profile (not --quick)."""
    from wsss.config import RunConfig
    from wsss.localize import specs

    cfg = RunConfig(data=str(data), device="cpu")
    # built-in methods only: a run directory must also load in subprocesses that do not see tests/plugin
    sampled = [s.name for s in specs() if s.stochastic and "samples" in s.defaults() and not s.is_fusion
               and s.factory.__module__.startswith("wsss.")]
    base = {
        "classifier.epochs": 2, "classifier.batch_size": 8,
        "amn.epochs": 1, "amn.batch_size": 8,
        "seg.epochs": 1, "seg.batch_size": 8,
        "maps.options": {m: {"samples": 2} for m in sampled},
    }
    base.update(updates)
    return cfg.with_updates(**base)


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``wsss ARGS`` in-process: (exit code, stdout, stderr)."""
    from wsss.cli import main

    monkeypatch.setattr(sys, "argv", ["wsss", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
