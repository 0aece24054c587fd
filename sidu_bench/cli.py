"""Command line: ``python -m sidu_bench COMMAND``.

Commands: ``evaluate``, ``list``, ``summarise``, ``compare``, ``plot``, ``report``, ``bench``,
``train-synthetic``. Library errors that name a parameter
(:class:`~sidu_bench.errors.NamedParameterError`) are shown with the parameter as its flag
(``dtype`` -> ``--dtype``, ``allow_model_mismatch`` -> ``--allow-model-mismatch``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

DEFAULT_EXPLAINERS = "sidu,gradcam,scorecam,rise,center,random"
DEFAULT_OUT = Path("results/runs")
DEFAULT_REPORT_OUT = Path("results/report")
DEFAULT_BENCH_OUT = Path("results")
RUN_OPTIONS = (
    "checkpoint",
    "root",
    "download",
    "target",
    "device",
    "dtype",
    "precision",
    "backend",
    "batch_size",
    "limit",
    "seed",
    "steps",
    "step",
)
"""``evaluate`` flags that become :class:`~sidu_bench.runner.RunConfig` fields of the same name."""


def flag(parameter: str) -> str:
    """The command-line flag of a library parameter.

    Example:
        >>> flag("allow_model_mismatch")
        '--allow-model-mismatch'
    """
    return "--" + parameter.replace("_", "-")


def _names(text: str) -> list[str]:
    """Split a comma-separated list, keeping ``name:key=value,key=value`` explainer specs whole."""
    parts: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if parts and "=" in piece and ":" not in piece and "=" in parts[-1]:
            parts[-1] = f"{parts[-1]},{piece}"
        else:
            parts.append(piece)
    return parts


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from sidu.precision import DTYPES
    from sidu_bench.metrics import list_metrics
    from sidu_bench.runner.config import Target

    parser = argparse.ArgumentParser(
        prog="python -m sidu_bench",
        description="SIDU and a benchmark suite for saliency-map faithfulness and speed.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate explainers on data sets and models (offline default: synthetic)",
        description="With no arguments: the synthetic data set and its shipped CNN, all "
        "explainers and metrics, on a GPU when there is one, else the CPU. Without --model each "
        "data set runs with its own default model (synthetic: synthetic_cnn; photographs: "
        "efficientnet_lite0). Without --root the data is looked for in $SIDU_BENCH_DATA, then "
        "./data.",
    )
    evaluate.add_argument("--dataset", default="synthetic", help="comma-separated data sets")
    evaluate.add_argument(
        "--root",
        help="parent folder of the data sets' standard subfolders (default: $SIDU_BENCH_DATA, "
        "then ./data)",
    )
    evaluate.add_argument("--download", action="store_true", help="download the data set")
    evaluate.add_argument(
        "--model", help="comma-separated models (default: each data set's default model)"
    )
    evaluate.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="run a model on a data set outside its domain (e.g. synthetic_cnn on photographs)",
    )
    evaluate.add_argument("--checkpoint", help="local checkpoint (single model only)")
    evaluate.add_argument("--layer", help="explained layer (single model only)")
    evaluate.add_argument("--explainers", default=DEFAULT_EXPLAINERS, help="name[:key=value,...]")
    evaluate.add_argument(
        "--metrics",
        default=",".join(list_metrics(default_only=True)),
        help="comma-separated metrics, or 'all' (default: every metric but the opt-in "
        "sanity checks, see 'list')",
    )
    evaluate.add_argument("--target", choices=get_args(Target), default="pred")
    evaluate.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    _add_engine_options(evaluate)
    evaluate.add_argument("--batch-size", type=_positive, help="images per forward pass")
    evaluate.add_argument("--limit", type=_positive, help="first N items of the stratified order")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--steps", type=_positive, default=224, help="insertion/deletion steps")
    evaluate.add_argument("--step", type=_positive, help="pixels per step (overrides --steps)")
    evaluate.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent of run folders")
    evaluate.add_argument("--fresh", action="store_true", help="discard an existing run folder")
    _add_import_option(evaluate)
    evaluate.add_argument(
        "--html",
        action="store_true",
        help="also write the run's report with report.html into <run folder>/report/",
    )
    evaluate.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable image or annotation (default: skip and list it)",
    )

    listing = commands.add_parser("list", help="list data sets, models, explainers and metrics")
    _add_import_option(listing)

    summarise = commands.add_parser(
        "summarise", help="rebuild the summary (and figures) of run folders from their records"
    )
    summarise.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    _add_import_option(summarise)

    compare = commands.add_parser("compare", help="fail (exit 1) on a faithfulness regression")
    compare.add_argument("new_run", type=Path)
    compare.add_argument("baseline_run", type=Path)
    compare.add_argument(
        "--tolerance",
        help="METRIC=VALUE[,METRIC=VALUE] (absolute); overrides --tolerance-file entries",
    )
    compare.add_argument(
        "--tolerance-file",
        type=Path,
        help='JSON file with a "tolerances" object {METRIC: VALUE}, '
        "e.g. results/gates/faithfulness.json",
    )
    compare.add_argument(
        "--allow-mixed-protocols",
        action="store_true",
        help="compare runs of different protocols, data sets or models anyway (marked)",
    )
    _add_import_option(compare)

    plot = commands.add_parser("plot", help="draw a finished run folder's figures from its items")
    plot.add_argument("run_dir", type=Path)

    report = commands.add_parser("report", help="cross tables of finished run folders")
    report.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (globs allowed)"
    )
    report.add_argument(
        "--out", type=Path, default=DEFAULT_REPORT_OUT, help="output folder (results/report)"
    )
    _add_import_option(report)
    report.add_argument(
        "--allow-mixed-protocols", action="store_true", help="mix protocols (marks the table)"
    )
    report.add_argument(
        "--html",
        action="store_true",
        help="also write report.html: one offline page with sortable tables, verdicts and an "
        "item browser (pictures in report_files/)",
    )
    report.add_argument(
        "--latex",
        action="store_true",
        help="also write report.tex (booktabs tables to \\input) and report_standalone.tex",
    )

    bench = commands.add_parser(
        "bench",
        help="speed and memory tables (bench-<device>.csv/.md) and the CI speed gate",
        description="Per model: the forward ceiling, then every explainer and its peer package "
        "(pytorch-sidu, pytorch-grad-cam) in a fresh process each.",
    )
    bench.add_argument(
        "--device", default=None, help="auto (default; the gate file's with --gate), cpu, cuda[:N]"
    )
    bench.add_argument("--model", help="comma-separated bench models (default: per device)")
    bench.add_argument("--explainers", help="explainer specs (default: all, reduced mask counts)")
    bench.add_argument("--dtype", choices=tuple(DTYPES))
    _add_engine_options(bench)
    bench.add_argument("--channels-last", action="store_true", help="channels-last masked images")
    bench.add_argument("--images", type=_positive, default=1, help="explained images per call")
    bench.add_argument("--no-peers", action="store_true", help="skip the peer packages")
    bench.add_argument(
        "--no-torch-backend",
        action="store_true",
        help="skip the torch-backend rows measured where another backend ran",
    )
    _add_import_option(bench)
    bench.add_argument("--out", type=Path, default=DEFAULT_BENCH_OUT, help="output folder")
    bench.add_argument(
        "--gate", type=Path, help="gate file: its cases and thresholds; exit 1 when one fails"
    )

    train = commands.add_parser(
        "train-synthetic", help="train a shipped synthetic model (the CNN or the ViT)"
    )
    train.add_argument(
        "--arch", choices=("synthetic_cnn", "synthetic_vit"), default="synthetic_cnn"
    )
    train.add_argument("--out", type=Path, help="weights file (default: the packaged one)")
    train.add_argument("--seed", type=int, default=0)
    return parser


def _add_import_option(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE[,MODULE]`` (evaluate, list, summarise, compare, report and bench)."""
    parser.add_argument(
        "--import",
        dest="imports",
        default="",
        metavar="MODULE[,MODULE]",
        help="plug-in modules to import first (they register explainers, models or data sets); "
        "installed plug-ins load through their entry points",
    )


def _load_plugins(args: argparse.Namespace) -> tuple[str, ...]:
    """Import ``--import``'s modules and load the installed entry points; return the modules."""
    from sidu_bench.plugins import load_plugins

    imports = tuple(_names(args.imports))
    load_plugins(imports)
    return imports


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--precision`` and ``--allow-slow-dtype`` (evaluate and bench)."""
    from sidu_bench.runner.config import Backend, Precision

    parser.add_argument(
        "--backend",
        choices=get_args(Backend),
        default="auto",
        help="engine of the perturbation forwards: auto (ONNX Runtime for float32 on the CPU "
        "when installed and its export checks out, else torch), torch, onnxruntime",
    )
    parser.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="ieee",
        help="float32 matmul/convolution precision on CUDA (ieee: true float32; tf32: faster, "
        "~1e-3 relative error); recorded in the protocol",
    )
    parser.add_argument(
        "--allow-slow-dtype",
        action="store_true",
        help="allow --dtype bfloat16/float16 on a CPU without native support (4-22x slower)",
    )


def _check_dtype_speed(dtype: str, device: str, *, allowed: bool) -> None:
    """Refuse bf16/fp16 on a CPU without native support unless ``--allow-slow-dtype``."""
    from sidu.capability import slow_dtype_reason
    from sidu.precision import parse_dtype
    from sidu_bench.devices import resolve_device

    if dtype == "float32" or allowed:
        return
    reason = slow_dtype_reason(parse_dtype(dtype), resolve_device(device))
    if reason is not None:
        raise ValueError(
            f"--dtype {dtype}: {reason}; use --dtype float32 (with --backend auto, the fastest "
            "engine on this CPU) or pass --allow-slow-dtype"
        )


def _evaluate(args: argparse.Namespace) -> int:
    from sidu_bench.report import build_report
    from sidu_bench.runner import RunConfig, RunFolder, evaluate
    from sidu_bench.runner.distributed import process_group, rank_and_world

    _load_plugins(args)
    datasets = _names(args.dataset)
    models = _names(args.model) if args.model else [None]
    if (args.layer or args.checkpoint) and len(models) != 1:
        raise ValueError("--layer and --checkpoint need a single --model")
    if (args.layer or args.checkpoint) and models == [None] and len(datasets) != 1:
        raise ValueError("--layer and --checkpoint need a single --model or a single --dataset")
    _check_dtype_speed(args.dtype, args.device, allowed=args.allow_slow_dtype)
    progress = sys.stderr.isatty()
    with process_group(args.device):
        for dataset in datasets:
            for model in models:
                config = RunConfig(
                    dataset=dataset,
                    model=model or "",
                    explainers=tuple(_names(args.explainers)),
                    metrics=_metric_names(args.metrics),
                    layer=args.layer or "",
                    **{name: getattr(args, name) for name in RUN_OPTIONS},
                )
                outcome = evaluate(
                    config,
                    args.out,
                    fresh=args.fresh,
                    progress=progress,
                    strict=args.strict,
                    allow_model_mismatch=args.allow_model_mismatch,
                )
                if outcome.summary is not None and rank_and_world()[0] == 0:
                    folder = RunFolder(outcome.run_dir)
                    print(folder.summary_markdown())
                    print(f"results written to {outcome.run_dir}")
                    if args.html:
                        page = build_report(
                            [outcome.run_dir], out=folder.report_folder(), html=True
                        )[-1]
                        print(f"report page written to {page}")
    return 0


def _metric_names(text: str) -> tuple[str, ...]:
    """``--metrics``: a comma-separated list, or ``all`` for every registered metric."""
    from sidu_bench.metrics import list_metrics

    return tuple(list_metrics()) if text.strip() == "all" else tuple(_names(text))


def _list(args: argparse.Namespace) -> int:
    from sidu_bench.data import list_datasets
    from sidu_bench.explainers import list_explainers
    from sidu_bench.metrics import list_metrics
    from sidu_bench.models import list_models

    _load_plugins(args)
    print("data sets:  " + ", ".join(list_datasets()))
    print("models:     " + ", ".join(list_models(include_torchvision=False)))
    print("            + any torchvision weights name, e.g. ResNet50_Weights.IMAGENET1K_V2")
    print(
        "            + timm:<name> (any timm model; weights from timm's cache or --checkpoint), "
        "e.g. timm:convnext_tiny.fb_in1k"
    )
    print("explainers: " + ", ".join(list_explainers()))
    opt_in = set(list_metrics()) - set(list_metrics(default_only=True))
    print("metrics:    " + ", ".join(f"{m} (opt-in)" if m in opt_in else m for m in list_metrics()))
    return 0


def _summarise(args: argparse.Namespace) -> int:
    from sidu_bench.runner.summarise import summarise_run

    _load_plugins(args)
    for run_dir in args.run_dirs:
        summarise_run(run_dir)
        print(f"summary rebuilt in {run_dir}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from sidu_bench.compare import compare_runs, load_tolerance_file, parse_tolerances

    _load_plugins(args)
    tolerances = load_tolerance_file(args.tolerance_file) if args.tolerance_file else {}
    tolerances.update(parse_tolerances(args.tolerance))
    passed, report = compare_runs(
        args.new_run,
        args.baseline_run,
        tolerances,
        allow_mixed_protocols=args.allow_mixed_protocols,
    )
    print(report)
    return 0 if passed else 1


def _plot(args: argparse.Namespace) -> int:
    from sidu_bench.runner.figures import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    from sidu_bench.report import build_report, expand_run_dirs

    _load_plugins(args)
    written = build_report(
        expand_run_dirs(args.run_dirs),
        out=args.out,
        allow_mixed_protocols=args.allow_mixed_protocols,
        html=args.html,
        latex=args.latex,
    )
    for path in written:
        print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from sidu_bench.bench import DEFAULT_EXPLAINERS, BenchConfig, run_bench
    from sidu_bench.bench.gate import check_speed, format_gate, read_gate_file

    imports = _load_plugins(args)
    gate = read_gate_file(args.gate) if args.gate else None
    device = args.device if args.device is not None else (gate.device if gate else "auto")
    dtype = args.dtype or (gate.dtype if gate else "float32")
    _check_dtype_speed(dtype, device, allowed=args.allow_slow_dtype)
    config = BenchConfig(
        device=device,
        models=tuple(_names(args.model)) if args.model else (gate.models if gate else ()),
        explainers=tuple(_names(args.explainers))
        if args.explainers
        else (gate.explainers if gate else DEFAULT_EXPLAINERS),
        dtype=dtype,
        backend=args.backend,
        precision=args.precision,
        channels_last=args.channels_last,
        images=args.images,
        peers=not args.no_peers,
        imports=imports,
        compare_torch_backend=not args.no_torch_backend
        and (gate is None or gate.needs_torch_backend),
    )
    rows = run_bench(config, args.out, on_row=lambda row: print(_bench_line(row), flush=True))
    device = "cuda" if config.device.startswith("cuda") else "cpu"
    print(f"tables written to {args.out / f'bench-{device}.csv'} and .md")
    failed = [row for row in rows if row.status.startswith("failed")]
    passed = not failed
    if gate is not None:
        results = check_speed(rows, gate)
        print(format_gate(results))
        passed = passed and all(result.passed for result in results)
    return 0 if passed else 1


def _bench_line(row: object) -> str:
    return (
        f"{row.model:<20} {row.explainer:<44} {row.kind:<13} {row.backend or '-':<12} "
        f"{row.seconds_per_image:>9.3f} s/image "
        f"{row.ratio_to_ceiling:>6.2f} of ceiling {row.peak_memory_mb:>9.1f} MB  {row.status}"
    )


def _train(args: argparse.Namespace) -> int:
    from sidu_bench.models import synthetic_cnn, synthetic_vit
    from sidu_bench.training import train_synthetic

    packaged = {model.ARCH: model.WEIGHTS for model in (synthetic_cnn, synthetic_vit)}
    out = args.out if args.out is not None else packaged[args.arch]
    result = train_synthetic(out, arch=args.arch, seed=args.seed)
    print(result)
    return 0


COMMANDS = {
    "evaluate": _evaluate,
    "list": _list,
    "summarise": _summarise,
    "compare": _compare,
    "plot": _plot,
    "report": _report,
    "bench": _bench,
    "train-synthetic": _train,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from sidu_bench.errors import NamedParameterError

    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError, ImportError) as error:
        message = error.spelled(flag) if isinstance(error, NamedParameterError) else str(error)
        print(f"error: {message}", file=sys.stderr)
        return 2
