"""The passes on the compiled kernels give what the same passes give on NumPy (as with
``PCIRCUITS_JIT=0``): float64 values, flows and gradients within 1e-12 relative, on random
circuits with zero weights and zero-probability leaves (-inf log-values) and missing inputs, for
every layer kind (fused, dense, padded-gather and segment sums) and the relaxed pass; each fused
kernel of :mod:`pcircuits.program.kernels` equals its NumPy definition within a few ulps."""
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pcircuits as pc
from pcircuits import backend as backend_module
from pcircuits import jit
from pcircuits.backend import get_backend
from pcircuits.layerize import plan_layers
from pcircuits.program import Program, kernels as program_kernels
from pcircuits.program.layers import SegmentSumLayer

from strategies import LEARNABLE_FAMILIES, valid_circuits
from test_scalar_circuits import scalar_circuits

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba (pip install 'pcircuits[fast]')")

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLANS = {"fused": {}, "dense": {"fuse": False}, "gather": {"dense_min_inputs": 10**9, "fuse": False}}


@contextmanager
def kernels(on: bool):
    """Every ``Backend.exp``/``Backend.log`` of host arrays on the compiled kernels (small arrays
    too), or none of them (NumPy's ufuncs, as with ``PCIRCUITS_JIT=0``)."""
    with pytest.MonkeyPatch.context() as patch:
        if on:
            patch.setattr(backend_module, "KERNEL_MIN_BYTES", 0)
        else:
            patch.setattr(jit, "_AVAILABLE", False)
        yield


def with_zeros(circuit, seed: int):
    """A copy with about a third of every sum's weights set to 0 (the largest kept) and every
    Bernoulli leaf unit's ``p`` set to 0 or 1 with probability 1/3 (log-values -inf)."""
    rng = np.random.default_rng(seed)
    circuit = circuit.copy()
    done = set()
    for node in circuit.nodes:
        if isinstance(node, pc.SumNode) and id(node.params) not in done:
            done.add(id(node.params))
            w = node.params.values.copy()
            zero = rng.random(w.shape) < 1 / 3
            zero[np.arange(len(w)), w.argmax(axis=1)] = False
            w[zero] = 0
            node.params.values = w / w.sum(axis=1, keepdims=True)
        elif isinstance(node, pc.InputNode) and isinstance(node.family, pc.Bernoulli):
            p = node.family.p.copy()
            hit = rng.random(p.shape) < 1 / 3
            p[hit] = rng.integers(2, size=int(hit.sum()))
            node.family.p = p
    return circuit


def inputs(program, seed: int, batch: int = 24):
    """Samples with some entries set to 0 (impossible under a Bernoulli unit with p = 1) and some
    missing (NaN)."""
    rng = np.random.default_rng(seed)
    x = program.sample(batch, seed=seed)
    x[rng.random(x.shape) < 0.25] = 0
    x[rng.random(x.shape) < 0.2] = np.nan
    return x


def pass_results(make_program, x) -> list[np.ndarray]:
    """Sum- and max-mode root values, unit flows, log-weight and leaf gradients of a new program."""
    program = make_program()
    maximum = np.array(program._forward(program.prepare(x), "max", cache=False))
    out = np.array(program._forward(program.prepare(x), "sum"))
    grads = program.backward(leaves=True)
    leaves = [np.array(v) for table in grads.leaves.values() for v in table.values()]
    return [out, maximum, np.array(grads.unit_flows), np.array(grads.log_weights)] + leaves


def assert_close(got: list, expected: list):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@FAST
@given(valid_circuits(families=LEARNABLE_FAMILIES, max_units=4), st.integers(0, 2**31 - 1),
       st.sampled_from(list(PLANS)))
def test_passes_on_the_kernels_equal_the_numpy_passes(circuit, seed, plan):
    circuit = with_zeros(circuit, seed)
    be = get_backend("numpy", "float64")

    def make_program():
        return Program(circuit, plan_layers(circuit, **PLANS[plan]), be)
    x = inputs(make_program(), seed)
    with kernels(True):
        fast = pass_results(make_program, x)
    with kernels(False):
        reference = pass_results(make_program, x)
    assert_close(fast, reference)


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1))
def test_segment_sum_passes_on_the_kernels_equal_the_numpy_passes(circuit, seed):
    circuit = with_zeros(circuit, seed)

    def make_program():
        return circuit.compile(dtype="float64")
    assert any(isinstance(layer, SegmentSumLayer) for layer in make_program().layers) or \
        not any(isinstance(node, pc.SumNode) for node in circuit.nodes)
    x = inputs(make_program(), seed, batch=80)            # above the table sums' 4 values: looked up
    with kernels(True):
        fast = pass_results(make_program, x)
    with kernels(False):
        reference = pass_results(make_program, x)
    assert_close(fast, reference)


def relaxed_results(make_program, x, hard: bool) -> list[np.ndarray]:
    program = make_program()
    samples = program.sample_relaxed(temperature=0.7, hard=hard, evidence=x, seed=3)
    grads = program.backward_relaxed(np.ones_like(samples))
    leaves = [np.array(v) for table in grads.leaves.values() for v in table.values()]
    return [np.array(samples), np.array(grads.log_weights), np.array(grads.temperature)] + leaves


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("name", ["pd", "rat"])
def test_relaxed_pass_on_the_kernels_equals_the_numpy_pass(name, hard):
    circuit = {"pd": lambda: pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, dense=True, seed=3),
               "rat": lambda: pc.builders.rat_spn(9, depth=2, num_repetitions=2, num_sums=3, num_leaves=3,
                                                  leaf="bernoulli", seed=3)}[name]()

    def make_program():
        return circuit.compile(dtype="float64")
    x = make_program().sample(32, seed=1)
    x[np.random.default_rng(2).random(x.shape) < 0.5] = np.nan
    with kernels(True):
        fast = relaxed_results(make_program, x, hard)
    with kernels(False):
        reference = relaxed_results(make_program, x, hard)
    assert_close(fast, reference)


def _log_values(dtype, shape):
    """Log-values as layers see them: finite (some far below the others), -inf, +inf and NaN."""
    finite = st.floats(-200, 50, width=np.dtype(dtype).itemsize * 8)
    tiny = float(np.finfo(dtype).tiny)
    finite = st.one_of(finite, st.sampled_from([0.0, tiny / 4, tiny, 2 * tiny]))
    special = st.sampled_from([-np.inf, np.inf, np.nan])
    return hnp.arrays(dtype, shape, elements=st.one_of(finite, finite, finite, special))


def _ulp_close(got, expected, dtype):
    info = np.finfo(dtype)
    np.testing.assert_allclose(got, expected, rtol=4 * info.eps, atol=float(info.tiny))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST
@given(data=st.data())
def test_split_factors_kernel_equals_its_numpy_definition(dtype, data):
    h, n, kl, kr, batch, children = (data.draw(st.integers(1, 4)) for _ in range(6))
    be = get_backend("numpy", np.dtype(dtype).name)
    values = data.draw(_log_values(dtype, (children * (kl + kr), batch)))
    rows = np.arange(len(values))
    # the children's exponentials and shifts as the layer computes them, both sides' tables
    tables = []
    for k, rows_of_side in ((kl, rows[:children * kl]), (kr, rows[children * kl:])):
        exps, tops = np.empty((children, k, batch), dtype), np.empty((children, batch), dtype)
        with np.errstate(all="ignore"):
            program_kernels.max_shifted_exp_numpy(be, values, rows_of_side.reshape(children, k), exps, tops)
        tables.append((exps, tops))
    (left_exps, left_tops), (right_exps, right_tops) = tables
    left_child, right_child = (data.draw(hnp.arrays(np.int64, (h, n), elements=st.integers(0, children - 1)))
                               for _ in range(2))
    got = [np.empty((h, n, kl, batch), dtype), np.empty((h, n, kr, batch), dtype), np.empty((h, batch), dtype)]
    expected = [np.empty_like(a) for a in got]
    program_kernels.split_factors(be, left_exps, left_tops, left_child, right_exps, right_tops, right_child, *got)
    with np.errstate(all="ignore"):
        program_kernels.split_factors_numpy(be, left_exps, left_tops, left_child, right_exps, right_tops,
                                            right_child, *expected)
    for a, b in zip(got, expected):
        _ulp_close(a, b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST
@given(data=st.data())
def test_gather_sum_kernel_equals_its_numpy_definition(dtype, data):
    products, width, batch, units = (data.draw(st.integers(1, 4)) for _ in range(4))
    values = data.draw(_log_values(dtype, (units, batch)))
    rows = data.draw(hnp.arrays(np.int64, (products, width), elements=st.integers(0, units - 1)))
    be = get_backend("numpy", np.dtype(dtype).name)
    got, expected = np.empty((2, products, batch), dtype)
    with np.errstate(invalid="ignore"):
        program_kernels.gather_sum(be, values, rows, got)
        program_kernels.gather_sum_numpy(be, values, rows, expected)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST
@given(data=st.data())
def test_outer_product_kernel_equals_its_numpy_definition(dtype, data):
    h, n, kl, kr, batch = (data.draw(st.integers(1, 4)) for _ in range(5))
    factors = st.floats(0, 1, width=np.dtype(dtype).itemsize * 8)
    left = data.draw(hnp.arrays(dtype, (h, n, kl, batch), elements=factors))
    right = data.draw(hnp.arrays(dtype, (h, n, kr, batch), elements=factors))
    be = get_backend("numpy", np.dtype(dtype).name)
    got, expected = np.empty((2, h, n, kl, kr, batch), dtype)
    program_kernels.outer_product(be, left, right, got)
    program_kernels.outer_product_numpy(np, left, right, expected)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST
@given(data=st.data())
def test_log_plus_kernel_equals_its_numpy_definition(dtype, data):
    h, units, batch = (data.draw(st.integers(1, 4)) for _ in range(3))
    S = np.abs(data.draw(_log_values(dtype, (h, units, batch))))
    shift = data.draw(_log_values(dtype, (h, batch)))
    be = get_backend("numpy", np.dtype(dtype).name)
    got, expected = np.empty_like(S), np.empty_like(S)
    small = program_kernels.log_plus(be, S, shift, got)
    with np.errstate(all="ignore"):
        expected_small = program_kernels.log_plus_numpy(np, S, shift, expected)
    _ulp_close(got, expected, dtype)
    if not np.isnan(S).any():
        assert small == expected_small


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FAST
@given(data=st.data())
def test_max_shifted_exp_kernel_equals_its_numpy_definition(dtype, data):
    h, inputs, batch, units = (data.draw(st.integers(1, 4)) for _ in range(4))
    values = data.draw(_log_values(dtype, (units, batch)))
    rows = data.draw(hnp.arrays(np.int64, (h, inputs), elements=st.integers(0, units - 1)))
    be = get_backend("numpy", np.dtype(dtype).name)
    got = [np.empty((h, inputs, batch), dtype), np.empty((h, batch), dtype)]
    expected = [np.empty_like(a) for a in got]
    program_kernels.max_shifted_exp(be, values, rows, *got)
    with np.errstate(all="ignore"):
        program_kernels.max_shifted_exp_numpy(be, values, rows, *expected)
    for a, b in zip(got, expected):
        _ulp_close(a, b, dtype)
