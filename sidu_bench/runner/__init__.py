"""The evaluation runner: wires data sets, models, explainers and metrics into run folders."""

from sidu_bench.runner.config import PROTOCOL_VERSION, RunConfig
from sidu_bench.runner.item_eval import METRICS
from sidu_bench.runner.run import RunOutcome, evaluate, run_folder_name

__all__ = ["METRICS", "PROTOCOL_VERSION", "RunConfig", "RunOutcome", "evaluate", "run_folder_name"]
