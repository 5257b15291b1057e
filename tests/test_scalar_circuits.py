"""Scalar circuits (one unit per node, irregular fan-in: the SPNs of LearnSPN and SPFlow) run on
segment layers; every pass agrees with enumeration, finite differences and the padded layers."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.program import RelaxedNoise
from pcircuits.program.context import SUM
from pcircuits.program.layers import InputLayer, SegmentProductLayer, SegmentSumLayer, TableSumLayer

from devices import DEVICE_BACKENDS, assert_device_agrees, transfers_of_every_pass
from frequencies import chi_square_pvalue
from strategies import brute_force_log_likelihood, enumerate_assignments, leaf_log_values, numeric_gradient
from test_relaxed_sampling import directional_check

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scalar_circuits(draw, max_variables: int = 4, leaves=("bernoulli", "categorical"), *, max_fan_in: int = 6):
    """Random scalar SPNs: sums over 1..``max_fan_in`` children, products splitting their scope into
    2..4 blocks, univariate blocks a leaf or a mixture of leaves; nodes over the same scope are
    sometimes reused (a DAG) and sum weights sometimes tied."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    num_variables = draw(st.integers(1, max_variables), label="num_variables")
    kinds = [leaves[int(rng.integers(len(leaves)))] for _ in range(num_variables)]
    pool: dict[tuple, list] = {}
    tied: dict[int, list] = {}

    def leaf(v):
        if kinds[v] == "bernoulli":
            return pc.InputNode(v, pc.Bernoulli([rng.uniform(0.05, 0.95)]))
        if kinds[v] == "categorical":
            return pc.InputNode(v, pc.Categorical(rng.dirichlet(np.ones(3))[None, :]))
        return pc.InputNode(v, pc.Gaussian([rng.normal()], [rng.uniform(0.5, 2.0)]))

    def mixture(children):
        shared = tied.get(len(children))
        if shared and rng.random() < 0.3:
            return pc.SumNode(children, weights=shared[0].params)
        node = pc.SumNode(children, rng=rng)
        tied.setdefault(len(children), []).append(node)
        return node

    def build(scope, depth):
        key = tuple(scope)
        if pool.get(key) and rng.random() < 0.25:
            return pool[key][int(rng.integers(len(pool[key])))]
        if len(scope) == 1:
            node = leaf(scope[0]) if depth == 0 or rng.random() < 0.5 else \
                mixture([leaf(scope[0]) for _ in range(int(rng.integers(1, max_fan_in + 1)))])
        elif depth == 0 or rng.random() < 0.3:
            node = pc.ProductNode([build([v], 0) for v in scope])
        else:
            node = mixture([split(scope, depth) for _ in range(int(rng.integers(1, max_fan_in + 1)))])
        pool.setdefault(key, []).append(node)
        return node

    def split(scope, depth):
        parts = int(rng.integers(2, min(4, len(scope)) + 1))
        cuts = np.sort(rng.choice(np.arange(1, len(scope)), size=parts - 1, replace=False))
        return pc.ProductNode([build(sorted(b.tolist()), depth - 1) for b in np.split(rng.permutation(scope), cuts)])

    scope = list(range(num_variables))
    root = mixture([split(scope, 3) if num_variables > 1 else build(scope, 2)
                    for _ in range(int(rng.integers(1, max_fan_in + 1)))])
    return pc.Circuit(root)


def max_product_oracle(circuit, x):
    """The max-product value of the root at complete assignments ``x``, node by node in float64."""
    values = {}
    for node in circuit.nodes:
        if node.kind == "input":
            values[id(node)] = leaf_log_values(node, x)[:, 0]
        elif node.kind == "product":
            values[id(node)] = sum(values[id(c)] for c in node.children)
        else:
            with np.errstate(divide="ignore"):
                scores = np.stack([values[id(c)] for c in node.children]) + np.log(node.weights[0])[:, None]
            values[id(node)] = scores.max(axis=0)
    return values[id(circuit.roots[0])]


def with_missing(x, seed, rate=0.3):
    x = x.copy()
    x[np.random.default_rng(seed).random(x.shape) < rate] = np.nan
    return x


# ---- the plan ------------------------------------------------------------------------------------

@FAST
@given(scalar_circuits())
def test_scalar_nodes_compile_to_one_segment_layer_per_height_and_kind(circuit):
    program = circuit.compile(dtype="float64")
    assert all(isinstance(layer, (SegmentProductLayer, SegmentSumLayer)) for layer in program.inner_layers)
    heights = {id(n): h for n, h in ((n, program.plan.heights[id(n)]) for n in circuit.nodes)}
    kinds = {(heights[id(n)], n.kind, univariate_discrete_mixture(n)) for n in circuit.nodes if n.kind != "input"}
    assert len(program.inner_layers) == len(kinds)


def univariate_discrete_mixture(node) -> bool:
    return node.kind == "sum" and all(c.kind == "input" and c.family.discrete for c in node.children) and \
        len({c.variables for c in node.children}) == 1


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")))
def test_table_sum_layers_hold_exactly_the_univariate_discrete_mixtures(circuit):
    program = circuit.compile(dtype="float64")
    offsets = program.plan.node_offsets
    tabled = {offsets[id(n)] for n in circuit.nodes if univariate_discrete_mixture(n)}
    in_tables = {u for layer in program.inner_layers if isinstance(layer, TableSumLayer)
                 for u in range(layer.start, layer.stop)}
    assert in_tables == tabled


@FAST
@given(scalar_circuits())
def test_segment_rounds_hold_every_edge_once_with_units_by_decreasing_fan_in(circuit):
    program = circuit.compile(dtype="float64")
    for layer in program.inner_layers:
        sizes = [n for _, n in layer.rounds]
        assert sizes[0] == layer.stop - layer.start and sizes == sorted(sizes, reverse=True)
        fan_in = {program.plan.node_offsets[id(n)]: len(n.children) for n in circuit.nodes
                  if program.plan.node_offsets.get(id(n), -1) in range(layer.start, layer.stop)}
        assert sorted(fan_in.values(), reverse=True) == [fan_in[s] for s in range(layer.start, layer.stop)]
        assert sum(sizes) == layer.num_edges == sum(fan_in.values())


def test_scalar_products_of_very_different_fan_in_share_one_layer_without_padding():
    leaves = [pc.InputNode(v, pc.Bernoulli([0.3])) for v in range(40)]
    wide = pc.ProductNode(leaves[:38])
    narrow = pc.ProductNode(leaves[38:])
    circuit = pc.Circuit(pc.ProductNode([pc.SumNode([wide], rng=0), pc.SumNode([narrow], rng=1)]))
    program = circuit.compile(dtype="float64")
    layer = next(l for l in program.inner_layers if isinstance(l, SegmentProductLayer))
    assert layer.stop - layer.start == 2 and layer.num_edges == 40


# ---- passes against enumeration and finite differences -------------------------------------------

@FAST
@given(scalar_circuits(), st.integers(0, 2**31 - 1))
def test_forward_matches_node_by_node_oracle_with_missing_values(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(16, seed=seed), seed)
    assert np.allclose(program.log_likelihood(x), brute_force_log_likelihood(circuit, x)[:, 0], rtol=1e-12,
                       atol=1e-12)


@FAST
@given(scalar_circuits(max_variables=3, leaves=("gaussian",)), st.integers(0, 2**31 - 1))
def test_forward_matches_oracle_on_gaussian_leaves(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = np.random.default_rng(seed).normal(scale=3.0, size=(8, circuit.num_variables))
    assert np.allclose(program.log_likelihood(x), brute_force_log_likelihood(circuit, x)[:, 0], rtol=1e-12)


@FAST
@given(scalar_circuits())
def test_scalar_circuit_sums_to_one_over_all_assignments(circuit):
    program = circuit.compile(dtype="float64")
    assert np.isclose(np.exp(program.log_likelihood(enumerate_assignments(circuit))).sum(), 1.0, rtol=1e-10)


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1))
def test_log_weight_gradient_equals_finite_differences(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(4, seed=seed), seed)
    program.forward(x)
    analytic = program.backward().log_weights
    w0 = program.weights.copy()

    def total(log_w):
        program.set_weights(np.exp(log_w))
        return float(program.forward(x).sum())

    numeric = numeric_gradient(total, np.log(w0))
    program.set_weights(w0)
    assert np.allclose(analytic, numeric, atol=1e-6)


@FAST
@given(scalar_circuits(max_variables=3, leaves=("gaussian",)), st.integers(0, 2**31 - 1))
def test_input_gradient_equals_finite_differences(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = np.random.default_rng(seed).normal(size=(3, circuit.num_variables))
    program.forward(x)
    analytic = program.backward(inputs=True).inputs
    numeric = numeric_gradient(lambda z: float(program.forward(z).sum()), x)
    assert np.allclose(analytic, numeric, atol=1e-6)


@FAST
@given(scalar_circuits(), st.integers(0, 2**31 - 1))
def test_unit_flows_are_the_posteriors_of_being_in_the_induced_tree(circuit, seed):
    """The flow of a leaf unit summed over the leaves of one variable is 1 in a smooth,
    decomposable circuit (every induced tree holds exactly one leaf per variable)."""
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(6, seed=seed), seed)
    program.forward(x)
    flows = program.backward().unit_flows
    per_variable = np.zeros((circuit.num_variables, x.shape[0]))
    for layer in program.input_layers:
        np.add.at(per_variable, layer.variables_np[:, 0], flows[layer.start:layer.stop])
    assert np.allclose(per_variable, 1.0, atol=1e-10)


@FAST
@given(scalar_circuits())
def test_max_pass_is_the_largest_max_product_value_over_all_assignments(circuit):
    program = circuit.compile(dtype="float64")
    empty = np.full((1, circuit.num_variables), np.nan)
    worlds = enumerate_assignments(circuit)
    assert np.isclose(program.forward(empty, mode="max")[0, 0], max_product_oracle(circuit, worlds).max(),
                      rtol=1e-12)


@FAST
@given(scalar_circuits(), st.integers(0, 2**31 - 1))
def test_mpe_decodes_an_assignment_that_reaches_the_max_pass_value(circuit, seed):
    program = circuit.compile(dtype="float64")
    evidence = with_missing(program.sample(5, seed=seed), seed, rate=0.6)
    decoded = program.mpe(evidence)
    observed = ~np.isnan(evidence)
    assert np.array_equal(decoded[observed], evidence[observed]) and not np.isnan(decoded).any()
    assert np.allclose(max_product_oracle(circuit, decoded), program.forward(evidence, mode="max")[:, 0], rtol=1e-12)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scalar_circuits(max_variables=3))
def test_sample_frequencies_pass_chi_square(circuit):
    program = circuit.compile(dtype="float64")
    worlds = enumerate_assignments(circuit)
    p = np.exp(program.log_likelihood(worlds))
    assert chi_square_pvalue(program.sample(4000, seed=7), worlds, p) > 1e-4


@FAST
@given(scalar_circuits(), st.integers(0, 2**31 - 1))
def test_hard_em_counts_one_chosen_edge_per_active_sum_unit(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(6, seed=seed), seed)
    _, counts, active = program.top_down(x, "argmax", counts=True, return_active=True)
    active_sums = sum(int(active[layer.start:layer.stop].sum()) for layer in program.inner_layers
                      if isinstance(layer, SegmentSumLayer))
    assert counts.sum() == active_sums > 0


# ---- the strict device and the relaxed pass ------------------------------------------------------

@pytest.mark.parametrize("device", DEVICE_BACKENDS)
@settings(max_examples=10, deadline=None)
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1))
def test_device_backend_agrees_with_numpy_on_scalar_circuits(device, circuit, seed):
    reference = circuit.compile(backend="numpy", dtype="float64")
    other = circuit.compile(backend=device, dtype="float64")
    x = with_missing(reference.sample(8, seed=seed), seed)
    assert_device_agrees(reference, other, x, atol=1e-10)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scalar_circuits(max_variables=3, leaves=("bernoulli", "gaussian")), st.integers(0, 2**31 - 1))
def test_relaxed_gradients_match_finite_differences_on_scalar_circuits(circuit, seed):
    program = circuit.compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 4, seed)
    analytic, numeric = directional_check(program, noise, 0.7, False, None, seed)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-6)


def test_segment_sums_read_the_leaves_of_their_mixtures_as_slices_without_a_gather():
    rng = np.random.default_rng(0)
    mixtures = [pc.SumNode([pc.InputNode(v, pc.Gaussian([rng.normal()], [1.0])) for _ in range(2 + v % 3)], rng=v)
                for v in range(6)]
    factors = [pc.InputNode(v, pc.Gaussian([0.0], [1.0])) for v in range(6)]
    circuit = pc.Circuit(pc.SumNode([pc.ProductNode(mixtures), pc.ProductNode(factors)], rng=0))
    program = circuit.compile(dtype="float64")
    layer = next(l for l in program.inner_layers if l.kind == "sum" and l.stop - l.start == 6)
    assert len(layer.round_slices) == 4 and min(layer.round_slices) >= 0
    x = np.random.default_rng(1).normal(size=(5, 6))
    assert np.allclose(program.log_likelihood(x), brute_force_log_likelihood(circuit, x)[:, 0], rtol=1e-13)


def test_segment_layers_read_every_input_layer_once_per_pass():
    """One input layer per leaf family: the leaves' tables stack however many nodes there are."""
    leaves = [pc.InputNode(v % 3, pc.Bernoulli([0.1 + 0.02 * v])) for v in range(30)]
    mixtures = [pc.SumNode(leaves[v::3], rng=v) for v in range(3)]
    program = pc.Circuit(pc.ProductNode(mixtures)).compile(dtype="float64")
    assert sum(isinstance(layer, InputLayer) for layer in program.layers) == 1
    assert [layer.kind for layer in program.inner_layers] == ["sum", "product"]


@FAST
@given(scalar_circuits(leaves=("bernoulli", "gaussian")), st.integers(0, 2**31 - 1))
def test_segment_layers_agree_with_their_padded_form_on_every_pass(circuit, seed):
    from pcircuits.program.context import MAX, SUM
    program = circuit.compile(dtype="float64")
    x = program.prepare(with_missing(program.sample(5, seed=seed), seed))
    rng = np.random.default_rng(seed)
    for context in (SUM, MAX):
        program._forward(x, context)
        values = program.values
        for layer in program.inner_layers:
            ours, padded = values.copy(), values.copy()
            layer.forward(program, ours, x, context, None)
            layer.padded.forward(program, padded, x, context, None)
            # log-sums near 0 (a sum of about 1) may differ in the last place of 1, 2.2e-16
            assert np.allclose(ours[layer.start:layer.stop], padded[layer.start:layer.stop], rtol=1e-13, atol=1e-15)
    program._forward(x, SUM)
    values = program.values.copy()
    for layer in program.inner_layers:
        grads = rng.normal(size=values.shape)
        results = []
        for runner in (layer, layer.padded):
            g = grads.copy()
            program.grad_log_weights = np.zeros_like(program.weights)
            runner.backward(program, values.copy(), g, {})
            results.append((g, program.grad_log_weights.copy()))
        assert np.allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
        assert np.allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-12)


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1),
       st.sampled_from([0.0, 0.3, 1.0]))
def test_table_sums_give_the_segment_sums_values_to_the_last_bit(circuit, seed, missing):
    program = circuit.compile(dtype="float64")
    x = program.prepare(with_missing(program.sample(9, seed=seed), seed, missing))
    program._forward(x, cache=False)
    for layer in program.inner_layers:
        if isinstance(layer, TableSumLayer):
            tabled, summed = program.values.copy(), program.values.copy()
            layer.forward(program, tabled, x, SUM, None)
            SegmentSumLayer.forward(layer, program, summed, x, SUM, None)
            assert np.array_equal(tabled, summed)


@pytest.mark.filterwarnings("ignore:overflow encountered")
@FAST
@given(scalar_circuits(leaves=("bernoulli", "gaussian")), st.integers(0, 2**31 - 1),
       st.sampled_from([1.0, 40.0, 1e3, 1e160]))
def test_segment_sums_match_enumeration_far_in_the_gaussian_tails(circuit, seed, scale):
    """Log-densities down to -1e300 and -inf (squares that overflow), with missing values: the
    segment sums neither underflow nor lose an impossible example."""
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(12, seed=seed), seed, 0.2)
    gaussian = [v for v in range(circuit.num_variables) if not program.domain.discrete[v]]
    x[:, gaussian] *= scale
    ours = program.log_likelihood(x)
    with np.errstate(all="ignore"):
        expected = brute_force_log_likelihood(circuit, x)[:, 0]
    assert np.array_equal(np.isneginf(ours), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert np.allclose(ours[finite], expected[finite], rtol=1e-12, atol=1e-12)


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1))
def test_values_after_a_look_up_pass_hold_the_leaves_that_only_table_sums_read(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(9, seed=seed), seed)
    program.forward(x, cache=True)
    full = program.values.copy()
    program.forward(program.sample(9, seed=seed + 1))       # other values in every row
    program.forward(x, cache=False)
    assert np.array_equal(program.values, full)


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1))
def test_backward_after_a_look_up_pass_gives_the_flows_of_a_cached_pass(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(9, seed=seed), seed)
    program.forward(x, cache=True)
    cached = program.backward(inputs=True)
    cached = (cached.log_weights.copy(), cached.unit_flows.copy(), cached.inputs.copy())
    program.forward(program.sample(9, seed=seed + 1))       # other values in every row
    program.forward(x, cache=False)
    looked_up = program.backward(inputs=True)
    for a, b in zip(cached, (looked_up.log_weights, looked_up.unit_flows, looked_up.inputs)):
        assert np.allclose(a, b, rtol=1e-13, atol=1e-13)


def test_table_sums_keep_impossible_values_and_zero_weights_exact():
    """Leaves with probability 0 and 1 and a zero weight: -inf stays -inf, and the values match
    enumeration with and without missing values."""
    leaves = [pc.InputNode(0, pc.Bernoulli([p])) for p in (0.0, 1.0, 0.5)]
    zero_weight = pc.SumNode(leaves[:2], weights=[[0.0, 1.0]])
    certain = pc.SumNode([leaves[0], pc.InputNode(0, pc.Bernoulli([0.0]))], weights=[[0.4, 0.6]])
    categories = pc.SumNode([pc.InputNode(1, pc.Categorical([[0.0, 0.2, 0.8]])),
                             pc.InputNode(1, pc.Categorical([[0.5, 0.5, 0.0]]))], weights=[[0.25, 0.75]])
    circuit = pc.Circuit(pc.SumNode([pc.ProductNode([zero_weight, categories]),
                                     pc.ProductNode([certain, categories]),
                                     pc.ProductNode([leaves[2], categories])], weights=[[0.2, 0.3, 0.5]]))
    program = circuit.compile(dtype="float64")
    assert sum(isinstance(layer, TableSumLayer) for layer in program.layers) == 1
    x = np.tile(np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [np.nan, 2], [1, np.nan]]), (3, 1))
    with np.errstate(divide="ignore"):
        expected = brute_force_log_likelihood(circuit, x)[:, 0]
    assert np.allclose(program.log_likelihood(x), expected, rtol=1e-14, atol=0)
    assert np.array_equal(np.isneginf(program.log_likelihood(x)), np.isneginf(expected))


@FAST
@given(scalar_circuits(leaves=("bernoulli", "categorical", "gaussian")), st.integers(0, 2**31 - 1))
def test_segment_layers_give_the_same_passes_in_blocks_of_few_units_on_two_threads(circuit, seed):
    from unittest import mock
    program = circuit.compile(dtype="float64")
    x = with_missing(program.sample(7, seed=seed), seed)

    def passes():
        values = program.forward(x).copy(), program.forward(x, mode="max").copy()
        program.forward(x)
        gradients = program.backward()
        return values + (gradients.log_weights.copy(), gradients.unit_flows.copy())
    whole = passes()
    with mock.patch("pcircuits.backend.BLOCK_ELEMENTS", 1), \
            mock.patch.dict("os.environ", {"PCIRCUITS_NUM_THREADS": "2"}):
        blocked = passes()
    for a, b in zip(whole, blocked):
        assert np.array_equal(a, b)


@settings(max_examples=5, deadline=None)
@given(scalar_circuits(leaves=("gaussian",)))
def test_strict_device_runs_segment_layers_without_pulling_scalars(circuit):
    device = circuit.compile(backend="strict", dtype="float64")
    x = np.random.default_rng(0).normal(size=(16, circuit.num_variables))
    x[::3, ::2] = np.nan
    transfers = transfers_of_every_pass(device, x)
    assert transfers["copy"] == 0
    # each public pass checks its input once; the segment layers pull nothing
    assert transfers["scalar"] <= 3
