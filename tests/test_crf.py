"""Dense CRF (optional extra ``[crf]`` = pydensecrf2, module ``pydensecrf``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from wsss import crf
from wsss.errors import MissingDependencyError

SKIP = "dense CRF extra not installed: pip install 'wsss[crf]' (pydensecrf2)"


def _two_regions(seed: int = 0):
    """Left half red, right half blue; noisy probabilities that favour the right label by a margin."""
    rng = np.random.default_rng(seed)
    image = np.zeros((40, 48, 3), np.uint8)
    image[:, :24] = (200, 40, 40)
    image[:, 24:] = (40, 40, 200)
    truth = np.zeros((40, 48), np.int64)
    truth[:, 24:] = 1
    p = np.clip(np.where(truth == 1, 0.7, 0.3) + rng.normal(0, 0.25, truth.shape), 0.01, 0.99)
    return image, truth, np.stack([1 - p, p]).astype(np.float32)


@pytest.fixture
def no_crf(monkeypatch):
    """Simulate the extra being absent, whether or not it is installed."""
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)


def test_missing_extra_is_a_clear_error(no_crf):
    image, truth, probs = _two_regions()
    assert not crf.crf_available()
    with pytest.raises(MissingDependencyError, match=r"pip install 'wsss\[crf\]'"):
        crf.crf_inference(image, probs)
    with pytest.raises(MissingDependencyError, match="pydensecrf2"):
        crf.crf_refine_labels(image, truth, 2)
    with pytest.raises(MissingDependencyError):
        crf.refine_mask(image, probs[1:], [5], 0.5)


def test_crf_cleans_a_two_region_mask():
    pytest.importorskip("pydensecrf.densecrf", reason=SKIP)
    image, truth, probs = _two_regions()
    noisy = probs.argmax(0)
    assert (noisy == truth).mean() < 0.9  # the input really is noisy
    q = crf.crf_inference(image, probs)
    assert q.shape == probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    assert (q.argmax(0) == truth).mean() > 0.99
    labels = crf.crf_refine_labels(image, noisy, 2)
    assert labels.shape == truth.shape and (labels == truth).mean() > 0.99


def test_refine_labels_bilateral_width_scales_with_the_image():
    """``sxy_bilateral=None``: IRN's 50 px at 500 px scaled to the longer side (16 px at 160 px)."""
    pytest.importorskip("pydensecrf.densecrf", reason=SKIP)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 160, 3), dtype=np.uint8)
    labels = (rng.random((40, 160)) < 0.3).astype(np.int64)
    scaled = crf.crf_refine_labels(image, labels, 2, sxy_bilateral=None)
    assert np.array_equal(scaled, crf.crf_refine_labels(image, labels, 2, sxy_bilateral=16.0))
    assert not np.array_equal(scaled, crf.crf_refine_labels(image, labels, 2))  # 50: a different CRF


def test_refine_mask_gives_class_ids():
    pytest.importorskip("pydensecrf.densecrf", reason=SKIP)
    image, truth, probs = _two_regions(1)
    mask = crf.refine_mask(image, probs[1:], [7], t=0.5)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 7}
    assert (mask == np.where(truth == 1, 7, 0)).mean() > 0.99
    # a clear mask stays as it is
    clean = np.where(truth == 1, 0.9, 0.1).astype(np.float32)[None]
    assert (crf.refine_mask(image, clean, [3], t=0.5) == np.where(truth == 1, 3, 0)).all()
    # no present class: all background
    assert (crf.refine_mask(image, np.zeros((0, 40, 48), np.float32), [], t=0.5) == 0).all()
