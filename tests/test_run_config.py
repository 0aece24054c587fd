"""The typed run configuration: its fields, and config.json written and read exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sidu_bench.errors import ParameterError
from sidu_bench.runner import RunConfig
from sidu_bench.runner.config import IDENTITY_NORMALISATION

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "reference"
COMMITTED_CONFIG = COMMITTED / "synthetic-synthetic_cnn" / "config.json"
DESCRIBED = ("protocol", "statistics", "environment", "explainer_provenance", "plugins")
"""config.json keys that are not RunConfig fields."""


def small(**changes):
    fields = {
        "dataset": "synthetic",
        "model": "synthetic_cnn",
        "explainers": ("sidu", "center"),
        "metrics": ("pointing_game",),
        "layer": "features",
    }
    return RunConfig(**{**fields, **changes})


def test_to_json_writes_the_fields_in_order_with_the_normalisation_under_extra():
    content = small(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), dtype="bfloat16").to_json()
    assert list(content)[:22] == [
        "dataset", "model", "explainers", "metrics", "layer", "checkpoint", "root", "download",
        "target", "device", "dtype", "precision", "backend", "model_reason", "batch_size",
        "limit", "seed", "steps", "step", "tolerance", "input_size", "extra",
    ]  # fmt: skip
    assert list(content)[22:] == ["protocol", "statistics", "environment"]
    assert content["explainers"] == ["sidu", "center"]
    assert content["dtype"] == "bfloat16"
    assert content["extra"] == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert small().to_json()["extra"] == {}


def test_from_json_inverts_to_json():
    config = small(mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0), tolerance=4.5, limit=3, step=2)
    assert RunConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert RunConfig.from_json(small().to_json()) == small()


@pytest.mark.skipif(not COMMITTED_CONFIG.is_file(), reason="no committed reference run")
def test_the_committed_config_round_trips_key_by_key():
    stored = json.loads(COMMITTED_CONFIG.read_text(encoding="utf-8"))
    config = RunConfig.from_json(stored)
    assert config.mean == (0.5, 0.5, 0.5)
    assert config.std == (0.25, 0.25, 0.25)
    written = config.to_json()
    fields = [key for key in stored if key not in DESCRIBED]
    assert [key for key in written if key not in DESCRIBED] == fields
    assert {key: written[key] for key in fields} == {key: stored[key] for key in fields}


def test_from_json_names_what_is_missing_or_malformed():
    content = small().to_json()
    del content["layer"], content["dataset"]
    with pytest.raises(ValueError, match=r"configuration lacks the field\(s\) dataset, layer"):
        RunConfig.from_json(content)
    with pytest.raises(ValueError, match="extra must be an object"):
        RunConfig.from_json({**small().to_json(), "extra": [1]})


def test_typed_fields():
    assert small().forward_dtype is None
    assert small(dtype="float16").forward_dtype is torch.float16
    assert small().normalisation == IDENTITY_NORMALISATION
    assert small(mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0)).normalisation == (
        (1.0, 2.0, 3.0),
        (4.0, 5.0, 6.0),
    )
    with pytest.raises(ParameterError, match="mean and std must both be given or both be None"):
        small(mean=(0.5, 0.5, 0.5))
