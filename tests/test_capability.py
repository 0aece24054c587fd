"""Native reduced-precision support: CPU features decide (faked here); the library warns once."""

import logging
import re

import pytest
import torch
from sidu_models import tiny_cnn

import sidu
from sidu import capability
from sidu.capability import has_native_support, slow_dtype_reason


@pytest.fixture
def fake_cpu(monkeypatch):
    def set_flags(*flags):
        monkeypatch.setattr(capability, "_cpu_flags", lambda: frozenset(flags))

    monkeypatch.setattr(capability, "_WARNED", set())
    return set_flags


@pytest.mark.parametrize(
    ("flags", "bf16", "fp16"),
    [
        pytest.param((), False, False, id="avx2-only"),
        pytest.param(("avx2", "avx512_f"), False, False, id="avx512-without-bf16"),
        pytest.param(("avx512_bf16",), True, False, id="avx512-bf16"),
        pytest.param(("amx_tile", "amx_bf16"), True, False, id="amx-bf16"),
        pytest.param(("avx512_fp16",), False, True, id="avx512-fp16"),
        pytest.param(("amx_bf16", "amx_fp16"), True, True, id="amx-fp16"),
        pytest.param(("neon", "bf16", "fp16_arith"), True, True, id="arm"),
    ],
)
def test_cpu_support_follows_the_features(fake_cpu, flags, bf16, fp16):
    fake_cpu(*flags)
    assert has_native_support(torch.bfloat16, "cpu") is bf16
    assert has_native_support(torch.float16, torch.device("cpu")) is fp16
    assert (slow_dtype_reason(torch.bfloat16, "cpu") is None) is bf16
    for dtype in (torch.float32, torch.float64, None):
        assert slow_dtype_reason(dtype, "cpu") is None
    assert has_native_support(torch.float32, "cpu")


def test_the_reason_names_the_missing_features_and_the_remedy(fake_cpu):
    fake_cpu("avx2")
    bf16 = slow_dtype_reason(torch.bfloat16, "cpu")
    assert "no native bfloat16" in bf16
    assert "AVX512-BF16" in bf16
    assert "AMX-BF16" in bf16
    assert "use float32" in bf16
    fp16 = slow_dtype_reason(torch.float16)
    assert "AVX512-FP16" in fp16
    assert "AMX-FP16" in fp16


def test_cuda_bf16_follows_torch(monkeypatch):
    monkeypatch.setattr(capability, "_cuda_bf16_supported", lambda: False)
    assert not has_native_support(torch.bfloat16, "cuda:1")
    assert "is_bf16_supported" in slow_dtype_reason(torch.bfloat16, "cuda")
    assert has_native_support(torch.float16, "cuda")
    monkeypatch.setattr(capability, "_cuda_bf16_supported", lambda: True)
    assert has_native_support(torch.bfloat16, "cuda")


def test_real_cpu_flags_agree_with_proc_cpuinfo():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if not re.search(r"^flags\s*:", text, flags=re.MULTILINE):
        pytest.skip("not an x86 /proc/cpuinfo")
    proc = set(re.search(r"^flags\s*:(.*)$", text, flags=re.MULTILINE).group(1).split())
    flags = capability._cpu_flags()
    for feature in ("avx2", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16"):
        assert (feature in flags) == (feature in proc), feature


def test_library_warns_once_per_dtype(fake_cpu, caplog):
    fake_cpu("avx2")
    model = tiny_cnn(seed=1, dtype=torch.float32)
    images = torch.rand(1, 3, 8, 8)
    with caplog.at_level(logging.WARNING, logger="sidu.capability"):
        sidu.sidu(model, "3", images, dtype=torch.bfloat16)
        sidu.masked_forward(model, images, torch.ones(2, 8, 8), dtype=torch.bfloat16)
        sidu.masked_forward(model, images, torch.ones(2, 8, 8), dtype=torch.float16)
        sidu.masked_forward(model, images, torch.ones(2, 8, 8))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("bfloat16 forward passes requested")
    assert "AVX512-BF16" in messages[0]
    assert messages[1].startswith("float16 forward passes requested")


def test_no_warning_where_the_cpu_is_native(fake_cpu, caplog):
    fake_cpu("avx512_bf16")
    model = tiny_cnn(seed=1, dtype=torch.float32)
    with caplog.at_level(logging.WARNING, logger="sidu.capability"):
        sidu.masked_forward(
            model, torch.rand(1, 3, 8, 8), torch.ones(2, 8, 8), dtype=torch.bfloat16
        )
    assert not caplog.records
