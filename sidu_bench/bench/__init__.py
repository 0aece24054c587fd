"""Speed and memory benchmarks: ``python -m sidu_bench bench`` and the CI speed gate.

``run_bench(BenchConfig(...), out)`` measures, per model, the forward ceiling (the best engine
and batch size) and then every explainer on the configured forward backend, on the ``torch``
backend where that ran another engine, and its peer package, in a fresh process each, writing
``bench-<device>.csv`` and ``.md``; ``check_speed(rows, read_gate_file(path))`` checks the
ratios against committed thresholds.
"""

from sidu_bench.bench.cases import BENCH_MODELS, BenchModel, build_case
from sidu_bench.bench.config import DEFAULT_EXPLAINERS, BenchConfig
from sidu_bench.bench.gate import check_speed, format_gate, read_gate_file
from sidu_bench.bench.methods import ForwardCounter, method_call, peer_label
from sidu_bench.bench.probe import Measurement, ProbeRequest, measure, measure_here
from sidu_bench.bench.run import run_bench
from sidu_bench.bench.table import BENCH_COLUMNS, BenchRow, write_tables

__all__ = [
    "BENCH_COLUMNS",
    "BENCH_MODELS",
    "DEFAULT_EXPLAINERS",
    "BenchConfig",
    "BenchModel",
    "BenchRow",
    "ForwardCounter",
    "Measurement",
    "ProbeRequest",
    "build_case",
    "check_speed",
    "format_gate",
    "measure",
    "measure_here",
    "method_call",
    "peer_label",
    "read_gate_file",
    "run_bench",
    "write_tables",
]
