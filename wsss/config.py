"""Typed configuration of a run, dumped to ``RUN/config.yaml``: every stage's settings in one place.

A method's own options (``maps.options.<method>``) default to its localizer's keyword defaults (``wsss methods``
lists the methods) and are checked against its spec when a config is loaded. The defaults are set for the
built-in benchmark (the ones that were tuned, on its ``tune`` split, say so where they are); ``configs/*.yaml``
hold the real-data presets (``wsss run --config FILE``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wsss.errors import ConfigError, first_error


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifierConfig(_Model):
    arch: str = "smallcnn"
    pretrained: str | None = None  # None, "imagenet" or a state_dict path
    output_stride: int | None = None  # for architectures that take it (resnet*, efficientnet_lite0)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    head_lr_mult: float = 1.0  # IRN uses 10x on the classifier head
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    schedule: Literal["cosine", "poly"] = "cosine"
    crop: int | None = None  # None: the median short side of the training images, at most 512 (train.common)
    resize_long: tuple[int, int] | None = None  # IRN: long side in [320, 640] before cropping
    scale: tuple[float, float] = (0.8, 1.2)
    flip: bool = True
    jigsaw_aug: float = 0.0  # fraction of training images shuffled (wsss train-cls --jigsaw-aug P)
    jigsaw_grids: tuple[int, ...] = (2, 3, 4)
    freeze_bn: bool = False  # IRN: batch-norm statistics frozen
    # Children of ``model.features`` whose parameters are not trained. IRN's train_cam freezes conv1 and
    # detaches the output of its stage 2 (= our stem, stage1, stage2), so no gradient reaches them; freezing
    # the parameters gives the same updates and, unlike a detach inside ``forward``, keeps the input
    # gradients that the gradient-based localizers need.
    freeze: tuple[str, ...] = ()
    num_workers: int = 0
    name: str = "plain"  # results key suffix: <method>@<name>
    # Training recipe (wsss/train/recipes.py). "plain": BCE (+ the legacy jigsaw_aug shuffles when > 0);
    # "jigsaw-aug": the same, jigsaw_aug > 0 required; "puzzle": Puzzle-CAM (Jo & Yu 2021); "jigsaw-consistency":
    # Puzzle-CAM's consistency with random jigsaw shuffles (ours); "oaa": BCE + online attention accumulation
    # (Jiang et al. 2019), maps written next to the checkpoint.
    recipe: Literal["plain", "jigsaw-aug", "puzzle", "jigsaw-consistency", "oaa"] = "plain"
    alpha: float = 4.0  # weight of the CAM consistency term (puzzle, jigsaw-consistency); Puzzle-CAM: 4
    # fraction of the training steps over which alpha rises linearly from 0 (0: alpha from the first step); None:
    # the recipe's own (RECIPE_ALPHA_RAMP): puzzle 0.5 as published; jigsaw-consistency 0, chosen on the built-in
    # benchmark's tune split (CAM tune mIoU 67.6 with no ramp vs 60.1 with 0.5, seed 0; 64.8 +- 3.2 over 3 seeds)
    alpha_ramp: float | None = None
    puzzle_grid: int = 2  # puzzle: a grid x grid split into tiles (Puzzle-CAM: 2, i.e. 4 pieces)
    warmup_epochs: int = 1  # oaa: epochs trained before the first accumulation
    oaa_filter: bool = True  # oaa: fuse a class only when it is among the image's top-|labels| predictions
    snapshot_epochs: tuple[int, ...] = ()  # 1-based epochs after which a snapshot checkpoint is saved

    @property
    def ramp(self) -> float:
        """``alpha_ramp``, or the recipe's own when it is unset."""
        return RECIPE_ALPHA_RAMP.get(self.recipe, 0.0) if self.alpha_ramp is None else self.alpha_ramp


RECIPE_ALPHA_RAMP = {"puzzle": 0.5, "jigsaw-consistency": 0.0}
"""Each consistency recipe's ``alpha_ramp`` when the config leaves it unset."""
RECIPES = get_args(ClassifierConfig.model_fields["recipe"].annotation)
"""The training recipes (``classifier.recipe``); a recipe's name is also a classifier name of ``wsss run``
(``cam@jigsaw-consistency``: CAM of a second classifier trained with that recipe)."""


class MapsConfig(_Model):
    methods: list[str] = Field(
        default_factory=lambda: [
            "cam",
            "gradcam",
            "saliency",
            "smoothgrad",
            "cropsal",
            "jigsaw",
            "jigsaw-cam",
            "amn",
            # ours, round two: CAM of a second classifier trained with the jigsaw-consistency recipe (the best map
            # without post-processing of the benchmark-v2 study, chosen on tune; trained after the run's own)
            "cam@jigsaw-consistency",
        ]
    )
    # per-method localizer options, checked against each method's spec when the config is loaded
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    batch_size: int = 16
    multiscale: tuple[float, ...] = (1.0,)  # IRN/AMN protocol on real data: (1.0, 0.5, 1.5, 2.0)
    flip: bool = False
    amp: bool = False  # bfloat16 autocast on CUDA


class PseudoConfig(_Model):
    normalization: dict[str, Literal["max", "p99"]] = Field(default_factory=dict)  # per method; default below
    # the swept thresholds t_start, t_start + t_step, ..., t_stop; fine and from 0 because max-normalized CAMs
    # are best at t <= 0.05 on the built-in benchmark (a 0.05 grid from 0.05 cut off CAM's optimum)
    t_start: float = 0.0
    t_stop: float = 0.95
    t_step: float = 0.01
    ndr_threshold: float = 0.5
    ndr_reference: str = "cam"  # the method whose normalized map >= ndr_threshold is the discriminative region
    # post-processing scored for every method of `wsss run` (result keys <method>+crf, <method>+irn)
    post: tuple[Literal["crf", "irn"], ...] = ()

    def norm_for(self, key: str) -> str:
        """The normalization of a result key's maps: the config's override, else the method's spec."""
        from wsss.localize import spec
        from wsss.results import ResultKey

        rk = ResultKey.parse(key)
        if rk.post == "irn":  # stored walk scores, already normalized as IRN (wsss.run.stages.irn)
            return "none"
        return self.normalization.get(rk.method) or spec(rk.method).normalization


class AMNConfig(_Model):
    from_maps: str = "cam"
    epochs: int = 5
    batch_size: int = 16
    # The official 5e-6 / 1e-4, chosen on benchmark v2's tune split (`wsss ablate --amn-grid`: x1 / x10 / x30,
    # CRF labels on / off; on v1's tune x10 had won, the default of the first two sessions)
    lr_backbone: float = 5e-6
    lr_head: float = 1e-4
    weight_decay: float = 1e-4
    fg_threshold: float = 0.30
    bg_threshold: float = 0.05
    smoothing: float = 0.4
    crf: bool | Literal["auto"] = False  # "auto": dense-CRF labels when the [crf] extra is installed
    crf_sxy: float | None = None  # the labels' CRF bilateral width (as irn.crf_sxy; None: scaled to the image)
    crop: int | None = None
    scale: tuple[float, float] = (0.5, 1.5)
    eval_threshold: float = 0.25
    aspp_rates: tuple[int, ...] | None = None  # None: scaled to the feature size
    normalization: Literal["max", "p99"] = "max"  # of the maps the labels come from (IRN: max)
    flip: bool = True
    freeze_bn: bool = True  # official: backbone batch-norm statistics frozen (IRN's FixedBatchNorm)
    freeze_stem: bool = True  # official: the first conv + bn of the backbone are not trained
    num_workers: int = 0


class IRNConfig(_Model):
    """IRN (Ahn et al. CVPR 2019), semantic path: the class-boundary branch trained on IR labels of a method's
    maps, then the random walk (:mod:`wsss.train.irn`, :mod:`wsss.irn`). Defaults are the paper's / official
    code's (VOC) except where marked "benchmark" (chosen on benchmark v2's ``tune`` split, README).

    ``from_maps``: ``self`` = every method ``M`` gets the IRN trained on ``M``'s own maps (``RUN/irn-<M>.pt``:
    IRN's protocol for CAM, AMN's for AMN); a method name = one IRN, trained on that method's maps, gives the
    boundary of every method's walk. ``presets``: per source method (exact name; ``amn`` also covers every
    AMN method, ``amn-<maps>``) overrides of the fields below, applied where IRN is trained on, or walks, that
    method's maps (:func:`irn_settings`); the AMN preset is AMN's ``run_sample.py``: labels fg 0.45 / bg 0.15
    and the walked maps raised to 1.3.
    """

    from_maps: str = "self"
    presets: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"amn": {"fg_threshold": 0.45, "bg_threshold": 0.15, "power": 1.3}}
    )
    # labels (IRN's cam_to_ir_label, :class:`wsss.train.amn.IRLabels`)
    fg_threshold: float = 0.30
    bg_threshold: float = 0.05
    crf: bool | Literal["auto"] = "auto"  # IRN refines both label maps by dense CRF ("auto": if [crf] installed)
    # its bilateral width in pixels; None: IRN's 50 px at 500 px scaled to the image (50 x longer side / 500;
    # chosen on the benchmark's tune split: 66.7 tune mIoU scaled vs 34.5 with 50 px, which keeps 1.9 % of the
    # training pixels as confident foreground instead of 10.2 % on its 160 px images)
    crf_sxy: float | None = None
    normalization: Literal["max", "p99"] = "max"
    # training (IRN: crop 512, batch 32, 3 epochs, lr 0.1, wd 1e-4, rescale 0.5-1.5)
    radius: int = 5  # benchmark (IRN: 10 at stride 4 = 40 px on ~500 px images; 5 = 20 px on 160 px)
    epochs: int = 6  # benchmark (IRN: 3 epochs of 10,582 images; 480 images here)
    batch_size: int = 16  # benchmark (IRN: 32)
    lr: float = 0.1
    head_lr_mult: float = 1.0
    weight_decay: float = 1e-4
    crop: int | None = None  # None: the image side of the first training image (IRN: 512)
    scale: tuple[float, float] = (0.5, 1.5)
    flip: bool = True
    stride: int = 4
    taps: tuple[str, ...] | None = None  # backbone children read (None: all but normalization)
    num_workers: int = 0
    # random walk (IRN's make_sem_seg_labels)
    walk_radius: int = 5
    beta: float = 10.0
    exp_times: int = 8  # 2 ** exp_times steps
    power: float = 1.0  # the walked maps raised to this power first (AMN: 1.3)
    # background score after the walk; None: chosen on the tune split per method (swept like a method's t)
    sem_seg_bg: float | None = None
    walk_norm: Literal["global", "class"] = "global"  # IRN: divide by the max over all classes
    max_bytes: int | None = 256 * 2**20  # working-set bound of the walk (None: unbounded, fastest)
    flip_boundary: bool = True  # IRN's inference averages the boundary of the image and its flip

    @model_validator(mode="after")
    def _check_presets(self) -> IRNConfig:
        settable = set(PRESET_FIELDS)
        for method, preset in self.presets.items():
            bad = sorted(set(preset) - settable)
            if bad:
                raise ValueError(f"irn.presets.{method}.{bad[0]}: a preset sets {', '.join(PRESET_FIELDS)}")
        return self


PRESET_FIELDS = ("fg_threshold", "bg_threshold", "power", "sem_seg_bg", "beta")


def irn_settings(cfg: IRNConfig, method: str) -> IRNConfig:
    """``cfg`` with the preset of ``method`` (its exact name, else ``amn`` for an AMN method) applied."""
    preset = cfg.presets.get(method)
    if preset is None and method.startswith("amn-"):
        preset = cfg.presets.get("amn")
    return cfg.model_copy(update=dict(preset)) if preset else cfg


class SegConfig(_Model):
    arch: str = "deeplab_small"  # real data: deeplabv3_resnet50 (configs/*.yaml)
    pretrained: str | None = None
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    crop: int | None = None
    scale: tuple[float, float] = (0.7, 1.3)
    methods: list[str] = Field(default_factory=lambda: ["cam", "jigsaw-cam", "amn"])  # masks to train on
    ground_truth: bool = True  # also train on true masks (the fully supervised bound)
    output_stride: int | None = None  # None: the architecture's default (deeplabv3_resnet50: 16 or 8)
    optimizer: Literal["adamw", "sgd"] = "adamw"  # DeepLab on real data: sgd, lr 0.01-0.007, head_lr_mult 10
    head_lr_mult: float = 1.0  # lr multiplier of the layers after the backbone (ASPP, classifier)
    flip: bool = True
    eval_scales: tuple[float, ...] = (1.0,)  # DeepLab protocol on real data: (0.5, 0.75, 1.0, 1.25, 1.5)
    eval_flip: bool = False
    num_workers: int = 0


class RunConfig(_Model):
    data: str = ""
    format: Literal["auto", "voc", "coco", "folder"] = "auto"  # auto: the layout found in the folder
    labels: str | None = None  # image-level labels file (JSON, CSV) instead of labels from masks
    train_split: str = "train_aug"
    score_split: str = "train"
    tune_split: str = "tune"
    val_split: str = "val"
    seed: int = 0
    device: str = "auto"
    # convolutions in the channels-last memory format (faster on CPU; not bit-identical to the default layout)
    channels_last: bool = False
    quick: bool = False
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    # Named classifiers beside the run's own: ``<method>@<name>`` in maps.methods trains classifier <name> with
    # these classifier.* settings over the run's classifier config (e.g. {jc-a1: {recipe: jigsaw-consistency,
    # alpha: 1}}). A recipe's name needs no entry: ``cam@puzzle`` trains recipe puzzle.
    classifiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    maps: MapsConfig = Field(default_factory=MapsConfig)
    pseudo: PseudoConfig = Field(default_factory=PseudoConfig)
    amn: AMNConfig = Field(default_factory=AMNConfig)
    irn: IRNConfig = Field(default_factory=IRNConfig)
    seg: SegConfig = Field(default_factory=SegConfig)
    train_segmenter: bool = True
    # Images (and masks) whose longer side exceeds this many pixels are downscaled when read (aspect kept);
    # None reads every image at full size (a huge image then fails in maps naming the file and its size).
    max_side: int | None = None

    @model_validator(mode="after")
    def _check_methods(self) -> RunConfig:
        check_ranges(self)
        check_methods(self.maps.methods, self.maps.options)
        for name in self.classifiers:
            if name == "plain":
                raise ConfigError("classifiers.plain: the run's own classifier is set under classifier")
            self.classifier_config(name)
        return self

    def defines_classifier(self, name: str) -> bool:
        """Whether the config says how classifier ``name`` trains: the run's own (``plain``), a recipe's name, or a
        ``classifiers`` entry."""
        return name == "plain" or name in self.classifiers or name in RECIPES

    def classifier_config(self, name: str = "plain") -> ClassifierConfig:
        """The config classifier ``name`` trains with: the run's classifier config for ``plain``; for another name
        its ``classifiers`` entry over it (recipe: the name when it is a recipe's), or the recipe of that name.
        ConfigError for a name that is neither."""
        if name == "plain":
            return self.classifier
        if not _NAME.fullmatch(name):
            raise ConfigError(f"classifier name {name!r}: use letters, digits, '-' and '_' only")
        if not self.defines_classifier(name):
            raise ConfigError(f"unknown classifier {name!r}: name a recipe ({', '.join(RECIPES)}), set its "
                              f"classifier.* settings under classifiers.{name} in the config, or train it first "
                              f"(wsss train-cls --run RUN --name {name})")
        settings = dict(self.classifiers.get(name, {}))
        bad = sorted(k for k in settings if k not in ClassifierConfig.model_fields or k == "name")
        if bad:
            raise ConfigError(f"invalid option classifiers.{name}.{bad[0]}: not a classifier setting")
        settings.setdefault("recipe", name if name in RECIPES else self.classifier.recipe)
        try:
            return ClassifierConfig.model_validate({**self.classifier.model_dump(), **settings, "name": name})
        except ValidationError as exc:
            raise ConfigError(f"invalid option classifiers.{name}.{first_error(exc)}") from None

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        if not path.is_file():
            raise ConfigError(f"{path}: is a folder, not a config file")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            if not isinstance(raw, dict):
                raise ConfigError("not a YAML mapping of config keys")
            return cls.model_validate(raw)
        except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()
            raise ConfigError(f"{path}: invalid config ({' '.join(first[:3])})") from None
        except ConfigError as exc:
            raise ConfigError(f"{path}: invalid config ({exc})") from None

    def with_updates(self, **updates: Any) -> RunConfig:
        """A copy with dotted keys updated, validated: ``with_updates(**{"classifier.epochs": 3})``."""
        raw = self.model_dump()
        for key, value in updates.items():
            node = raw
            *parents, leaf = key.split(".")
            for depth, p in enumerate(parents):
                if depth == 2 and parents[:2] == ["maps", "options"] and p not in node:
                    node[p] = {}  # maps.options.<method>: a method's options need no prior entry
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"invalid option {key!r}: no config section {p!r}")
                node = node[p]
            node[leaf] = value
        try:
            return RunConfig.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"invalid option {first_error(exc)}") from None


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _positive(v) -> bool:
    return v > 0


def _nonneg(v) -> bool:
    return v >= 0


def _fraction(v) -> bool:
    return 0 <= v <= 1


def _range(v) -> bool:
    return len(v) == 2 and 0 < v[0] <= v[1]


RANGES: tuple[tuple[str, object, str], ...] = (
    *((f"{s}.epochs", _positive, "> 0") for s in ("classifier", "amn", "seg")),
    *((f"{s}.batch_size", _positive, "> 0") for s in ("classifier", "maps", "amn", "seg")),
    *((f"{s}.num_workers", _nonneg, ">= 0") for s in ("classifier", "amn", "seg")),
    *((f"{s}.crop", _positive, "> 0 (or null: from the data)") for s in ("classifier", "amn", "seg")),
    *((f"{s}.scale", _range, "LO,HI with 0 < LO <= HI") for s in ("classifier", "amn", "seg")),
    *(("classifier.lr", _positive, "> 0"), ("seg.lr", _positive, "> 0"), ("amn.lr_head", _positive, "> 0"),
      ("amn.lr_backbone", _nonneg, ">= 0")),
    *((f"{s}.weight_decay", _nonneg, ">= 0") for s in ("classifier", "amn", "seg")),
    ("classifier.jigsaw_aug", _fraction, "in [0, 1]"),
    ("pseudo.t_start", _fraction, "in [0, 1]"),
    ("pseudo.t_stop", _fraction, "in [0, 1]"),
    ("pseudo.t_step", lambda v: v >= 0.01, ">= 0.01 (thresholds are kept to 2 decimals)"),
    ("pseudo.ndr_threshold", _fraction, "in [0, 1]"),
    ("amn.fg_threshold", _fraction, "in [0, 1]"),
    ("amn.bg_threshold", _fraction, "in [0, 1]"),
    ("amn.eval_threshold", _fraction, "in [0, 1]"),
    ("maps.multiscale", lambda v: len(v) > 0 and all(x > 0 for x in v), "one or more scales > 0"),
    ("seg.eval_scales", lambda v: len(v) > 0 and all(x > 0 for x in v), "one or more scales > 0"),
    ("max_side", lambda v: v >= 16, ">= 16 pixels (or null: full size)"),
)
"""``(dotted key, check, what it must be)``: value ranges checked when a config is built or loaded, so a bad
value is found before anything trains (None values, where allowed, are not checked)."""


def check_ranges(cfg: RunConfig) -> None:
    """Every :data:`RANGES` entry, then the relations between keys; ConfigError naming the key."""
    for key, ok, what in RANGES:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if node is not None and not ok(node):
            raise ConfigError(f"invalid option {key}: must be {what}, got {node!r}")
    p = cfg.pseudo
    if p.t_start > p.t_stop:
        raise ConfigError(f"invalid option pseudo.t_start: must be <= pseudo.t_stop ({p.t_start} > {p.t_stop})")
    if cfg.amn.bg_threshold > cfg.amn.fg_threshold:
        raise ConfigError(f"invalid option amn.bg_threshold: must be <= amn.fg_threshold "
                          f"({cfg.amn.bg_threshold} > {cfg.amn.fg_threshold})")
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:") and cfg.device[5:].isdigit()):
        raise ConfigError(f"invalid option device: must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")


FUSION_OPTIONS = ("fusion", "filler", "seed_threshold", "dilation")
"""What a run config may set for a fusion method; its inputs' maps are computed with their own options."""


def check_methods(methods: list[str], options: dict[str, dict[str, Any]]) -> None:
    """Every method known (``amn-<method>`` included) and every option valid for its method: a typo is found
    when the config is loaded, not after the classifier trained."""
    from wsss.localize import spec
    from wsss.results import ResultKey

    for key in methods:  # <method>[@<classifier>]; the classifier name is checked when the run is planned
        try:
            rk = ResultKey.parse(key)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if rk.post:
            raise ConfigError(f"method {key!r}: post-processing is not a method; ask for it with --post {rk.post} "
                              f"(pseudo.post)")
        spec(rk.method)
    for name in options:
        spec(name)
    for name, opts in options.items():
        s = spec(name)
        if s.is_fusion:
            bad = sorted(set(opts) - set(FUSION_OPTIONS))
            if bad:
                raise ConfigError(
                    f"maps.options.{name}.{bad[0]}: {name} fuses the stored maps of {' and '.join(s.inputs)}; set "
                    f"the option on the input method (e.g. maps.options.{s.inputs[-1]}.{bad[0]}); a fusion takes "
                    f"{', '.join(FUSION_OPTIONS)}")
            filler = opts.get("filler")
            if filler is not None:
                spec(filler)
            rest = {k: v for k, v in opts.items() if k != "filler"}
            s.validate(rest)
        elif s.requires == "classifier":
            s.validate(opts)


def quick_options(options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's ``--quick`` options (its spec's) under the options already set."""
    from wsss.localize import specs

    out = {s.name: dict(s.quick) for s in specs() if s.quick}
    for name, opts in options.items():
        out[name] = {**out.get(name, {}), **opts}
    return out


def quick_profile(cfg: RunConfig) -> RunConfig:
    """``--quick``: the same stages with less work (for a first look in under two minutes)."""
    return cfg.with_updates(
        **{
            "quick": True,
            "classifier.epochs": min(cfg.classifier.epochs, 25),
            "amn.epochs": min(cfg.amn.epochs, 2),
            "irn.epochs": min(cfg.irn.epochs, 2),
            "seg.epochs": min(cfg.seg.epochs, 10),
            "seg.methods": [m for m in cfg.seg.methods if m == "cam"],
            "maps.options": quick_options(cfg.maps.options),
        }
    )
