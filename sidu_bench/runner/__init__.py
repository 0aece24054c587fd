"""The evaluation runner: wires data sets, models, explainers and metrics into run folders."""

from sidu_bench.runner.config import PROTOCOL_VERSION, RunConfig
from sidu_bench.runner.folder import RunFolder
from sidu_bench.runner.run import RunOutcome, evaluate

__all__ = ["PROTOCOL_VERSION", "RunConfig", "RunFolder", "RunOutcome", "evaluate"]
