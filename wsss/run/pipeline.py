"""``wsss run`` and ``wsss demo``: build the config, plan the jobs (:mod:`wsss.run.plan`), run the stages."""

from __future__ import annotations

import time
from pathlib import Path

from wsss.config import RunConfig, quick_profile
from wsss.errors import ConfigError
from wsss.run import plan
from wsss.run.rundir import Run, log, timed
from wsss.run.stages import amn, classifier, irn, produce, score, seg
from wsss.runtime import is_main

QUICK_IMAGES = 120
QUICK_METHODS = ["cam", "gradcam", "saliency", "jigsaw", "jigsaw-cam", "traj-cam"]
# The headline methods (the study, cropsal and shufflecam included, lives in `wsss ablate`), chosen on the tune
# split of the 3-seed benchmark-v2 study (`benchmarks/recipes_study.sh`, tune mIoU mean of seeds 0-2):
# - cam@jigsaw-consistency, ours: CAM of a second classifier trained with the jigsaw-consistency recipe, the best
#   map of the study without post-processing (64.8 vs CAM 60.2, AMN 61.0); its masks replace jigsaw-cam's (60.6)
#   as a segmenter's input (the jigsaw maps are then needed on the scored splits only). To pay for its training the
#   full demo trains no segmenter on AMN's masks (the weakest of its segmenters: 61.5 vs CAM's 63.9 on seed 0) nor
#   on the true masks (the fully supervised bound, 83.3; `wsss train-seg --run DIR --masks gt` adds it): with both
#   it took 15 min 19 s on the idle 2-core CPU, with the true masks' alone 15 min 11 s. The quick demo trains none
#   on the true masks either (20 s of its two minutes);
# - traj-cam (CAM averaged over the classifier's snapshots after each quarter of its training): 61.0, four CAM
#   passes, the snapshots saved while the classifier trains.
DEMO_METHODS = ["cam", "gradcam", "saliency", "jigsaw", "jigsaw-cam", "traj-cam", "amn", "cam@jigsaw-consistency"]
DEMO_SEG = ["cam", "cam@jigsaw-consistency"]
# Both demos run their convolutions channels-last (faster on CPU: smallcnn forward + backward 0.7x the time; not
# bit-identical to `wsss run`, which keeps the default layout). The full demo's jigsaw takes N = 4 shuffles (the
# method's default: 16; the quick demo's: 4), to stay within 15 minutes on a 2-core CPU. Chosen on the tune split
# of the full demo's own seed-0 run (`python benchmarks/demo_samples_tune.py RUN 8 4`): tune mIoU of jigsaw-cam
# 60.53 at N = 4 vs 60.47 at N = 8 (62.39 at 8 vs 62.41 at 16 on another seed-0 run); jigsaw alone loses 0.8
# (42.6 vs 43.4), which the demo's table shows (`benchmarks/results/demo_speed.md`).
# The full demo's jigsaw-consistency classifier trains for 10 epochs instead of 20 (`wsss run`: the run's classifier
# epochs), chosen on tune (seed 0, `benchmarks/results/recipes_tune_seed0.txt`): CAM tune mIoU 68.1 after 10
# epochs vs 67.6 after 20 (and 44.2 after 5).
DEMO_OPTIONS = {"maps.options.jigsaw.samples": 4, "seg.methods": DEMO_SEG,
                "classifiers": {"jigsaw-consistency": {"epochs": 10, "snapshot_epochs": []}}}
HEADERS = {"classifier": "[1] classifier", "maps": "[2] localization maps", "fuse": "[2] localization maps",
           "amn": "[2b] AMN", "irn": "[2c] IRN", "score": "[3] pseudo-masks and scores", "seg": "[4] segmentation", "report": "[5] report"}
MAIN_RANK_ONLY = ("score", "seg", "report")


def run_pipeline(run: Run, methods: list[str] | None = None, progress: bool = True) -> dict:
    """classifier -> maps -> pseudo-masks + scores (-> AMN -> IRN -> segmenter) -> report, as planned by
    :func:`wsss.run.plan.build` (post-processing: the config's ``pseudo.post``). Finished work is skipped
    (``--resume`` never redoes a stage): an existing classifier, AMN, IRN or segmenter, maps already on disk, a
    method already scored in results.json."""
    jobs = plan.build(run.cfg, methods, trained=run.trained_classifiers())
    t_all, header = time.time(), None
    for job in jobs:
        if job.kind in MAIN_RANK_ONLY and not is_main():
            return {}
        if HEADERS[job.kind] != header:
            header = HEADERS[job.kind]
            log(header)
        if job.kind == "report":  # the report shows the total, so it is recorded first
            run.update_results("timings", "total", value=round(time.time() - t_all, 3))
        _execute(run, job, progress)
    return run.results()


def _execute(run: Run, job: plan.Job, progress: bool) -> None:
    m = job.target
    if job.kind == "classifier":
        name = m or "plain"
        if run.classifier_path(name).exists():
            if name != "plain":
                log(f"  {run.classifier_path(name)}: trained already")
        else:
            classifier.train(run, name=name, progress=progress)
    elif job.kind in ("maps", "fuse"):
        with timed(run, f"maps/{m}"):
            produce.maps_of(run, m, splits=job.splits, progress=progress)
    elif job.kind == "amn":
        src = plan.inputs(run.cfg, m)[0]
        if run.amn_path(m).exists():
            log(f"  {run.amn_path(m)}: trained already")
        else:
            log(f"  AMN on {src} maps ({m})")
            amn.train(run, src, progress=progress, name=m)
    elif job.kind == "irn":
        if irn.checkpoint(run, m).exists():
            log(f"  {irn.checkpoint(run, m)}: trained already")
        else:
            irn.train(run, m, progress=progress)
    elif job.kind == "score":
        if m in run.results().get("methods", {}):
            log(f"  {m}: scored already")
        else:
            score.pseudo(run, m, progress=progress)
    elif job.kind == "seg":
        if m == "gt" and not run.has_masks(run.cfg.train_split):
            log(f"  no segmenter on the true masks: {run.cfg.train_split} has image-level labels only")
        elif run.segmenter_path(m).exists() and m in run.results().get("segmentation", {}):
            log(f"  segmenter on {m}: trained already")
        else:
            seg.train(run, m, progress=progress)
    elif job.kind == "report":
        from wsss.report import write_report

        write_report(run)


def build_config(data: str | None = None, config: str | None = None, quick: bool = False, **overrides) -> RunConfig:
    """The run config: defaults, then ``config`` (YAML), then ``overrides`` (dotted keys), then ``--quick``."""
    cfg = RunConfig.load(config) if config else RunConfig()
    updates = {k: v for k, v in overrides.items() if v is not None}
    if data is not None:
        updates["data"] = str(data)
    if updates.get("labels") is not None:
        updates["labels"] = str(Path(updates["labels"]).resolve())  # later stages may run from another folder
    cfg = cfg.with_updates(**updates) if updates else cfg
    if not cfg.data:
        raise ConfigError("no dataset given (--data DIR)")
    return quick_profile(cfg) if quick else cfg


def demo(out: str | Path, quick: bool = False, device: str = "cpu", force: bool = False, resume: bool = False,
         seed: int = 0, benchmark: str | None = None) -> dict:
    """``wsss data synth`` + ``wsss run`` on the built-in benchmark (CPU by default; ``benchmark``: its
    version, default the newest). The data goes to ``OUT_data`` beside the run directory ``OUT``."""
    from wsss.data.synth import LATEST, benchmark_config, check_target, write_benchmark
    from wsss.run.rundir import check_out_dir, refuse_changes, resolved
    from wsss.runtime import resolve_device

    try:
        synth = benchmark_config(benchmark or LATEST, seed=seed, **({"images": QUICK_IMAGES} if quick else {}))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out = Path(out)
    data = out.parent / f"{out.name}_data"
    cfg = build_config(data=str(data), quick=quick, device=device, seed=seed)
    epochs = cfg.classifier.epochs
    cfg = cfg.with_updates(**{"maps.methods": QUICK_METHODS if quick else DEMO_METHODS, "channels_last": True,
                              "classifier.snapshot_epochs": sorted({max(1, round(epochs * q / 4)) for q in (1, 2, 3, 4)}),
                              "seg.ground_truth": False})
    cfg = resolved(cfg if quick else cfg.with_updates(**DEMO_OPTIONS))
    # every check before anything is written or deleted: the device, the run folder, the data folder
    resolve_device(cfg.device)
    state = check_out_dir(out, cfg, force=force, resume=resume)
    if state == "resume":
        refuse_changes(Run(out), cfg)
    check_target(data, synth, force=force)
    t0 = time.time()
    log(f"[0] built-in benchmark -> {data}")
    write_benchmark(data, synth, force=force)
    run = Run.create(out, cfg, force=state == "replace", resume=state == "resume")
    run.update_results("timings", "synth", value=round(time.time() - t0, 3))
    return run_pipeline(run, list(cfg.maps.methods))
