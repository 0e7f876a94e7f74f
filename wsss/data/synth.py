"""The built-in benchmark: ``wsss data synth``.

Objects composited on real photos that ship with scikit-image, written in the PASCAL VOC layout
(``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/{train_aug,train,tune,val}.txt``,
``classes.txt``) so that the demo exercises the real loaders.

It reproduces the WSSS phenomenon under study. Every class has

* a **body** (a large textured ellipse) whose appearance is shared by the classes of its *group*
  (``group_size`` classes per group): weak, partly shared evidence, with only a faint class-specific
  tint (``body_signal``);
* a small **part** (a disc with a class-unique colour and stripe orientation inside the body, towards
  one end, ``part_frac`` of the object area): strong evidence. Parts are never occluded.

Body textures also serve as whole backgrounds (``camouflage``), and unlabelled part-less bodies can be
scattered behind the objects (``distractors``), so a body alone is weak evidence. Objects are large
(most of the body inside the image) because the CAM blob of a small CNN around a part is ~50 px wide
whatever the image side: the body must extend well beyond it.

A classifier therefore finds each class from its part, and CAM covers the part and less of the
body. Knobs: image side, images per split, classes, objects per image, part size, position and body signal
(how discriminative the part is), body size, camouflage and distractor bodies, class-correlated
backgrounds (co-occurrence bias), occlusion.

Versions (``BENCHMARKS``, ``wsss data synth --benchmark NAME``; the default is the newest):

* ``v1`` (sessions 1-2): 128 px images, otherwise the same knobs. CAM covered most of each
  object at its tune-chosen threshold (3 seeds: precision 75.3, recall 70.6): the phenomenon was too weak.
* ``v2`` (default): the same objects at 160 px instead of 128 px. The CAM blob of the small CNN around a
  part has about the same width in pixels whatever the image side, so larger objects leave more of the body
  outside it. Chosen among six candidate changes to v1 (``benchmarks/benchmark_v2.sh``: the part at the tip
  of the body, with or without distractor bodies, larger bodies, 144 / 160 px) on seed 0 by the classifier
  and CAM alone: the widest gap between CAM's recall and precision at its tune-chosen threshold, with a
  classifier that learns (val mAP ~1) and a CAM mIoU no worse than v1's; the other methods played no part.
  Cost: ~1.5x v1 per image.

THE DEFAULTS ARE FROZEN: a test records the hash of every version. Sweep the knobs, do not move a version.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.errors import ConfigError, DataError

CLASS_NAMES = ("beetle", "moth", "frog", "lizard", "crab", "snail", "fish", "bird")
GROUP_COLOURS = ((0.08, 0.55, 0.55), (0.33, 0.5, 0.5), (0.58, 0.5, 0.5), (0.8, 0.5, 0.55))  # HSV per group


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the benchmark (defaults frozen)."""

    seed: int = 0
    size: int = 160  # v2 (v1: 128)
    images: int = 480  # train_aug; train = images // 3 of them, tune = images // 4 others, val = images // 3
    num_classes: int = 6
    group_size: int = 3
    min_objects: int = 1
    max_objects: int = 2
    body_radius: tuple[float, float] = (0.36, 0.48)  # semi-major axis, fraction of the side
    body_aspect: tuple[float, float] = (0.55, 0.8)  # minor / major
    part_frac: float = 0.03  # part area / object area
    part_offset: float = 0.45  # part centre along the major axis, fraction of the semi-major axis (inside the body)
    body_signal: float = 0.0  # class-specific hue shift of the body inside its group (0 = fully shared)
    camouflage: float = 0.3  # probability that the background is a body texture in a group colour
    distractors: float = 0.0  # expected number of unlabelled part-less bodies per image (background)
    background_bias: float = 0.0  # probability that the background comes from the first class's photo
    occlusion: float = 0.5  # probability that an object may overlap earlier ones
    void_border: int = 1  # width in px of the void (255) band around objects, as VOC
    jpeg_quality: int = 95

    def __post_init__(self):
        for name, ok, what in _KNOB_RANGES:
            value = getattr(self, name)
            if not ok(value, self):
                raise ConfigError(f"synth {name}={value!r}: must be {what}")

    def splits(self) -> dict[str, int]:
        return {"train_aug": self.images, "val": self.images // 3}


def _pair(v, lo: float, hi: float) -> bool:
    return len(v) == 2 and lo < v[0] <= v[1] <= hi


def _unit(v, _c=None) -> bool:
    return 0 <= v <= 1


# (knob, check(value, cfg), what it must be): a knob out of range is refused before anything is written
_KNOB_RANGES = (
    ("images", lambda v, c: v >= 4, "at least 4 (train = 1/3, tune = 1/4 of them, val = 1/3: none may be empty)"),
    ("size", lambda v, c: 32 <= v <= 4096, "between 32 and 4096 pixels"),
    ("num_classes", lambda v, c: 1 <= v <= len(CLASS_NAMES), f"between 1 and {len(CLASS_NAMES)}"),
    ("group_size", lambda v, c: v >= 1, "at least 1"),
    ("min_objects", lambda v, c: v >= 1, "at least 1"),
    ("max_objects", lambda v, c: v >= c.min_objects, "at least min_objects"),
    ("body_radius", lambda v, c: _pair(v, 0, 1), "LO,HI with 0 < LO <= HI <= 1"),
    ("body_aspect", lambda v, c: _pair(v, 0, 1), "LO,HI with 0 < LO <= HI <= 1"),
    ("part_frac", lambda v, c: 0 < v < 1, "in (0, 1)"),
    ("part_offset", _unit, "in [0, 1]"),
    ("body_signal", lambda v, c: v >= 0, ">= 0"),
    ("camouflage", _unit, "in [0, 1]"),
    ("distractors", lambda v, c: v >= 0, ">= 0"),
    ("background_bias", _unit, "in [0, 1]"),
    ("occlusion", _unit, "in [0, 1]"),
    ("void_border", lambda v, c: v >= 0, ">= 0"),
    ("jpeg_quality", lambda v, c: 1 <= v <= 100, "between 1 and 100"),
)


# Every released version of the default benchmark: the knobs that differ from ``SynthConfig()``'s defaults.
BENCHMARKS: dict[str, dict] = {"v1": {"size": 128}, "v2": {}}
LATEST = "v2"


def describe(root: str | Path) -> str | None:
    """``built-in benchmark v2, seed 0`` for a folder written by :func:`write_benchmark` (its ``synth.json``),
    with the knobs that differ from the nearest version; None for other data."""
    path = Path(root) / "synth.json"
    if not path.exists():
        return None
    knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(path.read_text()).items()}

    def changed(name: str) -> dict:
        ref = asdict(benchmark_config(name))
        return {k: v for k, v in knobs.items() if k != "seed" and ref.get(k) != v}

    name, diff = min(((n, changed(n)) for n in BENCHMARKS), key=lambda pair: len(pair[1]))  # first on ties
    extra = "".join(f", {k}={v}" for k, v in diff.items())
    return f"built-in benchmark {name}, seed {knobs.get('seed')}{extra}"


def benchmark_config(name: str = LATEST, **overrides) -> SynthConfig:
    """The knobs of benchmark version ``name`` (``v1``, ``v2``), with ``overrides`` on top."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark version {name!r} (known: {', '.join(BENCHMARKS)})")
    return SynthConfig(**{**BENCHMARKS[name], **overrides})


# ---- source photos shipped with scikit-image ------------------------------------------------------------
_PHOTOS = ("coffee", "astronaut", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
           "motorcycle_left")
_TEXTURES = ("brick", "grass", "gravel")


@cache
def _source(name: str) -> np.ndarray:
    """A scikit-image sample as float RGB in [0, 1] (textures stay grayscale, tinted later)."""
    from skimage import data

    if name == "motorcycle_left":
        img = data.stereo_motorcycle()[0]
    else:
        img = getattr(data, name)()
    img = np.asarray(img, dtype=np.float32)
    if img.max() > 1.5:
        img = img / 255.0
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def _crop_resized(src: np.ndarray, size: int, rng: np.random.Generator, min_frac: float = 0.25) -> np.ndarray:
    h, w = src.shape[:2]
    side = int(min(h, w) * rng.uniform(min_frac, 0.6))
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = src[y0 : y0 + side, x0 : x0 + side]
    im = Image.fromarray((np.clip(crop, 0, 1) * 255).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def _tint(gray: np.ndarray, rgb: tuple[float, float, float], strength: float = 0.8) -> np.ndarray:
    g = gray if gray.ndim == 2 else gray.mean(-1)
    g = (g - g.mean()) / (g.std() + 1e-6) * 0.18 + 0.5
    base = np.asarray(rgb, dtype=np.float32)
    return np.clip(g[..., None] * (strength * base + (1 - strength) * 0.5) * 1.6, 0, 1)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, s, v)


def _background(cfg: SynthConfig, rng: np.random.Generator, first_class: int) -> np.ndarray:
    if cfg.camouflage > 0 and rng.random() < cfg.camouflage:  # body-like texture: bodies are weak evidence
        return _body_texture(cfg, int(rng.integers(cfg.num_classes)), rng)
    if cfg.background_bias > 0 and rng.random() < cfg.background_bias:
        name = _PHOTOS[first_class % len(_PHOTOS)]
    else:
        name = (_PHOTOS + _TEXTURES)[rng.integers(len(_PHOTOS) + len(_TEXTURES))]
    src = _source(name)
    crop = _crop_resized(src, cfg.size, rng)
    if crop.ndim == 2:
        crop = _tint(crop, _hsv(rng.random(), 0.35, 0.8), strength=0.6)
    # mute the photo a little so objects are visible but not trivially segmentable
    return np.clip(0.75 * crop + 0.25 * crop.mean(), 0, 1)


# ---- objects ----------------------------------------------------------------------------------------------
def _body_texture(cfg: SynthConfig, cls: int, rng: np.random.Generator) -> np.ndarray:
    group = cls // cfg.group_size
    h, s, v = GROUP_COLOURS[group % len(GROUP_COLOURS)]
    within = cls % cfg.group_size - (cfg.group_size - 1) / 2
    rgb = _hsv(h + cfg.body_signal * within + rng.normal(0, 0.015), s, v)
    tex = _crop_resized(_source(_TEXTURES[group % len(_TEXTURES)]), cfg.size, rng, min_frac=0.3)
    return _tint(tex, rgb, strength=0.9)


def _part_distance(a: float, b: float, r: float, offset: float) -> float:
    """Distance from the body centre (along the major axis) of a part disc of radius ``r``: ``offset * a``,
    pulled inwards until the disc lies inside the ellipse with semi-axes ``a``, ``b`` (with a 1 px rim)."""
    t = np.linspace(0, 2 * math.pi, 90, endpoint=False)
    ex, ey = a * np.cos(t), b * np.sin(t)
    d = offset * a
    while d > 0 and np.min(np.hypot(ex - d, ey)) < r + 1.0:
        d -= 0.5
    return max(d, 0.0)


def _part_pattern(cfg: SynthConfig, cls: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    hue = (cls * 0.618034 + 0.11) % 1.0
    angle = math.pi * cls / max(cfg.num_classes, 1)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 1.4) > 0
    a = np.asarray(_hsv(hue, 0.95, 1.0), dtype=np.float32)
    b = np.asarray(_hsv(hue + 0.5, 0.9, 0.25), dtype=np.float32)
    return np.where(stripes[..., None], a, b)


def _object(cfg: SynthConfig, cls: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray,
            distractor: bool = False):
    """Return (rgb image of the object, boolean mask) for one object of class ``cls``; a ``distractor``
    has the body of ``cls`` but no part (it is background)."""
    n = cfg.size
    a = rng.uniform(*cfg.body_radius) * n
    b = a * rng.uniform(*cfg.body_aspect)
    r = math.sqrt(cfg.part_frac * a * b)  # the part: a disc with area part_frac of the object
    d = _part_distance(a, b, r, cfg.part_offset)
    margin = 0.6 * a  # most of the body inside the image
    for _ in range(50):  # the part must lie fully inside the image
        theta = rng.uniform(0, 2 * math.pi)
        cy, cx = rng.uniform(margin, n - margin), rng.uniform(margin, n - margin)
        c, s = math.cos(theta), math.sin(theta)
        py, px = cy + d * s, cx + d * c
        if r <= py <= n - 1 - r and r <= px <= n - 1 - r:
            break
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    part = (yy - py) ** 2 + (xx - px) ** 2 <= r * r
    rgb = _body_texture(cfg, cls, rng)
    shade = 1.0 - 0.25 * np.clip((u / a) ** 2 + (v / b) ** 2, 0, 1)  # a little volume
    rgb = rgb * shade[..., None]
    if distractor:
        return rgb, body, part & False
    rgb = np.where(part[..., None], _part_pattern(cfg, cls, yy - py, xx - px), rgb)
    return rgb, body | part, (yy - py) ** 2 + (xx - px) ** 2 <= (r + 2) ** 2


def render(cfg: SynthConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxWx3) and its mask (uint8 HxW, 255 = void), deterministic in (cfg, split, index)."""
    rng = np.random.default_rng([cfg.seed, 1 if split == "val" else 0, index])
    n = cfg.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    k = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    classes = rng.choice(cfg.num_classes, size=min(k, cfg.num_classes), replace=False)
    img = _background(cfg, rng, int(classes[0]))
    for _ in range(int(rng.poisson(cfg.distractors)) if cfg.distractors > 0 else 0):
        rgb, m, _ = _object(cfg, int(rng.integers(cfg.num_classes)), rng, yy, xx, distractor=True)
        img = np.where(m[..., None], rgb, img)
    mask = np.zeros((n, n), np.uint8)
    occupied = np.zeros((n, n), bool)
    parts = np.zeros((n, n), bool)  # the parts drawn so far: never occluded (each label keeps its evidence)
    for cls in classes:
        for _attempt in range(20):
            rgb, m, p = _object(cfg, int(cls), rng, yy, xx)
            overlap = (m & occupied).sum() / max(m.sum(), 1)
            if not (m & parts).any() and (overlap == 0 or (rng.random() < cfg.occlusion and overlap < 0.35)):
                break
        else:
            continue  # no room for this object
        img = np.where(m[..., None], rgb, img)
        mask[m] = cls + 1
        occupied |= m
        parts |= p
    for cls in np.unique(mask[mask > 0]):  # drop objects occluded to almost nothing
        if (mask == cls).sum() < 20:
            mask[mask == cls] = 0
    if cfg.void_border > 0:
        mask = _void_border(mask, cfg.void_border)
    img = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    return (img * 255 + 0.5).astype(np.uint8), mask


def _void_border(mask: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    edges = np.zeros(mask.shape, bool)
    for lab in np.unique(mask):
        region = mask == lab
        edges |= ndimage.binary_dilation(region, iterations=width) & ~region
    out = mask.copy()
    out[edges & (mask > 0)] = 255
    out[edges & (mask == 0) & ndimage.binary_dilation(mask > 0, iterations=width)] = 255
    return out


def split_ids(cfg: SynthConfig) -> dict[str, list[str]]:
    """VOC-style splits: train and tune are disjoint subsets of train_aug; val is separate."""
    aug = [f"trainaug_{i:05d}" for i in range(cfg.images)]
    n_train, n_tune = cfg.images // 3, cfg.images // 4
    return {
        "train_aug": aug,
        "train": aug[:n_train],
        "tune": aug[n_train : n_train + n_tune],
        "val": [f"val_{i:05d}" for i in range(cfg.images // 3)],
    }


MANIFEST = ".wsss-synth.json"
"""Written first in a synth output folder: the knobs and every file the writer will write. Re-running synth
with the same knobs resumes; with other knobs it refuses, or with ``force`` deletes exactly these files."""


def planned_files(cfg: SynthConfig) -> list[str]:
    """Every file :func:`write_benchmark` writes for ``cfg``, relative to the output folder."""
    ids = split_ids(cfg)
    names = ids["train_aug"] + ids["val"]
    return ([f"JPEGImages/{n}.jpg" for n in names] + [f"SegmentationClass/{n}.png" for n in names]
            + [f"ImageSets/Segmentation/{s}.txt" for s in ids] + ["classes.txt", "synth.json"])


def _knobs(cfg: SynthConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def _previous(out: Path) -> tuple[dict, list[str]] | None:
    """(knobs, files) of the synth output in ``out`` (its manifest, or for older outputs its synth.json), or
    None when ``out`` holds no synth output."""
    manifest, meta = out / MANIFEST, out / "synth.json"
    try:
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            return m["config"], list(m["files"])
        if meta.is_file():
            knobs = json.loads(meta.read_text())
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
            return knobs, planned_files(SynthConfig(**fields))
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        bad = manifest if manifest.is_file() else meta
        raise DataError(f"{bad}: corrupt synth record ({exc.__class__.__name__}); delete the folder and rerun "
                        "`wsss data synth`") from None
    return None


def check_target(out: str | Path, cfg: SynthConfig, force: bool = False) -> str:
    """What :func:`write_benchmark` may do with ``out``: ``"create"`` (absent or empty), ``"resume"`` (a synth
    output with the same knobs) or ``"replace"`` (one with other knobs, and ``force``). Anything else is a
    DataError naming the folder, before anything is written."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise DataError(f"{p}: is a file, not a folder (--out must name a folder)")
    if not out.exists() or not any(out.iterdir()):
        return "create"
    prev = _previous(out)
    if prev is None:
        raise DataError(f"{out}: not empty and not written by `wsss data synth` (no synth.json); choose a new "
                        "or empty folder (--force replaces only a synth output)")
    knobs = _knobs(cfg)
    if prev[0] == knobs:
        return "resume"
    diff = sorted(k for k in {*knobs, *prev[0]} if knobs.get(k) != prev[0].get(k))
    if not force:
        raise DataError(f"{out}: holds the built-in benchmark with other settings ({', '.join(diff)} differ); pass "
                        "--force to replace it, or choose another --out")
    return "replace"


def write_benchmark(out: str | Path, cfg: SynthConfig | None = None, progress: bool = True,
                    force: bool = False) -> Path:
    """Write the benchmark to ``out`` (VOC layout). A folder holding the same benchmark is resumed (existing
    files kept); one with other knobs is refused, or with ``force`` replaced: exactly the files the earlier
    synth wrote are deleted (:data:`MANIFEST`), other files are kept. A non-empty folder that is not a synth
    output is refused (see :func:`check_target`)."""
    from wsss.labelio import save_label_png
    from wsss.progress import progress_bar

    cfg = cfg or SynthConfig()
    out = Path(out)
    state = check_target(out, cfg, force)
    if state == "replace":
        _remove_previous(out)
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (out / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    _write_text(out / MANIFEST, json.dumps({"config": _knobs(cfg), "files": planned_files(cfg)}) + "\n")
    ids = split_ids(cfg)
    todo = [("train_aug", i, name) for i, name in enumerate(ids["train_aug"])]
    todo += [("val", i, name) for i, name in enumerate(ids["val"])]
    for split, i, name in progress_bar(todo, desc="synth", disable=not progress, leave=False):
        jpg, png = out / "JPEGImages" / f"{name}.jpg", out / "SegmentationClass" / f"{name}.png"
        if jpg.exists() and png.exists():
            continue
        img, mask = render(cfg, split, i)
        tmp = jpg.with_name(f".{jpg.stem}.{os.getpid()}.tmp.jpg")
        try:
            Image.fromarray(img).save(tmp, quality=cfg.jpeg_quality)
            os.replace(tmp, jpg)
        finally:
            tmp.unlink(missing_ok=True)
        save_label_png(png, mask)
    for split, names in ids.items():
        _write_text(out / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(names) + "\n")
    _write_text(out / "classes.txt", "\n".join(("background",) + CLASS_NAMES[: cfg.num_classes]) + "\n")
    _write_text(out / "synth.json", json.dumps(asdict(cfg), indent=1) + "\n")
    return out


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_previous(out: Path) -> None:
    """Delete the files the earlier synth wrote in ``out`` (and its folders, if that leaves them empty)."""
    _, files = _previous(out)
    for rel in [*files, MANIFEST]:
        path = out / rel
        if path.parent.resolve().is_relative_to(out.resolve()) and path.is_file():
            path.unlink()
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "ImageSets"):
        try:
            (out / sub).rmdir()
        except OSError:
            pass  # absent, or holds files synth did not write: kept


def dataset_hash(root: str | Path) -> str:
    """sha256 over every image's pixels, mask and split file (independent of JPEG encoder metadata)."""
    root = Path(root)
    h = hashlib.sha256()
    for txt in sorted((root / "ImageSets" / "Segmentation").glob("*.txt")):
        h.update(txt.name.encode() + txt.read_bytes())
    for png in sorted((root / "SegmentationClass").glob("*.png")):
        h.update(png.name.encode() + np.asarray(Image.open(png)).tobytes())
    return h.hexdigest()


def rendered_hash(cfg: SynthConfig | None = None) -> str:
    """sha256 of every rendered image and mask of ``cfg`` (before JPEG encoding, so independent of the
    encoder) plus its split lists: the fingerprint that freezes the default benchmark."""
    cfg = cfg or SynthConfig()
    h = hashlib.sha256()
    ids = split_ids(cfg)
    for split, names in ids.items():
        h.update(split.encode() + "\n".join(names).encode())
    for split, n in (("train_aug", len(ids["train_aug"])), ("val", len(ids["val"]))):
        for i in range(n):
            img, mask = render(cfg, split, i)
            h.update(img.tobytes())
            h.update(mask.tobytes())
    return h.hexdigest()
