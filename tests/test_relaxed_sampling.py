"""The relaxed (differentiable) top-down pass: its gradients against float64 finite differences
with the noise held fixed, its hard form against the exact sampler, and its distribution."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.nodes import InputNode, ProductNode, SumNode
from pcircuits.program import RelaxedNoise

from devices import DEVICE_BACKENDS
from frequencies import chi_square_pvalue
from strategies import ALL_FAMILIES, DISCRETE_FAMILIES, enumerate_assignments, valid_circuits

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Families whose hard relaxed draw is the exact draw of the same noise (binomial leaves use a
#: Gaussian approximation).
EXACT_FAMILIES = tuple(f for f in ALL_FAMILIES if f != "binomial")


# ---- the parameters as one vector, in the forms the gradients refer to ------------------------

def parameter_vector(program):
    parts = [program.log_weights.copy()]
    for key, table in program.leaf_tables.items():
        free = key[0].to_unconstrained(np, table)
        parts += [free[name].ravel().copy() for name in sorted(free)]
    return np.concatenate(parts)


def set_parameter_vector(program, vector):
    log_weights = vector[:program.num_weights].copy()
    program.set_weights(np.exp(log_weights), log_weights)
    offset = program.num_weights
    for key, table in list(program.leaf_tables.items()):
        free = key[0].to_unconstrained(np, table)
        new = {}
        for name in sorted(free):
            new[name] = vector[offset:offset + free[name].size].reshape(free[name].shape)
            offset += free[name].size
        update = key[0].from_unconstrained(np, table, new)
        program.leaf_tables[key] = {k: update.get(k, v) for k, v in table.items()}


def gradient_vector(program, grads):
    parts = [grads.log_weights]
    for key, table in program.leaf_tables.items():
        free = key[0].to_unconstrained(np, table)
        given = grads.leaves.get(key, {})
        parts += [given.get(name, np.zeros_like(free[name])).ravel() for name in sorted(free)]
    return np.concatenate(parts)


def partial_evidence(program, n, seed):
    rng = np.random.default_rng(seed)
    evidence = program.sample(n, seed=seed)
    evidence[rng.random(evidence.shape) < 0.5] = np.nan
    return evidence


def loss_and_grad(x, target):
    """A loss that reads every sample value: ``sum(target * x) + 0.1 * sum(x ** 2)``."""
    return float((target * x).sum() + 0.1 * (x ** 2).sum()), target + 0.2 * x


def directional_check(program, noise, tau, hard, evidence, seed, *, only=None):
    """(analytic, finite-difference) derivative of the loss along a random parameter direction."""
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(noise.batch, program.num_variables))

    def loss():
        return loss_and_grad(program.sample_relaxed(temperature=tau, hard=hard, noise=noise, evidence=evidence),
                             target)[0]

    _, grad = loss_and_grad(program.sample_relaxed(temperature=tau, hard=hard, noise=noise, evidence=evidence), target)
    analytic = gradient_vector(program, program.backward_relaxed(grad))
    vector = parameter_vector(program)
    direction = rng.normal(size=vector.shape)
    direction[:program.num_weights][~np.isfinite(vector[:program.num_weights])] = 0
    if only is not None:
        direction *= only
    eps = 1e-6
    set_parameter_vector(program, vector + eps * direction)
    up = loss()
    set_parameter_vector(program, vector - eps * direction)
    down = loss()
    set_parameter_vector(program, vector)
    return analytic @ direction, (up - down) / (2 * eps)


# ---- gradients ---------------------------------------------------------------------------------

@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_parameter_gradients_match_finite_differences_at_fixed_noise(circuit, seed):
    program = circuit.compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 5, seed)
    analytic, numeric = directional_check(program, noise, 0.7, False, None, seed)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-6)


@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_parameter_gradients_under_evidence_match_finite_differences(circuit, seed):
    program = circuit.compile(dtype="float64")
    evidence = partial_evidence(program, 5, seed)
    noise = RelaxedNoise.draw(program, 5, seed)
    analytic, numeric = directional_check(program, noise, 0.7, False, evidence, seed)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-6)


@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1), st.booleans())
def test_temperature_gradient_matches_finite_differences(circuit, seed, with_evidence):
    program = circuit.compile(dtype="float64")
    evidence = partial_evidence(program, 4, seed) if with_evidence else None
    noise = RelaxedNoise.draw(program, 4, seed)
    target = np.random.default_rng(seed).normal(size=(4, circuit.num_variables))
    tau, eps = 0.6, 1e-6

    def loss(t):
        return loss_and_grad(program.sample_relaxed(temperature=t, noise=noise, evidence=evidence), target)

    _, grad = loss(tau)
    analytic = program.backward_relaxed(grad).temperature
    assert np.isclose(analytic, (loss(tau + eps)[0] - loss(tau - eps)[0]) / (2 * eps), rtol=1e-5, atol=1e-6)


@FAST
@given(valid_circuits(families=("gaussian",)), st.integers(0, 2**31 - 1))
def test_straight_through_leaf_gradients_match_finite_differences(circuit, seed):
    # with one-hot choices the path is locally constant, so the Gaussian leaves' gradients are exact
    program = circuit.compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 5, seed)
    leaves_only = np.r_[np.zeros(program.num_weights), np.ones(len(parameter_vector(program)) - program.num_weights)]
    analytic, numeric = directional_check(program, noise, 0.5, True, None, seed, only=leaves_only)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-6)


def two_gaussian_mixture(weights=(0.3, 0.7)):
    a = InputNode([0], pc.distributions.Gaussian([-2.0], [0.5]))
    b = InputNode([0], pc.distributions.Gaussian([3.0], [1.5]))
    return pc.Circuit(SumNode([a, b], weights=np.array([list(weights)])))


def test_a_sum_interpolates_its_inputs_samples_with_the_gumbel_softmax_vector():
    program = two_gaussian_mixture().compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 6, 3)
    tau = 0.8
    x = program.sample_relaxed(temperature=tau, noise=noise)
    gumbel = next(iter(noise.sums.values()))[0]                       # (2 inputs, 6)
    y = np.exp((np.log([[0.3], [0.7]]) + gumbel) / tau)
    y /= y.sum(axis=0)
    leaves = [next(iter(noise.leaves.values()))[:, i, 0] for i in range(2)]
    expected = y[0] * (-2.0 + 0.5 * leaves[0]) + y[1] * (3.0 + 1.5 * leaves[1])
    assert np.allclose(x[:, 0], expected)


def test_a_product_concatenates_its_inputs_samples():
    left = InputNode([0], pc.distributions.Gaussian([1.0], [0.1]))
    right = InputNode([1], pc.distributions.Gaussian([-4.0], [0.2]))
    program = pc.Circuit(ProductNode([left, right])).compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 4, 0)
    x = program.sample_relaxed(temperature=0.5, noise=noise)
    assert np.allclose(x, program.top_down(np.full((4, 2), np.nan), mode="sample", noise=noise))


# ---- the hard pass is the exact sampler ------------------------------------------------------

@FAST
@given(valid_circuits(families=EXACT_FAMILIES), st.integers(0, 2**31 - 1), st.sampled_from([1.0, 1e-3]))
def test_hard_samples_equal_the_exact_samplers_draws_from_the_same_noise(circuit, seed, tau):
    program = circuit.compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 12, seed)
    exact = program.top_down(np.full((12, circuit.num_variables), np.nan), mode="sample", noise=noise)
    assert np.array_equal(program.sample_relaxed(temperature=tau, hard=True, noise=noise), exact)


@FAST
@given(valid_circuits(families=EXACT_FAMILIES), st.integers(0, 2**31 - 1))
def test_hard_samples_under_evidence_equal_the_exact_samplers_conditional_draws(circuit, seed):
    program = circuit.compile(dtype="float64")
    evidence = partial_evidence(program, 12, seed)
    noise = RelaxedNoise.draw(program, 12, seed)
    exact = program.top_down(evidence, mode="sample", noise=noise)
    assert np.array_equal(program.sample_relaxed(temperature=1e-3, hard=True, noise=noise, evidence=evidence), exact)


@FAST
@given(valid_circuits(families=("gaussian", "categorical", "indicator")), st.integers(0, 2**31 - 1))
def test_soft_samples_tend_to_the_exact_draws_as_the_temperature_goes_to_zero(circuit, seed):
    program = circuit.compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 12, seed)
    exact = program.top_down(np.full((12, circuit.num_variables), np.nan), mode="sample", noise=noise)
    errors = [np.abs(program.sample_relaxed(temperature=t, noise=noise) - exact).max() for t in (1.0, 1e-2, 1e-4)]
    assert errors[2] <= errors[0] + 1e-12
    assert errors[2] < 1e-3 or errors[2] < errors[1]


@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1), st.booleans())
def test_observed_variables_keep_their_values(circuit, seed, hard):
    program = circuit.compile(dtype="float64")
    evidence = partial_evidence(program, 6, seed)
    x = program.sample_relaxed(temperature=0.5, hard=hard, evidence=evidence, seed=seed)
    observed = ~np.isnan(evidence)
    assert np.array_equal(x[observed], evidence[observed])
    assert not np.isnan(x).any()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_circuits(families=tuple(f for f in DISCRETE_FAMILIES if f != "binomial")), st.integers(0, 2**31 - 1))
def test_hardened_relaxed_samples_pass_chi_square_against_the_circuit(circuit, seed):
    program = circuit.compile(dtype="float64")
    worlds = enumerate_assignments(circuit)
    p = np.exp(program.log_likelihood(worlds)).reshape(len(worlds), -1)[:, 0]
    samples = program.sample_relaxed(4000, temperature=0.5, hard=True, seed=seed)
    assert chi_square_pvalue(samples, worlds, p) > 1e-4


# ---- devices and errors ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(circuit=valid_circuits(families=ALL_FAMILIES), seed=st.integers(0, 2**31 - 1), hard=st.booleans())
def test_device_relaxed_pass_and_backward_agree_with_numpy(backend, circuit, seed, hard):
    reference = circuit.compile(dtype="float64")
    device = circuit.compile(backend=backend, dtype="float64")
    evidence = partial_evidence(reference, 5, seed)
    x_ref = reference.sample_relaxed(temperature=0.7, hard=hard, evidence=evidence, seed=seed)
    x_dev = device.sample_relaxed(temperature=0.7, hard=hard, evidence=device.backend.asarray(evidence), seed=seed)
    assert np.allclose(pc.to_numpy(x_dev), x_ref, atol=1e-10)
    target = np.random.default_rng(seed).normal(size=x_ref.shape)
    g_ref = reference.backward_relaxed(target)
    g_dev = device.backward_relaxed(device.backend.asarray(target))
    assert np.allclose(pc.to_numpy(g_dev.log_weights), g_ref.log_weights, atol=1e-8)
    assert np.isclose(g_dev.temperature, g_ref.temperature, atol=1e-8)
    for key, grads in g_ref.leaves.items():
        for name, value in grads.items():
            assert np.allclose(pc.to_numpy(g_dev.leaves[key][name]), value, atol=1e-8)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan")])
def test_a_temperature_that_is_not_positive_and_finite_is_refused(temperature):
    program = two_gaussian_mixture().compile()
    with pytest.raises(ValueError, match="temperature"):
        program.sample_relaxed(3, temperature=temperature)


def test_noise_of_another_circuit_is_refused():
    program = two_gaussian_mixture().compile()
    other = pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, seed=0).compile()
    with pytest.raises(ValueError, match="RelaxedNoise"):
        program.sample_relaxed(temperature=1.0, noise=RelaxedNoise.draw(other, 3, 0))


def test_backward_relaxed_refuses_a_gradient_of_the_wrong_shape():
    program = two_gaussian_mixture().compile()
    program.sample_relaxed(3, temperature=1.0, seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 1\)"):
        program.backward_relaxed(np.ones((4, 1)))


def test_backward_relaxed_needs_a_relaxed_pass_first():
    with pytest.raises(RuntimeError, match="sample_relaxed"):
        two_gaussian_mixture().compile().backward_relaxed(np.ones((3, 1)))


# ---- the factored (matrix-product) layers agree with the explicit ones ---------------------------

def image_circuits():
    return [pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, leaf="gaussian", seed=0),
            pc.builders.rat_spn(8, depth=2, num_repetitions=2, num_sums=3, num_leaves=2, leaf="bernoulli", seed=0)]


@pytest.mark.parametrize("circuit", image_circuits(), ids=["pd", "rat"])
def test_builder_circuits_relaxed_gradients_match_finite_differences(circuit):
    program = circuit.compile(dtype="float64")
    noise = RelaxedNoise.draw(program, 4, 0)
    assert {type(layer).__name__ for layer in program.inner_layers} & {"DenseSumLayer", "FusedSumLayer"}
    analytic, numeric = directional_check(program, noise, 0.8, False, None, 1)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("with_evidence", [False, True])
@pytest.mark.parametrize("circuit", image_circuits(), ids=["pd", "rat"])
def test_builder_circuits_temperature_gradient_matches_finite_differences(circuit, with_evidence):
    program = circuit.compile(dtype="float64")
    evidence = partial_evidence(program, 4, 3) if with_evidence else None
    noise = RelaxedNoise.draw(program, 4, 3)
    target = np.random.default_rng(3).normal(size=(4, circuit.num_variables))

    def loss(t):
        return loss_and_grad(program.sample_relaxed(temperature=t, noise=noise, evidence=evidence), target)

    _, grad = loss(0.8)
    analytic = program.backward_relaxed(grad).temperature
    assert np.isclose(analytic, (loss(0.8 + 1e-6)[0] - loss(0.8 - 1e-6)[0]) / 2e-6, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("circuit", image_circuits(), ids=["pd", "rat"])
def test_factored_layers_give_the_explicit_layers_samples_and_gradients(circuit, monkeypatch):
    from pcircuits.program.relaxed import RelaxedTape
    program = circuit.compile(dtype="float64")
    evidence = partial_evidence(program, 4, 2)
    noise = RelaxedNoise.draw(program, 4, 2)
    target = np.random.default_rng(2).normal(size=(4, circuit.num_variables))
    results = []
    for factored in (True, False):
        if not factored:
            monkeypatch.setattr(RelaxedTape, "_factored_forward", lambda *args: None)
        x = program.sample_relaxed(temperature=0.6, noise=noise, evidence=evidence)
        results.append((x, program.backward_relaxed(target)))
    (x1, g1), (x2, g2) = results
    assert np.allclose(x1, x2, atol=1e-12)
    assert np.allclose(g1.log_weights, g2.log_weights, atol=1e-10)
    assert np.isclose(g1.temperature, g2.temperature, atol=1e-10)
    for key, grads in g1.leaves.items():
        for name, value in grads.items():
            assert np.allclose(value, g2.leaves[key][name], atol=1e-10)


def test_a_small_temperature_falls_back_to_explicit_layers_without_nan():
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, seed=0).compile()
    x = program.sample_relaxed(8, temperature=1e-3, seed=0)
    grads = program.backward_relaxed(np.ones_like(x))
    assert np.isfinite(x).all() and np.isfinite(grads.log_weights).all() and np.isfinite(grads.temperature)


@pytest.mark.parametrize("hard", [False, True])
def test_explicit_layers_chunked_over_the_batch_give_the_same_samples_and_gradients(hard, monkeypatch):
    from pcircuits.program import relaxed
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, seed=0).compile(dtype="float64")
    monkeypatch.setattr(relaxed.RelaxedTape, "_factored_forward", lambda *args: None)
    evidence = partial_evidence(program, 6, 4)
    noise = RelaxedNoise.draw(program, 6, 4)
    target = np.random.default_rng(4).normal(size=(6, 16))
    results = []
    for elements in (1 << 22, 1):                                 # one chunk; one batch column per chunk
        monkeypatch.setattr(relaxed, "_EXPLICIT_ELEMENTS", elements)
        x = program.sample_relaxed(temperature=0.6, hard=hard, noise=noise, evidence=evidence)
        results.append((x, program.backward_relaxed(target)))
    (x1, g1), (x2, g2) = results
    assert np.allclose(x1, x2, atol=1e-12)
    assert np.allclose(g1.log_weights, g2.log_weights, atol=1e-10)
    assert np.isclose(g1.temperature, g2.temperature, atol=1e-10)
