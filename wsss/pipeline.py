"""The stages and how ``wsss run`` / ``wsss demo`` chain them (run dir in, run dir out).

Run directory::

    RUN/config.yaml                 the RunConfig used
    RUN/classifier.pt               classifier "plain" (classifier@<name>.pt for others)
    RUN/maps/<key>/<id>.npz         raw maps (wsss.mapsio), key = <method>[@<classifier>]
    RUN/masks/<key>[+crf]/<id>.png  pseudo-masks at the fixed threshold (palette PNG)
    RUN/amn.pt, RUN/segmenter/<masks>.pt
    RUN/results.json                every score (fractions in [0, 1], seconds)
    RUN/report.md, RUN/figures/

Each stage reads the previous stage's files, so any stage can be rerun or resumed alone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from wsss import localize
from wsss.config import RunConfig, quick_profile
from wsss.data.transforms import to_tensor
from wsss.data.voc import open_dataset
from wsss.errors import ConfigError, DataError, RunDirError
from wsss.mapsio import load_maps, save_maps
from wsss.progress import progress_bar
from wsss.runtime import barrier, init_distributed, is_main, resolve_device, seed_everything, shard

CAM_LIKE = ("cam", "gradcam", "gradcampp", "shufflecam")


def log(msg: str) -> None:
    if is_main():
        print(msg, flush=True)


class Run:
    """A run directory: its config, datasets, and results.json (read-modify-write, atomic)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").exists():
            raise RunDirError(
                f"{self.path}: not a run directory (no config.yaml); create one with `wsss run --out`"
            )
        self.cfg = RunConfig.load(self.path / "config.yaml")
        self._datasets: dict[str, object] = {}

    # -- creation ------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig, force: bool = False, resume: bool = False) -> Run:
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if resume:
                if not (path / "config.yaml").exists():
                    raise RunDirError(f"{path}: --resume given but it is not a run directory")
                return cls(path)
            if not force:
                raise RunDirError(
                    f"{path}: run directory exists; pass --resume to continue it or --force to replace it"
                )
            if is_main():
                shutil.rmtree(path)
        barrier()
        if is_main():
            path.mkdir(parents=True, exist_ok=True)
            cfg.dump(path / "config.yaml")
        barrier()
        return cls(path)

    # -- data ------------------------------------------------------------------------------------------------
    def dataset(self, split: str):
        if split not in self._datasets:
            self._datasets[split] = open_dataset(self.cfg.data, split, format=self.cfg.format)
        return self._datasets[split]

    @property
    def device(self) -> torch.device:
        return resolve_device(self.cfg.device)

    # -- results -----------------------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    def results(self) -> dict:
        if not self.results_path.exists():
            return {}
        return json.loads(self.results_path.read_text())

    def update_results(self, *keys: str, value) -> None:
        """Set ``results[k1][k2]... = value`` atomically (rank 0 only). Read-modify-write under an exclusive
        file lock, so commands running side by side on one run directory (two ``wsss maps`` on two GPUs, an
        ablation next to ``wsss pseudo``) do not lose each other's updates."""
        if not is_main():
            return
        with _file_lock(self.path / ".results.lock"):
            res = self.results()
            node = res
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
            tmp = self.results_path.with_name(f".results.json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
            os.replace(tmp, self.results_path)

    def classifier_path(self, name: str = "plain") -> Path:
        return self.path / ("classifier.pt" if name == "plain" else f"classifier@{name}.pt")

    def maps_dir(self, key: str) -> Path:
        return self.path / "maps" / key

    def masks_dir(self, key: str) -> Path:
        return self.path / "masks" / key


@contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock (``fcntl.flock``) held for the block; a no-op where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-process use is still atomic
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def split_key(key: str) -> tuple[str, str, bool]:
    """``"jigsaw+crf@jigsaw-aug"`` -> (``"jigsaw"``, ``"jigsaw-aug"``, True)."""
    base, _, clf = key.partition("@")
    method, _, post = base.partition("+")
    return method, clf or "plain", post == "crf"


def maps_key(method: str, classifier: str = "plain") -> str:
    return method if classifier == "plain" else f"{method}@{classifier}"


@contextmanager
def timed(run: Run, stage: str):
    t0 = time.time()
    yield
    dt = time.time() - t0
    run.update_results("timings", stage, value=round(dt, 3))
    log(f"  {stage}: {dt:.1f} s")


# ---- stage: classifier ---------------------------------------------------------------------------------
def train_cls(run: Run, name: str = "plain", jigsaw_aug: float | None = None, progress: bool = True) -> dict:
    from wsss.train.classifier import train_classifier

    cfg = run.cfg.classifier
    if jigsaw_aug is not None:
        cfg = cfg.model_copy(update={"jigsaw_aug": jigsaw_aug, "name": name})
    seed_everything(run.cfg.seed)
    val = run.dataset(run.cfg.val_split) if run.cfg.val_split else None
    with timed(run, f"train-cls@{name}"):
        result = train_classifier(
            run.dataset(run.cfg.train_split),
            val,
            cfg,
            run.classifier_path(name),
            run.device,
            seed=run.cfg.seed,
            progress=progress,
        )
    run.update_results("classifiers", name, value=result)
    if result.get("val_map") is not None:
        log(f"  classifier {name}: val mAP {result['val_map']:.3f} ({result['seconds']:.0f} s)")
    return result


def load_cls(run: Run, name: str = "plain"):
    from wsss.train.classifier import load_classifier

    return load_classifier(run.classifier_path(name), run.device)


# ---- stage: maps -----------------------------------------------------------------------------------------
def method_options(run: Run, method: str) -> dict:
    opts = dict(run.cfg.maps.options.get(method, {}))
    if method not in ("cam", "gradcam", "gradcampp", "amn"):
        opts.setdefault("seed", run.cfg.seed)
    return opts


def amn_source(run: Run, method: str) -> str | None:
    """The maps an AMN method is trained on: ``amn`` -> ``amn.from_maps`` of the config, ``amn-<m>`` -> ``m``
    (e.g. ``amn-jigsaw-cam``: AMN on our maps); None for other methods."""
    if method == "amn":
        return run.cfg.amn.from_maps
    if method.startswith("amn-") and method[4:] in localize.available():
        return method[4:]
    return None


def amn_name(run: Run, from_maps: str) -> str:
    """Method name of AMN trained on ``from_maps`` (inverse of :func:`amn_source`)."""
    return "amn" if from_maps == run.cfg.amn.from_maps else f"amn-{from_maps}"


def amn_localizer(run: Run, checkpoint: Path, from_maps: str, amn_cfg=None, method: str = "amn"):
    """AMN's official inference from a checkpoint: its own flip/scales over logits, raw probabilities kept on
    the confident background of the training labels it was trained on (``from_maps`` with ``amn_cfg``)."""
    from wsss.train.amn import IRLabels, load_amn

    if not checkpoint.exists():
        raise RunDirError(
            f"{checkpoint}: no trained AMN (run `wsss train-amn --run {run.path} --from-maps {from_maps}` first)"
        )
    model = load_amn(checkpoint, run.device)
    src = run.maps_dir(from_maps)
    labels = IRLabels.from_config(src, amn_cfg or run.cfg.amn, dataset=run.dataset(run.cfg.train_split))
    opts = {"scales": tuple(run.cfg.maps.multiscale), "ir_labels": _SafeLabels(labels, src)}
    return localize.create("amn", model, **{**opts, **method_options(run, method)})


def build_localizer(run: Run, method: str, classifier: str = "plain"):
    src = amn_source(run, method)
    if src is not None:
        return amn_localizer(run, run.path / f"{method}.pt", src, method=method)
    model = load_cls(run, classifier)
    loc = localize.create(method, model, **method_options(run, method))
    if run.cfg.maps.multiscale != (1.0,) or run.cfg.maps.flip:
        loc = localize.base.MultiScale(loc, run.cfg.maps.multiscale, run.cfg.maps.flip)
    return loc


class _SafeLabels:
    """AMN's confident-background labels where the source maps exist for an image (None elsewhere)."""

    def __init__(self, labels, maps_dir: Path):
        self.labels, self.maps_dir = labels, maps_dir

    def __call__(self, image_id):
        return self.labels(image_id) if (self.maps_dir / f"{image_id}.npz").exists() else None


def map_ids(run: Run, extra_splits: tuple[str, ...] = ()) -> list[str]:
    """Ids that get maps: the score and tune splits (+ extra splits), each once, in order."""
    return split_ids(run, (run.cfg.score_split, run.cfg.tune_split, *extra_splits))


def split_ids(run: Run, splits: tuple[str, ...]) -> list[str]:
    """The ids of ``splits`` (unset ones skipped), each once, in order."""
    return list(dict.fromkeys(i for split in splits if split for i in run.dataset(split).ids))


def make_maps(
    run: Run,
    method: str,
    classifier: str = "plain",
    splits: tuple[str, ...] | None = None,
    progress: bool = True,
) -> dict:
    """Maps for ``method`` on the score + tune splits (or ``splits``), streamed to disk, resumable,
    sharded by rank under torchrun. Returns ``{"images": n, "seconds": s, "seconds_per_image": s/n}``."""
    device = run.device
    init_distributed(device)
    key = maps_key(method, classifier)
    out = run.maps_dir(key)
    out.mkdir(parents=True, exist_ok=True)
    ids = map_ids(run) if splits is None else split_ids(run, splits)
    ds = _lookup(run, ids)
    todo = [i for i in shard(ids) if not (out / f"{i}.npz").exists()]
    loc = build_localizer(run, method, classifier)
    bs = run.cfg.maps.batch_size
    t0, done = time.time(), 0
    bar = progress_bar(total=len(todo), desc=f"maps {key}", disable=not progress or not is_main(), leave=False)
    amp = run.cfg.maps.amp and device.type == "cuda"
    i = 0
    while i < len(todo):
        batch_ids, images, labels = [], [], []
        while i < len(todo) and len(batch_ids) < bs:
            sample_ds, image_id = ds[todo[i]], todo[i]
            img = to_tensor(sample_ds.image(image_id))
            if images and img.shape != images[0].shape:
                break  # a batch holds images of one size
            batch_ids.append(image_id)
            images.append(img)
            labels.append(torch.from_numpy(sample_ds.labels(image_id)))
            i += 1
        x = torch.stack(images).to(device)
        y = torch.stack(labels).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            maps = loc.attribute(x, y, ids=batch_ids)
        maps = maps.float().cpu().numpy()  # leaves the device once per batch
        y = y.cpu().numpy()
        for j, image_id in enumerate(batch_ids):
            classes = np.nonzero(y[j])[0]
            save_maps(out / f"{image_id}.npz", maps[j, classes], classes + 1)
        done += len(batch_ids)
        bar.update(len(batch_ids))
    bar.close()
    _add_timing(out, done, time.time() - t0, device)
    barrier()
    return maps_timing(run, key)


def _add_timing(maps_dir: Path, images: int, seconds: float, device, **extra) -> None:
    """Add this rank's images and seconds to ``maps_dir/_timing.rank<r>.json`` (kept across resumes)."""
    meta_path = maps_dir / f"_timing.rank{_rank()}.json"
    prev = json.loads(meta_path.read_text()) if meta_path.exists() else {"images": 0, "seconds": 0.0}
    meta = {"images": prev["images"] + images, "seconds": prev["seconds"] + seconds, "device": str(device), **extra}
    meta_path.write_text(json.dumps(meta))


def stored_fusion_filler(run: Run, method: str) -> str | None:
    """The filler of ``jigsaw-cam`` (``geo(CAM, filler)``) when its maps can be fused from the run's stored
    ``cam`` and filler maps instead of computing the filler a second time: geometric fusion, one scale, no
    flip, and the filler options equal to the filler method's own. None otherwise."""
    if method != "jigsaw-cam" or run.cfg.maps.multiscale != (1.0,) or run.cfg.maps.flip:
        return None
    opts = method_options(run, method)
    filler = opts.pop("filler", "jigsaw")
    if opts.pop("fusion", "geo") != "geo":
        return None
    for region_only in ("seed_threshold", "dilation"):
        opts.pop(region_only, None)
    opts = {**(opts.pop("filler_options", None) or {}), **opts}
    return filler if opts == method_options(run, filler) else None


def fuse_stored_maps(run: Run, method: str, filler: str, splits: tuple[str, ...], progress: bool = True) -> dict:
    """``method``'s maps (``jigsaw-cam``) as :func:`wsss.localize.jigsaw.geo_fusion` of the stored ``cam`` and
    ``filler`` maps of the same images (the same numbers as computing it, up to the float16 storage of
    maps). Its recorded cost is that of ``cam`` + ``filler`` per image plus the fusion itself."""
    from wsss.localize.jigsaw import geo_fusion

    out = run.maps_dir(method)
    out.mkdir(parents=True, exist_ok=True)
    ids = split_ids(run, splits)
    todo = [i for i in shard(ids) if not (out / f"{i}.npz").exists()]
    t0 = time.time()
    for image_id in progress_bar(todo, desc=f"maps {method} (fused)", disable=not progress or not is_main(), leave=False):
        cam, classes = load_maps(run.maps_dir("cam") / f"{image_id}.npz")
        fill, fill_classes = load_maps(run.maps_dir(filler) / f"{image_id}.npz")
        if not np.array_equal(classes, fill_classes):
            raise DataError(f"{run.maps_dir(filler) / f'{image_id}.npz'}: classes differ from the cam maps'")
        fusion = geo_fusion(torch.from_numpy(cam), torch.from_numpy(fill)).numpy()
        save_maps(out / f"{image_id}.npz", fusion, classes)
    per_image = sum(maps_timing(run, m)["seconds_per_image"] or 0.0 for m in ("cam", filler))
    _add_timing(out, len(todo), len(todo) * per_image + time.time() - t0, run.device, fused_from=["cam", filler])
    barrier()
    return maps_timing(run, method)


def _rank() -> int:
    from wsss.runtime import rank

    return rank()


def maps_timing(run: Run, key: str) -> dict:
    imgs, secs = 0, 0.0
    for p in run.maps_dir(key).glob("_timing.rank*.json"):
        m = json.loads(p.read_text())
        imgs += m["images"]
        secs += m["seconds"]
    return {"images": imgs, "seconds": secs, "seconds_per_image": secs / imgs if imgs else None}


def _lookup(run: Run, ids: list[str]) -> dict:
    """id -> the dataset (split) that holds it."""
    out = {}
    for split in {run.cfg.score_split, run.cfg.tune_split, run.cfg.train_split, run.cfg.val_split} - {""}:
        try:
            ds = run.dataset(split)
        except Exception:  # noqa: BLE001 - a split that is not needed may be absent
            continue
        for i in ds.ids:
            out.setdefault(i, ds)
    missing = [i for i in ids if i not in out]
    if missing:
        raise ConfigError(f"image {missing[0]} is in no configured split")
    return out


# ---- stage: pseudo-masks and scores ---------------------------------------------------------------------
def _base_fixed_t(run: Run, key: str) -> float | None:
    method, classifier, _ = split_key(key)
    base = method if classifier == "plain" else f"{method}@{classifier}"
    res = run.results().get("methods", {}).get(base)
    return None if res is None else res["fixed"]["t"]


def pseudo(run: Run, key: str, crf: bool = False, progress: bool = True, crf_sweep: bool = False) -> dict:
    """Threshold sweep on tune (-> fixed t) and on the score split; masks at the fixed t; all scores."""
    from wsss.scoring import score_method

    method, classifier, _ = split_key(key)
    mkey = maps_key(method, classifier)
    result_key = f"{method}+crf" if crf else method
    result_key = result_key if classifier == "plain" else f"{result_key}@{classifier}"
    maps_dir = run.maps_dir(mkey)
    if not maps_dir.is_dir():
        raise RunDirError(
            f"{maps_dir}: no maps for {mkey} (run `wsss maps --run {run.path} --method {method}`)"
        )
    norm = run.cfg.pseudo.norm_for(method)
    ref_dir = run.maps_dir("cam")
    with timed(run, f"pseudo/{result_key}"):
        summary = score_method(
            run,
            maps_dir,
            norm,
            masks_dir=run.masks_dir(result_key),
            reference_dir=ref_dir if ref_dir.is_dir() else None,
            crf=crf,
            progress=progress,
            crf_t=_base_fixed_t(run, key) if crf and not crf_sweep else None,
        )
    timing = maps_timing(run, mkey)
    spi = timing["seconds_per_image"]
    if crf and spi is not None:
        spi += summary.pop("crf_seconds_per_image", 0.0)
    summary["seconds_per_image"] = spi
    summary["normalization"] = norm
    run.update_results("methods", result_key, value=summary)
    log(
        f"  {result_key:<22} fixed t={summary['fixed']['t']:.2f} mIoU {100 * summary['fixed']['miou']:.1f}  "
        f"best {100 * summary['best']['miou']:.1f} (t={summary['best']['t']:.2f})  "
        f"P {100 * summary['fixed']['precision']:.1f} R {100 * summary['fixed']['recall']:.1f}"
    )
    return summary


# ---- whole pipeline --------------------------------------------------------------------------------------
def run_pipeline(run: Run, methods: list[str] | None = None, progress: bool = True) -> dict:
    """classifier -> maps -> pseudo-masks + scores (-> AMN -> segmenter) -> report."""
    cfg = run.cfg
    methods = list(methods or cfg.maps.methods)
    unknown = [m for m in methods if m not in localize.available() and amn_source(run, m) is None]
    if unknown:
        raise ConfigError(
            f"unknown method(s) {', '.join(unknown)}; available: {', '.join(localize.available())}"
        )
    if "cam" not in methods:
        methods.insert(0, "cam")  # CAM is the reference of the NDR measure
    t_all = time.time()
    if not run.classifier_path().exists():
        log("[1] classifier")
        train_cls(run, progress=progress)
    amns = {m: src for m in methods if (src := amn_source(run, m)) is not None}  # AMN method -> its maps
    need_aug = list(amns.values())
    if cfg.train_segmenter:
        need_aug += [m for m in cfg.seg.methods if m in methods]
    fused = {m: f for m in methods if (f := stored_fusion_filler(run, m)) in methods}  # jigsaw-cam -> jigsaw
    need_aug += [x for m in fused if m in need_aug for x in ("cam", fused[m])]
    log("[2] localization maps")
    for m in [m for m in methods if m not in fused] + list(fused):  # a fused method after its filler
        if m in amns:
            continue
        splits = (cfg.score_split, cfg.tune_split) + ((cfg.train_split,) if m in need_aug else ())
        with timed(run, f"maps/{m}"):
            if m in fused:
                fuse_stored_maps(run, m, fused[m], splits=splits, progress=progress)
            else:
                make_maps(run, m, splits=splits, progress=progress)
    for m, src in amns.items():
        log(f"[2b] AMN on {src} maps ({m})")
        train_amn(run, src, progress=progress, name=m)
        splits = (cfg.score_split, cfg.tune_split) + ((cfg.train_split,) if m in need_aug else ())
        with timed(run, f"maps/{m}"):
            make_maps(run, m, splits=splits, progress=progress)
    if not is_main():
        return {}
    log("[3] pseudo-masks and scores")
    for m in methods:
        pseudo(run, m, progress=progress)
    if cfg.train_segmenter:
        log("[4] segmentation")
        for m in [m for m in cfg.seg.methods if m in methods]:
            train_seg(run, m, progress=progress)
        if cfg.seg.ground_truth:
            train_seg(run, "gt", progress=progress)
    log("[5] report")
    report(run)
    run.update_results("timings", "total", value=round(time.time() - t_all, 3))
    return run.results()


def train_amn(run: Run, from_maps: str | None = None, progress: bool = True, amn_cfg=None,
              out: Path | None = None, name: str | None = None) -> dict:
    """Train AMN on labels from ``from_maps`` (default: the config's). The checkpoint is ``RUN/<name>.pt``
    with ``name`` = :func:`amn_name` (``amn``, or ``amn-<maps>`` for other maps) unless given and the training summary
    goes to ``results["amn"]`` / ``results["amn_variants"][name]``; ``amn_cfg`` / ``out`` (the AMN study)
    override the config and the checkpoint and record nothing."""
    from wsss.train.amn import train_amn as _train

    from_maps = from_maps or run.cfg.amn.from_maps
    if from_maps not in localize.available():
        raise ConfigError(f"--from-maps {from_maps}: not a localization method ({', '.join(localize.available())})")
    cfg = (amn_cfg or run.cfg.amn).model_copy(update={"from_maps": from_maps})
    name = name or amn_name(run, from_maps)
    maps_dir = run.maps_dir(from_maps)
    ids = run.dataset(run.cfg.train_split).ids
    if not maps_dir.is_dir() or any(not (maps_dir / f"{i}.npz").exists() for i in ids):
        make_maps(run, from_maps, splits=(run.cfg.train_split,), progress=progress)
    ckpt = torch.load(run.classifier_path(), map_location="cpu", weights_only=True)
    arch_kwargs = {} if ckpt.get("output_stride") is None else {"output_stride": ckpt["output_stride"]}
    with timed(run, f"train-{name}" if out is None else f"train-amn-study/{out.stem}"):
        res = _train(
            run.dataset(run.cfg.train_split),
            maps_dir,
            load_cls(run),
            cfg,
            out or run.path / f"{name}.pt",
            run.device,
            seed=run.cfg.seed,
            progress=progress,
            arch=ckpt["arch"],
            arch_kwargs=arch_kwargs,
        )
    if out is None:
        if name == "amn":
            run.update_results("amn", value=res)
        else:
            run.update_results("amn_variants", name, value=res)
    return res


def pseudo_mask_fn(run: Run, method: str):
    """image id -> pseudo-mask at the method's fixed threshold (made from its maps, cached on disk)."""
    from wsss.labelio import load_label_png, save_label_png
    from wsss.pseudo import maps_to_mask, normalize_maps

    res = run.results().get("methods", {}).get(method)
    if res is None:
        raise RunDirError(
            f"{run.results_path}: no scores for {method} (run `wsss pseudo --run {run.path} --method {method}`)"
        )
    t = res["fixed"]["t"]
    norm = run.cfg.pseudo.norm_for(method)
    mdir, kdir = run.maps_dir(method), run.masks_dir(method)

    def fn(image_id: str) -> np.ndarray:
        path = kdir / f"{image_id}.png"
        if path.exists():
            return load_label_png(path)
        maps, classes = load_maps(mdir / f"{image_id}.npz")
        mask = maps_to_mask(normalize_maps(maps, norm), classes, t)
        save_label_png(path, mask)
        return mask

    return fn


def train_seg(run: Run, masks: str, progress: bool = True) -> dict:
    from wsss.train.segmenter import train_segmenter

    train_ds = run.dataset(run.cfg.train_split)
    if masks == "gt":
        mask_fn = train_ds.mask
    else:
        mask_fn = pseudo_mask_fn(run, masks)
        missing = [i for i in train_ds.ids if not (run.maps_dir(masks) / f"{i}.npz").exists()]
        if missing:
            make_maps(run, masks, splits=(run.cfg.train_split,), progress=progress)
    with timed(run, f"train-seg/{masks}"):
        res = train_segmenter(
            train_ds,
            mask_fn,
            run.dataset(run.cfg.val_split),
            run.cfg.seg,
            run.path / "segmenter" / f"{masks}.pt",
            run.device,
            seed=run.cfg.seed,
            progress=progress,
        )
    run.update_results("segmentation", masks, value=res)
    log(f"  segmenter on {masks}: val mIoU {100 * res['val_miou']:.1f}")
    return res


def report(run: Run) -> Path:
    from wsss.report import write_report

    return write_report(run)


def build_config(
    data: str | None = None, config: str | None = None, quick: bool = False, **overrides
) -> RunConfig:
    cfg = RunConfig.load(config) if config else RunConfig()
    updates = {k: v for k, v in overrides.items() if v is not None}
    if data is not None:
        updates["data"] = str(data)
    cfg = cfg.with_updates(**updates) if updates else cfg
    if not cfg.data:
        raise ConfigError("no dataset given (--data DIR)")
    return quick_profile(cfg) if quick else cfg


def demo(out: str | Path, quick: bool = False, device: str = "cpu", force: bool = False, resume: bool = False,
         seed: int = 0, benchmark: str | None = None) -> dict:
    """``wsss data synth`` + ``wsss run`` on the built-in benchmark (CPU by default; ``benchmark``: its
    version, default the newest)."""
    from wsss.data.synth import LATEST, benchmark_config, write_benchmark

    try:
        synth = benchmark_config(benchmark or LATEST, seed=seed, **({"images": QUICK_IMAGES} if quick else {}))
    except ValueError as e:
        raise ConfigError(str(e)) from None

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (force or resume):
        raise RunDirError(f"{out}: exists; pass --resume to continue it or --force to replace it")
    if force and out.exists() and is_main():
        shutil.rmtree(out)
    t0 = time.time()
    data = out.parent / f"{out.name}_data"
    log(f"[0] built-in benchmark -> {data}")
    write_benchmark(data, synth)
    cfg = build_config(data=str(data), quick=quick, device=device, seed=seed)
    cfg = cfg.with_updates(**{"maps.methods": QUICK_METHODS if quick else DEMO_METHODS})
    run = Run.create(out, cfg, force=False, resume=True)
    run.update_results("timings", "synth", value=round(time.time() - t0, 3))
    return run_pipeline(run, list(cfg.maps.methods))


QUICK_IMAGES = 120
QUICK_METHODS = ["cam", "gradcam", "saliency", "jigsaw", "jigsaw-cam"]
# the headline methods; the study (cropsal and shufflecam included) lives in `wsss ablate`
DEMO_METHODS = ["cam", "gradcam", "saliency", "jigsaw", "jigsaw-cam", "amn"]


def summarize_runs(runs: list[Run]) -> dict:
    """Mean and sample sd over runs of each method's fixed-t scores and each segmenter's val mIoU."""
    fields = {"miou": ("fixed", "miou"), "best": ("best", "miou"), "precision": ("fixed", "precision"),
              "recall": ("fixed", "recall"), "ndr_recall": ("ndr_recall",), "robust_width": ("robust_width",),
              "ap": ("ap",), "oracle_miou": ("oracle_miou",), "spread": ("spread_0.1_0.5",)}

    def stat(values: list) -> dict | None:
        vals = [v for v in values if v is not None]
        if not vals:
            return None
        arr = np.asarray(vals, dtype=float)
        return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}

    def get(d, path):
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        return d

    results = [r.results() for r in runs]
    keys = sorted({k for res in results for k in res.get("methods", {})})
    methods = {k: {f: stat([get(res.get("methods", {}).get(k, {}), path) for res in results])
                   for f, path in fields.items()} for k in keys}
    seg_keys = sorted({k for res in results for k in res.get("segmentation", {})})
    seg = {k: stat([res.get("segmentation", {}).get(k, {}).get("val_miou") for res in results]) for k in seg_keys}
    study_rows = [_study_entries(res) for res in results]
    study_fields = {"miou": ("miou",), "best": ("best_miou",), "precision": ("precision",),
                    "recall": ("recall",), "ndr_recall": ("ndr_recall",)}
    study = {k: {f: stat([get(rows.get(k, {}), path) for rows in study_rows]) for f, path in study_fields.items()}
             for k in sorted({k for rows in study_rows for k in rows})}
    return {"runs": [str(r.path) for r in runs], "methods": methods, "segmentation": seg, "study": study}


def _study_entries(res: dict) -> dict[str, dict]:
    """A run's ablation results by name: ``fusion geo(saliency)`` (CAM fused with a map), ``region(cropsal)``
    (the CAM-seeded region at its tune-chosen setting), ``variant <name>`` (study groups, AMN grid)."""
    abl = res.get("ablation") or {}
    from wsss.ablate import fusion_label

    out = {f"fusion {fusion_label(v)}": v for v in (abl.get("fusion_grid") or {}).values()}
    chosen: dict[str, dict] = {}
    for v in (abl.get("region_grid") or {}).values():
        best = chosen.get(v["filler"])
        if best is None or (v.get("tune_miou") or -1) > (best.get("tune_miou") or -1):
            chosen[v["filler"]] = v
    out.update({f"region({f})": v for f, v in chosen.items()})
    out.update({f"variant {k}": v for k, v in (abl.get("variants") or {}).items()})
    return out
