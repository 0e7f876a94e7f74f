"""Stage: AMN (Lee et al. CVPR 2022) trained on a method's maps, and its localizer.

``amn`` is trained on the run's ``amn.from_maps`` (CAM by default), ``amn-<method>`` on ``<method>``'s maps;
the checkpoint is ``RUN/<name>.pt``. Maps of another classifier (``--from-maps cam@puzzle``) give AMN method
``amn@puzzle`` / ``amn-<method>@<classifier>`` (result key ``amn-oaa@oaa``): its backbone starts from that
classifier, its labels come from ``<method>@<classifier>``'s maps.
"""

from __future__ import annotations

from pathlib import Path

from wsss import localize
from wsss.errors import ConfigError, RunDirError
from wsss.models.checkpoint import arch_of, load_checkpoint
from wsss.results import ResultKey
from wsss.run.rundir import Run, timed
from wsss.run.stages import maps


def is_amn(method: str) -> bool:
    return localize.spec(method).requires == "amn"


def source(run: Run, method: str) -> str:
    """The maps AMN method ``method`` is trained on."""
    return localize.spec(method).source or run.cfg.amn.from_maps


def name_for(run: Run, from_maps: str) -> str:
    """The result key of AMN trained on maps key ``from_maps`` (``amn`` for the config's ``amn.from_maps``;
    ``cam@puzzle`` -> ``amn@puzzle``, ``oaa@oaa`` -> ``amn-oaa@oaa``)."""
    rk = ResultKey.parse(from_maps)
    method = "amn" if rk.method == run.cfg.amn.from_maps else f"amn-{rk.method}"
    return ResultKey(method, rk.classifier).maps


def source_key(from_maps: str) -> ResultKey:
    """``--from-maps`` checked: the maps key of a localization method (``cam``, ``oaa@oaa``), else ConfigError."""
    try:
        rk = ResultKey.parse(from_maps)
    except ValueError as exc:
        raise ConfigError(f"--from-maps {from_maps}: {exc}") from None
    if rk.post or rk.method not in localize.available() or localize.spec(rk.method).requires == "amn":
        raise ConfigError(f"--from-maps {from_maps}: not the maps of a localization method (<method>[@<classifier>], "
                          f"method one of {', '.join(m for m in localize.available() if m != 'amn')})")
    return rk


def train(run: Run, from_maps: str | None = None, progress: bool = True, amn_cfg=None, out: Path | None = None,
          name: str | None = None) -> dict:
    """Train AMN on labels from ``from_maps`` (default: the config's), whose maps on the train split must be
    stored (:func:`wsss.run.stages.produce.maps_of` makes them). The checkpoint is ``RUN/<name>.pt`` and the summary goes to ``results["amn"]`` /
    ``results["amn_variants"][name]``; ``amn_cfg`` / ``out`` (the study) override the config and the checkpoint
    and record nothing."""
    from wsss.run.stages import classifier
    from wsss.train.amn import train_amn

    rk = source_key(from_maps or run.cfg.amn.from_maps)
    from_maps = rk.maps
    cfg = (amn_cfg or run.cfg.amn).model_copy(update={"from_maps": from_maps})
    name = name or name_for(run, from_maps)
    gone = maps.missing(run, from_maps, run.dataset(run.cfg.train_split).ids)
    if gone:
        raise RunDirError(f"{run.maps_dir(from_maps) / (gone[0] + '.npz')}: AMN trains on {from_maps}'s maps of the "
                          f"train split, which are missing (`wsss train-amn` computes them)")
    ckpt = load_checkpoint(run.classifier_path(rk.classifier), "classifier", ("arch",), command="wsss train-cls")
    arch, arch_kwargs = arch_of(ckpt)
    with timed(run, f"train-{name}" if out is None else f"train-amn-study/{out.stem}"):
        res = train_amn(run.dataset(run.cfg.train_split), run.maps_dir(from_maps), classifier.load(run, rk.classifier), cfg,
                        out or run.amn_path(name), run.device, seed=run.cfg.seed, progress=progress,
                        arch=arch, arch_kwargs=arch_kwargs)
    if out is None:
        if name == "amn":
            run.update_results("amn", value=res)
        else:
            run.update_results("amn_variants", name, value=res)
    return res


def localizer(run: Run, method: str = "amn", checkpoint: Path | None = None, from_maps: str | None = None,
              amn_cfg=None, classifier: str = "plain") -> localize.Localizer:
    """AMN's official inference from a checkpoint (default ``RUN/<method>[@<classifier>].pt``): its own
    flip/scales over logits, the raw probabilities kept on the confident background of the labels it was
    trained on (``<source>@<classifier>``'s maps)."""
    from wsss.train.amn import IRLabels, load_amn

    from_maps = from_maps or ResultKey(source(run, method), classifier).maps
    checkpoint = checkpoint or run.amn_path(ResultKey(method, classifier).maps)
    if not checkpoint.exists():
        raise RunDirError(
            f"{checkpoint}: no trained AMN (run `wsss train-amn --run {run.path} --from-maps {from_maps}` first)"
        )
    labels = IRLabels.from_config(run.maps_dir(from_maps), amn_cfg or run.cfg.amn,
                                  dataset=run.dataset(run.cfg.train_split), missing_ok=True)
    opts = {"scales": tuple(run.cfg.maps.multiscale), "ir_labels": labels, **maps.method_options(run, method)}
    return localize.create("amn", load_amn(checkpoint, run.device), **opts)


def compute_maps(run: Run, method: str, splits: tuple[str, ...] | None = None, progress: bool = True,
                 classifier: str = "plain") -> dict:
    """Maps of AMN method ``method`` from its trained network (``RUN/<method>[@<classifier>].pt``)."""
    return maps.compute(run, method, classifier, splits=splits, progress=progress,
                        loc=localizer(run, method, classifier=classifier))
