"""``python -m sidu_bench plot RUN_DIR``: redraw a run's figures from its stored items."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sidu_bench.runner.config import RunConfig, read_config
from sidu_bench.runner.figures import write_figures
from sidu_bench.runner.storage import ItemStore


def plot_run(run_dir: Path) -> list[Path]:
    """Draw the figures of a finished run folder; return the files written.

    Items are taken in the order of ``records.csv`` (the evaluation order).

    Raises:
        FileNotFoundError: the folder is not a finished run (no ``config.json``/``records.csv``).
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    records_path = run_dir / "records.csv"
    if config is None or not records_path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a finished run folder (config.json, records.csv)"
        )
    ids = list(dict.fromkeys(pd.read_csv(records_path, dtype={"id": str})["id"]))
    store = ItemStore(run_dir)
    results = [result for result in map(store.load, ids) if result is not None]
    mean, std = RunConfig.from_json(config).normalisation
    return write_figures(
        run_dir,
        results,
        list(config["explainers"]),
        mean=mean,
        std=std,
        title=f"{config['dataset']} × {config['model']}",
    )
