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

Protocol versions: 4 is the current one (it adds the energy pointing game's temperature
variants); 3 (ROAD and the model-randomisation checks) stays readable, and so does 2, the
version of the committed reference grid, until the grid is re-run under 4; 1 (the first
reference runs) is not. When the version is bumped, at least the previous one stays readable
(:data:`READABLE_PROTOCOL_VERSIONS`); older folders get an error naming their version. Each
metric's protocol entry is present only when the run computes that metric, and two runs are
compared on the run-wide fields plus the entries of the metrics both computed
(:func:`protocol_differences`), so a run with a subset of ``--metrics`` still shares a table on
the metrics it has. The protocol is documented in docs/protocol.md.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Literal, Union, get_args, get_origin, get_type_hints

import torch

from sidu.backends import BACKENDS
from sidu.precision import DTYPES, PRECISIONS, parse_dtype
from sidu_bench.errors import ParameterError, check_choice
from sidu_bench.io import environment
from sidu_bench.metrics import ScoringSettings, protocol_entries
from sidu_bench.stats import CONFIDENCE, FAMILYWISE_ALPHA, RESAMPLES

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 4
READABLE_PROTOCOL_VERSIONS = (2, 3, 4)
"""The protocol versions whose run folders this version reads: the current and the previous,
and 2 for the committed protocol-2 reference grid (results/reference-v2), kept beside its
protocol-4 re-run (results/reference) for comparison."""
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

MAX_SEED = 2**63
"""Seeds are in ``[0, MAX_SEED)``: every generator the suite seeds takes them."""
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

_WRITTEN_WHEN_SET = ("sidu_layer",)
"""Fields written only when not ``None``: a configuration without them reads back the same."""

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
    sidu_layer: str | None = None
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
        if not self.explainers or not all(isinstance(e, str) and e for e in self.explainers):
            raise ParameterError(
                f"`explainers` must name at least one explainer, got {self.explainers!r}"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed < MAX_SEED
        ):
            raise ParameterError(f"`seed` must be an integer in [0, 2**63), got {self.seed!r}")
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

    def scoring(self) -> ScoringSettings:
        """The settings the metrics read (one place for both the items and the protocol)."""
        return ScoringSettings(
            tolerance=self.tolerance,
            steps=self.steps,
            step=self.step,
            batch_size=self.batch_size,
            backend=self.backend,
            precision=self.precision,
            dtype=self.forward_dtype,
            seed=self.seed,
            mean=self.normalisation[0],
            std=self.normalisation[1],
        )

    def protocol(self) -> dict[str, object]:
        """The protocol object: what must agree for two runs to share a table.

        The entries of the metrics the run computes come from their registered descriptions
        (:func:`sidu_bench.metrics.protocol_entries`), derived from the code's constants.
        """
        return {
            "protocol_version": PROTOCOL_VERSION,
            **protocol_entries(self.scoring(), self.metrics),
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

        Fields are written in declaration order (tuples as lists), ``sidu_layer`` only when set
        (a transformer's SIDU layer), with ``mean`` and ``std`` under ``extra`` (``{}`` before
        the runner fills them in), then ``protocol``, ``statistics`` and ``environment``.
        """
        content: dict[str, object] = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in vars(self).items()
            if name not in NORMALISATION_FIELDS
            and not (name in _WRITTEN_WHEN_SET and value is None)
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
        stored configuration lacks take their defaults. Each value must have its field's JSON
        type (a string, a list of strings for ``explainers``, an integer, ...).

        Raises:
            ValueError: a required field is missing, or a value has the wrong type or is not
                accepted (a :class:`~sidu_bench.errors.ParameterError` naming the field).
        """
        hints = get_type_hints(cls)
        values = {
            item.name: _from_json(item.name, content[item.name], hints[item.name])
            for item in fields(cls)
            if item.name in content and item.name not in NORMALISATION_FIELDS
        }
        required = [item.name for item in fields(cls) if item.default is MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"the configuration lacks the field(s) {', '.join(missing)}")
        extra = content.get(NORMALISATION_KEY) or {}
        if not isinstance(extra, Mapping):
            raise ParameterError(f"`{NORMALISATION_KEY}` must be an object, got {extra!r}")
        for key in NORMALISATION_FIELDS:
            if key in extra:
                values[key] = _from_json(key, extra[key], hints[key])
        return cls(**values)


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}
"""What ``config.json`` holds for a field of each scalar type, in words."""


def _from_json(name: str, value: object, hint: object) -> object:
    """``value`` from ``config.json`` as field ``name`` of type ``hint`` (lists become tuples).

    Raises:
        ParameterError: ``value`` is not of the JSON type of ``hint`` (naming ``name``).
    """
    options = get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    kind = next(option for option in options if option is not type(None))
    kind = str if get_origin(kind) is Literal else kind
    if get_origin(kind) is tuple:
        element, *rest = get_args(kind)
        size_ok = rest == [Ellipsis] or len(value or ()) == len(rest) + 1
        if isinstance(value, list) and size_ok and all(_holds(element, v) for v in value):
            return tuple(float(v) if element is float else v for v in value)
        count = "" if rest == [Ellipsis] else f"{len(rest) + 1} "
        raise ParameterError(
            f"`{name}` must be a list of {count}{_JSON_TYPES[element]}s, got {value!r}"
        )
    if _holds(kind, value):
        return float(value) if kind is float else value
    raise ParameterError(f"`{name}` must be a JSON {_JSON_TYPES[kind]}, got {value!r}")


def _holds(kind: type, value: object) -> bool:
    """Whether JSON ``value`` is a ``kind`` (an integer is a number, a boolean neither)."""
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def differing_fields(stored: Mapping[str, object], requested: Mapping[str, object]) -> list[str]:
    """Names of the configuration fields (dotted into the protocol) that differ.

    Fields listed in :data:`RESUMABLE_FIELDS` and :data:`DESCRIPTIVE_FIELDS` and the earlier
    environments are not compared; the protocol is compared by :func:`protocol_differences`.
    """
    skip = {*RESUMABLE_FIELDS, *DESCRIPTIVE_FIELDS, EARLIER_ENVIRONMENTS, "protocol"}
    fields = [key for key in sorted(set(stored) | set(requested)) if key not in skip]
    differences = _differing(stored, requested, fields)
    return differences + [f"protocol.{name}" for name in protocol_differences(stored, requested)]


def protocol_differences(first: Mapping[str, object], second: Mapping[str, object]) -> list[str]:
    """The protocol fields (dotted) in which two runs' ``config.json`` contents differ.

    Run-wide fields are compared, and the entries of the metrics both runs computed; the entry
    of a metric only one of them computed is not (it shares a table on the metrics it has).
    """
    protocols = first.get("protocol") or {}, second.get("protocol") or {}
    computed = [set(config.get("metrics") or ()) for config in (first, second)]
    own = computed[0] ^ computed[1]
    keys = sorted((set(protocols[0]) | set(protocols[1])) - own)
    return _differing(*protocols, keys)


def check_protocols(
    runs: Sequence[tuple[object, Mapping[str, object]]],
    *,
    allow_mixed: bool,
    purpose: str,
    also: Sequence[str] = (),
) -> list[str]:
    """Check that runs share a protocol (:func:`protocol_differences`) and the fields ``also``.

    Args:
        runs: ``(name, config.json content)`` per run; each is compared with the first.
        allow_mixed: let differing runs through (each difference is logged as a warning).
        purpose: what the runs are put together for, in words (``"share a table"``).
        also: configuration fields that must agree besides the protocol (``dataset``).

    Returns:
        One line per run that differs from the first, naming the fields.

    Raises:
        ParameterError: some differ and ``allow_mixed`` is false (the message lists them and
            names `allow_mixed_protocols`).
    """
    (first, reference), *others = runs
    mismatches = []
    for name, content in others:
        fields = [field for field in also if content.get(field) != reference.get(field)]
        fields += [f"protocol.{key}" for key in protocol_differences(reference, content)]
        if fields:
            mismatches.append(f"{name} differs from {first} in {', '.join(fields)}")
    if mismatches and not allow_mixed:
        raise ParameterError(
            f"runs with different protocols cannot {purpose}:\n  "
            + "\n  ".join(mismatches)
            + "\n(`allow_mixed_protocols` lets them through, marked as mixed)"
        )
    for line in mismatches:
        log.warning("mixed protocols: %s", line)
    return mismatches


def _differing(old: Mapping[str, object], new: Mapping[str, object], keys: list[str]) -> list[str]:
    """The ``keys`` whose values differ, dotted into nested objects."""
    differences = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += [f"{key}.{sub}" for sub in _differing(a, b, sorted(set(a) | set(b)))]
        elif a != b:
            differences.append(key)
    return differences


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
