"""Sample objectives (MMD, adversarial, auto-encoding) and the sample-based learners: gradients
against float64 finite differences, the estimators' definitions, and training through ``fit``."""
import numpy as np
import pytest

import pcircuits as pc
from pcircuits.backend import get_backend
from pcircuits.learning import (AdversarialCritic, ExponentialTemperature, LearnedKernelMMD, LinearTemperature,
                                SampleLearner, fit, make_temperature, mmd, reconstruction_error)
from pcircuits.nodes import InputNode, ProductNode, SumNode

from devices import DEVICE_BACKENDS
from strategies import numeric_gradient

BE = get_backend("numpy", "float64")


# ---- MMD ---------------------------------------------------------------------------------------

def test_mmd_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    samples, data = rng.normal(size=(7, 3)), rng.normal(1.0, 2.0, size=(9, 3))
    value = mmd(BE, samples, data, bandwidths=[0.5, 2.0])
    expected = numeric_gradient(lambda s: mmd(BE, s, data, bandwidths=[0.5, 2.0]).loss, samples)
    assert np.allclose(value.grad, expected, rtol=1e-6, atol=1e-9)


def test_mmd_is_the_unbiased_estimator_of_gretton_et_al():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(6, 2))

    def k(a, b):
        return sum(np.exp(-np.sum((a - b) ** 2) / (2 * s * s)) for s in (0.7, 1.5))

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    yy = sum(k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(6)) / (5 * 6)
    assert np.isclose(mmd(BE, x, y, bandwidths=[0.7, 1.5]).loss, xx + yy - 2 * xy)


def test_mmd_averages_to_zero_for_one_distribution_and_is_positive_for_two():
    rng = np.random.default_rng(2)
    same = [mmd(BE, rng.normal(size=(20, 2)), rng.normal(size=(20, 2))).loss for _ in range(300)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
    assert mmd(BE, rng.normal(size=(50, 2)), rng.normal(2.0, 1.0, size=(50, 2))).loss > 10 * np.std(same)


def test_mmd_refuses_bad_bandwidths_and_mismatched_dimensions():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(BE, x, x + 1, bandwidths=[0.0])
    with pytest.raises(ValueError, match="same D"):
        mmd(BE, x, np.zeros((3, 3)))


def test_learned_kernel_mmd_gradient_matches_finite_differences():
    kernel = LearnedKernelMMD(3, hidden=(8,), features=4, bandwidths=[0.5, 1.0], backend=BE, seed=0)
    rng = np.random.default_rng(16)
    samples, data = rng.normal(size=(6, 3)), rng.normal(1.0, 1.0, size=(7, 3))
    value = kernel.loss(samples, data)
    expected = numeric_gradient(lambda s: kernel.loss(s, data).loss, samples)
    assert np.allclose(value.grad, expected, rtol=1e-6, atol=1e-9)


def test_learned_kernel_steps_raise_the_mmd_between_two_sets():
    rng = np.random.default_rng(17)
    data, samples = rng.normal(0.5, 1.0, size=(64, 2)), rng.normal(-0.5, 1.0, size=(64, 2))
    kernel = LearnedKernelMMD(2, hidden=(16,), features=4, lr=1e-2, bandwidths=[1.0], backend=BE, seed=0)
    first = kernel.loss(samples, data).loss
    for _ in range(30):
        kernel.train_step(data, samples)
    assert kernel.loss(samples, data).loss > 2 * first


# ---- adversarial and reconstruction ------------------------------------------------------------

def test_adversarial_generator_loss_gradient_matches_finite_differences():
    critic = AdversarialCritic(3, hidden=(8,), backend=BE, seed=0)
    samples = np.random.default_rng(3).normal(size=(5, 3))
    value = critic.generator_loss(samples)
    expected = numeric_gradient(lambda s: critic.generator_loss(s).loss, samples)
    assert np.allclose(value.grad, expected, rtol=1e-6, atol=1e-9)


def test_critic_steps_learn_to_tell_data_from_samples():
    rng = np.random.default_rng(4)
    data, samples = rng.normal(2.0, 0.5, size=(64, 2)), rng.normal(-2.0, 0.5, size=(64, 2))
    critic = AdversarialCritic(2, hidden=(16,), lr=1e-2, backend=BE, seed=0)
    first = critic.train_step(data, samples)
    for _ in range(50):
        last = critic.train_step(data, samples)
    assert last < first / 4


@pytest.mark.parametrize("kind", ["bce", "mse"])
def test_reconstruction_error_gradient_matches_finite_differences(kind):
    rng = np.random.default_rng(5)
    target = rng.integers(0, 256, size=(4, 6)).astype(float)
    recon = rng.uniform(5, 250, size=(4, 6))
    value = reconstruction_error(BE, recon, target, kind=kind, scale=255.0)
    expected = numeric_gradient(lambda r: reconstruction_error(BE, r, target, kind=kind, scale=255.0).loss, recon)
    assert np.allclose(value.grad, expected, rtol=1e-5, atol=1e-9)


def test_bce_reconstruction_error_is_summed_over_variables_and_averaged_over_examples():
    target = np.array([[1.0, 0.0], [1.0, 1.0]])
    recon = np.array([[0.5, 0.5], [0.25, 0.5]])
    expected = -(np.log(0.5) + np.log(0.5) + np.log(0.25) + np.log(0.5)) / 2
    assert np.isclose(reconstruction_error(BE, recon, target).loss, expected)


# ---- learners: gradients of the whole objective through the relaxed pass -----------------------

def gaussian_mixture_circuit(k=3, seed=0):
    rng = np.random.default_rng(seed)
    products = [ProductNode([InputNode([0], pc.distributions.Gaussian(rng.normal(size=1), [0.8])),
                             InputNode([1], pc.distributions.Gaussian(rng.normal(size=1), [1.2]))])
                for _ in range(k)]
    return pc.Circuit(SumNode(products, weights=rng.dirichlet(np.ones(k))[None]))


def learner_loss_gradient_check(learner, x, seed):
    """(analytic, numeric) derivative of the learner's batch loss along a random theta direction."""
    be = learner.program.backend
    stats = learner.statistics(x, rng=be.rng(seed))
    rng = np.random.default_rng(seed)
    names = sorted(learner.theta)
    directions = {n: rng.normal(size=learner.theta[n].shape) for n in names}
    analytic = sum(float((stats["grads"][n] * directions[n]).sum()) for n in names)
    original = {n: learner.theta[n].copy() for n in names}

    def loss_at(step):
        for n in names:
            learner.theta[n][...] = original[n] + step * directions[n]
        learner.apply()
        return learner.statistics(x, rng=be.rng(seed))["loss"]

    eps = 1e-6
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    loss_at(0.0)
    return analytic, numeric


@pytest.mark.parametrize("ll_weight", [0.0, 0.5])
def test_mmd_learner_gradient_matches_finite_differences(ll_weight):
    program = gaussian_mixture_circuit().compile(dtype="float64")
    learner = SampleLearner(program, objective="mmd", temperature=0.7, bandwidths=[0.5, 1.0, 2.0],
                            ll_weight=ll_weight)
    x = np.random.default_rng(6).normal(size=(12, 2))
    analytic, numeric = learner_loss_gradient_check(learner, x, 7)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_learned_kernel_mmd_learner_gradient_matches_finite_differences():
    program = gaussian_mixture_circuit().compile(dtype="float64")
    learner = SampleLearner(program, objective="mmd", temperature=0.7, learned_kernel=(8,), bandwidths=[1.0])
    learner.critic_steps = 0                       # the kernel is held fixed for the check
    x = np.random.default_rng(18).normal(size=(10, 2))
    analytic, numeric = learner_loss_gradient_check(learner, x, 19)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_adversarial_learner_generator_gradient_matches_finite_differences():
    program = gaussian_mixture_circuit().compile(dtype="float64")
    learner = SampleLearner(program, objective="adversarial", temperature=0.7, critic_hidden=(8,))
    learner.critic_steps = 0                       # the critic is held fixed for the check
    x = np.random.default_rng(8).normal(size=(10, 2))
    analytic, numeric = learner_loss_gradient_check(learner, x, 9)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def latent_circuit(seed=0):
    """A circuit over (x0, x1, z): K components, each a product of two binomial pixels and a
    Gaussian latent."""
    rng = np.random.default_rng(seed)
    products = [ProductNode([InputNode([0], pc.distributions.Binomial(10, rng.uniform(0.2, 0.8, 1))),
                             InputNode([1], pc.distributions.Binomial(10, rng.uniform(0.2, 0.8, 1))),
                             InputNode([2], pc.distributions.Gaussian([3.0 * i], [1.0]))]) for i in range(3)]
    return pc.Circuit(SumNode(products, weights=rng.dirichlet(np.ones(3))[None]))


def test_pae_learner_gradient_matches_finite_differences():
    program = latent_circuit().compile(dtype="float64")
    learner = SampleLearner(program, objective="pae", temperature=0.7, latent=[2])
    x = np.column_stack([np.random.default_rng(10).integers(0, 11, size=(8, 2)), np.full(8, np.nan)])
    code = learner.encode(x)
    learner.encode = lambda batch: code            # the MPE code is an argmax: held fixed
    analytic, numeric = learner_loss_gradient_check(learner, x, 11)
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_learned_temperature_gradient_matches_finite_differences():
    program = gaussian_mixture_circuit().compile(dtype="float64")
    learner = SampleLearner(program, objective="mmd", temperature="learned", bandwidths=[1.0])
    x = np.random.default_rng(12).normal(size=(10, 2))
    analytic = learner.statistics(x, rng=program.backend.rng(13))["temperature_grad"]
    tau = learner.tau

    def loss(log_tau):
        learner.tau = float(np.exp(log_tau))
        return learner.statistics(x, rng=program.backend.rng(13))["loss"]

    numeric = (loss(np.log(tau) + 1e-6) - loss(np.log(tau) - 1e-6)) / 2e-6
    assert np.isclose(analytic, numeric, rtol=1e-5, atol=1e-8)


# ---- schedules and fit -------------------------------------------------------------------------

def test_annealed_schedules_start_at_one_and_reach_their_ends():
    exponential = make_temperature("exponential", epochs=20)
    assert exponential.value(0) == 1.0 and exponential.value(19) == 0.5
    assert all(exponential.value(e) >= exponential.value(e + 1) for e in range(19))
    linear = make_temperature("linear", epochs=5)
    assert [round(linear.value(e), 10) for e in range(5)] == [1.0, 0.775, 0.55, 0.325, 0.1]
    assert isinstance(exponential, ExponentialTemperature) and isinstance(linear, LinearTemperature)


def test_a_bad_temperature_is_refused_by_fit():
    program = gaussian_mixture_circuit().compile()
    with pytest.raises(ValueError, match="temperature"):
        fit(program, np.zeros((4, 2)), method="mmd", temperature="cold", progress=False)


def test_pae_without_latent_variables_is_refused():
    with pytest.raises(ValueError, match="latent"):
        SampleLearner(latent_circuit().compile(), objective="pae")


def test_mmd_training_lowers_the_mmd_to_held_out_data():
    rng = np.random.default_rng(14)
    centers = np.array([[-3.0, 0.0], [3.0, 1.0]])
    data = centers[rng.integers(0, 2, 600)] + 0.5 * rng.normal(size=(600, 2))
    train, test = data[:400], data[400:]
    program = gaussian_mixture_circuit(k=2, seed=1).compile(dtype="float64")

    def held_out_mmd():
        return mmd(BE, program.sample(200, seed=0), test, bandwidths=[0.5, 1.0, 2.0]).loss

    before = held_out_mmd()
    history = fit(program, train, method="mmd", epochs=15, batch_size=100, lr=0.05, bandwidths=[0.5, 1.0, 2.0],
                  progress=False, seed=0, valid=test)
    assert held_out_mmd() < before / 2
    assert "valid_ll" in history and "train_ll" not in history


@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
def test_device_sample_learner_step_agrees_with_numpy(backend):
    x = np.random.default_rng(15).normal(size=(8, 2))
    grads = []
    for name in ("numpy", backend):
        program = gaussian_mixture_circuit().compile(backend=name, dtype="float64")
        learner = SampleLearner(program, objective="mmd", temperature=0.5, bandwidths=[1.0])
        grads.append(learner.statistics(program.backend.asarray(x), rng=program.backend.rng(3))["grads"])
    for key, value in grads[0].items():
        assert np.allclose(pc.to_numpy(grads[1][key]), value, atol=1e-10)
