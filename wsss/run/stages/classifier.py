"""Stage: the multi-label classifier (``RUN/classifier.pt``, or ``RUN/classifier@<name>.pt``), trained with any
recipe of :mod:`wsss.train.recipes` (``wsss train-cls --recipe puzzle`` writes ``classifier@puzzle.pt``)."""

from __future__ import annotations

from wsss.errors import ConfigError
from wsss.run.rundir import Run, log, timed
from wsss.runtime import seed_everything


def train(run: Run, name: str = "plain", jigsaw_aug: float | None = None, progress: bool = True,
          recipe: str | None = None, overrides: dict | None = None) -> dict:
    """Train classifier ``name`` on the train split (``jigsaw_aug``: fraction of images shuffled; ``recipe``: a
    training recipe of :mod:`wsss.train.recipes`; ``overrides``: ``classifier.*`` dotted keys, e.g.
    ``{"classifier.alpha": 2}``), over the run's config of that classifier (:meth:`RunConfig.classifier_config`:
    a recipe's name trains that recipe), which stays as it is on disk. The summary,
    with the classifier config used, goes to ``results["classifiers"][name]``."""
    from wsss.train.classifier import train_classifier

    updates = dict(overrides or {})
    bad = [k for k in updates if not k.startswith("classifier.")]
    if bad:
        raise ConfigError(f"--set {bad[0]}: train-cls takes classifier.* settings only")
    if jigsaw_aug is not None:
        updates["classifier.jigsaw_aug"] = jigsaw_aug
    if recipe is not None:
        updates["classifier.recipe"] = recipe
    updates["classifier.name"] = name
    # a name the config knows (a recipe's, a `classifiers` entry) starts from its settings
    known = run.cfg.defines_classifier(name)
    base = run.cfg.model_copy(update={"classifier": run.cfg.classifier_config(name)}) if known else run.cfg
    cfg = base.with_updates(**updates).classifier
    seed_everything(run.cfg.seed)
    val = run.dataset(run.cfg.val_split) if run.cfg.val_split else None
    with timed(run, f"train-cls@{name}"):
        result = train_classifier(run.dataset(run.cfg.train_split), val, cfg, run.classifier_path(name), run.device,
                                  seed=run.cfg.seed, progress=progress)
    result = {**result, "config": cfg.model_dump(mode="json")}
    run.update_results("classifiers", name, value=result)
    if result.get("val_map") is not None:
        log(f"  classifier {name} ({cfg.recipe}): val mAP {result['val_map']:.3f} ({result['seconds']:.0f} s)")
    return result


def load(run: Run, name: str = "plain"):
    """The trained classifier ``name`` on the run's device."""
    from wsss.train.classifier import load_classifier

    return load_classifier(run.classifier_path(name), run.device)
