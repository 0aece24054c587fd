"""Library errors name the parameter; the command line shows it as its flag."""

from __future__ import annotations

import pytest

from sidu_bench.cli import flag, main
from sidu_bench.errors import ParameterError, check_choice
from sidu_bench.runner import RunConfig


def test_the_message_names_parameters_and_respells_them():
    error = ParameterError("use another `out`, or `fresh` to start over; `out` is taken")
    assert isinstance(error, ValueError)
    assert str(error) == "use another out, or fresh to start over; out is taken"
    assert error.parameters == ("out", "fresh")
    assert error.spelled(flag) == "use another --out, or --fresh to start over; --out is taken"
    assert error.template == "use another `out`, or `fresh` to start over; `out` is taken"


def test_flag_spells_underscores_as_dashes():
    assert [flag(name) for name in ("dtype", "allow_model_mismatch")] == [
        "--dtype",
        "--allow-model-mismatch",
    ]


def test_check_choice_accepts_a_choice_and_names_the_parameter_otherwise():
    check_choice("dtype", "float16", ("float32", "float16"))
    with pytest.raises(ParameterError) as error:
        check_choice("dtype", "int8", ("float32", "float16"))
    assert str(error.value) == "dtype must be one of float32, float16, got 'int8'"
    assert error.value.parameters == ("dtype",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("dtype", "int8"), ("target", "guess"), ("precision", "fp16"), ("backend", "openvino")],
)
def test_run_config_names_the_bad_field(field, value):
    base = {
        "dataset": "synthetic",
        "model": "",
        "explainers": ("sidu",),
        "metrics": (),
        "layer": "",
    }
    expected = f"^{field} must be one of .*, got '{value}'$"
    with pytest.raises(ParameterError, match=expected) as error:
        RunConfig(**base, **{field: value})
    assert error.value.parameters == (field,)


@pytest.mark.parametrize("explainers", [(), ("",), ("sidu", "")])
def test_run_config_needs_an_explainer(explainers):
    with pytest.raises(ParameterError, match=r"^explainers must name at least one explainer"):
        RunConfig(dataset="synthetic", model="", explainers=explainers, metrics=(), layer="")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["evaluate", "--device", "gpu"], "error: --device must be auto, cpu, cuda or cuda:N"),
        (["evaluate", "--metrics", "pointing"], "; --metrics takes a comma-separated subset of"),
        (["bench", "--device", "gpu", "--no-peers"], "error: --device must be auto, cpu, cuda"),
    ],
)
def test_the_command_line_shows_flags(tmp_path, capsys, arguments, message):
    assert main([*arguments, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert not list(tmp_path.iterdir()), "nothing is written before the options are checked"


def test_a_data_set_not_found_names_the_root_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = ["evaluate", "--dataset", "caltech101", "--root", str(tmp_path / "none")]
    assert main([*arguments, "--model", "synthetic_cnn", "--allow-model-mismatch"]) == 2
    error = capsys.readouterr().err
    assert f"tried: --root = {tmp_path / 'none'} (does not hold caltech101/" in error
    assert "Pass --root (the parent of the data set's folder)" in error
    assert "or use --download to fetch it into" in error
