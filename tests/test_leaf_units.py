"""The unit-major leaf math (``log_prob_units``, ``grad_units``) that the Program's leaf layers run
agrees with the batch-major protocol functions of every built-in family, in float64, with and
without missing values, whether the units are cut into blocks over several threads or not, and
on the strict CuPy stand-in."""
from __future__ import annotations

import numpy as np
import pytest

import pcircuits.backend as backend_module
from pcircuits.backend import Backend, to_numpy
from pcircuits.distributions import Bernoulli, Binomial, Categorical, Gaussian, Indicator
from pcircuits.distributions import gaussian as gaussian_module

NUM_VARIABLES, BATCH, UNITS = 5, 7, 40


def _family(name: str, rng):
    if name == "gaussian":
        return Gaussian.random(UNITS, rng=rng), 1, None
    if name == "gaussian2":
        return Gaussian.random(UNITS, 2, rng=rng), 2, None
    if name == "bernoulli":
        p = rng.uniform(0.05, 0.95, UNITS)
        p[:2] = (0.0, 1.0)                            # log 0 entries of the table
        return Bernoulli(p), 1, 1
    if name == "categorical":
        return Categorical.random(UNITS, 4, rng=rng), 1, 3
    if name == "binomial":
        p = rng.uniform(0.05, 0.95, UNITS)
        p[:2] = (0.0, 1.0)
        return Binomial(6, p), 1, 6
    return Indicator.random(UNITS, 3, rng=rng), 1, 2


def _case(name: str, missing: bool, backend: Backend):
    rng = np.random.default_rng(sum(map(ord, name)) + missing)
    family, d, top = _family(name, rng)
    x = rng.normal(size=(BATCH, NUM_VARIABLES)) if top is None else rng.integers(0, top + 1, (BATCH, NUM_VARIABLES))
    x = x.astype(np.float64)
    if missing:
        x[rng.random(x.shape) < 0.3] = np.nan
    variables = rng.integers(0, NUM_VARIABLES, (UNITS, d))
    params = {k: backend.asarray(v) for k, v in family.table_arrays().items()}
    g = rng.normal(size=(UNITS, BATCH))
    return family, params, x, variables, g


FAMILY_NAMES = ["gaussian", "gaussian2", "bernoulli", "categorical", "binomial", "indicator"]


@pytest.fixture(params=[False, True], ids=["one-block", "blocks-in-threads"])
def blocked(request, monkeypatch):
    """Either one block, or blocks of 2 units shared by 3 threads (the compiled Gaussian passes: one
    share of the units per thread)."""
    if request.param:
        monkeypatch.setattr(gaussian_module, "SPLIT_VALUES", 1)
        monkeypatch.setattr(backend_module, "BLOCK_ELEMENTS", 2 * BATCH)
        monkeypatch.setattr(backend_module, "WIDE_BLOCK_ELEMENTS", 2 * BATCH)
        monkeypatch.setenv("PCIRCUITS_NUM_THREADS", "3")
    return request.param


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_unit_major_log_prob_equals_the_batch_major_one(name, missing, blocked):
    be = Backend("numpy", "float64")
    family, params, x, variables, _ = _case(name, missing, be)
    expected = type(family).log_prob(be, params, x[:, variables])                 # (batch, U)
    out = np.full((UNITS, BATCH), 123.0)
    type(family).log_prob_units(be, params, np.ascontiguousarray(x.T), variables, out, missing=missing)
    np.testing.assert_allclose(out, expected.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_unit_major_gradients_equal_the_batch_major_ones(name, missing, blocked):
    be = Backend("numpy", "float64")
    family, params, x, variables, g = _case(name, missing, be)
    expected, expected_x = type(family).grad(be, params, x[:, variables], g.T)
    grads, grad_x = type(family).grad_units(be, params, np.ascontiguousarray(x.T), variables, g, missing=missing)
    assert set(grads) == set(expected)
    for key in grads:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad_x, expected_x.transpose(1, 2, 0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_unit_major_gradients_skip_the_inputs_unless_asked(name):
    be = Backend("numpy", "float64")
    family, params, x, variables, g = _case(name, False, be)
    _, grad_x = type(family).grad_units(be, params, np.ascontiguousarray(x.T), variables, g, inputs=False,
                                        missing=False)
    assert grad_x is None


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_unit_major_math_runs_on_the_strict_device_and_agrees_with_numpy(name):
    host, strict = Backend("numpy", "float64"), Backend("strict", "float64")
    family, params, x, variables, g = _case(name, True, host)
    out = np.empty((UNITS, BATCH))
    type(family).log_prob_units(host, params, np.ascontiguousarray(x.T), variables, out)
    grads, grad_x = type(family).grad_units(host, params, np.ascontiguousarray(x.T), variables, g)
    sparams = {k: strict.asarray(to_numpy(v)) for k, v in params.items()}
    sx, sg, svars = strict.asarray(np.ascontiguousarray(x.T)), strict.asarray(g), strict.index(variables)
    sout = strict.xp.empty((UNITS, BATCH), dtype=np.float64)
    type(family).log_prob_units(strict, sparams, sx, svars, sout)
    sgrads, sgrad_x = type(family).grad_units(strict, sparams, sx, svars, sg)
    np.testing.assert_allclose(to_numpy(sout), out, rtol=1e-12, atol=1e-12)
    for key in grads:
        np.testing.assert_allclose(to_numpy(sgrads[key]), grads[key], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(to_numpy(sgrad_x), grad_x, rtol=1e-12, atol=1e-12)
