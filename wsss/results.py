"""The ``results.json`` schema: result keys and typed records (scores are fractions in [0, 1], times seconds).

A method result is keyed ``<method>[+<post>][@<classifier>]``: ``cam``, ``jigsaw@jigsaw-aug``, ``cam+crf``.
:class:`ResultKey` is the one parser of that key; :class:`Results` reads a whole file. The stages write
records through these models (so a percent or a missing score is caught where it is written); the report
and the multi-seed summary read them. Both sit above this module, which imports nothing of the toolkit.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wsss.errors import RunDirError, first_error

POSTS = ("crf", "irn")
"""Post-processing steps a result key may name (``cam+crf``)."""


@dataclasses.dataclass(frozen=True)
class ResultKey:
    """``<method>[+<post>][@<classifier>]``; ``classifier`` is ``plain`` when absent."""

    method: str
    classifier: str = "plain"
    post: str | None = None

    @classmethod
    def parse(cls, key: str) -> ResultKey:
        base, _, clf = str(key).partition("@")
        method, _, post = base.partition("+")
        if not method or (post and post not in POSTS):
            raise ValueError(f"invalid result key {key!r}: expected <method>[+crf|+irn][@<classifier>]")
        return cls(method, clf or "plain", post or None)

    def __str__(self) -> str:
        return self.with_post(self.post).maps

    def with_post(self, post: str | None) -> ResultKey:
        return dataclasses.replace(self, post=post)

    @property
    def maps(self) -> str:
        """The folder name of the maps (``RUN/maps/<maps>``), or of the masks with a post step."""
        base = f"{self.method}+{self.post}" if self.post else self.method
        return base if self.classifier == "plain" else f"{base}@{self.classifier}"

    @property
    def maps_key(self) -> str:
        """The key of the maps this result is made from (no post-processing)."""
        return dataclasses.replace(self, post=None).maps


def _fraction(v):
    if v is not None and not -1e-9 <= v <= 1 + 1e-9:
        raise ValueError(f"{v} is not a fraction in [0, 1]")
    return v


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class SweepPoint(_Record):
    t: float
    miou: float
    precision: float
    recall: float

    _check = field_validator("miou", "precision", "recall")(_fraction)


class FixedPoint(SweepPoint):
    chosen_on: str | None = "self"


class BestPoint(_Record):
    t: float
    miou: float

    _check = field_validator("miou")(_fraction)


class TuneSummary(_Record):
    split: str
    best: BestPoint
    robust_width: float | None = None


class MethodResult(_Record):
    """Scores of one method's pseudo-masks on the score split (``results["methods"][key]``)."""

    split: str
    sweep: list[SweepPoint]
    best: BestPoint
    fixed: FixedPoint
    robust_width: float | None = None
    per_class_iou: dict[str, float | None] = Field(default_factory=dict)
    spread_0_1_0_5: float | None = Field(default=None, alias="spread_0.1_0.5")
    tune: TuneSummary | None = None
    ap: float | None = None
    oracle_miou: float | None = None
    ndr_recall: float | None = None
    seconds_per_image: float | None = None
    normalization: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    _check = field_validator("ap", "oracle_miou", "ndr_recall", "spread_0_1_0_5")(_fraction)

    @property
    def activation_hist(self) -> dict | None:
        """``{"bins", "fg", "bg"}`` counts of normalized map values inside objects / on background."""
        return (self.model_extra or {}).get("activation_hist")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=False)


class StudyEntry(_Record):
    """One scored variant of the study (``results["ablation"]["variants"][name]`` and the grids)."""

    tune_miou: float | None = None
    fixed_t: float
    miou: float
    best_miou: float
    precision: float
    recall: float
    ndr_recall: float | None = None
    ap: float | None = None
    robust_width: float | None = None
    seconds_per_image: float | None = None

    _check = field_validator("tune_miou", "miou", "best_miou", "precision", "recall", "ndr_recall", "ap")(_fraction)

    @classmethod
    def from_method(cls, res: MethodResult, **extra) -> StudyEntry:
        """The fields a study entry keeps of a method result (t chosen on tune)."""
        return cls(
            tune_miou=res.tune.best.miou if res.tune else None,
            fixed_t=res.fixed.t,
            miou=res.fixed.miou,
            best_miou=res.best.miou,
            precision=res.fixed.precision,
            recall=res.fixed.recall,
            ndr_recall=res.ndr_recall,
            ap=res.ap,
            robust_width=res.robust_width,
            **extra,
        )


class SegResult(_Record):
    """A segmenter trained on one method's masks (``results["segmentation"][masks]``), scored on val."""

    val_miou: float | None = None
    seconds: float | None = None

    _check = field_validator("val_miou")(_fraction)


class Results(_Record):
    """A whole ``results.json``."""

    methods: dict[str, MethodResult] = Field(default_factory=dict)
    segmentation: dict[str, SegResult] = Field(default_factory=dict)
    classifiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    amn: dict[str, Any] | None = None
    amn_variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    irn: dict[str, dict[str, Any]] = Field(default_factory=dict)  # IRN trained on each maps key (wsss train-irn)
    ablation: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> Results:
        """Read and validate ``path`` (an absent file is an empty result); one-line errors name the file."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            raise RunDirError(f"{path}: corrupt results file ({first})") from None
        return cls.check(data, path)

    @classmethod
    def check(cls, data: Any, path: str | Path) -> Results:
        """``data`` (a parsed results.json) validated; RunDirError naming ``path`` and the first bad key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RunDirError(f"{path}: corrupt results file ({first_error(exc)})") from None
