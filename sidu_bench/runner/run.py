"""Run one (data set, model) evaluation into its run folder: resumable, shardable, atomic.

The runner is the one place that wires data sets, models, explainers and metrics together.
A run folder ``<out>/<dataset>-<model>/`` holds ``config.json`` (written first), ``items/`` (one
atomic file per finished item), and, once every item is done, ``records.csv``, ``skipped.csv``
(items whose image or annotation could not be read: id, file, reason), ``summary.csv``,
``summary.md`` and ``figures/``. Re-running into the folder resumes: finished (item, explainer)
pairs are read back, not recomputed; unreadable items are tried again. Under ``torchrun`` every
rank evaluates its share of the items and rank 0 merges and summarises.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from sidu.backends import BACKENDS, resolve_backend
from sidu.engine import forward_context
from sidu.precision import PRECISIONS, fp32_precision
from sidu_bench import plugins
from sidu_bench.data import Unreadable, UnreadableItemError, dataset_info, get_dataset
from sidu_bench.explainers import get_explainer
from sidu_bench.models import ModelSpec, get_model
from sidu_bench.perf import synchronize
from sidu_bench.runner import distributed
from sidu_bench.runner.config import (
    PROTOCOL_VERSION,
    RunConfig,
    differing_fields,
    read_config,
    with_earlier_environments,
    write_config,
)
from sidu_bench.runner.figure_data import figure_data_path, read_figure_data, write_figure_data
from sidu_bench.runner.item_eval import METRICS, ItemContext, evaluate_item
from sidu_bench.runner.storage import (
    PARTIAL_PATTERN,
    ItemResult,
    ItemStore,
    atomic_write_text,
    partial_records_path,
    read_record_rows,
    write_record_rows,
)
from sidu_bench.runner.summarise_run import SKIPPED_COLUMNS, SKIPPED_FILE, summarise_run
from sidu_bench.runner.summary import RECORD_COLUMNS

log = logging.getLogger(__name__)

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
ETA_LOG_SECONDS = 60.0
"""Without a progress bar, progress and the time left are logged at most this often."""
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
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Under torchrun, ``auto`` and ``cuda`` mean this rank's local GPU; ``cuda:N`` is taken as given.

    Raises:
        ValueError: another name, or CUDA requested where none is available.
    """
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but no CUDA device is available")
    if name == "cuda":
        return torch.device("cuda", distributed.local_rank())
    index = int(name.split(":")[1])
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are available"
        )
    return torch.device("cuda", index)


def choose_model(dataset: str, model: str | None) -> tuple[str, str]:
    """The model for ``dataset`` and why: the one given, else the data set's declared default.

    Returns:
        ``(model name, reason)``, the reason in words for the run header.
    """
    if model:
        return model, "named by --model"
    info = dataset_info(dataset)
    return info.default_model, f"the default model of data set {dataset!r} ({info.domain})"


def check_domains(dataset: str, spec: ModelSpec, *, allow_mismatch: bool) -> str | None:
    """Refuse a model outside the data set's domain unless ``allow_mismatch``.

    Returns:
        A note for the run header when a mismatch was allowed, else ``None``.

    Raises:
        ValueError: the model's domain is undeclared or differs from the data set's.
    """
    info = dataset_info(dataset)
    if spec.domain == info.domain:
        return None
    model_side = (
        "declares no domain (ModelSpec.domain)"
        if spec.domain is None
        else f"was trained on {spec.domain}"
    )
    message = (
        f"model {spec.name!r} {model_side} but data set {dataset!r} holds {info.domain}: its "
        f"numbers would mean nothing. Use --model {info.default_model} (the data set's default) "
        "or pass --allow-model-mismatch to run anyway"
    )
    if not allow_mismatch:
        raise ValueError(message)
    log.warning("%s (allowed by --allow-model-mismatch)", message.split(": its numbers")[0])
    return f"model domain {spec.domain} on a {info.domain} data set (--allow-model-mismatch)"


def evaluate(
    config: RunConfig,
    out: Path,
    *,
    fresh: bool = False,
    progress: bool = True,
    strict: bool = False,
    allow_model_mismatch: bool = False,
) -> RunOutcome:
    """Evaluate one (data set, model) pair as ``config`` says, into ``out/<dataset>-<model>``.

    Args:
        config: the run's configuration; ``layer``, ``tolerance`` and ``input_size`` are filled
            in from the model and data set when empty, ``model`` from the data set's default
            when empty.
        out: the parent folder of run folders.
        fresh: delete an existing run folder first instead of resuming it.
        progress: show a progress bar (only on a terminal).
        strict: stop at the first unreadable item instead of skipping and listing it.
        allow_model_mismatch: run a model on a data set outside its domain.

    Returns:
        The run folder and, on the merging rank, the summary table.

    Raises:
        ValueError: the folder holds a run with a different configuration (fields named), a
            bad option, a model outside the data set's domain, ``--target label`` on a data set
            whose labels are not the model's, or (``strict``) an unreadable item.
    """
    if config.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}"
        )
    if config.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    unknown = [name for name in config.metrics if name not in METRICS]
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(map(repr, unknown))}; --metrics takes a comma-separated "
            f"subset of {', '.join(METRICS)}"
        )
    device = resolve_device(config.device)
    model_name, reason = choose_model(config.dataset, config.model)
    spec = get_model(model_name, layer=config.layer or None, checkpoint=config.checkpoint)
    mismatch = check_domains(config.dataset, spec, allow_mismatch=allow_model_mismatch)
    if config.model_reason:
        reason = config.model_reason
    if mismatch:
        reason = f"{reason}; {mismatch}"
    dataset = get_dataset(config.dataset, config.root, spec, **_dataset_options(config))
    if config.target == "label" and not dataset.label_space:
        raise ValueError(
            f"--target label needs a data set whose labels are the model's classes; "
            f"{config.dataset!r} with {spec.name!r} only supports --target pred"
        )
    if strict and dataset.unreadable:
        first = dataset.unreadable[0]
        raise UnreadableItemError(first.item_id, first.file, first.reason)
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
            backend=config.backend,
            precision=config.precision,
        )
        for name in config.explainers
    ]
    explainers = {explainer.label: explainer for explainer in built}
    config = replace(
        config,
        model=spec.name,
        model_reason=reason,
        explainers=tuple(explainers),
        layer=spec.default_layer,
        tolerance=dataset.tolerance,
        input_size=spec.input_size,
        root=None if dataset.root is None else str(dataset.root),
        device=device.type,
        extra={**config.extra, "mean": list(spec.mean), "std": list(spec.std)},
    )
    run_dir = Path(out) / run_folder_name(config.dataset, spec.name)
    setup = prepare_forward(model, spec, device, config)
    provenance = {
        "explainer_provenance": {label: plugins.provenance(e) for label, e in explainers.items()},
        "plugins": [asdict(p) for p in plugins.loaded_plugins()],
    }
    _prepare_folder(run_dir, config, setup, provenance, fresh=fresh)

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
        backend=config.backend,
        backend_name=str(setup["backend"]["name"]),
        precision=config.precision,
    )
    order = dataset.order(limit=config.limit, seed=config.seed)
    store = ItemStore(run_dir)
    rank, world = distributed.rank_and_world()
    _log_header(config, dataset, setup, len(order), world)
    mine = list(zip(range(rank, len(order), world), order[rank::world], strict=True))
    csv_rows, figure_data = read_record_rows(run_dir), read_figure_data(run_dir)
    finished = {}
    for _, index in mine:
        stored = _stored(store, csv_rows, dataset.item_ids[index], figure_data)
        if stored is not None:
            finished[stored.item_id] = stored
    pending = [(p, i) for p, i in mine if _missing(finished.get(dataset.item_ids[i]), config)]
    partial = partial_records_path(run_dir, rank, world)
    compact = figure_data_path(run_dir, rank, world)
    mean, std = spec.mean, spec.std
    bar = tqdm(
        pending,
        desc=f"{run_dir.name} [rank {rank}]" if world > 1 else run_dir.name,
        unit="item",
        total=len(mine),
        initial=len(mine) - len(pending),
        disable=not progress or None,
    )
    started = logged = time.perf_counter()
    with fp32_precision(config.precision):
        for done, (position, index) in enumerate(bar, start=1):
            item_id = dataset.item_ids[index]
            stored = finished.get(item_id)
            try:
                item = dataset[index]
            except UnreadableItemError as error:
                if strict:
                    raise
                log.warning("skipping unreadable item: %s", error)
                store.save_skipped(Unreadable.from_error(error))
                continue
            store.clear_skipped(item_id)
            keep = replace(context, keep_image=position < SAMPLE_IMAGES)
            result = evaluate_item(keep, item, _missing(stored, config), stored)
            store.save(result)
            finished[item_id] = result
            write_record_rows(partial, finished.values(), config.explainers, RECORD_COLUMNS)
            write_figure_data(compact, finished.values(), mean, std)
            now = time.perf_counter()
            if bar.disable and (done in (1, len(pending)) or now - logged > ETA_LOG_SECONDS):
                _log_eta(run_dir.name, done, len(pending), now - started)
                logged = now
    distributed.finish_rank(run_dir)
    if rank != 0:
        return RunOutcome(run_dir, None)
    unreadable = list(dataset.unreadable)
    csv_rows, figure_data = read_record_rows(run_dir), read_figure_data(run_dir)
    results, readable = [], []
    for index in order:
        item_id = dataset.item_ids[index]
        skipped = store.load_skipped(item_id)
        if skipped is not None:
            unreadable.append(skipped)
        else:
            results.append(_stored(store, csv_rows, item_id, figure_data))
            readable.append(index)
    localisation_skips = dataset.skipped_among(readable).count
    summary = write_outputs(
        run_dir, config, results, skipped=localisation_skips, unreadable=unreadable
    )
    for path in run_dir.glob(PARTIAL_PATTERN):
        path.unlink()
    return RunOutcome(run_dir, summary)


def _log_eta(name: str, done: int, total: int, elapsed: float) -> None:
    """Log progress and the estimated time left (when no progress bar is shown)."""
    left = elapsed / done * (total - done)
    log.info(
        "%s: %d/%d items computed in this session, %.0f s each, about %s left",
        name,
        done,
        total,
        elapsed / done,
        time.strftime("%H:%M:%S", time.gmtime(left)) if left < 86400 else f"{left / 3600:.0f} h",
    )


def _stored(
    store: ItemStore,
    csv_rows: dict[str, dict[str, dict[str, object]]],
    item_id: str,
    figure_data: dict[str, dict[str, np.ndarray]],
) -> ItemResult | None:
    """What the folder holds of an item: its ``items/`` file, else its rows in the CSV files.

    An item known only from the committed files (a folder resumed on a fresh clone) has its
    record rows and its compact figure arrays (:mod:`.figure_data`), which is what the records,
    the summary and the figures need.
    """
    result = store.load(item_id)
    rows = csv_rows.get(item_id, {})
    if result is None:
        if not rows:
            return None
        result = ItemResult(item_id, dict(rows))
    for label, row in rows.items():
        result.rows.setdefault(label, row)
    for key, value in figure_data.get(item_id, {}).items():
        result.arrays.setdefault(key, value)
    return result


def _missing(stored: ItemResult | None, config: RunConfig) -> list[str]:
    """Explainer labels an item still lacks (all of them when nothing of it is stored)."""
    return [label for label in config.explainers if stored is None or label not in stored.rows]


def prepare_forward(
    model: nn.Module, spec: ModelSpec, device: torch.device, config: RunConfig
) -> dict[str, object]:
    """Resolve the forward backend and warm the model up before the first timed item.

    The ONNX Runtime export (when the backend resolves to it) and a warm-up forward of each
    engine happen here, so that no item's seconds include them; their cost is returned for
    ``config.json``.

    Returns:
        ``{"backend": {"requested", "name", "reason", "setup_seconds"}, "warmup_seconds"}``.
    """
    generator = torch.Generator().manual_seed(config.seed)
    size = spec.input_size
    example = torch.randn(2, 3, size, size, generator=generator).to(device)
    dtype = DTYPES[config.dtype]
    with fp32_precision(config.precision):
        backend = resolve_backend(model, example, config.backend, dtype=dtype)
        start = time.perf_counter()
        with forward_context(device, dtype):
            model(example)
            backend(example)
        synchronize(device)
        warmup = time.perf_counter() - start
    if backend.reason:
        log.warning("forward backend: %s (%s)", backend.name, backend.reason)
    return {
        "backend": {
            "requested": backend.requested,
            "name": backend.name,
            "reason": backend.reason,
            "setup_seconds": round(backend.setup_seconds, 3),
        },
        "warmup_seconds": round(warmup, 3),
    }


def _log_header(
    config: RunConfig, dataset: object, setup: dict[str, object], n_items: int, world: int
) -> None:
    """Log the run header: data, model and why, backend, device, item and skip counts."""
    backend = setup["backend"]
    fallback = f" (auto fell back: {backend['reason']})" if backend["reason"] else ""
    log.info(
        "%s x %s: model %s because it is %s; %d items%s; device %s, %s backend%s, dtype %s, "
        "precision %s; %d unreadable item(s) left out at listing",
        config.dataset,
        config.model,
        config.model,
        config.model_reason,
        n_items,
        f" over {world} ranks" if world > 1 else "",
        config.device,
        backend["name"],
        fallback,
        config.dtype,
        config.precision,
        len(getattr(dataset, "unreadable", ())),
    )


def _dataset_options(config: RunConfig) -> dict[str, object]:
    options: dict[str, object] = {}
    if config.download:
        options["download"] = True
    if config.dataset == "synthetic":
        options["seed"] = config.seed
    return options


def _prepare_folder(
    run_dir: Path,
    config: RunConfig,
    setup: dict[str, object],
    provenance: dict[str, object],
    *,
    fresh: bool,
) -> None:
    """Check a resumed folder's configuration; write ``config.json`` (rank 0).

    ``setup`` (the resolved forward backend and the warm-up cost) joins the environment record;
    ``provenance`` (where each explainer comes from, the plug-ins loaded) is descriptive.
    """
    rank, _ = distributed.rank_and_world()
    requested = {**config.to_json(), **provenance}
    requested["environment"] = {**requested["environment"], **setup}
    if fresh and rank == 0 and run_dir.exists():
        shutil.rmtree(run_dir)
    distributed.barrier()
    stored = None if fresh else read_config(run_dir)
    if stored is not None:
        fields = differing_fields(stored, requested)
        if fields:
            old_version = (stored.get("protocol") or {}).get("protocol_version")
            version = (
                f" (it was written under protocol_version {old_version}; this version writes "
                f"{PROTOCOL_VERSION})"
                if old_version != PROTOCOL_VERSION
                else ""
            )
            raise ValueError(
                f"{run_dir} holds a run with a different configuration ({', '.join(fields)})"
                f"{version}; use another --out, the same options, or --fresh to start over"
            )
        requested = with_earlier_environments(stored, requested)
    distributed.barrier()
    if rank == 0:
        write_config(run_dir, requested)
    distributed.barrier()


def write_outputs(
    run_dir: Path,
    config: RunConfig,
    results: Sequence[ItemResult | None],
    *,
    skipped: int,
    unreadable: Sequence[Unreadable] = (),
) -> pd.DataFrame:
    """Write ``records.csv`` and ``skipped.csv``, then the summary and figures from them.

    Args:
        run_dir: the run folder.
        config: the run's configuration.
        results: the stored result of every readable item, in evaluation order.
        skipped: items the localisation metrics skip (empty region after clipping).
        unreadable: items left out because their image or annotation could not be read.

    Returns:
        The summary table.
    """
    missing = [i for i, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no stored result in {run_dir}/items")
    rows = [result.rows[label] for result in results for label in config.explainers]
    records = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    atomic_write_text(run_dir / "records.csv", records.to_csv(index=False))
    listing = pd.DataFrame(
        [(u.item_id, u.file, u.reason) for u in unreadable], columns=list(SKIPPED_COLUMNS)
    )
    atomic_write_text(run_dir / SKIPPED_FILE, listing.to_csv(index=False))
    return summarise_run(run_dir, localisation_skipped=skipped)
