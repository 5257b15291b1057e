"""The compiled loops of the Gaussian leaf layer against the NumPy definitions beside them in
:mod:`pcircuits.distributions.gaussian` (what runs with ``PCIRCUITS_JIT=0``): the same log-densities
and gradients, univariate and diagonal multivariate, with and without missing inputs (float64 to
1e-12, float32 to a few ulps of the terms summed); the same results split among threads as in one
call; the NumPy definitions wherever the loops do not take the arrays."""
import numpy as np
import pytest

from pcircuits import jit
from pcircuits.backend import Backend
from pcircuits.distributions import Gaussian
from pcircuits.distributions import gaussian as gaussian_module

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba (pip install 'pcircuits[fast]')")

NUM_VARIABLES, BATCH, UNITS = 6, 37, 50


def _case(dtype, d: int, missing: bool, seed: int = 0):
    """Parameters (U, d), inputs ``xt`` (variables, B) over several scales with infinities (and
    NaN where ``missing``), unit variables (U, d) and weights ``g`` (U, B)."""
    rng = np.random.default_rng(seed + 10 * d + missing)
    family = Gaussian.random(UNITS, d, rng=rng)
    params = {k: v.astype(dtype) for k, v in family.table_arrays().items()}
    xt = rng.normal(size=(NUM_VARIABLES, BATCH)) * rng.choice([0.1, 1.0, 30.0], size=(NUM_VARIABLES, BATCH))
    xt[0, :2] = (np.inf, -np.inf)
    if missing:
        xt[rng.random(xt.shape) < 0.3] = np.nan
    variables = rng.integers(0, NUM_VARIABLES, (UNITS, d))
    g = rng.normal(size=(UNITS, BATCH))
    return params, xt.astype(dtype), variables, g.astype(dtype)


def _numpy_definitions(monkeypatch):
    """What runs without the compiled loops (``PCIRCUITS_JIT=0``)."""
    monkeypatch.setattr(jit, "_AVAILABLE", False)


def _close(got, want, scale, dtype):
    """Within 1e-12 (float64) or 8 float32 ulps of ``scale``, the size of the terms summed (equal
    infinities count as close)."""
    tolerance = (1e-12 if dtype == np.float64 else 8 * np.finfo(np.float32).eps) * scale
    got, want = got.astype(np.float64), want.astype(np.float64)
    assert np.array_equal(np.isfinite(got), np.isfinite(want))
    assert np.array_equal(got[~np.isfinite(got)], want[~np.isfinite(want)])
    finite = np.isfinite(want)
    assert np.all(np.abs(got[finite] - want[finite]) <= tolerance[finite])


def _standardized(params, xt, variables):
    """In float64: the standardized inputs ``z`` (U, d, B), NaN as 0, and whether each is observed."""
    z = (xt.astype(np.float64)[variables] - params["mean"].astype(np.float64)[:, :, None]) \
        / params["std"].astype(np.float64)[:, :, None]
    observed = ~np.isnan(z)
    return np.where(observed, z, 0), observed


def _log_density_scale(params, xt, variables):
    """The size of the terms of each log-density (U, B)."""
    z, _ = _standardized(params, xt, variables)
    return (np.abs(np.log(params["std"].astype(np.float64)))[:, :, None] + 1 + z * z).sum(axis=1)


def _gradient_scales(params, xt, variables, g):
    """The sizes of the terms of each gradient, by the keys of :meth:`Gaussian.grad_units` and ``"x"``."""
    z, observed = _standardized(params, xt, variables)
    inv_std = 1 / params["std"].astype(np.float64)
    w = np.abs(np.where(observed, g.astype(np.float64)[:, None, :], 0))
    return {"mean": (np.abs(z) * w).sum(axis=2) * inv_std, "std": (z * z * w + w).sum(axis=2),
            "x": np.abs(z) * w * inv_std[:, :, None]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_log_density_loop_equals_its_numpy_definition(dtype, d, missing, monkeypatch):
    be = Backend("numpy", np.dtype(dtype).name)
    params, xt, variables, _ = _case(dtype, d, missing)
    got = np.full((UNITS, BATCH), 123, dtype)
    Gaussian.log_prob_units(be, params, xt, variables, got, missing=missing)
    _numpy_definitions(monkeypatch)
    want = np.full((UNITS, BATCH), 123, dtype)
    with np.errstate(all="ignore"):
        Gaussian.log_prob_units(be, params, xt, variables, want, missing=missing)
    _close(got, want, _log_density_scale(params, xt, variables), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
def test_gradient_loop_equals_its_numpy_definition(dtype, d, missing, monkeypatch):
    be = Backend("numpy", np.dtype(dtype).name)
    params, xt, variables, g = _case(dtype, d, missing)
    xt[0, :2] = 0                                                  # infinite inputs have NaN gradients
    got, got_x = Gaussian.grad_units(be, params, xt, variables, g, inputs=True, missing=missing)
    _numpy_definitions(monkeypatch)
    want, want_x = Gaussian.grad_units(be, params, xt, variables, g, inputs=True, missing=missing)
    scale = _gradient_scales(params, xt, variables, g)
    for key in ("mean", "std"):
        _close(got[key], want[key], scale[key], dtype)
    _close(got_x, want_x, scale["x"], dtype)


@pytest.mark.parametrize("d", [1, 3])
def test_gradient_loop_skips_the_inputs_unless_asked(d):
    be = Backend("numpy", "float32")
    params, xt, variables, g = _case(np.float32, d, True)
    with_inputs, _ = Gaussian.grad_units(be, params, xt, variables, g, inputs=True, missing=True)
    without, grad_x = Gaussian.grad_units(be, params, xt, variables, g, inputs=False, missing=True)
    assert grad_x is None
    for key in with_inputs:
        np.testing.assert_array_equal(without[key], with_inputs[key])


@pytest.mark.parametrize("d", [1, 3])
def test_loops_split_among_threads_give_what_one_call_gives(d, monkeypatch):
    be = Backend("numpy", "float32")
    params, xt, variables, g = _case(np.float32, d, True)
    whole = np.empty((UNITS, BATCH), np.float32)
    Gaussian.log_prob_units(be, params, xt, variables, whole)
    whole_grads, whole_x = Gaussian.grad_units(be, params, xt, variables, g)
    monkeypatch.setattr(gaussian_module, "SPLIT_VALUES", 1)
    monkeypatch.setenv("PCIRCUITS_NUM_THREADS", "3")
    split = np.empty((UNITS, BATCH), np.float32)
    Gaussian.log_prob_units(be, params, xt, variables, split)
    split_grads, split_x = Gaussian.grad_units(be, params, xt, variables, g)
    np.testing.assert_array_equal(split, whole)
    for key in whole_grads:
        np.testing.assert_array_equal(split_grads[key], whole_grads[key])
    np.testing.assert_array_equal(split_x, whole_x)


def test_arrays_the_loops_do_not_take_run_the_numpy_definitions(monkeypatch):
    be = Backend("numpy", "float32")
    params, xt, variables, g = _case(np.float32, 1, True)
    calls = []
    for name in ("log_density_units_numpy", "grad_units_numpy"):
        definition = getattr(gaussian_module, name)
        monkeypatch.setattr(gaussian_module, name, lambda *args, _f=definition, _n=name: calls.append(_n) or _f(*args))
    want = np.empty((UNITS, BATCH), np.float32)
    Gaussian.log_prob_units(be, params, xt, variables, want)
    assert calls == []
    strided = np.empty((UNITS, 2 * BATCH), np.float32)[:, ::2]
    Gaussian.log_prob_units(be, params, np.asfortranarray(xt), variables, strided)
    Gaussian.grad_units(be, params, xt.astype(np.float64), variables, g)
    assert calls == ["log_density_units_numpy", "grad_units_numpy"]
    np.testing.assert_allclose(strided, want, rtol=1e-6, atol=1e-6)
