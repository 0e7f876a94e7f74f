"""The run directory: its config, its datasets, its paths and its results store.

::

    RUN/config.yaml                 the RunConfig used
    RUN/.wsss-run                   the marker: this folder is a wsss run (``--force`` replaces only such folders)
    RUN/classifier.pt               classifier "plain" (classifier@<name>.pt for others)
    RUN/maps/<key>/<id>.npz         raw maps (wsss.mapsio), key = <method>[@<classifier>]
    RUN/masks/<key>/<id>.png        pseudo-masks at the fixed threshold (palette PNG), key as in results.json
    RUN/<amn name>.pt               AMN networks (amn.pt, amn-<maps>.pt)
    RUN/segmenter/<masks>.pt        segmenters
    RUN/results.json                every score (fractions in [0, 1], seconds)
    RUN/report.md, RUN/figures/     the report

Every stage reads the previous stage's files, so any stage can be rerun or resumed alone. Every path built from
a method, classifier or mask name is checked to stay inside the run directory (:meth:`Run.inside`).
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

from wsss.config import RunConfig
from wsss.data import check_id, open_dataset
from wsss.errors import ConfigError, DataError, RunDirError
from wsss.results import ResultKey, Results
from wsss.runtime import barrier, is_main, resolve_device, set_channels_last

MARKER = ".wsss-run"
"""The file that marks a folder as a wsss run directory (written with its config.yaml)."""
# Config keys that may differ between a run and its --resume: where it runs, not what it computes.
RESUME_FREE = ("device", "classifier.num_workers", "amn.num_workers", "seg.num_workers")


def log(msg: str) -> None:
    """Print on the main rank only."""
    if is_main():
        print(msg, flush=True)


class Run:
    """A run directory: its config, datasets, paths, and results.json (read-modify-write, atomic, locked)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").exists():
            raise RunDirError(
                f"{self.path}: not a run directory (no config.yaml); create one with `wsss run --out`"
            )
        self.cfg = RunConfig.load(self.path / "config.yaml")
        self._datasets: dict[str, object] = {}

    @classmethod
    def create(cls, path: str | Path, cfg: RunConfig, force: bool = False, resume: bool = False) -> Run:
        """Create (or, with ``resume``, continue) the run directory ``path`` for ``cfg``.

        Every input is checked first (the dataset and its splits, the device, the folder itself), so a bad
        input leaves nothing behind. ``force`` replaces only a folder that is a wsss run (it holds
        ``config.yaml`` and the ``.wsss-run`` marker) and neither is nor contains the dataset; ``resume``
        refuses a config that differs from the stored one (naming the keys). ``cfg.data`` is stored resolved.
        """
        path = Path(path)
        cfg = resolved(cfg)
        datasets = check_inputs(cfg)
        state = check_out_dir(path, cfg, force=force, resume=resume)
        barrier()  # every rank has looked before rank 0 creates or replaces anything
        if state == "resume":
            run = cls(path)
            refuse_changes(run, cfg)
            run.cfg = run.cfg.with_updates(device=cfg.device)  # where it runs may change
            run._datasets.update(datasets)
            return run
        if state == "replace" and is_main():
            shutil.rmtree(path)
        barrier()
        if is_main():
            path.mkdir(parents=True, exist_ok=True)
            cfg.dump(path / "config.yaml")
            (path / MARKER).write_text("a wsss run directory: `wsss run --force` may replace this folder\n")
        barrier()
        run = cls(path)
        run._datasets.update(datasets)
        return run

    def inside(self, *parts: str, what: str = "name") -> Path:
        """``RUN/<parts...>``, each part a plain name (no path separator, no ``..``, no leading dot, no control
        character; spaces are fine): no method, classifier or mask name leads outside the run directory."""
        for part in parts:
            reason = check_id(part.replace(" ", "_"))
            if reason:
                raise ConfigError(f"{what} {part!r} {reason.split(' (')[0]}: a name, not a path")
        return self.path.joinpath(*parts)

    # -- data ------------------------------------------------------------------------------------------------
    def dataset(self, split: str):
        if split not in self._datasets:
            self._datasets[split] = open_split(self.cfg, split)
        return self._datasets[split]

    def split_ids(self, splits: tuple[str, ...]) -> list[str]:
        """The ids of ``splits`` (unset ones skipped), each once, in order."""
        return list(dict.fromkeys(i for split in splits if split for i in self.dataset(split).ids))

    def has_masks(self, split: str) -> bool:
        """Whether every image of ``split`` has a mask (a split with image-level labels only has none)."""
        ds = self.dataset(split)
        return all(ds.has_mask(i) for i in ds.ids)

    @property
    def scored_splits(self) -> tuple[str, ...]:
        """The splits every method gets maps on: the score split and the tune split."""
        return (self.cfg.score_split, self.cfg.tune_split)

    def lookup(self, ids: list[str]) -> dict:
        """id -> the dataset (split) that holds it, over the configured splits."""
        out = {}
        for split in (self.cfg.score_split, self.cfg.tune_split, self.cfg.train_split, self.cfg.val_split):
            if not split:
                continue
            try:
                ds = self.dataset(split)
            except Exception:  # noqa: BLE001 - a split that is not needed may be absent
                continue
            for i in ds.ids:
                out.setdefault(i, ds)
        missing = [i for i in ids if i not in out]
        if missing:
            raise ConfigError(f"image {missing[0]} is in no configured split")
        return out

    @property
    def device(self) -> torch.device:
        """The config's device; also sets the process's memory format (``channels_last``) for the stage."""
        set_channels_last(self.cfg.channels_last)
        return resolve_device(self.cfg.device)

    # -- paths ---------------------------------------------------------------------------------------------
    def classifier_path(self, name: str = "plain") -> Path:
        self.inside(name, what="classifier name")
        return self.path / ("classifier.pt" if name == "plain" else f"classifier@{name}.pt")

    def trained_classifiers(self) -> tuple[str, ...]:
        """Names of the classifiers trained in this run besides its own (``classifier@<name>.pt``)."""
        return trained_classifiers(self.path)

    def maps_dir(self, key: str) -> Path:
        return self.inside("maps", key, what="maps key")

    def masks_dir(self, key: str) -> Path:
        return self.inside("masks", key, what="masks key")

    def amn_path(self, name: str) -> Path:
        return self.inside(name, what="AMN name").with_name(f"{name}.pt")

    def segmenter_path(self, masks: str) -> Path:
        return self.inside("segmenter", masks, what="masks name").with_name(f"{masks}.pt")

    # -- results -----------------------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    def results(self) -> dict:
        """results.json as plain data ({} before the first stage wrote to it)."""
        if not self.results_path.exists():
            return {}
        try:
            res = json.loads(self.results_path.read_text())
        except ValueError:
            raise RunDirError(f"{self.results_path}: corrupt results file (not valid JSON; delete it and rerun "
                              "the stages to score again)") from None
        if not isinstance(res, dict):
            raise RunDirError(f"{self.results_path}: corrupt results file (not a JSON object)")
        Results.check(res, self.results_path)
        return res

    def typed_results(self) -> Results:
        return Results.read(self.results_path)

    def method_result(self, key: str | ResultKey):
        """The typed result of one method key, or None."""
        return self.typed_results().methods.get(str(key))

    def update_results(self, *keys: str, value) -> None:
        """Set ``results[k1][k2]... = value`` atomically (rank 0 only). Read-modify-write under an exclusive
        file lock, so commands running side by side on one run directory (two ``wsss maps`` on two GPUs, an
        ablation next to ``wsss pseudo``) do not lose each other's updates."""
        if not is_main():
            return
        with file_lock(self.path / ".results.lock"):
            res = self.results()
            node = res
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
            write_atomic(self.results_path, (json.dumps(res, indent=1, default=_json_default) + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a unique temp file in the same folder + rename: a reader never sees a
    half-written file; on failure the temp file is removed and ``path`` left as it was; a full disk is a
    :class:`RunDirError` naming the file."""
    import errno
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RunDirError(f"{path}: no space left on device while writing it (the previous version is kept; "
                              "free some space and rerun)") from exc
        raise


def open_split(cfg: RunConfig, split: str):
    """One split of the run's dataset as its config reads it (layout, labels file, largest side)."""
    return open_dataset(cfg.data, split, format=cfg.format, labels=cfg.labels, max_side=cfg.max_side)


def resolved(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``data`` an absolute path (a relative ``--data`` is relative to where the run was started)."""
    if not cfg.data:
        raise ConfigError("no dataset given (--data DIR)")
    data = str(Path(cfg.data).expanduser().resolve())
    return cfg if data == cfg.data else cfg.with_updates(data=data)


def check_inputs(cfg: RunConfig) -> dict:
    """Everything a run needs, checked before anything is written: the dataset folder, every configured
    split (its file, its ids, its classes) and the device. Returns the opened datasets (split -> dataset)."""
    data = Path(cfg.data)
    if not data.exists():
        raise DataError(f"{data}: dataset folder not found (--data)")
    if not data.is_dir():
        raise DataError(f"{data}: not a folder (--data expects the dataset folder)")
    resolve_device(cfg.device)
    datasets = {}
    for split in dict.fromkeys((cfg.train_split, cfg.score_split, cfg.tune_split, cfg.val_split)):
        if split:
            datasets[split] = open_split(cfg, split)
    return datasets


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a folder this tool created as a run directory (config.yaml + the marker)."""
    return (path / "config.yaml").is_file() and (path / MARKER).is_file()


def check_out_dir(path: Path, cfg: RunConfig, force: bool = False, resume: bool = False) -> str:
    """What :meth:`Run.create` may do with ``path``: ``"create"`` (absent or empty), ``"resume"`` or
    ``"replace"``; RunDirError (one line naming the folder) for everything else."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise RunDirError(f"{p}: is a file, not a folder (--out must name a run directory)")
    if not path.exists() or not any(path.iterdir()):
        return "create"
    if resume:
        if not (path / "config.yaml").is_file():
            raise RunDirError(f"{path}: --resume given but it is not a run directory (no config.yaml)")
        return "resume"
    if not force:
        raise RunDirError(f"{path}: run directory exists; pass --resume to continue it or --force to replace it")
    here, data = path.resolve(), Path(cfg.data).resolve()
    if here == data or here in data.parents:
        raise RunDirError(f"{path}: --force refused: the folder is or contains the dataset {data}")
    cwd = Path.cwd().resolve()
    if here == cwd or here in cwd.parents or here == Path.home().resolve():
        raise RunDirError(f"{path}: --force refused: it is the current folder, one above it or the home folder")
    if not is_run_dir(path):
        raise RunDirError(f"{path}: --force refused: not a wsss run directory (no config.yaml and {MARKER} marker); "
                          "choose another --out or delete it yourself")
    return "replace"


def config_diff(a: RunConfig, b: RunConfig, free: tuple[str, ...] = RESUME_FREE) -> list[str]:
    """Dotted keys whose values differ between ``a`` and ``b`` (``free`` keys ignored)."""
    out: list[str] = []

    def walk(x, y, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in dict.fromkeys([*x, *y]):
                walk(x.get(k), y.get(k), f"{prefix}{k}.")
        elif x != y and prefix[:-1] not in free:
            out.append(prefix[:-1])

    walk(a.model_dump(mode="json"), b.model_dump(mode="json"), "")
    return out


def refuse_changes(run: Run, cfg: RunConfig) -> None:
    """``--resume`` continues a run with the config it was started with: a change (new ``--set`` options,
    ``--no-seg``, other methods) is refused, naming the keys."""
    stored = run.cfg
    if stored.data and not Path(stored.data).is_absolute():  # runs made before data was stored resolved
        stored = stored.with_updates(data=str(Path(stored.data).resolve()))
    diff = config_diff(stored, cfg)
    if diff:
        shown = ", ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise RunDirError(f"{run.path / 'config.yaml'}: --resume with a different config ({shown} differ); "
                          "rerun with the same options, or start a new run with another --out")


@contextmanager
def file_lock(path: Path):
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


@contextmanager
def timed(run: Run, stage: str):
    """Record the block's wall time as ``results["timings"][stage]`` and print it."""
    t0 = time.time()
    yield
    dt = time.time() - t0
    run.update_results("timings", stage, value=round(dt, 3))
    log(f"  {stage}: {dt:.1f} s")


def trained_classifiers(folder: Path) -> tuple[str, ...]:
    """Names of the classifiers trained in run folder ``folder`` besides its own (``classifier@<name>.pt``; not
    their snapshots ``.epochNNN.pt`` or OAA banks ``.oaa.pt``)."""
    names = (p.name[len("classifier@"):-len(".pt")] for p in Path(folder).glob("classifier@*.pt"))
    return tuple(sorted(n for n in names if "." not in n))
