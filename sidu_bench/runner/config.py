"""A run's configuration, its protocol object, and the resume check.

``config.json`` holds the full configuration of a run folder. Its ``protocol`` object is what
makes numbers comparable across runs (insertion/deletion steps and substrates, the pointing-game
tolerance rule, the target rule, the dtype and the float32 precision); ``protocol_version``
changes only when the protocol itself does. Resuming into a folder whose stored configuration
differs in any field that changes numbers is refused, naming those fields.

One rule decides what is protocol: what changes results beyond the faithfulness gate's
tolerances (dtype, precision) is protocol; what changes them only within float tolerance (the
device, the CPU forward backend) is environment, recorded per run (``environment``) and per
record, and may differ when a run is resumed. The summary statistics are recomputed from the
records (``python -m sidu_bench summarise``), so they are described beside the protocol
(``statistics``) and never block a resume.

Protocol versions: 1 (the first reference runs) carried the statistics inside the protocol and
had no precision; 2 adds ``precision`` and moves ``statistics`` out. Version-1 folders stay
readable by ``summarise``, ``compare`` and ``report``; resuming one is refused (its protocol
differs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Literal, get_args

import torch

from sidu.backends import BACKENDS
from sidu.precision import DTYPES, PRECISIONS, parse_dtype
from sidu_bench.errors import ParameterError, check_choice
from sidu_bench.io import environment, write_json
from sidu_bench.metrics import ScoringSettings, protocol_entries
from sidu_bench.stats import CONFIDENCE, FAMILYWISE_ALPHA, RESAMPLES

PROTOCOL_VERSION = 2
CONFIG_FILE = "config.json"
RESUMABLE_FIELDS = ("limit", "explainers", "batch_size", "device", "root", "download", "backend")
"""Fields that may change when a run is resumed: they select work, not how it is scored."""

DESCRIPTIVE_FIELDS = (
    "environment",
    "statistics",
    "model_reason",
    "explainer_provenance",
    "plugins",
)
"""Fields that describe a run but never block a resume (see the module docstring)."""

EARLIER_ENVIRONMENTS = "earlier_environments"
"""Key of the environments of earlier sessions of a resumed run (oldest first)."""

Target = Literal["pred", "label"]
"""What is explained: the model's prediction or the data set's label."""
DtypeName = Literal["float32", "bfloat16", "float16"]
"""The forward precision by name (:data:`sidu.precision.DTYPES`)."""
Precision = Literal["ieee", "tf32"]
"""float32 CUDA arithmetic (:data:`sidu.precision.PRECISIONS`)."""
Backend = Literal["auto", "torch", "onnxruntime"]
"""The engine of the perturbation forwards (:data:`sidu.backends.BACKENDS`)."""
Normalisation = tuple[float, float, float]
"""Per-channel mean or standard deviation of a model's input normalisation."""

NORMALISATION_KEY = "extra"
"""The ``config.json`` object holding the model normalisation (``mean``, ``std``)."""
NORMALISATION_FIELDS = ("mean", "std")
"""The fields written under :data:`NORMALISATION_KEY` instead of at the top level."""
IDENTITY_NORMALISATION = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
"""``(mean, std)`` of a run that recorded no normalisation: its images are drawn as stored."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one (data set, model) run.

    ``target``, ``dtype``, ``precision`` and ``backend`` are checked on construction (a
    :class:`~sidu_bench.errors.ParameterError` names the field); ``mean`` and ``std`` are the
    model's input normalisation, filled in by the runner. :meth:`to_json` and :meth:`from_json`
    write and read ``config.json`` (where the normalisation is the ``extra`` object).
    """

    dataset: str
    model: str
    explainers: tuple[str, ...]
    metrics: tuple[str, ...]
    layer: str
    checkpoint: str | None = None
    root: str | None = None
    download: bool = False
    target: Target = "pred"
    device: str = "cpu"
    dtype: DtypeName = "float32"
    precision: Precision = "ieee"
    backend: Backend = "auto"
    model_reason: str = ""
    batch_size: int | None = None
    limit: int | None = None
    seed: int = 0
    steps: int = 224
    step: int | None = None
    tolerance: float | None = None
    input_size: int = 0
    mean: Normalisation | None = None
    std: Normalisation | None = None

    def __post_init__(self) -> None:
        """Check the named choices; the normalisation comes as a pair or not at all."""
        check_choice("target", self.target, get_args(Target))
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("backend", self.backend, BACKENDS)
        if (self.mean is None) != (self.std is None):
            raise ParameterError("`mean` and `std` must both be given or both be None")

    @property
    def forward_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the forwards (``None``: full precision)."""
        return parse_dtype(self.dtype)

    @property
    def normalisation(self) -> tuple[Normalisation, Normalisation]:
        """``(mean, std)``; :data:`IDENTITY_NORMALISATION` when the run recorded none."""
        if self.mean is None or self.std is None:
            return IDENTITY_NORMALISATION
        return self.mean, self.std

    def protocol(self) -> dict[str, object]:
        """The protocol object: what must agree for two runs to share a table.

        Each metric's entry comes from its registered description
        (:func:`sidu_bench.metrics.protocol_entries`), derived from the code's constants.
        """
        scoring = ScoringSettings(tolerance=self.tolerance, steps=self.steps, step=self.step)
        return {
            "protocol_version": PROTOCOL_VERSION,
            **protocol_entries(scoring),
            "target": self.target,
            "dtype": self.dtype,
            "precision": self.precision,
            "preprocessing": "squash to the model input size (no crop), model normalisation",
        }

    def statistics(self) -> dict[str, object]:
        """How the summaries are computed (recomputed from records; not protocol)."""
        return {
            "bootstrap_resamples": RESAMPLES,
            "confidence": CONFIDENCE,
            "seed": self.seed,
            "pointing_game_class_mean": "stratified by category",
            "paired_test": "two-sided sign-flip permutation test of the mean difference",
            "verdicts": f"Holm-adjusted at family-wise {FAMILYWISE_ALPHA}",
        }

    def to_json(self) -> dict[str, object]:
        """The ``config.json`` content: configuration, protocol and environment.

        Fields are written in declaration order (tuples as lists), with ``mean`` and ``std``
        under ``extra`` (``{}`` before the runner fills them in), then ``protocol``,
        ``statistics`` and ``environment``.
        """
        content: dict[str, object] = {
            item.name: _json_value(getattr(self, item.name))
            for item in fields(self)
            if item.name not in NORMALISATION_FIELDS
        }
        content[NORMALISATION_KEY] = {
            name: list(value)
            for name in NORMALISATION_FIELDS
            if (value := getattr(self, name)) is not None
        }
        content["protocol"] = self.protocol()
        content["statistics"] = self.statistics()
        content["environment"] = environment(self.device)
        return content

    @classmethod
    def from_json(cls, content: Mapping[str, object]) -> RunConfig:
        """Rebuild the configuration from ``config.json`` content (:meth:`to_json`'s inverse).

        Keys that are not fields (``protocol``, ``environment``, ...) are ignored; fields a
        stored configuration lacks take their defaults.

        Raises:
            ValueError: a required field is missing or a value is not accepted.
        """
        names = [item.name for item in fields(cls) if item.name not in NORMALISATION_FIELDS]
        values = {name: content[name] for name in names if name in content}
        missing = [item.name for item in fields(cls) if _required(item) and item.name not in values]
        if missing:
            raise ValueError(f"config.json lacks the field(s) {', '.join(missing)}")
        values["explainers"] = tuple(values["explainers"])
        values["metrics"] = tuple(values["metrics"])
        extra = content.get(NORMALISATION_KEY) or {}
        if not isinstance(extra, Mapping):
            raise ValueError(f"config.json: {NORMALISATION_KEY!r} must be an object, got {extra!r}")
        for key in NORMALISATION_FIELDS:
            if key in extra:
                values[key] = tuple(float(value) for value in extra[key])
        return cls(**values)


def _json_value(value: object) -> object:
    """A field's value as ``config.json`` holds it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _required(item: Field) -> bool:
    """Whether a dataclass field has no default."""
    return item.default is MISSING and item.default_factory is MISSING


def differing_fields(stored: dict[str, object], requested: dict[str, object]) -> list[str]:
    """Names of the configuration fields (dotted into the protocol) that differ.

    Fields listed in :data:`RESUMABLE_FIELDS` and :data:`DESCRIPTIVE_FIELDS` and the earlier
    environments are not compared.
    """
    skip = {*RESUMABLE_FIELDS, *DESCRIPTIVE_FIELDS, EARLIER_ENVIRONMENTS}
    differences = []
    for key in sorted(set(stored) | set(requested)):
        if key in skip:
            continue
        old, new = stored.get(key), requested.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [f"{key}.{sub}" for sub in differing_fields(old, new)]
        elif old != new:
            differences.append(key)
    return differences


def read_config(run_dir: Path) -> dict[str, object] | None:
    """Read a run folder's ``config.json`` (``None`` when there is none)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"corrupt {path}: {error}") from error


def with_earlier_environments(
    stored: dict[str, object], requested: dict[str, object]
) -> dict[str, object]:
    """``requested`` keeping, under ``earlier_environments``, the stored run's environments.

    A resumed run's items may come from several sessions (commits, machines): the environment of
    each earlier session that differs from the current one is kept, oldest first.
    """
    earlier = list(stored.get(EARLIER_ENVIRONMENTS) or [])
    previous = stored.get("environment")
    if previous is not None and previous != requested.get("environment"):
        earlier.append(previous)
    if not earlier:
        return requested
    return {**requested, EARLIER_ENVIRONMENTS: earlier}


def write_config(run_dir: Path, content: dict[str, object]) -> None:
    """Write ``config.json`` atomically."""
    write_json(Path(run_dir) / CONFIG_FILE, content)
