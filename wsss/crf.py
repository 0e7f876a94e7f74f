"""Dense CRF post-processing (Krähenbühl & Koltun 2011) via the optional extra ``[crf]`` = ``pydensecrf2``.

The package installs the module ``pydensecrf``. Defaults are IRN's (``misc/imutils.py``): a Gaussian
smoothness kernel (sxy 3, compat 3) and a bilateral appearance kernel (sxy 50, srgb 5, compat 10),
10 mean-field iterations. Without the extra every entry point raises :class:`MissingDependencyError`.
"""

from __future__ import annotations

import numpy as np

from wsss.errors import MissingDependencyError

__all__ = ["crf_available", "crf_inference", "crf_refine_labels", "refine_mask"]

_MISSING = "dense CRF needs pydensecrf2: pip install 'wsss[crf]'"
_PROB_FLOOR = 1e-5  # probabilities are clipped here before -log (as pydensecrf's unary_from_softmax)
IRN_IMAGE_SIDE = 500  # the longer side of PASCAL VOC photos, for which IRN's kernels were set
IRN_KERNELS = {"sxy_gauss": 3, "compat_gauss": 3, "sxy_bilateral": 50, "srgb": 5, "compat_bilateral": 10}


def _densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise MissingDependencyError(_MISSING) from None
    return dcrf


def crf_available() -> bool:
    """Whether the ``[crf]`` extra (``pydensecrf2``, module ``pydensecrf``) can be imported."""
    try:
        _densecrf()
    except MissingDependencyError:
        return False
    return True


def _check_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[:2] != tuple(hw):
        raise ValueError(f"image is {image.shape[:2]}, the probabilities/labels are {tuple(hw)}")
    return np.array(image, dtype=np.uint8, order="C", copy=True)  # pydensecrf needs a writable buffer


def _mean_field(image: np.ndarray, unary: np.ndarray, iters: int, sxy_gauss: float, compat_gauss: float,
                sxy_bilateral: float, srgb: float, compat_bilateral: float) -> np.ndarray:
    """Run the CRF on a ``(C, H*W)`` float32 unary energy; returns Q ``(C, H, W)`` float32."""
    dcrf = _densecrf()
    h, w = image.shape[:2]
    c = unary.shape[0]
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=sxy_gauss, compat=compat_gauss)
    crf.addPairwiseBilateral(sxy=sxy_bilateral, srgb=srgb, rgbim=image, compat=compat_bilateral)
    q = crf.inference(int(iters))
    return np.asarray(q, dtype=np.float32).reshape(c, h, w)


def crf_inference(image: np.ndarray, probs: np.ndarray, iters: int = 10, sxy_gauss: float = 3,
                  compat_gauss: float = 3, sxy_bilateral: float = 50, srgb: float = 5,
                  compat_bilateral: float = 10) -> np.ndarray:
    """Refine per-pixel class probabilities with a dense CRF.

    Args:
        image: uint8 ``(H, W, 3)`` RGB.
        probs: float ``(C, H, W)`` class probabilities (each pixel's column need not sum to 1: the unary
            is ``-log(max(p, 1e-5))``, and a per-pixel constant does not change the CRF).
        iters: mean-field iterations.

    Returns:
        float32 ``(C, H, W)`` refined probabilities (each pixel sums to 1).
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (C, H, W), got shape {probs.shape}")
    image = _check_image(image, probs.shape[1:])
    if probs.shape[0] == 1:
        _densecrf()  # a missing extra is an error whatever the input
        return np.ones_like(probs)
    unary = -np.log(np.clip(probs, _PROB_FLOOR, None)).reshape(probs.shape[0], -1)
    return _mean_field(image, unary, iters, sxy_gauss, compat_gauss, sxy_bilateral, srgb, compat_bilateral)


def crf_refine_labels(image: np.ndarray, labels: np.ndarray, n_labels: int, gt_prob: float = 0.7,
                      iters: int = 10, sxy_bilateral: float | None = 50) -> np.ndarray:
    """IRN's ``crf_inference_label``: trust each pixel's label with probability ``gt_prob`` (the rest spread
    evenly over the other labels), run the CRF with IRN's kernels, take the argmax.

    Args:
        image: uint8 ``(H, W, 3)``.
        labels: int ``(H, W)`` in ``[0, n_labels)`` (indices, e.g. 0 = background, i = i-th present class).
        sxy_bilateral: spatial width (pixels) of the bilateral kernel. IRN's 50 is for PASCAL VOC photos
            (longer side 500); ``None`` scales it to the image, ``50 * longer side / 500``. On small images
            the unscaled kernel spans most of the image and the larger label (background) swallows the
            smaller one (IRN's labels of CAM on the 160 px built-in benchmark: 1.9 % of the training pixels
            stay confident foreground with 50, 10.2 % with the scaled 16).

    Returns:
        int64 ``(H, W)`` refined labels in ``[0, n_labels)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if not 0 < gt_prob < 1:
        raise ValueError(f"gt_prob must lie in (0, 1), got {gt_prob}")
    image = _check_image(image, labels.shape)
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"labels must lie in 0..{n_labels - 1}, got {labels.min()}..{labels.max()}")
    if n_labels == 1:
        _densecrf()
        return np.zeros(labels.shape, dtype=np.int64)
    flat = labels.reshape(-1).astype(np.int64)
    unary = np.full((n_labels, flat.size), -np.log((1.0 - gt_prob) / (n_labels - 1)), dtype=np.float32)
    unary[flat, np.arange(flat.size)] = -np.log(gt_prob)
    kernels = dict(IRN_KERNELS)
    if sxy_bilateral is None:
        sxy_bilateral = IRN_KERNELS["sxy_bilateral"] * max(labels.shape) / IRN_IMAGE_SIDE
    kernels["sxy_bilateral"] = float(sxy_bilateral)
    q = _mean_field(image, unary, iters, **kernels)
    return q.argmax(0).astype(np.int64)


def refine_mask(image: np.ndarray, norm_maps: np.ndarray, classes, t: float, iters: int = 10) -> np.ndarray:
    """Pseudo-mask with CRF (``wsss pseudo --crf``): scores ``[t, m_1, ..., m_K']`` -> probabilities (each
    pixel's scores divided by their sum) -> :func:`crf_inference` -> argmax -> class ids.

    Without the pairwise terms the argmax equals :func:`wsss.pseudo.maps_to_mask` (up to ties).

    Args:
        image: uint8 ``(H, W, 3)``.
        norm_maps: float ``(K', H, W)`` normalized maps in [0, 1] of the present classes.
        classes: ``(K',)`` class ids in 1..254 (0 is background).
        t: the background score.

    Returns:
        uint8 ``(H, W)``: 0 (background) or ``classes[i]``.
    """
    maps = np.asarray(norm_maps, dtype=np.float32)
    cls = np.asarray(classes, dtype=np.int64).reshape(-1)
    if maps.ndim != 3 or maps.shape[0] != cls.size:
        raise ValueError(f"need (K', H, W) maps and K' class ids, got {maps.shape} and {cls.size}")
    if cls.size and (cls.min() < 1 or cls.max() > 254):
        raise ValueError(f"class ids must lie in 1..254, got {cls.tolist()}")
    scores = np.concatenate([np.full((1, *maps.shape[1:]), t, np.float32), np.clip(maps, 0, None)], 0)
    probs = scores / np.maximum(scores.sum(0, keepdims=True), 1e-12)
    q = crf_inference(image, probs, iters=iters)
    ids = np.concatenate([[0], cls]).astype(np.uint8)
    return ids[q.argmax(0)]
