"""Command line: ``python -m sidu_bench COMMAND``.

Commands: ``evaluate``, ``list``, ``compare``, ``plot``, ``report``, ``bench``, ``train-synthetic``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_EXPLAINERS = "sidu,gradcam,scorecam,rise,center,random"
DEFAULT_OUT = Path("results/runs")
DEFAULT_REPORT_OUT = Path("results/report")
DEFAULT_BENCH_OUT = Path("results")


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
    from sidu_bench.runner import METRICS

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
        "explainers and metrics, on the CPU.",
    )
    evaluate.add_argument("--dataset", default="synthetic", help="comma-separated data sets")
    evaluate.add_argument("--root", help="parent folder of the data sets' standard subfolders")
    evaluate.add_argument("--download", action="store_true", help="download the data set")
    evaluate.add_argument("--model", default="synthetic_cnn", help="comma-separated models")
    evaluate.add_argument("--checkpoint", help="local checkpoint (single model only)")
    evaluate.add_argument("--layer", help="explained layer (single model only)")
    evaluate.add_argument("--explainers", default=DEFAULT_EXPLAINERS, help="name[:key=value,...]")
    evaluate.add_argument("--metrics", default=",".join(METRICS), help="comma-separated metrics")
    evaluate.add_argument("--target", choices=("pred", "label"), default="pred")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    evaluate.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    evaluate.add_argument("--batch-size", type=_positive, help="images per forward pass")
    evaluate.add_argument("--limit", type=_positive, help="first N items of the stratified order")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--steps", type=_positive, default=224, help="insertion/deletion steps")
    evaluate.add_argument("--step", type=_positive, help="pixels per step (overrides --steps)")
    evaluate.add_argument("--out", type=Path, default=DEFAULT_OUT, help="parent of run folders")
    evaluate.add_argument("--fresh", action="store_true", help="discard an existing run folder")

    commands.add_parser("list", help="list data sets, models, explainers and metrics")

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

    plot = commands.add_parser("plot", help="draw a run folder's figures from its stored items")
    plot.add_argument("run_dir", type=Path)

    report = commands.add_parser("report", help="cross tables of finished run folders")
    report.add_argument(
        "run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (globs allowed)"
    )
    report.add_argument(
        "--out", type=Path, default=DEFAULT_REPORT_OUT, help="output folder (results/report)"
    )
    report.add_argument(
        "--allow-mixed-protocols", action="store_true", help="mix protocols (marks the table)"
    )

    bench = commands.add_parser(
        "bench",
        help="speed and memory tables (bench-<device>.csv/.md) and the CI speed gate",
        description="Per model: the forward ceiling, then every explainer and its peer package "
        "(pytorch-sidu, pytorch-grad-cam) in a fresh process each.",
    )
    bench.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    bench.add_argument("--model", help="comma-separated bench models (default: per device)")
    bench.add_argument("--explainers", help="explainer specs (default: all, reduced mask counts)")
    bench.add_argument("--dtype", choices=("float32", "bfloat16", "float16"))
    bench.add_argument("--channels-last", action="store_true", help="channels-last masked images")
    bench.add_argument("--images", type=_positive, default=1, help="explained images per call")
    bench.add_argument("--no-peers", action="store_true", help="skip the peer packages")
    bench.add_argument("--import", dest="imports", default="", help="modules to import first")
    bench.add_argument("--out", type=Path, default=DEFAULT_BENCH_OUT, help="output folder")
    bench.add_argument(
        "--gate", type=Path, help="gate file: its cases and thresholds; exit 1 when one fails"
    )

    train = commands.add_parser("train-synthetic", help="train the shipped synthetic CNN")
    train.add_argument("--out", type=Path, help="weights file (default: the packaged one)")
    train.add_argument("--seed", type=int, default=0)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from sidu_bench.runner import RunConfig, evaluate
    from sidu_bench.runner.distributed import process_group, rank_and_world

    datasets, models = _names(args.dataset), _names(args.model)
    if (args.layer or args.checkpoint) and len(models) != 1:
        raise ValueError("--layer and --checkpoint need a single --model")
    progress = sys.stderr.isatty()
    with process_group(args.device):
        for dataset in datasets:
            for model in models:
                config = RunConfig(
                    dataset=dataset,
                    model=model,
                    explainers=tuple(_names(args.explainers)),
                    metrics=tuple(_names(args.metrics)),
                    layer=args.layer or "",
                    checkpoint=args.checkpoint,
                    root=args.root,
                    download=args.download,
                    target=args.target,
                    device=args.device,
                    dtype=args.dtype,
                    batch_size=args.batch_size,
                    limit=args.limit,
                    seed=args.seed,
                    steps=args.steps,
                    step=args.step,
                )
                outcome = evaluate(config, args.out, fresh=args.fresh, progress=progress)
                if outcome.summary is not None and rank_and_world()[0] == 0:
                    print((outcome.run_dir / "summary.md").read_text(encoding="utf-8"))
                    print(f"results written to {outcome.run_dir}")
    return 0


def _list(_args: argparse.Namespace) -> int:
    from sidu_bench.data import list_datasets
    from sidu_bench.explainers import list_explainers
    from sidu_bench.models import list_models
    from sidu_bench.runner import METRICS

    print("data sets:  " + ", ".join(list_datasets()))
    print("models:     " + ", ".join(list_models(include_torchvision=False)))
    print("            + any torchvision weights name, e.g. ResNet50_Weights.IMAGENET1K_V2")
    print("explainers: " + ", ".join(list_explainers()))
    print("metrics:    " + ", ".join(METRICS))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from sidu_bench.compare import compare_runs, load_tolerance_file, parse_tolerances

    tolerances = load_tolerance_file(args.tolerance_file) if args.tolerance_file else {}
    tolerances.update(parse_tolerances(args.tolerance))
    passed, report = compare_runs(args.new_run, args.baseline_run, tolerances)
    print(report)
    return 0 if passed else 1


def _plot(args: argparse.Namespace) -> int:
    from sidu_bench.runner.plot import plot_run

    for path in plot_run(args.run_dir):
        print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    from sidu_bench.report import build_report, expand_run_dirs

    written = build_report(
        expand_run_dirs(args.run_dirs),
        out=args.out,
        allow_mixed_protocols=args.allow_mixed_protocols,
    )
    for path in written:
        print(path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    import importlib

    from sidu_bench.bench import DEFAULT_EXPLAINERS, BenchConfig, run_bench
    from sidu_bench.bench.gate import check_speed, format_gate, read_gate_file

    imports = tuple(_names(args.imports))
    for module in imports:
        importlib.import_module(module)
    gate = read_gate_file(args.gate) if args.gate else None
    config = BenchConfig(
        device=args.device or (gate.device if gate else "cpu"),
        models=tuple(_names(args.model)) if args.model else (gate.models if gate else ()),
        explainers=tuple(_names(args.explainers))
        if args.explainers
        else (gate.explainers if gate else DEFAULT_EXPLAINERS),
        dtype=args.dtype or (gate.dtype if gate else "float32"),
        channels_last=args.channels_last,
        images=args.images,
        peers=not args.no_peers,
        imports=imports,
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
        f"{row.model:<20} {row.explainer:<44} {row.seconds_per_image:>9.3f} s/image "
        f"{row.ratio_to_ceiling:>6.2f} of ceiling {row.peak_memory_mb:>9.1f} MB  {row.status}"
    )


def _train(args: argparse.Namespace) -> int:
    from sidu_bench.models import train_synthetic

    result = train_synthetic(args.out, seed=args.seed)
    print(result)
    return 0


COMMANDS = {
    "evaluate": _evaluate,
    "list": _list,
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
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
