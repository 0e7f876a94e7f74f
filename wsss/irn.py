"""IRN post-processing (Ahn et al. CVPR 2019, semantic path): class maps + class-boundary map -> label map
by a random walk on the boundary-derived affinities, with bounded memory.

Geometry (shared with training, :mod:`wsss.train.irn`). Pixel pairs are the offsets of a **half disk**:
``(dy, dx)`` with ``0 < dy^2 + dx^2 < radius^2`` and ``dy > 0``, or ``dy == 0`` and ``dx > 0``, so each
unordered pair is counted once (34 offsets for radius 5, 152 for radius 10). The **path** of an offset is
the set of grid points of the box spanned by ``(0, 0)`` and ``(dy, dx)`` whose distance to the straight
line through both is < 1 pixel (both ends included); the affinity of a pair is ``1 - max B`` over its
path, with ``B`` padded by 1 outside the image (a pair leaving the image has affinity 0). These are IRN's
definitions (``misc/indexing.py``), reimplemented.

The walk (IRN ``make_sem_seg_labels.py`` + ``indexing.propagate_to_edge``), per image, at the boundary
map's resolution (stride 4):

1. the class maps are multiplied by ``1 - B``;
2. affinities within ``walk_radius`` (5), raised to ``beta`` (10), symmetric, with self-affinity 1;
   the transition divides each pixel's affinities by their sum (its degree);
3. the maps are propagated ``2 ** exp_times`` (256) steps, ``v[p] <- sum_q A(p, q) v[q] / deg(p)``;
   IRN forms the dense ``HW x HW`` transition matrix and squares it ``exp_times`` times (``x @ T^256``);
   iterating the sparse step 256 times gives the same result without the matrix (IRN needs a 24 GB GPU on
   VOC-size images);
4. upsampled x4 (bilinear), cropped to the image, divided by the **global** max over all classes and
   pixels (IRN; ``walk_norm="class"`` divides each class by its own max instead), a constant background score
   ``sem_seg_bg`` (0.25) is put in front and the argmax taken. IRN propagates no background map: the
   background is this constant after the walk.

Memory: the step is a gather over the neighbourhood (the 2 x offsets + self), never a matrix. With
``max_bytes=None`` the affinities of all pairs (``offsets x H x (W + 2 r)`` floats) are computed once and
kept; with ``max_bytes`` the rows are processed in bands whose affinity block + temporaries fit in
``max_bytes``, and the affinities of a band are recomputed from the boundary map at each step (more
time, same result). The upsampling to the image size, normalization and argmax also run in bands of
rows under ``max_bytes``, and the maps are pooled to stride 4 one class at a time. What is not bounded by
``max_bytes`` is what scales with the input or the output anyway: the input maps and the uint8 mask at
image size, and at stride 4 the boundary map, the degree, the pooled maps and two padded copies of the
K maps being walked, about ``(3 K + 2) x H x W / 16`` floats.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from wsss.pseudo import normalize_maps

if TYPE_CHECKING:
    from wsss.config import IRNConfig

FLOAT_BYTES = 4


# ---- geometry --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def half_disk(radius: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[tuple[int, int], ...], ...]]:
    """``(offsets, paths)`` of the half disk of ``radius`` (see the module docstring); ``paths[i]`` are the
    ``(y, x)`` points of offset ``i``'s segment, ``(0, 0)`` and the offset included."""
    radius = int(radius)
    if radius < 2:
        raise ValueError(f"radius must be >= 2 (no pair within radius {radius})")
    offsets: list[tuple[int, int]] = []
    for dy in range(radius):
        for dx in range(-radius + 1, radius):
            if (dy > 0 or dx > 0) and dy * dy + dx * dx < radius * radius:
                offsets.append((dy, dx))
    paths = []
    for dy, dx in offsets:
        norm2 = dy * dy + dx * dx
        pts = [(y, x) for y in range(min(0, dy), max(0, dy) + 1) for x in range(min(0, dx), max(0, dx) + 1)
               if (dy * x - dx * y) ** 2 < norm2]
        paths.append(tuple(pts))
    return tuple(offsets), tuple(paths)


def _pad_boundary(boundary: torch.Tensor, pad: int) -> torch.Tensor:
    """``(..., h, w)`` -> ``(..., h + 2 pad, w + 2 pad)`` padded with 1 (outside the image is boundary)."""
    return F.pad(boundary, (pad, pad, pad, pad), value=1.0)


@torch.no_grad()
def _path_max_rows(bp: torch.Tensor, radius: int, y0: int, y1: int, w: int) -> torch.Tensor:
    """Max of the padded boundary ``bp`` (..., h + 2P, w + 2P) along every half-disk path, for the source
    pixels of image rows ``[y0, y1)`` (``y0 >= -P``) and columns ``[0, w)``: ``(..., offsets, y1 - y0, w)``."""
    pad = radius - 1
    _, paths = half_disk(radius)
    out = bp.new_empty((*bp.shape[:-2], len(paths), y1 - y0, w))
    for i, path in enumerate(paths):
        o = out[..., i, :, :]
        for k, (ty, tx) in enumerate(path):
            window = bp[..., pad + y0 + ty: pad + y1 + ty, pad + tx: pad + tx + w]
            if k == 0:
                o.copy_(window)
            else:
                torch.maximum(o, window, out=o)
    return out


def boundary_to_affinity(boundary: torch.Tensor, radius: int) -> torch.Tensor:
    """IRN's path-max affinity: ``1 - max B`` along the segment of each half-disk pair.

    Args:
        boundary: ``(h, w)``, ``(B, h, w)`` or ``(B, 1, h, w)`` boundary map in [0, 1].
        radius: pairs with ``dy^2 + dx^2 < radius^2`` (:func:`half_disk`).
    Returns:
        ``(B, offsets, h, w)`` (no batch dim for a 2-D input): entry ``[b, i, y, x]`` is the affinity of
        pixel ``(y, x)`` and ``(y + dy_i, x + dx_i)``; 0 where the second pixel is outside the image.
        Differentiable: the gradient reaches the boundary pixel where each path's max is taken (as a max
        pooling), and only the per-pair argmax is kept for backward, not every path point.
    """
    squeeze = boundary.ndim == 2
    b = boundary[None] if squeeze else boundary
    if b.ndim == 4:
        if b.shape[1] != 1:
            raise ValueError(f"boundary must have one channel, got {tuple(b.shape)}")
        b = b[:, 0]
    if b.ndim != 3:
        raise ValueError(f"boundary must be (h, w), (B, h, w) or (B, 1, h, w), got {tuple(boundary.shape)}")
    pad = radius - 1
    n, h, w = b.shape
    bp = _pad_boundary(b, pad)
    hp, wp = bp.shape[-2:]
    _, paths = half_disk(radius)
    flat = bp.reshape(n, hp * wp)
    base = ((torch.arange(h, device=b.device)[:, None] + pad) * wp
            + torch.arange(w, device=b.device)[None, :] + pad)  # (h, w) flat index of each source pixel
    affs = []
    for path in paths:
        # under no_grad: the running max along the path and the flat offset of the point holding it
        # (the first point reaching the max, as a max pooling's argmax)
        with torch.no_grad():
            best = idx = None
            for ty, tx in path:
                window = bp[:, pad + ty: pad + ty + h, pad + tx: pad + tx + w]
                if best is None:
                    best, idx = window.clone(), torch.full_like(base, ty * wp + tx).expand(n, h, w).clone()
                else:
                    higher = window > best
                    best = torch.where(higher, window, best)
                    idx.masked_fill_(higher, ty * wp + tx)
            idx = (idx + base).reshape(n, h * w)
        affs.append(1.0 - flat.gather(1, idx).reshape(n, h, w))
    out = torch.stack(affs, 1)
    return out[0] if squeeze else out


# ---- random walk -----------------------------------------------------------------------------------------
def _affinity_block(bp: torch.Tensor, radius: int, beta: float, y0: int, y1: int, w: int) -> torch.Tensor:
    """``(offsets, y1 - y0, w + 2P)``: ``(1 - path max) ** beta`` of the source pixels of image rows
    ``[y0, y1)``, zero in the P padding columns on each side (and on rows outside the image)."""
    pad = radius - 1
    pm = _path_max_rows(bp, radius, y0, y1, w)
    blk = bp.new_zeros((pm.shape[0], y1 - y0, w + 2 * pad))
    torch.pow(pm.neg_().add_(1.0), beta, out=blk[:, :, pad: pad + w])
    return blk


def _step_band(vp: torch.Tensor, blk: torch.Tensor, radius: int, y0: int, y1: int) -> torch.Tensor:
    """Unnormalized step for output rows ``[y0, y1)``: ``v[p] + sum over pairs (p, q) of A(p, q) v[q]``.

    ``vp``: ``(K, h + 2P, w + 2P)`` maps padded with zeros; ``blk``: the affinity block of source rows
    ``[y0 - P, y1)`` (:func:`_affinity_block`)."""
    pad = radius - 1
    offsets, _ = half_disk(radius)
    n = y1 - y0
    w = vp.shape[-1] - 2 * pad
    acc = vp[:, pad + y0: pad + y1, pad: pad + w].clone()  # self affinity 1
    for i, (dy, dx) in enumerate(offsets):
        # pair (p, p + o), stored at p
        acc.addcmul_(blk[i, pad: pad + n, pad: pad + w],
                     vp[:, pad + y0 + dy: pad + y1 + dy, pad + dx: pad + dx + w])
        # pair (p - o, p), stored at p - o
        acc.addcmul_(blk[i, pad - dy: pad - dy + n, pad - dx: pad - dx + w],
                     vp[:, pad + y0 - dy: pad + y1 - dy, pad - dx: pad - dx + w])
    return acc


def walk_band_rows(h: int, w: int, k: int, radius: int, max_bytes: int | None) -> int:
    """Rows per band so that the affinity block and the step's temporaries fit ``max_bytes`` (all rows
    when ``max_bytes`` is None or enough); at least 1."""
    if max_bytes is None:
        return h
    pad = radius - 1
    n_off = len(half_disk(radius)[0])
    wp = w + 2 * pad
    # block (n_off x (rows + P) x wp) and the path-max buffer (n_off x (rows + P) x w), acc (K x rows x w)
    per_row = FLOAT_BYTES * (n_off * (wp + w) + k * w)
    fixed = FLOAT_BYTES * n_off * pad * (wp + w)
    return int(min(h, max(1, (int(max_bytes) - fixed) // per_row)))


def walk_work_bytes(h: int, w: int, k: int, radius: int, rows: int) -> int:
    """Working-set bytes of the walk for bands of ``rows`` rows (what ``max_bytes`` bounds)."""
    pad = radius - 1
    n_off = len(half_disk(radius)[0])
    return FLOAT_BYTES * (n_off * (rows + pad) * (2 * w + 2 * pad) + k * rows * w)


@torch.no_grad()
def random_walk(cams: torch.Tensor, boundary: torch.Tensor, radius: int = 5, beta: float = 10.0,
                exp_times: int = 8, max_bytes: int | None = None) -> torch.Tensor:
    """Propagate ``cams`` over the affinities of ``boundary`` (IRN's random walk, see the module docstring).

    Args:
        cams: ``(K, h, w)`` non-negative maps at the boundary map's resolution.
        boundary: ``(h, w)`` boundary map in [0, 1].
        radius: pairs within ``radius`` (IRN: 5 at stride 4).
        beta: affinities are raised to ``beta`` (IRN: 10).
        exp_times: ``2 ** exp_times`` steps (IRN: 8, i.e. 256).
        max_bytes: bound of the working set (None: the whole affinity kept, fastest).
    Returns:
        ``(K, h, w)`` float32 on the inputs' device: ``(cams * (1 - boundary)) @ T^(2^exp_times)``.
    """
    cams = torch.as_tensor(cams, dtype=torch.float32)
    boundary = torch.as_tensor(boundary, dtype=torch.float32, device=cams.device)
    if cams.ndim != 3 or boundary.shape != cams.shape[1:]:
        raise ValueError(f"random_walk: cams {tuple(cams.shape)} and boundary {tuple(boundary.shape)}")
    k, h, w = cams.shape
    pad = radius - 1
    if k == 0 or h == 0 or w == 0:
        return cams.clone()
    bp = _pad_boundary(boundary, pad)
    rows = walk_band_rows(h, w, k, radius, max_bytes)
    bands = [(y0, min(h, y0 + rows)) for y0 in range(0, h, rows)]
    whole = _affinity_block(bp, radius, beta, -pad, h, w) if len(bands) == 1 else None

    def block(y0: int, y1: int) -> torch.Tensor:
        if whole is not None:
            return whole
        return _affinity_block(bp, radius, beta, y0 - pad, y1, w)

    vp = F.pad(cams * (1.0 - boundary), (pad, pad, pad, pad))
    ones = F.pad(torch.ones_like(boundary)[None], (pad, pad, pad, pad))
    deg = torch.empty_like(boundary)
    for y0, y1 in bands:
        deg[y0:y1] = _step_band(ones, block(y0, y1), radius, y0, y1)[0]
    nxt = torch.zeros_like(vp)
    for _ in range(2 ** int(exp_times)):
        for y0, y1 in bands:
            acc = _step_band(vp, block(y0, y1), radius, y0, y1)
            nxt[:, pad + y0: pad + y1, pad: pad + w] = acc.div_(deg[y0:y1])
        vp, nxt = nxt, vp
    return vp[:, pad: pad + h, pad: pad + w].clone()


# ---- label map -------------------------------------------------------------------------------------------
def maps_at_stride(maps: np.ndarray | torch.Tensor, stride: int) -> torch.Tensor:
    """``(K', H, W)`` maps -> ``(K', ceil(H/stride), ceil(W/stride))``: negatives clipped, each cell the
    mean of its ``stride x stride`` pixels (the last cells over what is in the image), then each map
    divided by its max (IRN's strided CAMs are max-normalized per class). One class at a time, so the
    temporaries are one full-size map."""
    x = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps, dtype=torch.float32)
    if x.ndim != 3:
        raise ValueError(f"maps must be (K', H, W), got {tuple(x.shape)}")
    k, h, w = x.shape
    out = x.new_zeros((k, math.ceil(h / stride), math.ceil(w / stride)))
    for c in range(k):
        out[c] = F.avg_pool2d(x[c: c + 1].clamp_min(0)[None], stride, ceil_mode=True)[0, 0]
    return normalize_maps(out, "max")


def _upsampled_rows(rw: torch.Tensor, r0: int, r1: int, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """Rows ``[stride * r0, stride * r1)`` (cropped to ``size``) of ``rw`` upsampled ``stride`` times
    (bilinear, ``align_corners=False``), from rows ``r0 - 1 .. r1`` only: equal to the same rows of the
    whole map's upsampling."""
    h = rw.shape[1]
    lo, hi = max(r0 - 1, 0), min(r1 + 1, h)
    up = F.interpolate(rw[None, :, lo:hi], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    first = (r0 - lo) * stride
    n = min(stride * r1, size[0]) - stride * r0
    return up[:, first: first + n, : size[1]]


@torch.no_grad()
def predict_boundary(branch: torch.nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                     flip: bool = True) -> torch.Tensor:
    """Boundary map ``(ceil(H/s), ceil(W/s))`` of a uint8 ``(H, W, 3)`` image by a trained
    :class:`wsss.models.irn.BoundaryBranch` (flip-averaged logits as IRN's inference)."""
    from wsss.data.transforms import to_tensor

    x = to_tensor(image)[None].to(device)
    return branch.boundary(x, flip=flip)[0]


def _walk_bands(maps, classes, boundary, image_size, cfg, who: str):
    """The walk of :func:`irn_mask` / :func:`irn_scores`: ``(classes, rw, bands, top, (H, W))``, ``rw``
    None when there is no class. ``bands``: stride-rows processed together under ``cfg.max_bytes``; ``top``:
    the normalizer of the upsampled scores ``(K', 1, 1)``."""
    hh, ww = (int(s) for s in image_size)
    classes = np.asarray(classes, dtype=np.int64).reshape(-1)
    boundary = torch.as_tensor(np.asarray(boundary) if not isinstance(boundary, torch.Tensor) else boundary,
                               dtype=torch.float32)
    stride = int(cfg.stride)
    hs, ws = math.ceil(hh / stride), math.ceil(ww / stride)
    if tuple(boundary.shape) != (hs, ws):
        raise ValueError(f"{who}: boundary is {tuple(boundary.shape)}, expected {(hs, ws)} for an image "
                         f"of {(hh, ww)} at stride {stride}")
    maps_t = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps,
                             dtype=torch.float32).to(boundary.device)
    if maps_t.shape[0] != classes.shape[0]:
        raise ValueError(f"{who}: {maps_t.shape[0]} maps for {classes.shape[0]} class ids")
    if maps_t.shape[0] == 0:
        return classes, None, [], None, (hh, ww)
    if tuple(maps_t.shape[1:]) != (hh, ww):
        maps_t = F.interpolate(maps_t[None], size=(hh, ww), mode="bilinear", align_corners=False)[0]
    cams = maps_at_stride(maps_t, stride)
    power = float(getattr(cfg, "power", 1.0))
    if power != 1.0:  # AMN: the (max-normalized) maps raised to 1.3 before the walk
        cams = cams.pow_(power)
    max_bytes = getattr(cfg, "max_bytes", None)
    rw = random_walk(cams, boundary, cfg.walk_radius, cfg.beta, cfg.exp_times, max_bytes)
    # upsample + normalize (+ argmax) in bands of rows (the upsampled scores never exist whole under
    # max_bytes): per stride-row, about three (K' + 1) x stride x W float buffers
    k = rw.shape[0]
    rows = hs if max_bytes is None else max(1, int(max_bytes) // (3 * FLOAT_BYTES * (k + 1) * stride * ww))
    bands = [(r0, min(hs, r0 + rows)) for r0 in range(0, hs, rows)]
    per_class = getattr(cfg, "walk_norm", "global") == "class"
    top = rw.new_zeros(k)
    for r0, r1 in bands:  # the maxima of the upsampled maps (IRN: the global max)
        top = torch.maximum(top, _upsampled_rows(rw, r0, r1, stride, (hh, ww)).flatten(1).amax(1))
    top = (top if per_class else top.max().expand(k)).clamp_min(1e-12)[:, None, None]
    return classes, rw, bands, top, (hh, ww)


@torch.no_grad()
def irn_scores(maps: np.ndarray | torch.Tensor, classes: np.ndarray, boundary: torch.Tensor | np.ndarray,
               image_size: tuple[int, int], cfg: IRNConfig) -> np.ndarray:
    """The walk's class scores of one image, as :func:`irn_mask` thresholds them: ``(K', H, W)`` float32,
    upsampled to ``image_size`` and divided by their max (global or per class, ``cfg.walk_norm``), so that
    ``maps_to_mask(irn_scores(...), classes, t) == irn_mask(...)`` with ``sem_seg_bg = t``. Stored as the
    maps of ``<method>+irn`` (a threshold sweep of the walk's background score costs one walk)."""
    classes, rw, bands, top, (hh, ww) = _walk_bands(maps, classes, boundary, image_size, cfg, "irn_scores")
    out = np.zeros((classes.shape[0], hh, ww), np.float32)
    stride = int(cfg.stride)
    for r0, r1 in bands:
        up = _upsampled_rows(rw, r0, r1, stride, (hh, ww)).div_(top)
        out[:, stride * r0: stride * r0 + up.shape[1]] = up.cpu().numpy()
    return out


@torch.no_grad()
def irn_mask(maps: np.ndarray | torch.Tensor, classes: np.ndarray, boundary: torch.Tensor | np.ndarray,
             image_size: tuple[int, int], cfg: IRNConfig, threshold: float | None = None) -> np.ndarray:
    """IRN's semantic pseudo-mask of one image.

    Args:
        maps: ``(K', H, W)`` raw class maps of the present classes (as :func:`wsss.mapsio.load_maps`);
            resized (bilinear) to ``image_size`` when they differ.
        classes: ``(K',)`` their class ids (1..K).
        boundary: ``(ceil(H/s), ceil(W/s))`` boundary map (:func:`predict_boundary`), ``s = cfg.stride``.
        image_size: ``(H, W)``.
        cfg: uses ``stride``, ``walk_radius``, ``beta``, ``exp_times``, ``power``, ``sem_seg_bg``,
            ``walk_norm``, ``max_bytes``.
        threshold: the background score (default ``cfg.sem_seg_bg``; one of them must be set).
    Returns:
        uint8 ``(H, W)``: 0 background or one of ``classes``.
    """
    t = cfg.sem_seg_bg if threshold is None else threshold
    if t is None:
        raise ValueError("irn_mask: no background threshold (cfg.sem_seg_bg is None and no threshold given)")
    classes, rw, bands, top, (hh, ww) = _walk_bands(maps, classes, boundary, image_size, cfg, "irn_mask")
    if rw is None:
        return np.zeros((hh, ww), np.uint8)
    stride = int(cfg.stride)
    keys = np.concatenate([[0], classes]).astype(np.uint8)
    mask = np.empty((hh, ww), np.uint8)
    for r0, r1 in bands:
        up = _upsampled_rows(rw, r0, r1, stride, (hh, ww)).div_(top)
        best, arg = up.max(0)
        idx = torch.where(best > float(t), arg + 1, 0)  # ties go to background (IRN's argmax)
        mask[stride * r0: stride * r0 + idx.shape[0]] = keys[idx.cpu().numpy()]
    return mask
