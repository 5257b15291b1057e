"""The cGMM layer's compiled softmax step (pcircuits.dcgmm._kernels) against the array steps it
replaces: the same responsibilities to rounding, rows far below the bound recomputed, and the
array steps taken where the kernel does not run."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import softmax

from pcircuits import jit
from pcircuits.backend import get_backend
from pcircuits.dcgmm import CGMM, _kernels

needs_numba = pytest.mark.skipif(not jit.available(), reason="needs Numba (pip install 'pcircuits[fast]')")

#: Tolerances of the comparisons: float64 to ~1e-12 relative, float32 to a few ulps.
RTOL = {np.float32: 8 * np.finfo(np.float32).eps, np.float64: 1e-12}


def layer_of(k, dtype, input_shape=(2, 3, 4), seed=0):
    layer = CGMM(k)
    layer.build(input_shape, get_backend("numpy", np.dtype(dtype).name), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    layer.set_parameters(means=rng.normal(size=layer.means.shape),
                         precisions=rng.uniform(0.5, 2.0, layer.precisions.shape))
    return layer


def shifted_scores(k, dtype, rows=300, seed=3):
    """Scores at most 0 with the cases the kernel must get right: rows far below 0 (sums under
    ``min_bounded_sum``, recomputed), a row just above that limit, ``-inf`` and very negative
    entries."""
    scores = np.random.default_rng(seed).uniform(-80.0, 0.0, (rows, k))
    scores[0] = -200.0                                   # every term below 2^-280: recomputed
    scores[1] = -1000.0
    scores[1, 0] = -75.0                                 # sum 2^-108: recomputed
    scores[2] = -1000.0
    scores[2, -1] = -60.0                                # sum 2^-87: kept
    if k > 1:                                            # (a row of -inf alone has no softmax)
        scores[3, 0] = -np.inf
        scores[4, ::2] = -1e30
    return scores.astype(dtype)


def softmax_steps(layer, scores, *, compiled, monkeypatch):
    """``layer._bounded_softmax`` of ``scores`` with the compiled kernel or the array steps."""
    with monkeypatch.context() as patch:
        if not compiled:
            patch.setattr(_kernels, "_KERNELS", {})
        assert layer._compiled(scores.dtype) is compiled
        out, sums = np.empty_like(scores), np.empty(scores.shape[0], scores.dtype)
        return layer._bounded_softmax(scores, out, sums,
                                      lambda index: layer._softmax_by_maximum(scores[index], False))


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [25, 1, 8, 17])
def test_compiled_softmax_equals_the_array_steps(dtype, k, monkeypatch):
    layer = layer_of(k, dtype)
    scores = shifted_scores(k, dtype)
    compiled = softmax_steps(layer, scores, compiled=True, monkeypatch=monkeypatch)
    steps = softmax_steps(layer, scores, compiled=False, monkeypatch=monkeypatch)
    np.testing.assert_allclose(compiled, steps, rtol=RTOL[dtype], atol=0)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_softmax_is_the_softmax_of_every_row_including_those_far_below_the_bound(dtype, monkeypatch):
    layer = layer_of(25, dtype)
    scores = shifted_scores(25, dtype)
    expected = softmax(scores.astype(np.float64), axis=-1)
    compiled = softmax_steps(layer, scores, compiled=True, monkeypatch=monkeypatch)
    np.testing.assert_allclose(compiled, expected, rtol=RTOL[dtype], atol=0)


@needs_numba
def test_compiled_softmax_subtracts_the_shift_and_reports_the_rows_it_left_unscaled():
    scores = shifted_scores(25, np.float64)
    out, sums = np.empty_like(scores), np.empty(scores.shape[0])
    low = _kernels.bounded_softmax(scores + 5.0, 5.0, out, sums, 2.0 ** -100)
    terms = np.exp(scores)
    np.testing.assert_allclose(sums, terms.sum(-1), rtol=1e-12)
    assert low == 2 and np.array_equal(np.flatnonzero(sums < 2.0 ** -100), [0, 1])
    np.testing.assert_allclose(out[2:], softmax(scores[2:], axis=-1), rtol=1e-12)
    np.testing.assert_array_equal(out[:2], terms[:2])


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_with_the_kernel_equals_forward_with_the_array_steps(dtype, monkeypatch):
    layer = layer_of(25, dtype, input_shape=(5, 6, 9))
    x = np.random.default_rng(7).normal(size=(8, 5, 6, 9)).astype(dtype)
    x[0] += 30.0                                         # rows far from every component: recomputed
    compiled = layer.forward(x)
    monkeypatch.setattr(_kernels, "_KERNELS", {})
    np.testing.assert_allclose(compiled, layer.forward(x), rtol=RTOL[dtype], atol=0)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_activities_with_the_kernel_equal_those_of_the_array_steps(dtype, monkeypatch):
    layer = layer_of(25, dtype, input_shape=(5, 6, 9))
    x = np.random.default_rng(8).normal(size=(8, 5, 6, 9)).astype(dtype)
    x[0] += 30.0
    scores = layer.log_scores(x)
    kept = scores.copy()
    compiled = layer.responsibilities(scores)
    monkeypatch.setattr(_kernels, "_KERNELS", {})
    np.testing.assert_allclose(compiled, layer.responsibilities(scores), rtol=RTOL[dtype], atol=0)
    np.testing.assert_array_equal(scores, kept)


def test_pcircuits_jit_0_takes_the_array_steps_with_the_same_responsibilities():
    code = """
import numpy as np
from pcircuits.backend import get_backend
from pcircuits.dcgmm import CGMM
layer = CGMM(25)
layer.build((5, 6, 9), get_backend("numpy", "float32"), np.random.default_rng(0))
x = np.random.default_rng(7).normal(size=(8, 5, 6, 9)).astype(np.float32)
expected = layer.responsibilities(layer.log_scores(x), overwrite=True).reshape(8, 5, 6, 25)
print(layer._compiled(np.float32), np.abs(layer.forward(x) / expected - 1).max())
"""
    env = dict(os.environ, PCIRCUITS_JIT="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    compiled, error = result.stdout.split()
    assert compiled == "False" and float(error) < 1e-4          # float32 log-scores made two ways
