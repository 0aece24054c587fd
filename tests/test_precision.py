"""sidu.precision: the float32 mode context, on this torch and on a faked torch < 2.9."""

from __future__ import annotations

import types

import pytest
import torch

import sidu.precision as precision_module
from sidu.precision import PRECISIONS, fp32_precision

B = torch.backends


def _legacy(getter):
    try:
        return getter()
    except RuntimeError:
        return "raises"


def snapshot() -> dict[str, object]:
    """Every setting the context may touch, legacy views included (or that they raise)."""
    return {
        "conv": B.cudnn.conv.fp32_precision,
        "rnn": B.cudnn.rnn.fp32_precision,
        "matmul": B.cuda.matmul.fp32_precision,
        "mkldnn_matmul": B.mkldnn.matmul.fp32_precision,
        "cudnn.allow_tf32": _legacy(lambda: B.cudnn.allow_tf32),
        "matmul.allow_tf32": _legacy(lambda: B.cuda.matmul.allow_tf32),
        "matmul_precision": _legacy(torch.get_float32_matmul_precision),
    }


@pytest.fixture(autouse=True)
def _restore_process_flags():
    """Leave the process as the test found it, whatever a test set."""
    cudnn, cublas = B.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    raw = (
        B.cudnn.conv.fp32_precision,
        B.cudnn.rnn.fp32_precision,
        B.cuda.matmul.fp32_precision,
        B.mkldnn.matmul.fp32_precision,
    )
    yield
    B.cudnn.allow_tf32 = cudnn
    torch.set_float32_matmul_precision(cublas)
    (
        B.cudnn.conv.fp32_precision,
        B.cudnn.rnn.fp32_precision,
        B.cuda.matmul.fp32_precision,
        B.mkldnn.matmul.fp32_precision,
    ) = raw


def _caller_default() -> None:
    """Nothing set: torch's defaults."""


def _caller_medium_matmul() -> None:
    torch.set_float32_matmul_precision("medium")


def _caller_all_tf32_new_api() -> None:
    B.cudnn.conv.fp32_precision = "tf32"
    B.cudnn.rnn.fp32_precision = "tf32"
    B.cuda.matmul.fp32_precision = "tf32"


def _caller_legacy_off() -> None:
    B.cudnn.allow_tf32 = False
    B.cuda.matmul.allow_tf32 = False


def _caller_mixed() -> None:
    """Views that already disagree: torch refuses to read both legacy flags."""
    B.cudnn.conv.fp32_precision = "ieee"
    B.cuda.matmul.fp32_precision = "tf32"


CALLERS = [
    _caller_default,
    _caller_medium_matmul,
    _caller_all_tf32_new_api,
    _caller_legacy_off,
    _caller_mixed,
]


@pytest.mark.parametrize("mode", PRECISIONS)
@pytest.mark.parametrize("caller", CALLERS, ids=lambda f: f.__name__.removeprefix("_caller_"))
def test_flags_inside_and_restored_after(caller, mode):
    caller()
    before = snapshot()
    with fp32_precision(mode):
        assert B.cudnn.conv.fp32_precision == mode
        assert B.cudnn.rnn.fp32_precision == mode
        assert B.cuda.matmul.fp32_precision == mode
        if before["cudnn.allow_tf32"] != "raises":
            assert B.cudnn.allow_tf32 is (mode == "tf32")
        if before["matmul.allow_tf32"] != "raises":
            assert B.cuda.matmul.allow_tf32 is (mode == "tf32")
    assert snapshot() == before


def test_caller_state_the_issue_names_reads_cleanly_inside():
    """From torch's defaults both legacy flags stay readable inside either mode."""
    for mode in PRECISIONS:
        with fp32_precision(mode):
            assert B.cudnn.allow_tf32 is (mode == "tf32")
            assert B.cuda.matmul.allow_tf32 is (mode == "tf32")


def test_restored_after_an_exception():
    _caller_all_tf32_new_api()
    before = snapshot()
    seen = []

    def failing_call():
        with fp32_precision("ieee"):
            seen.append(B.cudnn.conv.fp32_precision)
            raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        failing_call()
    assert seen == ["ieee"]
    assert snapshot() == before


def test_nested_contexts_restore_in_order():
    with fp32_precision("ieee"):
        with fp32_precision("tf32"):
            assert B.cudnn.conv.fp32_precision == "tf32"
        assert (B.cudnn.conv.fp32_precision, B.cuda.matmul.fp32_precision) == ("ieee", "ieee")


@pytest.mark.parametrize("mode", ["IEEE", "bf16", "", None])
def test_unknown_mode_is_refused(mode):
    before = snapshot()
    ran = []

    def call():
        with fp32_precision(mode):
            ran.append(True)

    with pytest.raises(ValueError, match=r"precision must be one of \('ieee', 'tf32'\)"):
        call()
    assert ran == []
    assert snapshot() == before


def _fake_old_torch(cudnn_tf32: bool, matmul_tf32: bool) -> types.SimpleNamespace:
    """A torch < 2.9 as far as the module can tell: legacy flags, no fp32_precision."""

    class Matmul:
        allow_tf32 = matmul_tf32

        def __getattr__(self, name):
            raise AttributeError("Unknown attribute " + name)

    backends = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(allow_tf32=cudnn_tf32),
        cuda=types.SimpleNamespace(matmul=Matmul()),
        mkldnn=types.SimpleNamespace(),
    )
    return types.SimpleNamespace(backends=backends)


@pytest.mark.parametrize("mode", PRECISIONS)
@pytest.mark.parametrize(("cudnn_tf32", "matmul_tf32"), [(True, False), (False, True)])
def test_legacy_torch_uses_allow_tf32(monkeypatch, mode, cudnn_tf32, matmul_tf32):
    fake = _fake_old_torch(cudnn_tf32, matmul_tf32)
    monkeypatch.setattr(precision_module, "torch", fake)
    assert not precision_module._has_fp32_precision_api()
    seen = []

    def failing_call():
        with fp32_precision(mode):
            seen.append((fake.backends.cudnn.allow_tf32, fake.backends.cuda.matmul.allow_tf32))
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        failing_call()
    assert seen == [(mode == "tf32", mode == "tf32")]
    assert fake.backends.cudnn.allow_tf32 is cudnn_tf32
    assert fake.backends.cuda.matmul.allow_tf32 is matmul_tf32


def test_this_torch_has_the_new_api():
    assert precision_module._has_fp32_precision_api()
