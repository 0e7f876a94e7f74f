"""The ``wsss`` command line: a thin typer shell over :mod:`wsss.run` (pipeline, stages, study), one
sub-command per stage.

How it ends: 0 on success; a usage error (unknown option, missing value, typo in a command) prints the
usage and one ``Error:`` line, exit 2; an error a user can act on (:class:`wsss.WsssError`) prints
``error: <one line>``, exit 1; Ctrl-C prints ``interrupted; rerun with --resume to continue``, exit 130.
``--debug``, accepted anywhere on the line, shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from wsss.errors import ConfigError, WsssError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no "<bool>" after flags, and "[crf]" in a help string stays text
    help="Weakly-supervised semantic segmentation: image-level labels -> localization maps -> "
    "pseudo-masks -> segmenter. Start with `wsss demo --quick`; `wsss COMMAND --help` for each stage. "
    "Several GPUs: `torchrun --nproc-per-node N -m wsss maps --run-dir RUN --method M` (under torchrun "
    "write --run-dir, not --run: torchrun's own parser takes --run for its --run-path).",
)
data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Datasets: the built-in benchmark and what the loader sees."
)
app.add_typer(data_app, name="data")

_STATE = {"debug": False}
INTERRUPTED = "interrupted; rerun with --resume to continue"

# The click typer really uses: typer >= 0.2x vendors its own (typer._click) and the plain `click` package may
# not even be installed; older typer uses `click`. Found through typer's own BadParameter either way.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

RunOpt = typer.Option(..., "--run", "--run-dir", help="Run directory (created by `wsss run --out`).")
DeviceOpt = typer.Option(None, "--device", help="auto | cpu | cuda (default: the run's config, auto).")
FormatOpt = typer.Option("auto", "--format", help="Dataset layout: auto (detect) | voc | coco | folder.")
LabelsOpt = typer.Option(None, "--labels", help="Image-level labels file (JSON {id: [names]} or CSV id,<class>,...) "
                         "for images without masks; convert IRN's cls_labels.npy once with wsss.data.labels."
                         "convert_irn_labels.")
ForceOpt = typer.Option(False, "--force", help="Replace an existing run directory (only a wsss run: one with "
                        "config.yaml and the .wsss-run marker, not holding the dataset).")
ResumeOpt = typer.Option(False, "--resume", help="Continue an existing run directory.")


def _version(value: bool) -> None:
    if value:
        from wsss import __version__

        print(f"wsss {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (accepted anywhere on the line)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, expose_value=False,
                                 help="Print the version and exit."),
):
    _STATE["debug"] = _STATE["debug"] or debug


def _pop_debug(args: list[str]) -> tuple[list[str], bool]:
    """Remove every ``--debug`` before a bare ``--`` (so that each sub-command accepts it too)."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return head + args[end:], len(head) < end


def _fail(message: str, code: int):
    print(message, file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``argv`` default: ``sys.argv[1:]``)."""
    args, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    _STATE["debug"] = debug
    try:
        code = app(args=args, standalone_mode=False)  # typer turns Ctrl-C into a return value of 130
    except KeyboardInterrupt:  # outside typer's own handling
        if debug:
            raise
        code = 130
    except WsssError as exc:
        if debug:
            raise
        _fail(f"error: {exc}", 1)
    except _ClickException as exc:  # usage errors: the usage + one line, exit 2
        if debug:
            raise
        exc.show()
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        sys.exit(getattr(exc, "exit_code", getattr(exc, "code", 0)))
    except typer.Abort as exc:  # typer turns an EOFError into Abort: a file that ended early
        if debug:
            raise
        cause = exc.__cause__
        if cause is not None:
            _fail(f"error: {cause.__class__.__name__}: {cause or 'unexpected end of file'} (a file ended early; "
                  "rerun with --debug for the traceback)", 1)
        _fail("aborted", 1)
    except Exception as exc:
        if debug:
            raise
        _fail(f"error: {exc.__class__.__name__}: {exc} (rerun with --debug for the traceback)", 1)
    if code == 130:
        _fail(INTERRUPTED, 130)
    sys.exit(code if isinstance(code, int) else 0)


def _run(path: Path, device: str | None = None):
    from wsss.run.rundir import Run

    run = Run(path)
    if device:
        run.cfg = run.cfg.with_updates(device=device)
    return run


def _methods(value: str | None) -> list[str] | None:
    return [m.strip() for m in value.split(",") if m.strip()] if value else None


# ---- data ----------------------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (VOC layout)."),
    seed: int = typer.Option(0, help="Generator seed."),
    benchmark: str = typer.Option(None, "--benchmark", help="Benchmark version (v1, v2; default the newest)."),
    size: int = typer.Option(None, help="Image side in pixels (default: the version's)."),
    images: int = typer.Option(None, help="train_aug images (train = 1/3, tune = 1/4 of them; val = 1/3)."),
    classes: int = typer.Option(None, "--classes", help="Number of object classes."),
    max_objects: int = typer.Option(None, help="Most objects per image."),
    part_frac: float = typer.Option(
        None, help="Part area / object area (how small the discriminative part is)."
    ),
    body_signal: float = typer.Option(
        None, help="Class-specific body tint (0 = bodies fully shared in a group)."
    ),
    part_offset: float = typer.Option(
        None, help="Part centre along the body's major axis, fraction of the semi-axis (1 = at the tip)."
    ),
    body_radius: str = typer.Option(
        None, help="Body semi-major axis range as a fraction of the side, 'LO,HI' (e.g. 0.36,0.48)."
    ),
    camouflage: float = typer.Option(None, help="Probability that the background is a body texture."),
    distractors: float = typer.Option(None, help="Expected unlabelled part-less bodies per image."),
    background_bias: float = typer.Option(None, help="Probability of a class-correlated background."),
    occlusion: float = typer.Option(None, help="Probability that objects may overlap."),
    force: bool = typer.Option(False, "--force", help="Replace a synth output written with other settings (only "
                               "the files synth wrote; a folder that is not a synth output is never touched)."),
):
    """Write the built-in benchmark. Example: `wsss data synth --out data/synth --seed 0`."""
    from dataclasses import fields

    from wsss.data.synth import LATEST, SynthConfig, benchmark_config, dataset_hash, write_benchmark

    overrides = dict(
        seed=seed, size=size, images=images, num_classes=classes, max_objects=max_objects, part_frac=part_frac,
        body_signal=body_signal, part_offset=part_offset,
        body_radius=_float_pair(body_radius, "--body-radius") if body_radius else None, camouflage=camouflage,
        distractors=distractors,
        background_bias=background_bias,
        occlusion=occlusion,
    )
    valid = {f.name for f in fields(SynthConfig)}
    try:
        cfg = benchmark_config(benchmark or LATEST, **{k: v for k, v in overrides.items() if v is not None and k in valid})
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--benchmark") from None
    except ConfigError as e:  # a knob out of range: name the option
        flags = {"num_classes": "classes"}
        name = str(e).partition("=")[0].removeprefix("synth ")
        raise ConfigError(str(e).replace(f"synth {name}=", f"--{flags.get(name, name).replace('_', '-')} ", 1)) from None
    t0 = time.time()
    write_benchmark(out, cfg, force=force)
    print(f"wrote {out} in {time.time() - t0:.1f} s (hash {dataset_hash(out)[:12]})")


def _float_pair(text: str, flag: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{flag}: expected LO,HI (two numbers), got {text!r}") from None
    if not 0 < lo <= hi:
        raise typer.BadParameter(f"{flag}: expected 0 < LO <= HI, got {text!r}")
    return lo, hi


@data_app.command("make-tune")
def data_make_tune(
    root: Path = typer.Argument(..., help="VOC-layout folder with train_aug.txt and train.txt."),
    size: int = typer.Option(1464, "--size", help="Images in the tune split."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing tune split list."),
):
    """Write ImageSets/Segmentation/tune.txt: a seeded subset of train_aug minus train (choose defaults there).
    Example: `wsss data make-tune /data/VOC2012`."""
    from wsss.data.splits import make_tune

    path = make_tune(root, size=size, seed=seed, force=force)
    print(f"wrote {path} ({size} images, seed {seed})")


@data_app.command("info")
def data_info(
    root: Path = typer.Argument(..., help="Dataset folder."),
    format: str = FormatOpt,
    split: str = typer.Option(None, "--split", help="Split to read (default: every split the folder has)."),
    labels: Path = LabelsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """What the loader sees: the layout found, images, classes, masks vs image-level labels; every image and
    mask header is checked (a bad file is named). Example: `wsss data info data/synth`."""
    from wsss.data import dataset_splits, open_dataset
    from wsss.data.info import dataset_info, format_info

    splits = [split] if split else dataset_splits(root, format)
    infos = {s: dataset_info(open_dataset(root, s, format=format, labels=labels), progress=not as_json) for s in splits}
    if as_json:
        print(json.dumps(infos[split] if split else infos))
        return
    from rich.console import Console

    for s, info in infos.items():
        Console().print(format_info(info, title=f"split {s}"))


@data_app.command("split")
def data_split(
    root: Path = typer.Argument(..., help="Dataset folder without split files (images/ + masks/, flat, or VOC)."),
    tune: float = typer.Option(0.1, "--tune", help="Share of the images in the tune split (part of train_aug)."),
    val: float = typer.Option(0.1, "--val", help="Share of the images in the val split (outside train_aug)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw."),
    force: bool = typer.Option(False, "--force", help="Replace existing split files."),
):
    """Write train_aug / train / tune / val split files for a folder that has none: val is held out, train_aug =
    train + tune (tune and val drawn from images with masks). Example: `wsss data split my_photos --seed 0`."""
    from wsss.data.splits import write_splits

    for name, path in write_splits(root, tune=tune, val=val, seed=seed, force=force).items():
        print(f"wrote {path} ({name})")


# ---- pipeline --------------------------------------------------------------------------------------------------
@app.command()
def run(
    data: Path = typer.Option(None, "--data", help="Dataset folder (VOC layout, images/ + masks/, a flat folder "
                              "with a labels file, or COCO 2014; see --format)."),
    out: Path = typer.Option(..., "--out", help="Run directory to create."),
    format: str = typer.Option(None, "--format", help="Dataset layout: auto (default, detect) | voc | coco | folder."),
    labels: Path = LabelsOpt,
    methods: str = typer.Option(None, "--methods", help="Comma-separated methods (default: the config's); "
                                "<method>@<classifier> for the maps of a second classifier trained in the run "
                                "(cam@jigsaw-consistency: a recipe's name, or a config classifiers: entry)."),
    config: Path = typer.Option(None, "--config", help="YAML config (e.g. configs/voc12_resnet50.yaml)."),
    quick: bool = typer.Option(False, "--quick", help="Less work everywhere: a first look."),
    seed: int = typer.Option(None, help="Seed (data order, training, sampling)."),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda"),
    train_split: str = typer.Option(None, "--train-split", help="Split the classifier, AMN and segmenter train on "
                                    "(default train_aug)."),
    score_split: str = typer.Option(None, "--score-split", help="Split the pseudo-masks are scored on (default "
                                    "train)."),
    tune_split: str = typer.Option(None, "--tune-split", help="Split the fixed threshold t and other choices are "
                                   "made on (default tune; disjoint from the score split)."),
    val_split: str = typer.Option(None, "--val-split", help="Split the classifier and the segmenter are evaluated "
                                  "on (default val)."),
    no_seg: bool = typer.Option(False, "--no-seg", help="Skip the segmentation stage."),
    post: str = typer.Option(None, "--post", help="Post-processing scored for every method, comma-separated: crf "
                             "(dense CRF, extra [crf]) and/or irn (IRN trained per method, random walk): result "
                             "keys <method>+crf, <method>+irn (default: the config's pseudo.post)."),
    set_: list[str] = typer.Option(None, "--set", help="Config override KEY=VALUE (dotted key, YAML value), "
                                   "repeatable: --set amn.crf=true --set classifier.epochs=5."),
    force: bool = ForceOpt,
    resume: bool = ResumeOpt,
):
    """The whole pipeline. Example: `wsss run --data data/synth --out runs/r1 --methods cam,jigsaw`."""
    from wsss.run import plan
    from wsss.run.pipeline import build_config, run_pipeline
    from wsss.run.rundir import Run, trained_classifiers

    cfg = build_config(
        data=str(data) if data else None,
        config=str(config) if config else None,
        quick=quick,
        seed=seed,
        device=device,
        train_split=train_split,
        score_split=score_split,
        tune_split=tune_split,
        val_split=val_split,
        format=format,
        labels=str(labels) if labels else None,
    )
    if no_seg:
        cfg = cfg.with_updates(train_segmenter=False)
    if set_:
        cfg = cfg.with_updates(**_overrides(set_))
    if methods:
        cfg = cfg.with_updates(**{"maps.methods": _methods(methods)})
    if post is not None:
        steps = _methods(post) or []
        bad = [p for p in steps if p not in ("crf", "irn")]
        if bad:
            raise typer.BadParameter(f"unknown post-processing step {bad[0]!r} (crf, irn)", param_hint="--post")
        cfg = cfg.with_updates(**{"pseudo.post": steps})
    # the plan is checked (unknown methods or classifier names) before anything is written
    plan.build(cfg, _methods(methods), trained=trained_classifiers(out) if resume else ())
    r = Run.create(out, cfg, force=force, resume=resume)
    run_pipeline(r, _methods(methods))
    _summary(r)


def _overrides(items: list[str]) -> dict:
    """``["amn.crf=true", "maps.multiscale=[1.0, 0.5]"]`` -> ``{"amn.crf": True, ...}`` (values read as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set amn.crf=true")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    return out


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_run"), "--out", help="Run directory; the generated data goes next to it, to OUT_data (e.g. demo_run_data)."),
    quick: bool = typer.Option(
        False, "--quick", help="Fewer images and epochs (about two minutes on 2 cores)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu (default) | auto | cuda"),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, the training and the sampling."),
    benchmark: str = typer.Option(None, "--benchmark", help="Built-in benchmark version (v1, v2; default the newest)."),
    force: bool = ForceOpt,
    resume: bool = ResumeOpt,
):
    """`data synth` + `run` on the built-in benchmark. Example: `wsss demo --quick`."""
    from wsss.run import pipeline
    from wsss.run.rundir import Run

    pipeline.demo(out, quick=quick, device=device, force=force, resume=resume, seed=seed, benchmark=benchmark)
    _summary(Run(out))


@app.command("train-cls")
def train_cls(
    run_dir: Path = RunOpt,
    data: Path = typer.Option(None, "--data", help="Dataset (only to create a new run directory)."),
    labels: Path = LabelsOpt,
    recipe: str = typer.Option(None, "--recipe", help="Training recipe: plain | jigsaw-aug | puzzle (Puzzle-CAM) | "
                               "jigsaw-consistency (ours) | oaa (online attention accumulation); default the "
                               "run's classifier.recipe."),
    jigsaw_aug: float = typer.Option(0.0, "--jigsaw-aug", help="Fraction of training images shuffled."),
    name: str = typer.Option(
        None, "--name", help="Classifier name, the @<name> of result keys (default: the recipe; plain, or "
        "jigsaw-aug with --jigsaw-aug)."
    ),
    config: Path = typer.Option(None, "--config", help="Take the classifier settings of this YAML's classifier "
                                "section (e.g. configs/voc12_resnet50_puzzle.yaml) instead of the run's."),
    set_: list[str] = typer.Option(None, "--set", help="Classifier override KEY=VALUE, repeatable: --set "
                                   "classifier.alpha=2 --set 'classifier.jigsaw_grids=[2,3]'."),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs (default: the run's classifier.epochs)."),
    device: str = DeviceOpt,
):
    """Train the multi-label classifier. Examples: `wsss train-cls --run runs/r1 --jigsaw-aug 0.5`;
    `wsss train-cls --run runs/r1 --recipe puzzle` (then `wsss maps --run runs/r1 --method cam --classifier
    puzzle`, `wsss pseudo --run runs/r1 --method cam@puzzle`); `wsss train-cls --run runs/r1 --recipe oaa`
    (then `--method oaa --classifier oaa`)."""
    from wsss.config import RunConfig
    from wsss.run.pipeline import build_config
    from wsss.run.rundir import Run
    from wsss.run.stages import classifier

    if data is not None and not (run_dir / "config.yaml").exists():
        Run.create(run_dir, build_config(data=str(data), labels=str(labels) if labels else None))
    r = _run(run_dir, device)
    if config is not None:
        r.cfg = r.cfg.model_copy(update={"classifier": RunConfig.load(config).classifier})
    overrides = _overrides(set_) if set_ else {}
    if epochs:
        overrides["classifier.epochs"] = epochs
    chosen = recipe or overrides.get("classifier.recipe") or r.cfg.classifier.recipe
    name = name or (chosen if chosen != "plain" else ("jigsaw-aug" if jigsaw_aug > 0 else "plain"))
    classifier.train(r, name=name, jigsaw_aug=None if "classifier.jigsaw_aug" in overrides else jigsaw_aug,
                     recipe=recipe, overrides=overrides)


@app.command()
def maps(
    run_dir: Path = RunOpt,
    method: str = typer.Option(..., "--method", help="Localization method (see `wsss methods`)."),
    classifier: str = typer.Option("plain", "--classifier", help="Which trained classifier."),
    split: str = typer.Option(None, "--split", help="Split (default: score + tune splits)."),
    device: str = DeviceOpt,
):
    """Localization maps into RUN/maps/<method>/. Resumable; sharded under torchrun.

    Example: `wsss maps --run runs/r1 --method jigsaw`. Several GPUs: `torchrun --nproc-per-node 2 -m wsss maps
    --run-dir runs/r1 --method jigsaw`; under torchrun write --run-dir, not --run (torchrun's own parser takes
    --run for its --run-path)."""
    from wsss.results import ResultKey
    from wsss.run.stages import produce

    r = _run(run_dir, device)
    res = produce.maps_of(r, ResultKey(method, classifier).maps, splits=(split,) if split else None)
    spi = res["seconds_per_image"]
    print(f"maps {ResultKey(method, classifier).maps}: {res['images']} images" + (f", {spi:.4f} s/image" if spi else ""))


@app.command()
def pseudo(
    run_dir: Path = RunOpt,
    method: str = typer.Option(..., "--method", help="Method key, e.g. cam or jigsaw@jigsaw-aug."),
    crf: bool = typer.Option(False, "--crf", help="Refine masks with dense CRF (extra [crf]) at the method's tune-chosen t."),
    crf_sweep: bool = typer.Option(False, "--crf-sweep", help="With --crf: choose t on tune with the CRF, refining at every 0.05 of the sweep (20x slower; for maps whose t without CRF is near 0)."),
    irn: bool = typer.Option(False, "--irn", help="IRN's random walk on the boundary of the method's IRN (`wsss "
                             "train-irn` first): result key <method>+irn, background score chosen on tune."),
    device: str = DeviceOpt,
):
    """Pseudo-masks + threshold sweep + scores into results.json. Example: `wsss pseudo --run runs/r1 --method cam`."""
    from wsss.run.stages import score

    if crf and irn:
        raise typer.BadParameter("--crf and --irn are two result keys: run them one at a time", param_hint="--irn")
    score.pseudo(_run(run_dir, device), method, crf=crf, crf_sweep=crf_sweep, irn=irn)


@app.command("train-amn")
def train_amn(
    run_dir: Path = RunOpt,
    from_maps: str = typer.Option(None, "--from-maps", help="Maps the AMN labels come from (default: the config's amn.from_maps, cam); method name amn-<maps> for others."),
    device: str = DeviceOpt,
):
    """Train AMN on labels from a method's maps. Example: `wsss train-amn --run runs/r1 --from-maps cam`; maps of
    another classifier: `--from-maps cam@puzzle` (AMN starts from that classifier; its method is then amn@puzzle,
    `--from-maps oaa@oaa` gives amn-oaa@oaa)."""
    from wsss.results import ResultKey
    from wsss.run.stages import amn, produce

    r = _run(run_dir, device)
    from_maps = amn.source_key(from_maps or r.cfg.amn.from_maps).maps
    produce.ensure(r, from_maps, (r.cfg.train_split,))
    amn.train(r, from_maps)
    rk = ResultKey.parse(amn.name_for(r, from_maps or r.cfg.amn.from_maps))
    print(f"trained {rk}; next: `wsss maps --run {run_dir} --method {rk.method}"
          + (f" --classifier {rk.classifier}" if rk.classifier != "plain" else "") + f"`, `wsss pseudo --run {run_dir} "
          f"--method {rk}`")


@app.command("train-irn")
def train_irn(
    run_dir: Path = RunOpt,
    from_maps: str = typer.Option(..., "--from-maps", help="Maps the IRN labels come from (a method of the run); "
                                  "the IRN walks that method's maps (`wsss pseudo --method M --irn`)."),
    device: str = DeviceOpt,
):
    """Train IRN's class-boundary branch on labels from a method's maps -> RUN/irn-<maps>.pt.

    Example: `wsss train-irn --run runs/r1 --from-maps cam`, then `wsss pseudo --run runs/r1 --method cam --irn`."""
    from wsss.run.stages import irn

    r = _run(run_dir, device)
    res = irn.train(r, from_maps)
    print(f"IRN on {from_maps}: {res['seconds']:.0f} s ({res['seconds_per_image']:.3f} s per training image) -> "
          f"{irn.checkpoint(r, from_maps)}")


@app.command("train-seg")
def train_seg(
    run_dir: Path = RunOpt,
    masks: str = typer.Option(..., "--masks", help="Method whose pseudo-masks to train on, or gt."),
    device: str = DeviceOpt,
):
    """Train the segmenter on pseudo-masks, score on val. Example: `wsss train-seg --run runs/r1 --masks cam`."""
    from wsss.run.stages import produce, seg

    r = _run(run_dir, device)
    if masks != "gt":
        produce.ensure(r, masks, (r.cfg.train_split,))
    seg.train(r, masks)


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    run_dir: Path = RunOpt,
    masks: str = typer.Option(None, "--masks", help="Which segmenter (default: the first trained)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default RUN/predictions)."),
    multiscale: bool = typer.Option(False, "--multiscale", help="Scales 0.5, 1, 1.5 + flip."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write overlays."),
    device: str = DeviceOpt,
):
    """Segment new images with a trained segmenter. Example: `wsss predict --run runs/r1 photo.jpg`."""
    from wsss.errors import RunDirError
    from wsss.runtime import resolve_device
    from wsss.train.segmenter import predict_paths

    seg_dir = run_dir / "segmenter"
    ckpts = sorted(seg_dir.glob("*.pt")) if seg_dir.is_dir() else []
    if masks:
        from wsss.data import check_id

        reason = check_id(masks)
        if reason:
            raise ConfigError(f"--masks {masks!r} {reason.split(' (')[0]}: a method name (e.g. cam) or gt, not a path")
        trained = [c.stem for c in ckpts]
        if masks not in trained:
            raise RunDirError(f"{seg_dir}: no segmenter trained on {masks!r}; trained: {', '.join(trained) or 'none'} "
                              f"(`wsss train-seg --run {run_dir} --masks {masks}` trains one)")
        ckpts = [seg_dir / f"{masks}.pt"]
    if not ckpts:
        raise RunDirError(
            f"{seg_dir}: no trained segmenter (run `wsss train-seg --run {run_dir} --masks cam`)"
        )
    scales = (0.5, 1.0, 1.5) if multiscale else (1.0,)
    written = predict_paths(
        ckpts[0],
        [str(p) for p in images],
        out or run_dir / "predictions",
        scales=scales,
        flip=multiscale,
        overlay=overlay,
        device=resolve_device(device or "auto"),
    )
    print(f"wrote {len(written)} masks to {out or run_dir / 'predictions'}")


@app.command()
def explain(
    images: list[Path] = typer.Argument(..., help="Image files or folders of images."),
    run_dir: Path = typer.Option(None, "--run", "--run-dir", help="A run whose classifier explains (its classes)."),
    model: str = typer.Option(None, "--model", help="A shipped model instead of a run: efficientnet_lite0-imagenet "
                              "(ImageNet classes; needs the [pretrained] extra)."),
    method: str = typer.Option("cam", "--method", help="Comma-separated methods (see `wsss methods`), e.g. cam,jigsaw."),
    classes: str = typer.Option(None, "--classes", help="Comma-separated class names to show (default: --topk)."),
    topk: int = typer.Option(2, "--topk", help="Show the K classes the model scores highest."),
    out: Path = typer.Option(None, "--out", help="Output folder (default with --run: RUN/explain)."),
    fmt: str = typer.Option("png", "--format", help="Overlay figure format: png | pdf | svg."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling methods."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto"),
):
    """Localization maps for any photo: an overlay per image and method (class legend, colorbar) and the raw maps.
    Example: `wsss explain cat.jpg --model efficientnet_lite0-imagenet --method cam,saliency --topk 2 --out expl`."""
    from wsss.explain import MODELS, imagenet_model
    from wsss.explain import explain as run_explain
    from wsss.runtime import resolve_device

    if (run_dir is None) == (model is None):
        raise ConfigError("give either --run RUN or --model NAME (" + ", ".join(MODELS) + ")")
    if model is not None:
        if model not in MODELS:
            raise ConfigError(f"unknown --model {model!r}; available: {', '.join(MODELS)}")
        if out is None:
            raise ConfigError("--out DIR is needed with --model (with --run the maps go to RUN/explain)")
        net, names = imagenet_model()
    else:
        from wsss.run.stages import classifier

        r = _run(run_dir, device)
        net, names = classifier.load(r), list(r.dataset(r.cfg.train_split).classes[1:])
        out = out or r.path / "explain"
    res = run_explain(images, out, net, names, _methods(method), classes=_methods(classes), topk=topk,
                      device=resolve_device(device), fmt=fmt, seed=seed)
    for entry in res["images"]:
        shown = ", ".join(f"{c['name']} ({c['logit']:.2f})" for c in entry["classes"])
        print(f"{entry['image']}: {shown}")
    print(f"wrote {out} (overlays, raw maps, explain.json)")


@app.command("eval")
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted label PNGs."),
    gt: Path = typer.Option(..., "--gt", help="Folder of ground-truth label PNGs (255 = void)."),
    num_classes: int = typer.Option(
        None, "--num-classes", help="K incl. background (default: from the data)."
    ),
    classes: Path = typer.Option(None, "--classes", help="classes.txt naming the classes (default: the one beside "
                                 "the ground-truth folder, if any)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Score any two folders of label PNGs; per-class IoU by class name, `-`/null for a class in neither folder.
    Example: `wsss eval --pred runs/r1/masks/cam --gt data/synth/SegmentationClass`."""
    from wsss.data.base import read_classes_file
    from wsss.errors import DataError
    from wsss.metrics import VOID, evaluate_folders
    from wsss.run.stages.score import named

    if num_classes is not None and not 1 <= num_classes <= VOID:
        raise ConfigError(f"--num-classes {num_classes}: must lie in 1..{VOID} (classes incl. background; 255 is void)")
    res = evaluate_folders(pred, gt, num_classes)
    if res["miou"] != res["miou"]:  # NaN: no labelled pixel anywhere
        raise DataError(f"{gt}: every ground-truth pixel is void (255); nothing to score")
    names_file = classes or (gt.parent / "classes.txt")
    if names_file.is_file() or classes is not None:
        res["per_class_iou"] = named(res["per_class_iou"], read_classes_file(names_file))
    if as_json:
        print(json.dumps(_nan_to_null({k: res[k] for k in ("miou", "per_class_iou", "pixel_accuracy")}),
                         allow_nan=False))
    else:
        print(
            f"mIoU {100 * res['miou']:.2f}  pixel accuracy {100 * res['pixel_accuracy']:.2f}  "
            f"({res['num_images']} images)"
        )
        for c, v in res["per_class_iou"].items():
            print(f"  {c:>14}: " + ("-  (in neither folder)" if v is None else f"{100 * v:.2f}"))


def _nan_to_null(obj):
    """NaN (and inf) -> None, recursively: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj


@app.command()
def report(run_dir: Path = RunOpt,
           fmt: list[str] = typer.Option(None, "--format", help="Also write the figures as pdf and/or svg "
                                         "(repeatable); png is always written.")):
    """Write RUN/report.md + RUN/figures/ from results.json. Example: `wsss report --run runs/r1`."""
    from wsss.report import write_report

    print(f"wrote {write_report(_run(run_dir), formats=tuple(fmt or ()))} and report.html")


@app.command()
def ablate(
    run_dir: Path = RunOpt,
    group: list[str] = typer.Option(None, "--group", help="Study group(s), repeatable (default: all): 'samples N', "
                                    "'grid schedule', 'options', '2x2 classifier x maps', 'CAM-seeded region filled "
                                    "by', 'randomized weights (sanity)'; defined in wsss/run/study.py."),
    samples: int = typer.Option(16, "--samples", help="N for the sampling methods."),
    jigsaw_aug: float = typer.Option(0.5, "--jigsaw-aug", help="P for the jigsaw-augmented classifier."),
    region_grid: bool = typer.Option(False, "--region-grid", help="Seed threshold x dilation of the CAM-seeded "
                                     "region, from stored maps (chosen on tune)."),
    fusion_grid: bool = typer.Option(False, "--fusion-grid", help="CAM fused with each stored gradient map "
                                     "(max, mean, geo, cam-weighted), chosen on tune."),
    fillers: list[str] = typer.Option(None, "--filler", help="Maps for --fusion-grid / --region-grid (repeatable): a "
                                      "method of the run or a study variant, e.g. 'jigsaw grids=(8,)' (default: "
                                      "jigsaw, saliency, smoothgrad, cropsal)."),
    fusion_base: str = typer.Option("cam", "--fusion-base", help="The CAM maps --fusion-grid fuses with (a method "
                                    "or a study variant, e.g. cam@jigsaw-aug)."),
    norm_grid: bool = typer.Option(False, "--norm-grid", help="Every stored method scored with max and p99 "
                                   "normalization (chosen on tune)."),
    amn_grid: bool = typer.Option(False, "--amn-grid", help="AMN: CRF labels on/off x learning rate x1/x10/x30 "
                                  "(chosen on tune)."),
    device: str = DeviceOpt,
):
    """The jigsaw study into results.json["ablation"] + the report. Example: `wsss ablate --run runs/r1 --group 'samples N'`."""
    from wsss.report import write_report
    from wsss.run import study

    r = _run(run_dir, device)
    fill = {"fillers": tuple(fillers)} if fillers else {}
    missing = [f for f in fillers or () if not study.stored_maps_dir(r, f).is_dir()]
    if missing:
        raise ConfigError(f"--filler {missing[0]!r}: no stored maps in {r.path / 'maps'} (a method of the run "
                          "or a study variant that was run)")
    if region_grid:
        study.region_grid(r, **fill)
    if fusion_grid:
        study.fusion_grid(r, base=fusion_base, **fill)
    if amn_grid:
        study.amn_grid(r)
    if norm_grid:
        study.normalization_grid(r)
    if group or not (region_grid or fusion_grid or amn_grid or norm_grid):
        study.run_ablation(r, groups=group or None, samples=samples, jigsaw_aug=jigsaw_aug)
    print(f"wrote {write_report(r)}")


@app.command()
def bench(
    arch: str = typer.Option("smallcnn", "--arch", help="Network."),
    size: int = typer.Option(96, "--size", help="Image side."),
    samples: int = typer.Option(16, "--samples", help="N for the sampling methods."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
):
    """Localizer throughput. Ratios to one forward + one input-gradient backward. Example: `wsss bench`."""
    from wsss.bench import format_bench, run_bench

    print(format_bench(run_bench(arch=arch, size=size, samples=samples, device=device, out=out)))


@app.command()
def summarize(
    runs: list[Path] = typer.Argument(..., help="Run directories of the same study with different seeds."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """Mean +- sd over runs (seeds) of every method's scores. Example: `wsss summarize runs/s0 runs/s1 runs/s2`."""
    from wsss.report.summary import summarize_runs
    from wsss.run.rundir import Run

    table = summarize_runs([Run(r) for r in runs])
    if as_json:
        print(json.dumps(table, indent=1))
        return
    print(f"{len(runs)} runs; mean +- sd (percent)")
    kw = max([22, *(len(k) + 2 for k in table["methods"])])
    print(f"{'method':<{kw}}{'mIoU@fixed':>20}{'best':>20}{'precision':>20}{'recall':>20}{'NDR recall':>20}"
          f"{'robust width':>22}")
    for key, row in sorted(table["methods"].items(), key=lambda kv: -kv[1]["miou"]["mean"]):
        cells = [row[c] for c in ("miou", "best", "precision", "recall", "ndr_recall")]
        w = row.get("robust_width")
        width = "-" if w is None else f"{w['mean']:.2f} +- {w['sd']:.2f}"
        print(f"{key:<{kw}}" + "".join(f"{_pm(c):>20}" for c in cells) + f"{width:>22}")
    print(f"\n{'threshold robustness':<{kw}}{'AP':>20}{'oracle-t mIoU':>20}{'spread t=0.1..0.5':>20}")
    for key, row in sorted(table["methods"].items(), key=lambda kv: -kv[1]["miou"]["mean"]):
        print(f"{key:<{kw}}" + "".join(f"{_pm(row.get(c)):>20}" for c in ("ap", "oracle_miou", "spread")))
    for key, row in sorted(table["segmentation"].items()):
        print(f"segmenter on {key:<12} val mIoU {_pm(row)}")
    if table["study"]:
        print("study entries (wsss ablate; t chosen on tune), mIoU@fixed:")
        for key, row in sorted(table["study"].items(), key=lambda kv: -(kv[1]["miou"] or {"mean": 0})["mean"]):
            print(f"  {key:<44}{_pm(row['miou']):>20}   P {_pm(row['precision'])}   R {_pm(row['recall'])}")


def _pm(c) -> str:
    return "-" if c is None or c["mean"] is None else f"{100 * c['mean']:.1f} +- {100 * c['sd']:.1f} (n={c['n']})"


@app.command()
def methods():
    """List the localization methods and networks."""
    from wsss import localize, models

    print("methods:")
    for spec in localize.specs():
        tags = [spec.normalization + " norm"] + (["stochastic"] if spec.stochastic else [])
        tags += [f"fuses {', '.join(spec.inputs)}"] if spec.is_fusion else []
        tags += ["needs a trained AMN"] if spec.requires == "amn" else []
        tags += ["reads the classifier's training outputs"] if spec.requires == "checkpoint" else []
        print(f"  {spec.name:<14}{spec.summary} ({'; '.join(tags)})")
    print("  amn-<method>  AMN trained on <method>'s maps (e.g. amn-jigsaw-cam; `amn` uses amn.from_maps)")
    print("networks: " + ", ".join(models.available()))


def _summary(r) -> None:
    """The end-of-run table, formatted by the report's helpers."""
    from wsss.report.tables import num, pct

    res = r.typed_results()
    w = max([24, *(len(k) + 2 for k in res.methods)])
    print(f"\n{'method':<{w}}{'mIoU@fixed':>11}{'best':>7}{'t':>6}{'prec':>7}{'rec':>7}{'width':>7}{'NDR':>7}{'s/img':>9}")
    for k, m in sorted(res.methods.items(), key=lambda kv: -kv[1].fixed.miou):
        print(f"{k:<{w}}{pct(m.fixed.miou):>11}{pct(m.best.miou):>7}{num(m.fixed.t):>6}{pct(m.fixed.precision):>7}"
              f"{pct(m.fixed.recall):>7}{num(m.robust_width):>7}{pct(m.ndr_recall):>7}{num(m.seconds_per_image, '.4f'):>9}")
    for k, seg in res.segmentation.items():
        print(f"segmenter on {k}: val mIoU {pct(seg.val_miou)}")
    if "total" in res.timings:
        print(f"total {res.timings['total']:.0f} s; report: {r.path / 'report.md'} (and report.html)")


if __name__ == "__main__":
    main()
