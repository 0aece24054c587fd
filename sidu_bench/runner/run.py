"""Run one (data set, model) evaluation into its run folder: resumable, shardable, atomic.

The runner is the one place that wires data sets, models, explainers and metrics together.
A run folder ``<out>/<dataset>-<model>/`` holds ``config.json`` (written first), ``items/`` (one
atomic file per finished item), and, once every item is done, ``records.csv``, ``summary.csv``,
``summary.md`` and ``figures/``. Re-running into the folder resumes: finished (item, explainer)
pairs are read back, not recomputed. Under ``torchrun`` every rank evaluates its share of the
items and rank 0 merges and summarises after a barrier.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from sidu_bench.data import get_dataset
from sidu_bench.explainers import get_explainer
from sidu_bench.models import get_model
from sidu_bench.runner import distributed
from sidu_bench.runner.config import (
    RunConfig,
    differing_fields,
    read_config,
    with_earlier_environments,
    write_config,
)
from sidu_bench.runner.figures import write_figures
from sidu_bench.runner.item_eval import METRICS, ItemContext, evaluate_item
from sidu_bench.runner.storage import ItemResult, ItemStore, atomic_write_text
from sidu_bench.runner.summary import (
    RECORD_COLUMNS,
    paired_comparisons,
    summarise,
    summary_markdown,
)

log = logging.getLogger(__name__)

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
SAMPLE_IMAGES = 6
"""How many items (the first of the evaluation order) keep their image for the figures."""


@dataclass(frozen=True)
class RunOutcome:
    """Where a run went and what it produced (``summary`` only on the merging rank)."""

    run_dir: Path
    summary: pd.DataFrame | None


def run_folder_name(dataset: str, model: str) -> str:
    """``<dataset>-<model>`` with characters unsafe in file names replaced."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", f"{dataset}-{model}")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; under torchrun, the local GPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA device is available")
        return torch.device("cuda", distributed.local_rank())
    return torch.device("cpu")


def evaluate(
    config: RunConfig, out: Path, *, fresh: bool = False, progress: bool = True
) -> RunOutcome:
    """Evaluate one (data set, model) pair as ``config`` says, into ``out/<dataset>-<model>``.

    Args:
        config: the run's configuration; ``layer``, ``tolerance`` and ``input_size`` are filled
            in from the model and data set when empty.
        out: the parent folder of run folders.
        fresh: delete an existing run folder first instead of resuming it.
        progress: show a progress bar (only on a terminal).

    Returns:
        The run folder and, on the merging rank, the summary table.

    Raises:
        ValueError: the folder holds a run with a different configuration (fields named), a
            bad option, or ``--target label`` on a data set whose labels are not the model's.
    """
    if config.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    unknown = [name for name in config.metrics if name not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(map(repr, unknown))}; --metrics takes a comma-separated "
            f"subset of {', '.join(METRICS)}"
        )
    device = resolve_device(config.device)
    spec = get_model(config.model, layer=config.layer or None, checkpoint=config.checkpoint)
    dataset = get_dataset(config.dataset, config.root, spec, **_dataset_options(config))
    if config.target == "label" and not dataset.label_space:
        raise ValueError(
            f"--target label needs a data set whose labels are the model's classes; "
            f"{config.dataset!r} with {spec.name!r} only supports --target pred"
        )
    model = spec.module.to(device).eval()
    dtype = DTYPES[config.dtype]
    built = [
        get_explainer(
            name,
            model,
            spec.default_layer,
            seed=config.seed,
            dtype=dtype,
            batch_size=config.batch_size,
        )
        for name in config.explainers
    ]
    explainers = {explainer.label: explainer for explainer in built}
    config = replace(
        config,
        explainers=tuple(explainers),
        layer=spec.default_layer,
        tolerance=dataset.tolerance,
        input_size=spec.input_size,
        device=device.type,
        extra={**config.extra, "mean": list(spec.mean), "std": list(spec.std)},
    )
    run_dir = Path(out) / run_folder_name(config.dataset, spec.name)
    _prepare_folder(run_dir, config, fresh=fresh)

    context = ItemContext(
        model=model,
        device=device,
        dtype=dtype,
        explainers=explainers,
        center=get_explainer("center", model, config.layer, seed=config.seed),
        metrics=config.metrics,
        target_rule=config.target,
        tolerance=config.tolerance,
        steps=config.steps,
        step=config.step,
        batch_size=config.batch_size,
    )
    order = dataset.order(limit=config.limit, seed=config.seed)
    store = ItemStore(run_dir)
    rank, world = distributed.rank_and_world()
    mine = order[rank::world]
    bar = tqdm(
        mine,
        desc=f"{run_dir.name} [rank {rank}]" if world > 1 else run_dir.name,
        unit="item",
        disable=not progress or None,
    )
    for position, index in zip(range(rank, len(order), world), bar, strict=True):
        item_id = dataset.item_ids[index]
        stored = store.load(item_id)
        missing = [
            label for label in config.explainers if stored is None or label not in stored.rows
        ]
        if not missing:
            continue
        item = dataset[index]
        keep = replace(context, keep_image=position < SAMPLE_IMAGES)
        store.save(evaluate_item(keep, item, missing, stored))
    distributed.barrier()
    if rank != 0:
        return RunOutcome(run_dir, None)
    results = [store.load(dataset.item_ids[index]) for index in order]
    skipped = dataset.skipped_among(order).count
    summary = write_outputs(run_dir, config, results, skipped=skipped)
    return RunOutcome(run_dir, summary)


def _dataset_options(config: RunConfig) -> dict[str, object]:
    options: dict[str, object] = {}
    if config.download:
        options["download"] = True
    if config.dataset == "synthetic":
        options["seed"] = config.seed
    return options


def _prepare_folder(run_dir: Path, config: RunConfig, *, fresh: bool) -> None:
    """Check a resumed folder's configuration; write ``config.json`` (rank 0)."""
    rank, _ = distributed.rank_and_world()
    requested = config.to_json()
    if fresh and rank == 0 and run_dir.exists():
        shutil.rmtree(run_dir)
    distributed.barrier()
    stored = None if fresh else read_config(run_dir)
    if stored is not None:
        fields = differing_fields(stored, requested)
        if fields:
            raise ValueError(
                f"{run_dir} holds a run with a different configuration ({', '.join(fields)}); "
                "use another --out, the same options, or --fresh to start over"
            )
        requested = with_earlier_environments(stored, requested)
    distributed.barrier()
    if rank == 0:
        write_config(run_dir, requested)
    distributed.barrier()


def write_outputs(
    run_dir: Path, config: RunConfig, results: Sequence[ItemResult | None], *, skipped: int
) -> pd.DataFrame:
    """Write ``records.csv``, ``summary.csv``, ``summary.md`` and figures from stored items."""
    missing = [i for i, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no stored result in {run_dir}/items")
    rows = [result.rows[label] for result in results for label in config.explainers]
    records = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    atomic_write_text(run_dir / "records.csv", records.to_csv(index=False))
    explainers = list(config.explainers)
    summary = summarise(records, explainers, seed=config.seed)
    atomic_write_text(run_dir / "summary.csv", summary.to_csv(index=False))
    reference = next((label for label in explainers if label.split(":")[0] == "sidu"), None)
    comparisons = (
        paired_comparisons(records, reference, explainers, seed=config.seed)
        if reference is not None
        else None
    )
    header = {
        "dataset": config.dataset,
        "model": config.model,
        "layer": config.layer,
        "device": config.device,
        "dtype": config.dtype,
        "target": config.target,
        "items": len(results),
        "skipped by localisation (empty region)": skipped,
        "insertion/deletion": f"{config.steps} steps"
        if config.step is None
        else f"{config.step} px per step",
        "pointing-game tolerance (px)": config.tolerance,
        "seed": config.seed,
        "reference explainer": reference,
    }
    atomic_write_text(run_dir / "summary.md", summary_markdown(summary, comparisons, header))
    write_figures(
        run_dir,
        [r for r in results if r is not None],
        explainers,
        mean=config.extra.get("mean", (0.0, 0.0, 0.0)),
        std=config.extra.get("std", (1.0, 1.0, 1.0)),
        title=f"{config.dataset} × {config.model}",
    )
    return summary
