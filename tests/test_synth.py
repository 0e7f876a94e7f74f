"""The built-in benchmark: deterministic, VOC layout, and its defaults frozen by a recorded hash."""

from __future__ import annotations

import numpy as np
import pytest

from wsss.data.synth import (
    BENCHMARKS,
    LATEST,
    SynthConfig,
    benchmark_config,
    render,
    rendered_hash,
    split_ids,
)
from wsss.data.voc import VOCDataset

# Recorded when each version was frozen (see wsss/data/synth.py). A version never changes: a new default
# benchmark is a new version, a deliberate and reviewed decision; sweep the knobs instead.
FROZEN_HASHES = {
    "v1": "dc39b4402ff7f474fd5b499f27d97f8335e5261c30e4f4905b62ece36403c856",
    "v2": "95c04be356a372f9992c6f5abeb6458dd324596164306db4dc0bb0a1a67eec0a",
}


@pytest.mark.parametrize("version", sorted(FROZEN_HASHES))
def test_benchmark_versions_are_frozen(version):
    assert rendered_hash(benchmark_config(version)) == FROZEN_HASHES[version]


def test_default_is_the_latest_version():
    assert set(BENCHMARKS) == set(FROZEN_HASHES)
    assert benchmark_config() == benchmark_config(LATEST) == SynthConfig()
    with pytest.raises(ValueError, match="unknown benchmark version"):
        benchmark_config("v0")


def test_render_is_deterministic_and_seeded():
    cfg = SynthConfig(size=48)
    a, ma = render(cfg, "train_aug", 3)
    b, mb = render(cfg, "train_aug", 3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    c, _ = render(SynthConfig(size=48, seed=1), "train_aug", 3)
    assert not np.array_equal(a, c)


def test_splits_are_voc_style():
    ids = split_ids(SynthConfig())
    assert set(ids["train"]) <= set(ids["train_aug"]) and set(ids["tune"]) <= set(ids["train_aug"])
    assert not set(ids["train"]) & set(ids["tune"])
    assert not set(ids["val"]) & set(ids["train_aug"])


def test_written_benchmark_reads_back(tiny_data):
    ds = VOCDataset(tiny_data, "train")
    assert ds.classes[0] == "background" and ds.num_classes == 3
    s = ds[0]
    assert s.image.shape == (48, 48, 3) and s.mask.shape == (48, 48)
    present = set(np.unique(s.mask)) - {0, 255}
    assert {int(c) for c in np.nonzero(s.labels)[0] + 1} == present
    assert 1 <= len(present) <= SynthConfig().max_objects


def test_describe_names_the_version_and_the_changed_knobs(tmp_path):
    from wsss.data.synth import describe, write_benchmark

    write_benchmark(tmp_path / "d", benchmark_config("v1", images=4, seed=3), progress=False)
    assert describe(tmp_path / "d") == "built-in benchmark v1, seed 3, images=4"
    assert describe(tmp_path) is None  # not written by write_benchmark
