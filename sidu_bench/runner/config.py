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
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from sidu_bench.runner.storage import atomic_write_text
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


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one (data set, model) run."""

    dataset: str
    model: str
    explainers: tuple[str, ...]
    metrics: tuple[str, ...]
    layer: str
    checkpoint: str | None = None
    root: str | None = None
    download: bool = False
    target: str = "pred"
    device: str = "cpu"
    dtype: str = "float32"
    precision: str = "ieee"
    backend: str = "auto"
    model_reason: str = ""
    batch_size: int | None = None
    limit: int | None = None
    seed: int = 0
    steps: int = 224
    step: int | None = None
    tolerance: float | None = None
    input_size: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def protocol(self) -> dict[str, object]:
        """The protocol object: what must agree for two runs to share a table."""
        return {
            "protocol_version": PROTOCOL_VERSION,
            "insertion_deletion": {
                "steps": None if self.step is not None else self.steps,
                "step": self.step,
                "deletion_substrate": "zeros (normalised space)",
                "insertion_substrate": "RISE blur: gaussian_filter(delta 11x11, sigma=5), pad 5",
                "score": "softmax probability of the target",
                "order": "saliency descending, ties by row-major index",
            },
            "pointing_game": {
                "tolerance_rule": "declared by the data set: 15 px for real images, scaled by "
                "size / 224 for synthetic ones (the value is the run's `tolerance`)",
                "map_resize": "bilinear, align_corners=False, to the original size",
            },
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
        """The ``config.json`` content: configuration, protocol and environment."""
        content = asdict(self)
        content["explainers"] = list(self.explainers)
        content["metrics"] = list(self.metrics)
        content["protocol"] = self.protocol()
        content["statistics"] = self.statistics()
        content["environment"] = environment(self.device)
        return content


def environment(device: str) -> dict[str, object]:
    """Package versions, git commit, Python, platform, device name and CPU capability."""
    versions = {}
    packages = ("sidu-bench", "torch", "torchvision", "numpy", "scipy", "pandas", "onnxruntime")
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = _cpu_name()
    return {
        "versions": versions,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device_name": device_name,
        "device": device,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def _cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """``HEAD`` of the package's checkout, with ``+uncommitted`` when its code is modified."""
    package = Path(__file__).resolve().parents[1]
    commit = _git(["rev-parse", "HEAD"], package)
    if not commit:
        return None
    changes = _git(
        ["status", "--porcelain", "--untracked-files=no", "--", "sidu", "sidu_bench"],
        package.parent,
    )
    return f"{commit}+uncommitted" if changes else commit


def _git(arguments: list[str], where: Path) -> str:
    try:
        completed = subprocess.run(
            ["git", *arguments],
            capture_output=True,
            text=True,
            check=False,
            cwd=where,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


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
    atomic_write_text(
        Path(run_dir) / CONFIG_FILE, json.dumps(content, indent=2, default=str) + "\n"
    )
