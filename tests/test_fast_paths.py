"""The engine's fast paths give exactly what their plain definitions give.

Scatter-add by rounds (and by segmented reduction) against ``np.add.at``; dense sum layers whose
nodes share their inputs (one root per class) against finite differences and one-root
circuits; the run-view row reductions of :class:`~pcircuits.learning.WeightRows` against the
segmented path; the in-place Adam step against the textbook formula; dense and fused sum
layers (matmuls shifted by the largest input) against padded-gather logsumexp sums, also with
weights so sharp that the matmul underflows; product and fused sum layers run in blocks of nodes
shared by threads against the same layers in one block.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits import backend as backend_module
from pcircuits.backend import get_backend
from pcircuits.layerize import plan_layers
from pcircuits.learning import GradientLearner, WeightRows
from pcircuits.program import Program
from pcircuits.program import scatter as scatter_module
from pcircuits.program.context import PassContext
from pcircuits.program.layers import DenseSumLayer, FusedSumLayer
from pcircuits.program.scatter import Scatter

from strategies import LEARNABLE_FAMILIES, valid_circuits

NUMPY = get_backend("numpy", "float64")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=200), st.integers(0, 2**31 - 1))
def test_scatter_add_equals_add_at_for_any_multiplicity(targets, seed):
    targets = np.asarray(targets)
    src = np.random.default_rng(seed).normal(size=(len(targets), 3))
    expected = np.zeros((31, 3))
    np.add.at(expected, targets, src)
    dst = np.zeros((31, 3))
    Scatter(NUMPY, targets).add(dst, src)
    assert np.allclose(dst, expected, rtol=1e-12, atol=1e-12)


def test_scatter_beyond_the_round_limit_uses_the_segmented_reduction_and_agrees():
    targets = np.r_[np.zeros(scatter_module._MAX_ROUNDS + 5, dtype=int), np.arange(1, 9)]
    scatter = Scatter(NUMPY, targets)
    assert scatter.rounds is None and not scatter.unique
    src = np.random.default_rng(0).normal(size=(len(targets), 2))
    expected = np.zeros((9, 2))
    np.add.at(expected, targets, src)
    dst = np.zeros((9, 2))
    scatter.add(dst, src)
    assert np.allclose(dst, expected, rtol=1e-12)


def test_scatter_of_repeated_targets_is_split_into_rounds_of_unique_targets():
    scatter = Scatter(NUMPY, np.array([3, 1, 3, 3, 0, 1]))
    assert len(scatter.rounds) == 3
    for targets, _ in scatter.rounds:
        assert len(np.unique(targets)) == len(targets)


def class_roots_circuit():
    """Three class roots over the same products: their dense layer stacks into one node."""
    return pc.builders.rat_spn(4, depth=1, num_repetitions=2, num_sums=2, num_leaves=2, num_classes=3,
                               leaf="bernoulli", seed=3)


def test_sums_over_identical_inputs_are_stacked_into_one_matmul():
    program = class_roots_circuit().compile(dtype="float64")
    stacked = [layer for layer in program.layers if isinstance(layer, DenseSumLayer) and layer.N > 1
               and layer.Nb == 1]
    assert stacked and stacked[0].Kb == stacked[0].N * stacked[0].K


def test_stacked_class_roots_give_each_roots_own_likelihood():
    circuit = class_roots_circuit()
    program = circuit.compile(dtype="float64")
    x = program.sample(6, seed=1)
    ll = program.log_likelihood(x)
    for k, root in enumerate(circuit.roots):
        alone = pc.Circuit(root, variables=circuit.variables).compile(dtype="float64")
        assert np.allclose(ll[:, k], alone.log_likelihood(x), rtol=1e-12)


def test_stacked_class_roots_log_weight_gradient_equals_finite_differences():
    program = class_roots_circuit().compile(dtype="float64")
    x = program.sample(5, seed=2)
    grad_root = np.random.default_rng(0).normal(size=(5, program.num_outputs))
    program.forward(x)
    analytic = program.backward(grad_root).log_weights
    w0 = program.weights.copy()

    def objective(log_w):
        program.set_weights(np.exp(log_w))
        return float((program.forward(x) * grad_root).sum())

    numeric = np.zeros_like(w0)
    for i in range(len(w0)):
        step = np.zeros_like(w0)
        step[i] = 1e-6
        numeric[i] = (objective(np.log(w0) + step) - objective(np.log(w0) - step)) / 2e-6
    program.set_weights(w0)
    assert np.allclose(analytic, numeric, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
def test_row_views_agree_with_the_segmented_reduction(masked):
    circuit = pc.builders.rat_spn(6, depth=2, num_repetitions=2, num_sums=3, num_leaves=2, leaf="bernoulli", seed=0)
    if masked:
        root = circuit.roots[0]
        mask = np.ones(root.params.values.shape, dtype=bool)
        mask[0, 1:] = False
        weights = np.where(mask, root.params.values, 0)
        circuit = pc.Circuit(pc.SumNode(root.children, weights=weights / weights.sum(axis=1, keepdims=True), mask=mask),
                             variables=circuit.variables)
    program = circuit.compile(dtype="float64")
    views, segmented = WeightRows(program), WeightRows(program)
    segmented.runs = None
    assert views.runs is not None and views.masked == masked
    rng = np.random.default_rng(1)
    values = np.where(views.allowed_np, rng.normal(size=program.num_weights), 0)
    logits = np.where(views.allowed_np, values, -np.inf)
    assert np.allclose(views.row_sum(values), segmented.row_sum(values), rtol=1e-12)
    assert np.allclose(views.row_totals(values), segmented.row_totals(values), rtol=1e-12)
    assert np.array_equal(views.row_max(logits), segmented.row_max(logits))
    w, log_w = views.softmax(logits, return_log=True)
    w2, log_w2 = segmented.softmax(logits, return_log=True)
    assert np.allclose(w, w2, rtol=1e-12) and np.allclose(np.exp(log_w), w, rtol=1e-12)
    assert np.array_equal(np.isinf(log_w), np.isinf(log_w2))
    assert np.allclose(views.logit_gradient(values, w), segmented.logit_gradient(values, w), rtol=1e-12)


def test_adam_step_is_the_textbook_update():
    program = pc.builders.rat_spn(6, depth=2, num_repetitions=2, num_sums=3, num_leaves=2, leaf="gaussian",
                                  seed=0).compile(dtype="float64")
    learner = GradientLearner(program, lr=0.01)
    x = np.random.default_rng(0).normal(size=(8, 6))
    m = {k: np.zeros_like(v) for k, v in learner.theta.items()}
    v = {k: np.zeros_like(a) for k, a in learner.theta.items()}
    for t in (1, 2, 3):
        before = {k: a.copy() for k, a in learner.theta.items()}
        _, grads, _ = learner.loss_and_gradients(x)
        learner.apply_gradients(grads)
        for k, g in grads.items():
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            expected = before[k] - 0.01 * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
            if k.endswith("std"):
                expected = np.maximum(expected, np.log(learner.min_std))
            assert np.allclose(learner.theta[k], expected, rtol=1e-9, atol=1e-12), (k, t)


# ---- layer kinds against the exact padded-gather sums ----------------------------------------
def programs_of_every_plan(circuit, dtype="float64"):
    """The same circuit as planned by default (dense and fused layers), without fusion, and
    with every sum a padded-gather logsumexp (the exact reference)."""
    be = get_backend("numpy", dtype)
    return [Program(circuit, plan_layers(circuit), be), Program(circuit, plan_layers(circuit, fuse=False), be),
            Program(circuit, plan_layers(circuit, dense_min_inputs=10**9, fuse=False), be)]


def sharpened(circuit, power: float):
    """A copy whose sum weights are raised to ``power`` and renormalized (many tiny weights)."""
    circuit = circuit.copy()
    for node in circuit.nodes:
        if isinstance(node, pc.SumNode):
            w = node.params.values ** power
            node.params.values = w / w.sum(axis=1, keepdims=True)
    return circuit


def weight_gradient_by_node(program, circuit):
    """The log-weight gradient of the last backward pass, one flat block per sum node in node order."""
    grads = program.backward().log_weights
    blocks = []
    for node in circuit.nodes:
        if isinstance(node, pc.SumNode):
            i = next(i for i, p in enumerate(program.plan.sum_params) if p is node.params)
            blocks.append(grads[program.plan.weight_offsets[i]:program.plan.weight_offsets[i + 1]])
    return np.concatenate(blocks) if blocks else np.zeros(0)


@settings(max_examples=25, deadline=None)
@given(valid_circuits(families=LEARNABLE_FAMILIES), st.integers(0, 2**31 - 1),
       st.sampled_from([1.0, 30.0, 120.0]))
def test_dense_and_fused_layers_equal_the_gather_logsumexp(circuit, seed, power):
    circuit = sharpened(circuit, power)
    programs = programs_of_every_plan(circuit)
    x = programs[2].sample(5, seed=seed)
    x[np.random.default_rng(seed).random(x.shape) < 0.3] = np.nan
    reference = programs[2].forward(x)
    reference_grad = weight_gradient_by_node(programs[2], circuit)
    for program in programs[:2]:
        assert np.allclose(program.forward(x), reference, rtol=1e-9, atol=1e-9)
        grad = weight_gradient_by_node(program, circuit)
        assert np.all(np.isfinite(grad))
        assert np.allclose(grad, reference_grad, rtol=1e-7, atol=1e-9)


def underflowing_sum(pattern: str, tiny: float):
    """A sum whose weight is zero on the one input of normal size, so its matmul sum ``S`` is
    below the smallest normal float: dense (over an elementwise product) or fused (cartesian)."""
    left = pc.InputNode(0, pc.Bernoulli([0.9, tiny]))
    right = pc.InputNode(1, pc.Bernoulli([0.5, 0.5]))
    product = pc.ProductNode([left, right], pattern=pattern)
    weights = [[0.0, 1.0]] if pattern == "elementwise" else [[0.0, 0.0, 0.5, 0.5]]
    return pc.Circuit(pc.SumNode([product], weights=weights))


@pytest.mark.parametrize("dtype,tiny", [("float64", 1e-310), ("float32", 1e-40)])
@pytest.mark.parametrize("pattern", ["elementwise", "cartesian"])
def test_sum_below_the_smallest_normal_float_keeps_exact_values_and_finite_flows(pattern, dtype, tiny):
    circuit = underflowing_sum(pattern, tiny)
    fast, _, exact = programs_of_every_plan(circuit, dtype)
    x = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    value = fast.forward(x)
    assert np.all(np.isfinite(value))
    assert np.allclose(value, exact.forward(x), rtol=1e-5)
    gradients = fast.backward()
    assert np.all(np.isfinite(gradients.log_weights)) and np.all(np.isfinite(gradients.unit_flows))
    assert np.allclose(weight_gradient_by_node(fast, circuit), weight_gradient_by_node(exact, circuit), atol=1e-6)


def sums_over_shared_children(left_units: int, right_units: int):
    """Two sum nodes over cartesian products of the same four children (two per variable), each
    child in a split of both nodes: a fused layer whose children are shared by splits and nodes."""
    rng = np.random.default_rng(0)

    def leaf(variable, units):
        return pc.InputNode(variable, pc.Gaussian(rng.normal(size=units), rng.uniform(0.5, 2.0, size=units)))
    left = [leaf(0, left_units) for _ in range(2)]
    right = [leaf(1, right_units) for _ in range(2)]

    def sum_over(pairs):
        products = [pc.ProductNode([left[i], right[j]], pattern="cartesian") for i, j in pairs]
        weights = rng.random((2, left_units * right_units * len(pairs)))
        return pc.SumNode(products, weights=weights / weights.sum(axis=1, keepdims=True))
    return pc.Circuit(pc.SumNode([sum_over([(0, 0), (1, 1)]), sum_over([(0, 1), (1, 0)])],
                                 weights=[[0.3, 0.2, 0.1, 0.4]]))


@pytest.mark.parametrize("left_units,right_units", [(3, 2), (2, 2)])
def test_fused_layer_over_shared_children_equals_the_gather_logsumexp(left_units, right_units):
    circuit = sums_over_shared_children(left_units, right_units)
    fast, _, exact = programs_of_every_plan(circuit)
    fused = [layer for layer in fast.layers if isinstance(layer, FusedSumLayer)]
    assert len(fused) == 1 and sum(len(t) for t in fused[0].child_tables) < 2 * fused[0].N * fused[0].n
    x = exact.sample(9, seed=1)
    x[::3, 0] = np.nan
    np.testing.assert_allclose(fast.forward(x), exact.forward(x), rtol=1e-12)
    np.testing.assert_allclose(weight_gradient_by_node(fast, circuit), weight_gradient_by_node(exact, circuit),
                               rtol=1e-9, atol=1e-12)
    for got, expected in zip(pass_results(fast, x)[3:], pass_results(exact, x)[3:]):       # leaf gradients
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


BLOCKED_CIRCUITS = {
    "rat": lambda: pc.builders.rat_spn(13, depth=2, num_repetitions=3, num_sums=3, num_leaves=4, seed=3),
    "pd": lambda: pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, dense=True, seed=3),
}


def pass_results(program, x, context=None):
    """Root log-values, unit flows, log-weight and leaf gradients of one forward and backward pass."""
    out = program._forward(program.prepare(x), context or "sum")
    grads = program.backward(leaves=True)
    leaves = [v for table in grads.leaves.values() for v in table.values()]
    return [np.array(out), np.array(grads.unit_flows), np.array(grads.log_weights)] + leaves


@pytest.mark.parametrize("name", list(BLOCKED_CIRCUITS))
def test_product_and_fused_layers_in_blocks_shared_by_threads_equal_one_block(name, monkeypatch):
    circuit = BLOCKED_CIRCUITS[name]()
    program = circuit.compile(dtype="float64")
    assert any(isinstance(layer, FusedSumLayer) for layer in program.layers)
    x = program.sample(7, seed=0)
    whole = pass_results(program, x)
    monkeypatch.setattr(backend_module, "WIDE_BLOCK_ELEMENTS", 1)     # one node or unit per block
    monkeypatch.setenv("PCIRCUITS_NUM_THREADS", "3")
    for got, expected in zip(pass_results(program, x), whole):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    reference = programs_of_every_plan(circuit)[2]
    np.testing.assert_allclose(program.forward(x), reference.forward(x), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(weight_gradient_by_node(program, circuit), weight_gradient_by_node(reference, circuit),
                               rtol=1e-7, atol=1e-9)


def test_fused_layers_in_blocks_drop_the_same_products_as_in_one_block(monkeypatch):
    circuit = BLOCKED_CIRCUITS["pd"]()
    program = circuit.compile(dtype="float64")
    x = program.sample(7, seed=0)

    def dropped_pass():
        context = PassContext("sum", product_dropout=0.3, rng=program.backend.rng(5))
        return pass_results(program, x, context)
    whole = dropped_pass()
    monkeypatch.setattr(backend_module, "WIDE_BLOCK_ELEMENTS", 1)
    monkeypatch.setenv("PCIRCUITS_NUM_THREADS", "3")
    for got, expected in zip(dropped_pass(), whole):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
