"""The compiled exp/log kernels (pcircuits.jit): within 1.5 ulps of the exact result,
IEEE special values exactly as NumPy, and NumPy's ufuncs wherever the kernels do not apply."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from pcircuits import jit
from pcircuits.backend import KERNEL_MIN_BYTES, Backend

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba (pip install 'pcircuits[fast]')")

SPECIALS = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 0.5, 2.0]


def _ulps(got, dtype, reference):
    """Distance of ``got`` from the longdouble ``reference`` rounded to ``dtype``, in ulps of it."""
    with np.errstate(all="ignore"):
        rounded = reference.astype(dtype)
    finite = np.isfinite(rounded)
    assert np.array_equal(got[~finite], rounded[~finite], equal_nan=True)
    spacing = np.spacing(np.abs(rounded[finite])).astype(np.longdouble)
    return np.abs(got[finite].astype(np.longdouble) - reference[finite]) / spacing


def _float_arrays(dtype):
    return hnp.arrays(dtype, st.integers(1, 300), elements=st.floats(width=np.dtype(dtype).itemsize * 8))


@pytest.mark.parametrize("kernel, ufunc", [(jit.exp, np.exp), (jit.log, np.log)], ids=["exp", "log"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_kernel_is_within_one_and_a_half_ulps_over_every_float(kernel, ufunc, dtype, data):
    x = data.draw(_float_arrays(dtype))
    with np.errstate(all="ignore"):
        assert _ulps(kernel(x), dtype, ufunc(x.astype(np.longdouble))).max(initial=0) <= 1.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_is_within_one_and_a_half_ulps_across_its_range_and_into_subnormals(dtype):
    low, high = (-110, 95) if dtype == np.float32 else (-750, 712)
    x = np.concatenate([np.linspace(low, high, 400_001), SPECIALS]).astype(dtype)
    with np.errstate(all="ignore"):
        assert _ulps(jit.exp(x), dtype, np.exp(x.astype(np.longdouble))).max() <= 1.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_is_within_one_and_a_half_ulps_across_its_range_including_subnormal_arguments(dtype):
    info = np.finfo(dtype)
    x = np.concatenate([np.geomspace(float(info.smallest_subnormal), float(info.max) / 4, 400_001), [info.max],
                        SPECIALS, [-2.0, -np.inf]])
    x = x.astype(dtype)
    with np.errstate(all="ignore"):
        assert _ulps(jit.log(x), dtype, np.log(x.astype(np.longdouble))).max() <= 1.5


def test_special_values_follow_ieee_like_numpy():
    for dtype in (np.float32, np.float64):
        x = np.array(SPECIALS + [-2.0, 1e5, -1e5], dtype)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(jit.exp(x)[[0, 1, 4, 5, 6, 10, 11]], np.exp(x)[[0, 1, 4, 5, 6, 10, 11]])
            np.testing.assert_array_equal(jit.log(x)[[0, 1, 2, 3, 4, 5, 6, 9]], np.log(x)[[0, 1, 2, 3, 4, 5, 6, 9]])


def test_writes_into_out_and_returns_it():
    x = np.linspace(-3, 3, 1000).reshape(10, 100)
    out = np.empty_like(x)
    assert jit.exp(x, out) is out
    np.testing.assert_allclose(out, np.exp(x), rtol=3e-16)
    assert jit.log(out, out) is out
    np.testing.assert_allclose(out, x, atol=1e-15)


def test_arrays_the_kernels_do_not_take_go_to_numpy_unchanged():
    x = np.linspace(-3, 3, 200).reshape(20, 10)
    np.testing.assert_array_equal(jit.exp(x.T), np.exp(x.T))                  # not C-contiguous
    np.testing.assert_array_equal(jit.exp(x.astype(np.float16)), np.exp(x.astype(np.float16)))
    np.testing.assert_array_equal(jit.log(np.arange(1, 5)), np.log(np.arange(1, 5)))   # integers


def test_backend_exp_and_log_use_the_kernels_on_the_host_and_ufuncs_on_the_strict_device():
    x = np.linspace(-5, 5, 3333)
    host, strict = Backend("numpy", "float64"), Backend("strict", "float64")
    np.testing.assert_allclose(host.exp(x), np.exp(x), rtol=3e-16)
    np.testing.assert_allclose(host.log(host.exp(x)), x, atol=1e-15)
    device_x = strict.asarray(x)
    np.testing.assert_array_equal(np.asarray(strict.xp.asnumpy(strict.exp(device_x))), np.exp(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_equals_out_of_place(dtype):
    x = np.linspace(-80, 80, 5001, dtype=dtype).reshape(3, 1667)
    for function in (jit.exp, jit.log):
        expected = function(np.abs(x))
        y = np.abs(x)
        assert function(y, y) is y
        np.testing.assert_array_equal(y, expected)
        y = np.abs(x)
        function(y[1:], y[1:])                     # two views of the same memory
        np.testing.assert_array_equal(y[1:], expected[1:])


def test_partly_overlapping_arguments_give_numpys_result():
    x = np.linspace(0.5, 3, 100)
    for function, ufunc in ((jit.exp, np.exp), (jit.log, np.log)):
        for source, target in ((slice(0, -1), slice(1, None)), (slice(1, None), slice(0, -1))):
            y = x.copy()
            function(y[source], y[target])
            z = x.copy()
            ufunc(z[source], out=z[target])
            np.testing.assert_allclose(y, z, rtol=3e-16)


def test_backend_sends_arrays_below_kernel_min_bytes_to_the_ufunc(monkeypatch):
    calls = []
    monkeypatch.setattr(jit, "exp", lambda a, out=None: calls.append(a.size) or np.exp(a, out=out))
    monkeypatch.setattr(jit, "log", lambda a, out=None: calls.append(a.size) or np.log(a, out=out))
    host = Backend("numpy", "float32")
    small = np.ones(KERNEL_MIN_BYTES // 4 - 1, np.float32)
    large = np.ones(KERNEL_MIN_BYTES // 4, np.float32)
    host.exp(small), host.log(small)
    assert calls == []
    host.exp(large), host.log(large)
    assert calls == [large.size, large.size]


def test_pcircuits_jit_0_turns_the_kernels_off():
    code = "from pcircuits import jit; import numpy as np; print(jit.available(), jit.exp(np.zeros(3))[0])"
    env = dict(os.environ, PCIRCUITS_JIT="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "1.0"]


def test_importing_pcircuits_does_not_import_numba():
    code = "import sys, pcircuits; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False"]


@jit.kernel
def _softplus_of_exp(values, out):
    for i in range(values.size):
        out[i] = jit.log64(1.0 + jit.exp64(values[i]))


@jit.kernel
def _calls_another_kernel(values, out):
    _softplus_of_exp(values, out)


def test_kernels_call_scalar_functions_and_other_kernels():
    values = np.linspace(-30, 30, 101)
    out = np.empty_like(values)
    _calls_another_kernel(values, out)
    np.testing.assert_allclose(out, np.log(1.0 + np.exp(values)), rtol=4e-16)
