"""Run one (data set, model) evaluation into its run folder: resumable, shardable, atomic.

The runner is the one place that wires data sets, models, explainers and metrics together:
:func:`evaluate` = :func:`build_run`, :func:`prepare_run`, :func:`run_items`, :func:`merge_run`.
A run folder ``<out>/<dataset>-<model>/`` (its layout: :mod:`.folder`) gets its configuration
first, then one file per finished item, and once every item is done the records, the list of
unreadable items, the summary and the figures. Re-running into the folder resumes: finished
(item, explainer) pairs are read back, not recomputed; unreadable items are tried again. Under
``torchrun`` every rank evaluates its share of the items and rank 0 merges and summarises.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from sidu.backends import resolve_backend
from sidu.engine import forward_context, synchronize
from sidu.precision import fp32_precision
from sidu.tokens import Reshape
from sidu_bench import plugins
from sidu_bench.data import (
    ItemDataset,
    Unreadable,
    UnreadableItemError,
    dataset_info,
    get_dataset,
)
from sidu_bench.devices import resolve_device
from sidu_bench.errors import ParameterError
from sidu_bench.explainers import Explainer, explained_layer, get_explainer
from sidu_bench.io import check_writable_folder
from sidu_bench.metrics import ScoringSettings, list_metrics
from sidu_bench.models import ModelSpec, get_model
from sidu_bench.runner import distributed
from sidu_bench.runner.config import (
    DESCRIPTIVE_FIELDS,
    EARLIER_ENVIRONMENTS,
    RunConfig,
    differing_fields,
    with_earlier_environments,
)
from sidu_bench.runner.figures import compact_arrays
from sidu_bench.runner.folder import FolderInUseError, ItemResult, RunFolder
from sidu_bench.runner.item_eval import ItemContext, evaluate_item
from sidu_bench.runner.summarise import summarise_run

log = logging.getLogger(__name__)

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
        ParameterError: the model's domain is undeclared or differs from the data set's.
    """
    info = dataset_info(dataset)
    if spec.domain == info.domain:
        return None
    model_side = (
        "declares no domain (ModelSpec.domain)"
        if spec.domain is None
        else f"was trained on {spec.domain}"
    )
    error = ParameterError(
        f"model {spec.name!r} {model_side} but data set {dataset!r} holds {info.domain}: its "
        f"numbers would mean nothing. Use `model` {info.default_model} (the data set's default) "
        "or pass `allow_model_mismatch` to run anyway"
    )
    if not allow_mismatch:
        raise error
    log.warning("%s (allowed by --allow-model-mismatch)", str(error).split(": its numbers")[0])
    return f"model domain {spec.domain} on a {info.domain} data set (--allow-model-mismatch)"


@dataclass(frozen=True)
class BuiltRun:
    """A run's parts, built and checked: what :func:`prepare_run` and the loop work on.

    Attributes:
        config: the configuration completed from the model and data set (model name and why,
            layer, tolerance, input size, normalisation, canonical explainer labels, device).
        model: the network on its device, in eval mode.
        device: the device the run computes on.
        dataset: the data set, preprocessed for the model.
        explainers: the explainers by canonical label.
        factory: builds the explainers, also on other models (:class:`ExplainerFactory`).
        scoring: what the metrics read (:meth:`RunConfig.scoring` and the model's blocks).
        folder: the run folder.
    """

    config: RunConfig
    model: nn.Module
    device: torch.device
    dataset: ItemDataset
    explainers: dict[str, Explainer]
    factory: ExplainerFactory
    scoring: ScoringSettings
    folder: RunFolder


@dataclass
class PreparedRun:
    """A run folder ready for this rank's items: the shared context and what is left to do.

    Attributes:
        context: what evaluating an item needs besides the item.
        order: the evaluation order of the whole run (data set indices).
        rank: this process's rank.
        world: the number of ranks.
        finished: this rank's items already stored, by id.
        pending: this rank's ``(position in order, data set index)`` pairs still to compute.
        assigned: how many items this rank owns in all.
    """

    context: ItemContext
    order: list[int]
    rank: int
    world: int
    finished: dict[str, ItemResult]
    pending: list[tuple[int, int]]
    assigned: int


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

    Four steps: :func:`build_run` (model, data set, explainers, the completed configuration),
    :func:`prepare_run` (forward backend, folder check, what is left), :func:`run_items` (this
    rank's items) and, on rank 0, :func:`merge_run` (records, summary, figures).

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
            bad option, a model outside the data set's domain, ``target`` ``label`` on a data
            set whose labels are not the model's, or (``strict``) an unreadable item. Errors
            about an argument are :class:`~sidu_bench.errors.ParameterError` naming it.
    """
    check_writable_folder(Path(out), "out")
    run = build_run(config, out, strict=strict, allow_model_mismatch=allow_model_mismatch)
    with claimed(run, fresh=fresh):
        prepared = prepare_run(run, fresh=fresh)
        run_items(run, prepared, progress=progress, strict=strict)
        distributed.finish_rank(run.folder)
        if prepared.rank != 0:
            return RunOutcome(run.folder.path, None)
        return RunOutcome(run.folder.path, merge_run(run, prepared))


@contextlib.contextmanager
def claimed(run: BuiltRun, *, fresh: bool) -> Iterator[None]:
    """Hold the run folder for this run's work (:meth:`RunFolder.claim`) while the block runs.

    The work is the configuration without its descriptive fields: processes (and ranks) with the
    same work share the folder, another is refused. Rank 0 claims first (alone under ``fresh``,
    whose deletion must not hit another holder) and tells the other ranks whether it could, so
    every rank stops with the same error; then the other ranks join its claim.

    Raises:
        FolderInUseError: another process holds the folder for other work (or, with ``fresh``,
            at all).
    """
    content = run.config.to_json()
    work = {key: value for key, value in content.items() if key not in DESCRIPTIVE_FIELDS}
    rank, _ = distributed.rank_and_world()
    with contextlib.ExitStack() as claims:
        refusal = None
        if rank == 0:
            try:
                claims.enter_context(run.folder.claim(work, alone=fresh))
            except FolderInUseError as error:
                refusal = error.template
        refusal = distributed.from_rank_0(refusal)
        if refusal is not None:
            raise FolderInUseError(refusal)
        if rank != 0:
            claims.enter_context(run.folder.claim(work))
        yield


def build_run(
    config: RunConfig, out: Path, *, strict: bool = False, allow_model_mismatch: bool = False
) -> BuiltRun:
    """Build the model, data set and explainers of ``config`` and complete the configuration.

    Raises:
        ParameterError: an unknown metric, a bad device, a model outside the data set's domain
            (unless ``allow_model_mismatch``), or ``target`` ``label`` on a data set whose
            labels are not the model's.
        UnreadableItemError: ``strict`` and an item was left out when the data set was listed.
    """
    known = list_metrics()
    unknown = [name for name in config.metrics if name not in known]
    if unknown:
        raise ParameterError(
            f"unknown metric(s) {', '.join(map(repr, unknown))}; `metrics` takes a "
            f"comma-separated subset of {', '.join(known)}"
        )
    device = resolve_device(config.device)
    model_name, reason = choose_model(config.dataset, config.model)
    spec = get_model(model_name, layer=config.layer or None, checkpoint=config.checkpoint)
    mismatch = check_domains(config.dataset, spec, allow_mismatch=allow_model_mismatch)
    reason = config.model_reason or reason
    if mismatch:
        reason = f"{reason}; {mismatch}"
    dataset = get_dataset(config.dataset, config.root, spec, **_dataset_options(config))
    if config.target == "label" and not dataset.label_space:
        raise ParameterError(
            f"`target` label needs a data set whose labels are the model's classes; "
            f"{config.dataset!r} with {spec.name!r} only supports `target` pred"
        )
    if strict and dataset.unreadable:
        first = dataset.unreadable[0]
        raise UnreadableItemError(first.item_id, first.file, first.reason)
    model = spec.module.to(device).eval()
    factory = ExplainerFactory(config, spec.default_layer, spec.reshape, spec.sidu_layer)
    built = [factory(name, model) for name in config.explainers]
    explainers = {explainer.label: explainer for explainer in built}
    completed = replace(
        config,
        model=spec.name,
        model_reason=reason,
        explainers=tuple(explainers),
        layer=spec.default_layer,
        sidu_layer=spec.sidu_layer,
        tolerance=dataset.tolerance,
        input_size=spec.input_size,
        root=None if dataset.root is None else str(dataset.root),
        device=device.type,
        mean=spec.mean,
        std=spec.std,
    )
    folder = RunFolder(Path(out) / run_folder_name(config.dataset, spec.name))
    scoring = replace(completed.scoring(), blocks=spec.blocks)
    return BuiltRun(completed, model, device, dataset, explainers, factory, scoring, folder)


class ExplainerFactory:
    """Builds a run's explainers, on its model or on another one of the same architecture.

    An explainer is built once per (model, spec) and kept while its model lives, so a metric
    that explains every item under the same changed models (the model-randomisation checks)
    reuses each one: its hooks, and its ONNX Runtime session, follow that model's weights.
    Layer-based explainers read ``layer`` through ``reshape``; SIDU reads ``sidu_layer`` where
    the model declares one (:attr:`~sidu_bench.models.ModelSpec.sidu_layer`).
    """

    def __init__(
        self,
        config: RunConfig,
        layer: str,
        reshape: Reshape | None = None,
        sidu_layer: str | None = None,
    ) -> None:
        self._config, self._layer, self._reshape = config, layer, reshape
        self._sidu_layer = sidu_layer
        self._built: weakref.WeakKeyDictionary[nn.Module, dict[str, Explainer]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, spec: str, model: nn.Module) -> Explainer:
        """The explainer ``spec`` (a name or canonical label) on ``model``."""
        built = self._built.setdefault(model, {})
        if spec not in built:
            config = self._config
            built[spec] = get_explainer(
                spec,
                model,
                explained_layer(spec, self._layer, self._sidu_layer),
                seed=config.seed,
                dtype=config.forward_dtype,
                batch_size=config.batch_size,
                backend=config.backend,
                precision=config.precision,
                reshape=self._reshape,
            )
        return built[spec]


def prepare_run(run: BuiltRun, *, fresh: bool = False) -> PreparedRun:
    """Warm the forwards up, check or write the folder's configuration, find this rank's work.

    Raises:
        ParameterError: the folder holds a run with a different configuration (``fresh``
            starts over).
    """
    config, folder = run.config, run.folder
    setup = prepare_forward(run.model, run.device, config)
    provenance = {
        "explainer_provenance": {
            label: plugins.provenance(e) for label, e in run.explainers.items()
        },
        "plugins": [asdict(p) for p in plugins.loaded_plugins()],
    }
    requested = {**config.to_json(), **provenance}
    requested["environment"] = {**requested["environment"], **setup}
    stored_config = check_folder(folder, requested, fresh=fresh)
    context = ItemContext(
        model=run.model,
        device=run.device,
        explainers=run.explainers,
        center=get_explainer("center", run.model, config.layer, seed=config.seed),
        metrics=config.metrics,
        target_rule=config.target,
        scoring=run.scoring,
        rebuild=run.factory,
        backend_name=str(setup["backend"]["name"]),
    )
    order = run.dataset.order(limit=config.limit, seed=config.seed)
    rank, world = distributed.rank_and_world()
    stored, item_ids = StoredItems(folder), run.dataset.item_ids
    # rank 0 reads every rank's items once: it decides whether config.json is written
    results = {i: stored.get(item_ids[i]) for i in (order if rank == 0 else order[rank::world])}
    if rank == 0:
        work_left = any(missing_labels(result, config) for result in results.values())
        write_folder_config(folder, stored_config, requested, work_left=work_left)
    distributed.barrier()
    _log_header(config, run.dataset, setup, len(order), world)
    mine = list(zip(range(rank, len(order), world), order[rank::world], strict=True))
    finished = {r.item_id: r for _, i in mine if (r := results[i]) is not None}
    pending = [(p, i) for p, i in mine if missing_labels(results[i], config)]
    return PreparedRun(context, order, rank, world, finished, pending, len(mine))


def check_folder(
    folder: RunFolder, requested: dict[str, object], *, fresh: bool
) -> dict[str, object] | None:
    """Empty the folder (``fresh``, rank 0) or check its stored configuration against ``requested``.

    Returns:
        The stored configuration (``None`` for a new or emptied folder).

    Raises:
        ParameterError: the stored configuration differs in a field that changes numbers.
    """
    rank, _ = distributed.rank_and_world()
    if fresh and rank == 0:
        folder.remove()
    distributed.barrier()
    stored = None if fresh else folder.read_config()
    if stored is not None:
        fields = differing_fields(stored, requested)
        if fields:
            raise ParameterError(
                f"{folder} holds a run with a different configuration ({', '.join(fields)}); "
                "use another `out`, the same options, or `fresh` to start over"
            )
    distributed.barrier()
    return stored


def write_folder_config(
    folder: RunFolder,
    stored: dict[str, object] | None,
    requested: dict[str, object],
    *,
    work_left: bool,
) -> None:
    """Write ``config.json`` when this session adds to the run, else leave the folder as it is.

    A session adds to the run when the folder has no configuration, when the requested one
    differs beyond the environment (a larger ``limit``, more explainers) or when some item of
    the whole order still lacks an explainer (``work_left``); it is then recorded as the run's
    environment, the stored one kept under ``earlier_environments``. A resume with nothing
    left (the summary and figures are still rebuilt) must not make a finished folder claim this
    session's commit and machine.
    """
    if stored is None:
        folder.write_config(requested)
        return
    merged = with_earlier_environments(stored, requested)
    environment = {"environment", EARLIER_ENVIRONMENTS}
    same_run = {k: v for k, v in stored.items() if k not in environment} == {
        k: v for k, v in merged.items() if k not in environment
    }
    if work_left or not same_run:
        folder.write_config(merged)


class StoredItems:
    """What a run folder holds of its items: ``items/`` files, else the committed CSV rows.

    An item known only from the committed files (a folder resumed on a fresh clone) has its
    record rows and its compact figure arrays, which is what the records, the summary and the
    figures need.
    """

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder
        self.rows = folder.record_rows()
        self.figure_data = folder.figure_data()

    def get(self, item_id: str) -> ItemResult | None:
        """The item's stored result, or ``None`` when nothing of it is stored."""
        result = self.folder.load_item(item_id)
        rows = self.rows.get(item_id, {})
        if result is None:
            if not rows:
                return None
            result = ItemResult(item_id, dict(rows))
        for label, row in rows.items():
            result.rows.setdefault(label, row)
        for key, value in self.figure_data.get(item_id, {}).items():
            result.arrays.setdefault(key, value)
        return result


def missing_labels(stored: ItemResult | None, config: RunConfig) -> list[str]:
    """Explainer labels an item still lacks (all of them when nothing of it is stored)."""
    return [label for label in config.explainers if stored is None or label not in stored.rows]


def run_items(
    run: BuiltRun, prepared: PreparedRun, *, progress: bool = True, strict: bool = False
) -> None:
    """Compute this rank's pending items, saving each (and the record CSV) as it finishes.

    An unreadable item is recorded and skipped (``strict``: raised).
    """
    config, dataset, folder = run.config, run.dataset, run.folder
    rank, world, finished = prepared.rank, prepared.world, prepared.finished
    mean, std = config.normalisation
    compact = {item_id: compact_arrays(r, mean, std) for item_id, r in finished.items()}
    name, todo = folder.path.name, len(prepared.pending)
    bar = tqdm(
        prepared.pending,
        desc=f"{name} [rank {rank}]" if world > 1 else name,
        unit="item",
        total=prepared.assigned,
        initial=prepared.assigned - todo,
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
                folder.save_unreadable(Unreadable.from_error(error))
                continue
            folder.clear_unreadable(item_id)
            keep = replace(prepared.context, keep_image=position < SAMPLE_IMAGES)
            result = evaluate_item(keep, item, missing_labels(stored, config), stored)
            folder.save_item(result)
            finished[item_id] = result
            compact[item_id] = compact_arrays(result, mean, std)
            folder.write_partial_records(
                rank, world, finished.values(), config.explainers, config.metrics
            )
            folder.write_figure_data(rank, world, compact)
            now = time.perf_counter()
            if bar.disable and (done in (1, todo) or now - logged > ETA_LOG_SECONDS):
                _log_eta(name, done, todo, now - started)
                logged = now


def merge_run(run: BuiltRun, prepared: PreparedRun) -> pd.DataFrame:
    """Merge every rank's items in evaluation order; write the records, summary and figures.

    Runs on rank 0 after every rank finished; the per-rank partial record files are removed.

    Returns:
        The summary table.

    Raises:
        RuntimeError: an item of the order has no stored result.
    """
    dataset, folder = run.dataset, run.folder
    unreadable = list(dataset.unreadable)
    stored = StoredItems(folder)
    rows, readable = [], []
    for index in prepared.order:
        item_id = dataset.item_ids[index]
        skipped = folder.load_unreadable(item_id)
        if skipped is not None:
            unreadable.append(skipped)
            continue
        result = stored.get(item_id)
        if result is None:
            raise RuntimeError(f"item {item_id!r} has no stored result in {folder}")
        rows += [result.rows[label] for label in run.config.explainers]
        readable.append(index)
    folder.write_records(rows, run.config.metrics)
    folder.write_skipped(unreadable)
    summary = summarise_run(folder, localisation_skipped=dataset.skipped_among(readable).count)
    folder.remove_partial_records()
    return summary


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


def prepare_forward(model: nn.Module, device: torch.device, config: RunConfig) -> dict[str, object]:
    """Resolve the forward backend and warm the model up before the first timed item.

    The ONNX Runtime export (when the backend resolves to it) and a warm-up forward of each
    engine happen here, so that no item's seconds include them; their cost is returned for
    ``config.json``.

    Returns:
        ``{"backend": {"requested", "name", "reason", "setup_seconds"}, "warmup_seconds"}``.
    """
    generator = torch.Generator().manual_seed(config.seed)
    size = config.input_size
    example = torch.randn(2, 3, size, size, generator=generator).to(device)
    dtype = config.forward_dtype
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
    config: RunConfig, dataset: ItemDataset, setup: dict[str, object], n_items: int, world: int
) -> None:
    """Log the run header: data, model and why, backend, device, item and skip counts."""
    backend = setup["backend"]
    fallback = f" (auto fell back: {backend['reason']})" if backend["reason"] else ""
    ranks = f" over {world} ranks" if world > 1 else ""
    log.info(
        f"{config.dataset} x {config.model}: model {config.model} because it is "
        f"{config.model_reason}; {n_items} items{ranks}; device {config.device}, "
        f"{backend['name']} backend{fallback}, dtype {config.dtype}, precision {config.precision}; "
        f"{len(dataset.unreadable)} unreadable item(s) left out at listing"
    )


def _dataset_options(config: RunConfig) -> dict[str, object]:
    options: dict[str, object] = {}
    if config.download:
        options["download"] = True
    if config.dataset == "synthetic":
        options["seed"] = config.seed
    return options
