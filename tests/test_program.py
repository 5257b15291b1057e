"""The Program's passes against brute-force enumeration in float64 on random valid circuits."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcircuits as pc

from devices import DEVICE_BACKENDS, assert_device_agrees, transfers_of_every_pass
from frequencies import chi_square_pvalue
from strategies import (ALL_FAMILIES, CONTINUOUS_FAMILIES, DISCRETE_FAMILIES, LEARNABLE_FAMILIES,
                        brute_force_log_likelihood, enumerate_assignments, numeric_gradient, selective_circuits,
                        valid_circuits)

DISCRETE = DISCRETE_FAMILIES
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_evidence(worlds, p, rng):
    """A possible assignment (drawn by its probability) with about half of its values hidden."""
    evidence = worlds[rng.choice(len(worlds), p=p[:, 0] / p[:, 0].sum())].copy()
    evidence[rng.random(worlds.shape[1]) < 0.5] = np.nan
    return evidence


def consistent_with(worlds, evidence):
    """Which assignments agree with the evidence's observed values."""
    return np.all((worlds == evidence) | np.isnan(evidence), axis=1)


def joint_table(circuit, program):
    worlds = enumerate_assignments(circuit)
    return worlds, np.exp(program.log_likelihood(worlds)).reshape(len(worlds), -1)


@FAST
@given(valid_circuits(families=DISCRETE))
def test_partition_function_is_one(circuit):
    program = circuit.compile(dtype="float64")
    _, p = joint_table(circuit, program)
    assert np.allclose(p.sum(axis=0), 1.0, atol=1e-9)


@FAST
@given(valid_circuits(families=DISCRETE))
def test_all_missing_input_gives_log_one(circuit):
    program = circuit.compile(dtype="float64")
    ll = program.log_likelihood(np.full((2, circuit.num_variables), np.nan))
    assert np.allclose(ll, 0.0, atol=1e-9)


@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_log_likelihood_matches_node_by_node_oracle(circuit, seed):
    program = circuit.compile(dtype="float64")
    rng = np.random.default_rng(seed)
    x = program.sample(6, seed=seed)
    x[rng.random(x.shape) < 0.3] = np.nan
    expected = brute_force_log_likelihood(circuit, x)
    assert np.allclose(program.log_likelihood(x).reshape(expected.shape), expected, atol=1e-8)


@FAST
@given(valid_circuits(families=DISCRETE), st.integers(0, 2**31 - 1))
def test_marginals_equal_sums_of_joints(circuit, seed):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    rng = np.random.default_rng(seed)
    keep = rng.random(circuit.num_variables) < 0.5
    query = worlds[rng.integers(len(worlds))].copy()
    query[~keep] = np.nan
    consistent = consistent_with(worlds, query)
    expected = p[consistent].sum(axis=0)
    assert np.allclose(np.exp(program.log_likelihood(query[None]))[0], expected, atol=1e-9)


@FAST
@given(valid_circuits(families=DISCRETE, multiple_roots=False), st.integers(0, 2**31 - 1))
def test_conditionals_normalize(circuit, seed):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    rng = np.random.default_rng(seed)
    is_query = rng.random(circuit.num_variables) < 0.5
    evidence_world = worlds[rng.choice(len(worlds), p=p[:, 0] / p[:, 0].sum())]
    x_query = np.where(is_query[None, :], worlds, np.nan)
    x_evidence = np.where(is_query[None, :], np.nan, evidence_world[None, :]).repeat(len(worlds), axis=0)
    distinct = np.unique(np.nan_to_num(x_query, nan=-1), axis=0, return_index=True)[1]
    total = np.exp(program.log_conditional(x_query[distinct], x_evidence[distinct])).sum(axis=0)
    assert np.allclose(total, 1.0, atol=1e-8)


@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_log_weight_gradient_equals_finite_differences(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = program.sample(4, seed=seed)
    program.forward(x)
    analytic = program.backward().log_weights
    w0 = program.weights.copy()
    positive = w0 > 0

    def total(log_w):
        program.set_weights(np.where(positive, np.exp(log_w), 0))
        return float(program.forward(x).sum())

    numeric = numeric_gradient(total, np.log(np.where(positive, w0, 1)))
    program.set_weights(w0)
    assert np.allclose(analytic[positive], numeric[positive], atol=1e-5)


@FAST
@given(valid_circuits(families=LEARNABLE_FAMILIES), st.integers(0, 2**31 - 1))
def test_leaf_parameter_gradient_equals_finite_differences(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = program.sample(4, seed=seed)
    program.forward(x)
    analytic = program.backward().leaves
    for key, table in program.leaf_tables.items():
        family = key[0]
        free0 = family.to_unconstrained(np, table)
        for name in free0:
            def total(theta, name=name):
                free = dict(free0, **{name: theta})
                program.leaf_tables[key] = dict(table, **family.from_unconstrained(np, table, free))
                return float(program.forward(x).sum())

            numeric = numeric_gradient(total, free0[name])
            program.leaf_tables[key] = table
            assert np.allclose(analytic[key][name], numeric, atol=1e-4), (family.name, name)


@FAST
@given(valid_circuits(families=CONTINUOUS_FAMILIES), st.integers(0, 2**31 - 1))
def test_input_gradient_equals_finite_differences(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = program.sample(3, seed=seed)
    program.forward(x)
    analytic = program.backward(inputs=True).inputs
    numeric = numeric_gradient(lambda z: float(program.forward(z).sum()), x)
    assert np.allclose(analytic, numeric, atol=1e-5)


@FAST
@given(valid_circuits(families=DISCRETE), st.integers(0, 2**31 - 1))
def test_flows_of_each_sum_add_up_to_its_own_flow(circuit, seed):
    program = circuit.compile(dtype="float64")
    x = program.sample(5, seed=seed)
    program.forward(x)
    grads = program.backward()
    offsets = program.plan.weight_offsets
    for node in circuit.sum_nodes:
        start = program.plan.node_offsets[id(node)]
        unit_flow = grads.unit_flows[start:start + node.num_units].sum(axis=1)
        index = next(i for i, q in enumerate(program.plan.sum_params) if q is node.params)
        shared = sum(1 for n in circuit.sum_nodes if n.params is node.params)
        if shared > 1:
            continue
        edge_flow = grads.log_weights[offsets[index]:offsets[index + 1]].reshape(node.weights.shape)
        assert np.allclose(edge_flow.sum(axis=1), unit_flow, atol=1e-9)


@FAST
@given(selective_circuits())
def test_mpe_is_argmax_on_selective_circuits(circuit):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    decoded = program.mpe(np.full((1, circuit.num_variables), np.nan))
    assert np.isclose(np.exp(program.log_likelihood(decoded))[0], p.max(), rtol=1e-9)


@FAST
@given(selective_circuits())
def test_max_pass_value_is_joint_of_decoded_assignment(circuit):
    program = circuit.compile(dtype="float64")
    empty = np.full((1, circuit.num_variables), np.nan)
    max_value = program.forward(empty, mode="max")[0, 0]
    decoded = program.mpe(empty)
    assert np.isclose(max_value, program.log_likelihood(decoded)[0], atol=1e-9)


@FAST
@given(valid_circuits(families=DISCRETE), st.integers(0, 2**31 - 1))
def test_mpe_keeps_evidence_and_fills_every_missing_value(circuit, seed):
    program = circuit.compile(dtype="float64")
    rng = np.random.default_rng(seed)
    x = program.sample(4, seed=seed)
    x[rng.random(x.shape) < 0.5] = np.nan
    completed = program.mpe(x)
    observed = ~np.isnan(x)
    assert np.array_equal(completed[observed], x[observed])
    assert not np.isnan(completed).any()


@FAST
@given(selective_circuits(), st.integers(0, 2**31 - 1))
def test_conditional_mpe_is_conditional_argmax_on_selective_circuits(circuit, seed):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    rng = np.random.default_rng(seed)
    evidence = random_evidence(worlds, p, rng)
    consistent = consistent_with(worlds, evidence)
    decoded = program.mpe(evidence[None])
    assert np.isclose(np.exp(program.log_likelihood(decoded))[0], p[consistent].max(), rtol=1e-9)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_circuits(families=DISCRETE, multiple_roots=False))
def test_sample_frequencies_pass_chi_square(circuit):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    samples = program.sample(4000, seed=1234)
    assert chi_square_pvalue(samples, worlds, p[:, 0]) > 1e-4


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_circuits(families=DISCRETE, multiple_roots=False), st.integers(0, 2**31 - 1))
def test_conditional_samples_follow_the_conditional_and_keep_evidence(circuit, seed):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    rng = np.random.default_rng(seed)
    evidence = random_evidence(worlds, p, rng)
    # the sampling seed comes from the example: one fixed stream shared by every example made
    # the test fail wherever that stream happens to over-draw a distribution's tail
    samples = program.sample(3000, np.repeat(evidence[None], 3000, axis=0), seed=seed)
    observed = ~np.isnan(evidence)
    assert np.all(samples[:, observed] == evidence[observed])
    consistent = consistent_with(worlds, evidence)
    assert chi_square_pvalue(samples, worlds, np.where(consistent, p[:, 0], 0)) > 1e-4


@FAST
@given(valid_circuits(families=DISCRETE, multiple_roots=False), st.integers(0, 2**31 - 1))
def test_posterior_mean_inpainting_is_the_conditional_expectation(circuit, seed):
    program = circuit.compile(dtype="float64")
    worlds, p = joint_table(circuit, program)
    rng = np.random.default_rng(seed)
    evidence = random_evidence(worlds, p, rng)
    consistent = consistent_with(worlds, evidence)
    posterior = np.where(consistent, p[:, 0], 0)
    expected = (posterior[:, None] * worlds).sum(axis=0) / posterior.sum()
    assert np.allclose(program.inpaint(evidence[None])[0], expected, atol=1e-8)


@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_float32_agrees_with_float64(circuit, seed):
    x = circuit.compile(dtype="float64").sample(8, seed=seed)
    ll64 = circuit.compile(dtype="float64").log_likelihood(x)
    ll32 = circuit.compile(dtype="float32").log_likelihood(x)
    assert np.allclose(ll32, ll64, rtol=1e-4, atol=1e-4)


@FAST
@given(valid_circuits(families=DISCRETE, multiple_roots=True))
def test_several_roots_give_one_column_each(circuit):
    program = circuit.compile(dtype="float64")
    x = enumerate_assignments(circuit)
    ll = program.log_likelihood(x)
    columns = sum(r.num_units for r in circuit.roots)
    assert (ll.shape == (len(x), columns)) if columns > 1 else (ll.shape == (len(x),))
    for k, root in enumerate(circuit.roots):
        single = pc.Circuit(root, variables=circuit.variables).compile(dtype="float64").log_likelihood(x)
        column = ll[:, k] if ll.ndim == 2 else ll
        if root.num_units == 1:
            assert np.allclose(column if columns > 1 else ll, single)


# ---- input errors --------------------------------------------------------------------------
@pytest.fixture
def binary_program():
    return pc.builders.figure1_spn().compile(dtype="float64")


def test_wrong_number_of_variables_is_refused(binary_program):
    with pytest.raises(ValueError, match="has 3 variables per example, the circuit has 4"):
        binary_program.log_likelihood(np.zeros((2, 3)))


def test_one_dimensional_input_is_refused(binary_program):
    with pytest.raises(ValueError, match="1-D array"):
        binary_program.log_likelihood(np.zeros(4))


def test_non_numeric_input_is_refused(binary_program):
    with pytest.raises(TypeError, match="numeric"):
        binary_program.log_likelihood(np.array([["a", "b", "c", "d"]]))


def test_value_outside_discrete_domain_is_refused(binary_program):
    with pytest.raises(ValueError, match=r"x\[0, 2\] = 2 is outside the domain of variable 2"):
        binary_program.log_likelihood(np.array([[0, 1, 2, 0]]))


def test_non_integer_value_of_discrete_variable_is_refused(binary_program):
    with pytest.raises(ValueError, match="outside the domain"):
        binary_program.log_likelihood(np.array([[0, 0.5, 1, 0]]))


def test_infinite_value_is_refused(binary_program):
    with pytest.raises(ValueError, match="infinite value at example 0, variable 1"):
        binary_program.log_likelihood(np.array([[0, np.inf, 1, 0]]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_float_input_is_checked_and_copied_like_float64(dtype):
    gaussians = [pc.InputNode(v, pc.Gaussian([0.0], [1.0])) for v in range(3)]
    program = pc.Circuit(pc.ProductNode(gaussians)).compile(dtype="float32")
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.25]], dtype=dtype)
    np.testing.assert_array_equal(program.log_likelihood(x), program.log_likelihood(x.astype(np.float64)))
    prepared = program.prepare(x)
    prepared[0, 0] = 7.0
    assert x[0, 0] == 0.5
    missing = x.copy()
    missing[1, 2] = np.nan                     # marginalized: the other two densities remain
    expected = -0.5 * (1.0 ** 2 + 0.0 ** 2) - np.log(2 * np.pi)
    np.testing.assert_allclose(program.log_likelihood(missing)[1], expected, rtol=1e-6)
    infinite = x.copy()
    infinite[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinite value at example 1, variable 2"):
        program.log_likelihood(infinite)


def test_count_out_of_range_is_refused():
    leaf = pc.InputNode(0, pc.Binomial(3, [0.5]))
    program = pc.Circuit(leaf).compile()
    with pytest.raises(ValueError, match="integers 0..3"):
        program.log_likelihood(np.array([[4.0]]))


def test_invalid_circuit_is_refused_with_its_report():
    a = pc.InputNode(0, pc.Bernoulli([0.5]))
    b = pc.InputNode(0, pc.Bernoulli([0.3]))
    circuit = pc.Circuit(pc.ProductNode([a, b]))
    with pytest.raises(pc.InvalidCircuitError, match="decomposability"):
        circuit.compile()


def test_invalid_circuit_compiles_with_check_false():
    a = pc.InputNode(0, pc.Bernoulli([0.5]))
    b = pc.InputNode(0, pc.Bernoulli([0.3]))
    program = pc.Circuit(pc.ProductNode([a, b])).compile(check=False, dtype="float64")
    assert np.isclose(np.exp(program.log_likelihood(np.array([[1.0]])))[0], 0.15)


def test_backward_without_forward_is_refused():
    program = pc.builders.figure1_spn().compile()
    with pytest.raises(RuntimeError, match="forward"):
        program.backward()


def test_conditional_with_overlapping_query_and_evidence_is_refused(binary_program):
    x = np.array([[0, 1, np.nan, np.nan]])
    with pytest.raises(ValueError, match="both a query and an evidence variable"):
        binary_program.log_conditional(x, x)


def test_sync_to_circuit_writes_parameters_back():
    circuit = pc.builders.figure1_spn()
    program = circuit.compile(dtype="float64")
    w = program.weights.copy()
    program.set_weights(w * 0 + w[::-1])
    program.sync_to_circuit()
    again = circuit.compile(dtype="float64")
    assert np.allclose(again.weights, w[::-1])


# ---- NumPy vs the device backends (strict stand-in, CuPy) -------------------------------------
@pytest.mark.parametrize("device", DEVICE_BACKENDS)
@settings(max_examples=15, deadline=None)
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_device_backend_agrees_with_numpy_on_every_pass(device, circuit, seed):
    reference = circuit.compile(backend="numpy", dtype="float64")
    gpu = circuit.compile(backend=device, dtype="float64")
    x = reference.sample(8, seed=seed)
    x[np.random.default_rng(seed).random(x.shape) < 0.3] = np.nan
    assert_device_agrees(reference, gpu, x, atol=1e-8)
    assert np.allclose(pc.to_numpy(gpu.inpaint(x)), reference.inpaint(x), atol=1e-8)


@settings(max_examples=10, deadline=None)
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_strict_device_draws_the_numpy_samples_from_the_same_seed(circuit, seed):
    reference = circuit.compile(dtype="float64")
    device = circuit.compile(backend="strict", dtype="float64")
    assert np.array_equal(pc.to_numpy(device.sample(6, seed=seed)), reference.sample(6, seed=seed))
    evidence = reference.sample(6, seed=seed + 1)
    evidence[np.random.default_rng(seed).random(evidence.shape) < 0.5] = np.nan
    assert np.array_equal(pc.to_numpy(device.sample(evidence=evidence, seed=seed)),
                          reference.sample(evidence=evidence, seed=seed))


def test_device_passes_pull_no_scalars_except_one_underflow_check_per_dense_sum_layer():
    device = pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, leaf="gaussian", seed=0).compile(
        backend="strict", dtype="float64")
    x = np.random.default_rng(0).normal(size=(16, 16))
    x[::3, ::2] = np.nan
    dense_sums = sum(1 for layer in device.layers if type(layer).__name__ in ("DenseSumLayer", "FusedSumLayer"))
    transfers = transfers_of_every_pass(device, x)
    assert transfers["copy"] == 0
    # the two sum-mode forwards check each dense layer for underflow; each public pass checks its input once
    assert transfers["scalar"] <= 2 * dense_sums + 3
