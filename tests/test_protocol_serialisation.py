"""config.json and the protocol id serialise exactly as the committed protocol-3 run folders did.

The protocol's metric entries are derived from the code (the metric registry, the RISE kernel's
constants), so this guards two things: today's code writes byte for byte what the committed
folders hold (resume and ``report`` keep accepting them), and a change to a constant behind the
protocol does change the protocol id.
"""

import json
from pathlib import Path

import pytest

from sidu_bench.metrics import substrates
from sidu_bench.report import protocol_id
from sidu_bench.runner.config import PROTOCOL_VERSION, RunConfig

RESULTS = Path(__file__).resolve().parents[1] / "results"
COMMITTED = [
    RESULTS / "reference" / "synthetic-synthetic_cnn",
    RESULTS / "reference-captum" / "synthetic-synthetic_cnn",
]
DESCRIBED_ELSEWHERE = ("environment", "earlier_environments")
"""Keys of config.json that describe the machine and session, not the configuration."""
ADDED_BY_THE_RUNNER = ("explainer_provenance", "plugins")


def stored_config(folder):
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def without_environment(content):
    return {key: value for key, value in content.items() if key not in DESCRIBED_ELSEWHERE}


@pytest.fixture(params=COMMITTED, ids=lambda folder: f"{folder.parent.name}/{folder.name}")
def stored(request):
    content = stored_config(request.param)
    assert content["protocol"]["protocol_version"] == PROTOCOL_VERSION
    return content


def test_config_json_serialises_as_the_committed_folder(stored):
    written = without_environment(RunConfig.from_json(stored).to_json())
    # The runner adds descriptive keys after these (explainer provenance, plug-ins).
    expected = {key: stored[key] for key in stored if key in written}
    assert list(written) == list(expected)  # the same keys in the same order
    assert {*written, *ADDED_BY_THE_RUNNER, *DESCRIBED_ELSEWHERE} >= set(stored)
    for key, value in expected.items():
        assert written[key] == value, key
    # Byte for byte as config.json writes it (key order inside objects, ints vs floats).
    assert json.dumps(written, indent=2, default=str) == json.dumps(expected, indent=2)


def test_protocol_and_statistics_equal_the_stored_ones(stored):
    config = RunConfig.from_json(stored)
    protocol = config.protocol()
    assert list(protocol) == list(stored["protocol"])
    for key, value in stored["protocol"].items():
        assert protocol[key] == value, key
    assert config.statistics() == stored["statistics"]
    assert protocol_id(protocol) == protocol_id(stored["protocol"])
    assert PROTOCOL_VERSION == 4


def test_the_protocol_id_follows_the_blur_kernel(monkeypatch):
    config = RunConfig.from_json(stored_config(COMMITTED[0]))
    before = config.protocol()
    monkeypatch.setattr(substrates, "KERNEL_SIGMA", 4.0)
    sigma = config.protocol()
    assert sigma["insertion_deletion"]["insertion_substrate"] == (
        "RISE blur: gaussian_filter(delta 11x11, sigma=4), pad 5"
    )
    monkeypatch.setattr(substrates, "KERNEL_SIZE", 9)
    size = config.protocol()
    assert size["insertion_deletion"]["insertion_substrate"] == (
        "RISE blur: gaussian_filter(delta 9x9, sigma=4), pad 4"
    )
    ids = {protocol_id(before), protocol_id(sigma), protocol_id(size)}
    assert len(ids) == 3
