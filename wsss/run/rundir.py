"""The run directory: its config, its datasets, its paths and its results store.

::

    RUN/config.yaml                 the RunConfig used
    RUN/classifier.pt               classifier "plain" (classifier@<name>.pt for others)
    RUN/maps/<key>/<id>.npz         raw maps (wsss.mapsio), key = <method>[@<classifier>]
    RUN/masks/<key>/<id>.png        pseudo-masks at the fixed threshold (palette PNG), key as in results.json
    RUN/<amn name>.pt               AMN networks (amn.pt, amn-<maps>.pt)
    RUN/segmenter/<masks>.pt        segmenters
    RUN/results.json                every score (fractions in [0, 1], seconds)
    RUN/report.md, RUN/figures/     the report

Every stage reads the previous stage's files, so any stage can be rerun or resumed alone.
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
from wsss.data import open_dataset
from wsss.errors import ConfigError, RunDirError
from wsss.results import ResultKey, Results
from wsss.runtime import barrier, is_main, resolve_device


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
            self._datasets[split] = open_dataset(self.cfg.data, split, format=self.cfg.format, labels=self.cfg.labels)
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
        return resolve_device(self.cfg.device)

    # -- paths ---------------------------------------------------------------------------------------------
    def classifier_path(self, name: str = "plain") -> Path:
        return self.path / ("classifier.pt" if name == "plain" else f"classifier@{name}.pt")

    def maps_dir(self, key: str) -> Path:
        return self.path / "maps" / key

    def masks_dir(self, key: str) -> Path:
        return self.path / "masks" / key

    def amn_path(self, name: str) -> Path:
        return self.path / f"{name}.pt"

    def segmenter_path(self, masks: str) -> Path:
        return self.path / "segmenter" / f"{masks}.pt"

    # -- results -----------------------------------------------------------------------------------------
    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    def results(self) -> dict:
        """results.json as plain data ({} before the first stage wrote to it)."""
        if not self.results_path.exists():
            return {}
        try:
            return json.loads(self.results_path.read_text())
        except ValueError:
            raise RunDirError(f"{self.results_path}: corrupt results file (not valid JSON)") from None

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
            tmp = self.results_path.with_name(f".results.json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
            os.replace(tmp, self.results_path)


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
