"""Stage: the multi-label classifier (``RUN/classifier.pt``, or ``RUN/classifier@<name>.pt``)."""

from __future__ import annotations

from wsss.run.rundir import Run, log, timed
from wsss.runtime import seed_everything


def train(run: Run, name: str = "plain", jigsaw_aug: float | None = None, progress: bool = True) -> dict:
    """Train classifier ``name`` on the train split (``jigsaw_aug``: fraction of images shuffled); its summary
    goes to ``results["classifiers"][name]``."""
    from wsss.train.classifier import train_classifier

    cfg = run.cfg.classifier
    if jigsaw_aug is not None:
        cfg = cfg.model_copy(update={"jigsaw_aug": jigsaw_aug, "name": name})
    seed_everything(run.cfg.seed)
    val = run.dataset(run.cfg.val_split) if run.cfg.val_split else None
    with timed(run, f"train-cls@{name}"):
        result = train_classifier(run.dataset(run.cfg.train_split), val, cfg, run.classifier_path(name), run.device,
                                  seed=run.cfg.seed, progress=progress)
    run.update_results("classifiers", name, value=result)
    if result.get("val_map") is not None:
        log(f"  classifier {name}: val mAP {result['val_map']:.3f} ({result['seconds']:.0f} s)")
    return result


def load(run: Run, name: str = "plain"):
    """The trained classifier ``name`` on the run's device."""
    from wsss.train.classifier import load_classifier

    return load_classifier(run.classifier_path(name), run.device)
