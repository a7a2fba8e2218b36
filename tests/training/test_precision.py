"""Precision policies: ``auto`` resolves for the machine, a slow choice is warned about."""

import logging

import keras
import pytest
import tensorflow as tf

from detectlab.training.devices import cpu_has_native_bfloat16, resolve_precision, set_precision
from detectlab.utils import cpu_flags

SAPPHIRE_RAPIDS = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
MILAN = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma sha_ni\n"
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("text, native", [(SAPPHIRE_RAPIDS, True), (MILAN, False), (GRAVITON3, True)])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, text, native):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert cpu_has_native_bfloat16(str(path)) is native
    assert "sse" in cpu_flags(str(path)) or "asimd" in cpu_flags(str(path))


def test_missing_cpuinfo_means_no_flags(tmp_path):
    assert cpu_flags(str(tmp_path / "absent")) == frozenset()
    assert not cpu_has_native_bfloat16(str(tmp_path / "absent"))


def test_auto_picks_bfloat16_only_where_the_cpu_has_it():
    assert not tf.config.list_physical_devices("GPU")
    expected = "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"
    assert resolve_precision("auto") == expected
    for name in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(name) == name


def test_set_precision_sets_the_resolved_policy_and_warns_on_emulated_bfloat16(caplog):
    try:
        assert set_precision("auto") == resolve_precision("auto")
        assert keras.mixed_precision.dtype_policy().name == resolve_precision("auto")
        with caplog.at_level(logging.WARNING, logger="detectlab"):
            set_precision("mixed_bfloat16")
        assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
        warned = any("no native bfloat16" in r.getMessage() for r in caplog.records)
        assert warned is not cpu_has_native_bfloat16()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def test_mixed_float16_on_a_cpu_without_float16_is_warned_about(caplog):
    try:
        with caplog.at_level(logging.WARNING, logger="detectlab"):
            assert set_precision("mixed_float16") == "mixed_float16"
        warned = any("no native float16" in r.getMessage() for r in caplog.records)
        assert warned is cpu_flags().isdisjoint(("avx512_fp16", "amx_fp16"))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
