"""Learning: EM (soft, hard, USI; full-batch and online), smoothing, Adam/SGD with dropout and
cross-entropy, leaf initialization, and ``fit`` (history, validation, resumable checkpoints).

Properties checked: full-batch soft EM never lowers the training likelihood (random circuits of
every leaf family, with missing values, and class-conditional); hard EM and USI count the
documented winners (weighted / unweighted, marginal / max values); the smoothing formula;
online accumulators and stepwise blending; masks stay 0; frozen leaves stay fixed; the logit
and leaf gradients equal finite differences; dropout acts in training only and as specified;
Adam and SGD lower the NLL; a discriminative circuit separates a toy problem; a resumed run is
bit-identical to an uninterrupted one; bad arguments are refused before training.
"""
import numpy as np
import pytest
from scipy.special import logsumexp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits import jit
from pcircuits.learning.learner import LEARNERS
from pcircuits.learning import EM, GradientLearner, WeightRows, additive_smoothing, fit
from pcircuits.program import PassContext

from devices import DEVICE_BACKENDS
from strategies import ALL_FAMILIES, valid_circuits

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def digits():
    d = pc.datasets.load_digits_8x8()
    return d.x_train.reshape(len(d.x_train), -1)[:300], d.y_train[:300]


def small_pd(leaf="binomial"):
    return pc.builders.poon_domingos(8, 8, delta=4, num_sums=3, num_leaves=3, leaf=leaf, leaf_params={"n": 16}, seed=0)


def tables_copy(program):
    return {k: {n: v.copy() for n, v in t.items()} for k, t in program.leaf_tables.items()}


def block(program, node):
    """The flat-weight slice of ``node``'s weights."""
    i = next(i for i, p in enumerate(program.plan.sum_params) if p is node.params)
    return slice(int(program.plan.weight_offsets[i]), int(program.plan.weight_offsets[i + 1]))


# ---- soft EM ---------------------------------------------------------------------------------
@FAST
@given(valid_circuits(families=ALL_FAMILIES), st.integers(0, 2**31 - 1))
def test_full_batch_soft_em_never_lowers_training_log_likelihood(circuit, seed):
    program = circuit.compile(dtype="float64")
    data = program.sample(30, seed=seed)
    data[np.random.default_rng(seed).random(data.shape) < 0.2] = np.nan
    em = EM(program, "soft", mode="full-batch", eps=0.0, leaf_eps=0.0)
    before = float(program.log_likelihood(data).sum())
    for _ in range(3):
        em.fit_epoch(data, batch_size=8)
        after = float(program.log_likelihood(data).sum())
        assert after >= before - 1e-9 * max(1.0, abs(before))
        before = after


def test_binomial_and_bernoulli_em_updates_stay_in_the_unit_interval():
    # flows whose separately rounded sums make successes / (count * n) exceed 1 by an ulp
    # (found by the property above: log1p(-p) of p = 1 + 2e-16 made the likelihood NaN)
    flows = np.random.default_rng(2).random(7)
    count = np.array([flows.sum()])
    successes = np.array([(flows * 3.0).sum()])
    assert successes[0] / (count[0] * 3.0) > 1.0
    binomial = pc.Binomial.em_update({"n": np.array([3.0]), "p": np.array([0.5])},
                                     {"count": count, "successes": successes}, eps=0.0)
    assert binomial["p"][0] == 1.0
    bernoulli = pc.Bernoulli.em_update({"p": np.array([0.5])},
                                       {"count": count, "ones": np.nextafter(count, np.inf)}, eps=0.0)
    assert bernoulli["p"][0] == 1.0


def test_class_conditional_soft_em_never_lowers_the_label_root_likelihood():
    x, y = digits()
    labels = (y % 2).astype(int)
    circuit = pc.builders.rat_spn(64, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, num_classes=2,
                                  leaf="binomial", leaf_params={"n": 16}, seed=0)
    program = circuit.compile(dtype="float64")
    em = EM(program, "soft", eps=0.0, leaf_eps=0.0)
    before = program.log_likelihood(x)[np.arange(len(x)), labels].sum()
    for _ in range(3):
        em.fit_epoch(x, labels, batch_size=100)
        after = program.log_likelihood(x)[np.arange(len(x)), labels].sum()
        assert after >= before - 1e-9 * abs(before)
        before = after


def test_em_updates_leaves_when_not_frozen():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    before = {k: t["p"].copy() for k, t in program.leaf_tables.items()}
    fit(program, x, method="em", epochs=1, batch_size=100, progress=False)
    assert any(not np.allclose(t["p"], before[k]) for k, t in program.leaf_tables.items())


# ---- hard EM and USI ---------------------------------------------------------------------------
def _two_leaf_mixture(weights):
    """A sum over two Bernoulli leaves of one variable: winners are easy to compute by hand."""
    a = pc.InputNode(0, pc.Bernoulli([0.9]))
    b = pc.InputNode(0, pc.Bernoulli([0.6]))
    return pc.Circuit(pc.SumNode([a, b], weights=[weights]))


def test_hard_em_counts_the_weighted_winner():
    # x = 1: weighted values 0.2 * 0.9 = 0.18 and 0.8 * 0.6 = 0.48 -> the second input wins
    program = _two_leaf_mixture([0.2, 0.8]).compile(dtype="float64")
    stats = EM(program, "hard").statistics(np.ones((5, 1)))
    assert stats["weights"].tolist() == [0.0, 5.0]


def test_usi_counts_the_unweighted_winner():
    # unweighted values 0.9 and 0.6 -> the first input wins whatever the weights
    program = _two_leaf_mixture([0.2, 0.8]).compile(dtype="float64")
    stats = EM(program, "usi").statistics(np.ones((5, 1)))
    assert stats["weights"].tolist() == [5.0, 0.0]


def test_hard_em_breaks_ties_at_random_reproducibly():
    # two identical inputs tie for every example: random ties share the counts, seeded
    program = _two_leaf_mixture([0.5, 0.5]).compile(dtype="float64")
    program.leaf_tables[next(iter(program.leaf_tables))]["p"][:] = 0.7
    counts = [EM(program, kind, seed=3).statistics(np.ones((400, 1)))["weights"] for kind in ("hard", "hard", "usi")]
    assert counts[0].sum() == 400 and 100 < counts[0][0] < 300
    assert counts[0].tolist() == counts[1].tolist()
    assert 100 < counts[2][0] < 300


def test_mean_counts_are_the_summed_statistics_over_the_batch_size():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    summed = EM(program, "soft").statistics(x[:40])
    mean = EM(program, "soft", counts="mean").statistics(x[:40])
    assert np.allclose(mean["weights"] * 40, summed["weights"])
    for key, stats in summed["leaves"].items():
        for name, value in stats.items():
            assert np.allclose(mean["leaves"][key][name] * 40, value)


def test_hard_em_first_ties_give_every_count_to_the_first_input():
    program = _two_leaf_mixture([0.5, 0.5]).compile(dtype="float64")
    program.leaf_tables[next(iter(program.leaf_tables))]["p"][:] = 0.7
    assert EM(program, "usi", ties="first").statistics(np.ones((50, 1)))["weights"].tolist() == [50.0, 0.0]


def _sum_versus_max_circuit():
    """Root over A = 0.5 N(-1, 1) + 0.5 N(1, 1) and B = N(0, 2), equal weights; at x = 0:
    marginal A = 0.242 > B = 0.199 > max A = 0.5 * 0.242 = 0.121."""
    a = pc.SumNode([pc.InputNode(0, pc.Gaussian([-1.0, 1.0], [1.0, 1.0]))], weights=[[0.5, 0.5]])
    b = pc.InputNode(0, pc.Gaussian([0.0], [2.0]))
    root = pc.SumNode([a, b], weights=[[0.5, 0.5]])
    return pc.Circuit(root), root


def test_hard_em_with_marginal_inference_picks_the_marginal_winner():
    circuit, root = _sum_versus_max_circuit()
    program = circuit.compile(dtype="float64")
    counts = EM(program, "hard", inference="sum").statistics(np.zeros((3, 1)))["weights"]
    assert counts[block(program, root)].tolist() == [3.0, 0.0]


def test_hard_em_with_max_inference_picks_the_max_winner():
    circuit, root = _sum_versus_max_circuit()
    program = circuit.compile(dtype="float64")
    counts = EM(program, "hard", inference="max").statistics(np.zeros((3, 1)))["weights"]
    assert counts[block(program, root)].tolist() == [0.0, 3.0]


def test_hard_em_leaf_statistics_count_only_the_winning_leaves():
    # both examples go to the second Bernoulli (x = 1: 0.48 > 0.18): only its row moves
    program = _two_leaf_mixture([0.2, 0.8]).compile(dtype="float64")
    stats = EM(program, "hard").statistics(np.ones((2, 1)))
    (leaf_stats,) = stats["leaves"].values()
    assert leaf_stats["count"].tolist() == [0.0, 2.0] and leaf_stats["ones"].tolist() == [0.0, 2.0]


# ---- smoothing and schedules ------------------------------------------------------------------
def test_additive_smoothing_is_counts_plus_eps_over_total_plus_row_pseudo_count():
    counts = np.array([[3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    eps = 1e-2 / 4
    expected = (counts + eps) / (counts.sum(axis=1, keepdims=True) + 4 * eps)
    assert np.array_equal(additive_smoothing(counts), expected)
    assert np.allclose(additive_smoothing(counts).sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert np.allclose(additive_smoothing(counts)[1], 0.25)


def test_em_weights_follow_the_smoothing_formula_with_masked_row_sizes():
    leaves = [pc.InputNode(0, pc.Bernoulli([p])) for p in (0.2, 0.5, 0.8)]
    mask = np.array([[True, False, True], [True, True, True]])
    inner = pc.SumNode(leaves, mask=mask, rng=0)
    program = pc.Circuit(pc.SumNode([inner], weights=[[0.5, 0.5]])).compile(dtype="float64")
    counts = np.zeros(program.num_weights)
    counts[block(program, inner)] = [3.0, 0.0, 1.0, 2.0, 0.0, 5.0]
    em = EM(program, freeze_leaves=True)
    em.maximize({"weights": counts, "leaves": {}})
    w = program.weights[block(program, inner)].reshape(2, 3)
    e0, e1 = 1e-2 / 2, 1e-2 / 3                        # |w| counts the unmasked weights only
    assert np.allclose(w[0], [(3 + e0) / (4 + 2 * e0), 0.0, (1 + e0) / (4 + 2 * e0)], rtol=1e-15)
    assert w[0, 1] == 0.0
    assert np.allclose(w[1], (np.array([2.0, 0.0, 5.0]) + e1) / (7 + 3 * e1), rtol=1e-15)


def test_weight_rows_smoothing_matches_the_dense_formula():
    program = _two_leaf_mixture([0.5, 0.5]).compile(dtype="float64")
    counts = np.array([3.0, 1.0])
    assert np.allclose(WeightRows(program).smoothed(counts), additive_smoothing(counts), rtol=1e-15)
    assert np.allclose(WeightRows(program).smoothed(counts, eps=0.5), (counts + 0.5) / 5.0, rtol=1e-15)


def test_online_accumulators_give_the_weights_of_all_counts_so_far():
    program = _two_leaf_mixture([0.2, 0.8]).compile(dtype="float64")
    em = EM(program, "usi", mode="online", freeze_leaves=True)
    em.step(np.ones((3, 1)))    # x = 1: unweighted values 0.9 and 0.6 -> the first input wins
    em.step(np.zeros((2, 1)))   # x = 0: values 0.1 and 0.4 -> the second input wins
    assert np.allclose(program.weights, additive_smoothing([3.0, 2.0]), rtol=1e-15)


def test_stepwise_em_blends_the_running_statistics():
    program = _two_leaf_mixture([0.2, 0.8]).compile(dtype="float64")
    em = EM(program, "usi", mode="online", step_size=0.25, freeze_leaves=True)
    em.step(np.ones((3, 1)))
    assert np.allclose(program.weights, additive_smoothing([3.0, 0.0]), rtol=1e-15)
    em.step(np.zeros((2, 1)))
    assert np.allclose(program.weights, additive_smoothing([0.75 * 3.0, 0.25 * 2.0]), rtol=1e-15)


# ---- masks and frozen parameters ----------------------------------------------------------------
@pytest.mark.parametrize("method", ["em", "hard-em", "usi", "adam", "sgd"])
def test_masked_weights_stay_zero(method):
    leaves = [pc.InputNode(0, pc.Bernoulli([p])) for p in (0.2, 0.5, 0.8)]
    mask = np.array([[True, False, True], [True, True, False]])
    inner = pc.SumNode(leaves, mask=mask, rng=0)
    program = pc.Circuit(pc.SumNode([inner], weights=[[0.5, 0.5]])).compile(dtype="float64")
    data = np.random.default_rng(0).integers(0, 2, size=(50, 1)).astype(float)
    fit(program, data, method=method, epochs=3, batch_size=10, lr=0.1, progress=False)
    w = program.weights[block(program, inner)].reshape(2, 3)
    assert np.all(w[~mask] == 0)
    assert np.allclose(w.sum(axis=1), 1)


@pytest.mark.parametrize("method", ["usi", "em", "adam"])
def test_frozen_leaves_stay_unchanged(method):
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    before = tables_copy(program)
    weights = program.weights.copy()
    fit(program, x, method=method, epochs=2, batch_size=100, freeze_leaves=True, progress=False)
    for key, table in program.leaf_tables.items():
        for name, value in table.items():
            assert np.array_equal(value, before[key][name])
    assert not np.array_equal(program.weights, weights)


def _gaussian_and_bernoulli_circuit():
    gauss = pc.InputNode(0, pc.Gaussian([-1.0, 1.0], [1.0, 1.0]))
    bern = pc.InputNode(1, pc.Bernoulli([0.3, 0.6]))
    return pc.Circuit(pc.SumNode([pc.ProductNode([gauss, bern])], num_units=1, rng=0))


@pytest.mark.parametrize("method", ["em", "adam"])
def test_freezing_one_family_keeps_only_that_family_fixed(method):
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(size=80) * 2, rng.integers(0, 2, size=80)], axis=1)
    program = _gaussian_and_bernoulli_circuit().compile(dtype="float64")
    before = tables_copy(program)
    fit(program, data, method=method, epochs=2, batch_size=20, lr=0.1, freeze_leaves={"gaussian"}, progress=False)
    for key, table in program.leaf_tables.items():
        changed = any(not np.array_equal(v, before[key][n]) for n, v in table.items())
        assert changed == (key[0] is pc.Bernoulli)


@pytest.mark.parametrize("method", ["em", "adam"])
def test_freezing_one_parameter_keeps_it_and_learns_the_others(method):
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(size=80) * 2 + 0.5, rng.integers(0, 2, size=80)], axis=1)
    program = _gaussian_and_bernoulli_circuit().compile(dtype="float64")
    before = tables_copy(program)
    fit(program, data, method=method, epochs=3, batch_size=20, lr=0.1, freeze_leaves={"gaussian.std"},
        progress=False)
    gaussian = next(key for key in program.leaf_tables if key[0] is pc.Gaussian)
    bernoulli = next(key for key in program.leaf_tables if key[0] is pc.Bernoulli)
    assert np.array_equal(program.leaf_tables[gaussian]["std"], before[gaussian]["std"])
    assert not np.array_equal(program.leaf_tables[gaussian]["mean"], before[gaussian]["mean"])
    assert not np.array_equal(program.leaf_tables[bernoulli]["p"], before[bernoulli]["p"])


def test_frozen_std_of_non_unit_value_does_not_drift_over_many_adam_steps():
    gauss = pc.InputNode(0, pc.Gaussian([-1.0, 1.0], [0.3, 1.7]))
    program = pc.Circuit(pc.SumNode([gauss], num_units=1, rng=0)).compile(dtype="float32")
    std = program.leaf_tables[next(iter(program.leaf_tables))]["std"].copy()
    data = np.random.default_rng(0).normal(size=(400, 1))
    fit(program, data, method="adam", epochs=5, batch_size=4, lr=0.05, freeze_leaves="gaussian.std",
        progress=False)
    assert np.array_equal(program.leaf_tables[next(iter(program.leaf_tables))]["std"], std)


def test_gradient_with_a_frozen_parameter_equals_finite_differences_of_the_rest():
    program = _gaussian_and_bernoulli_circuit().compile(dtype="float64")
    learner = GradientLearner(program, freeze_leaves={"gaussian.std"})
    assert not any(key.endswith("/std") for key in learner.theta)
    x = np.array([[0.3, 1.0], [-1.2, 0.0], [2.0, 1.0]])
    _, grads, _ = learner.loss_and_gradients(x)
    assert set(grads) == set(learner.theta)
    for key in learner.theta:
        for j in range(learner.theta[key].size):
            numeric = _finite_difference(learner, key, j, lambda: learner.loss_and_gradients(x)[0])
            assert np.isclose(grads[key].ravel()[j], numeric, rtol=1e-5, atol=1e-7)


# ---- gradients ---------------------------------------------------------------------------------
def _finite_difference(learner, key, j, loss, h=1e-6):
    theta = learner.theta[key].copy()
    values = []
    for step in (h, -h):
        learner.theta[key] = theta.copy()
        learner.theta[key][j] += step
        learner.apply()
        values.append(loss())
    learner.theta[key] = theta
    learner.apply()
    return (values[0] - values[1]) / (2 * h)


def test_logit_gradient_equals_finite_differences():
    program = small_pd().compile(dtype="float64")
    x, _ = digits()
    learner = GradientLearner(program, objective="nll", learn_leaves=False)
    _, grads, _ = learner.loss_and_gradients(x[:20], train=False)
    for j in np.random.default_rng(0).choice(program.num_weights, size=5, replace=False):
        numeric = _finite_difference(learner, "weights", j, lambda: -float(program.log_likelihood(x[:20]).mean()))
        assert np.isclose(numeric, grads["weights"][j], atol=1e-6)


def small_classifier(num_leaves):
    """30 random examples of 3 variables with 2 classes, and a 2-root RAT-SPN over them (float64)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    y = rng.integers(0, 2, size=30)
    circuit = pc.builders.rat_spn(3, depth=1, num_repetitions=2, num_sums=2, num_leaves=num_leaves, num_classes=2,
                                  seed=0)
    return x, y, circuit.compile(dtype="float64")


def test_leaf_and_cross_entropy_gradients_equal_finite_differences():
    x, y, program = small_classifier(num_leaves=2)
    learner = GradientLearner(program, objective="cross-entropy", min_std=1e-3)
    _, grads, _ = learner.loss_and_gradients(x, y, train=False)

    def loss():
        return learner.loss_and_gradients(x, y, train=False)[0]

    for key in ("weights", "leaves/0/mean", "leaves/0/std"):
        flat_index = np.unravel_index(3, learner.theta[key].shape)
        assert np.isclose(_finite_difference(learner, key, flat_index, loss), grads[key][flat_index], atol=1e-6)


def test_adam_lowers_the_negative_log_likelihood():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    before = -float(program.log_likelihood(x).mean())
    history = fit(program, x, method="adam", lr=0.05, epochs=5, batch_size=50, progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0] - 1.0
    assert -float(program.log_likelihood(x).mean()) < before - 1.0


def test_lr_decay_scales_the_steps_of_later_epochs_only():
    x, _ = digits()
    runs = {}
    for decay in (1.0, 0.5):
        for epochs in (1, 2):
            program = small_pd().compile(dtype="float64")
            fit(program, x, method="sgd", lr=0.05, lr_decay=decay, epochs=epochs, batch_size=100, progress=False)
            runs[decay, epochs] = program.weights.copy()
    assert np.array_equal(runs[1.0, 1], runs[0.5, 1])
    assert not np.allclose(runs[1.0, 2], runs[0.5, 2])


def test_sgd_lowers_the_negative_log_likelihood():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    before = -float(program.log_likelihood(x).mean())
    fit(program, x, method="sgd", lr=0.5, momentum=0.5, epochs=3, batch_size=50, progress=False)
    assert -float(program.log_likelihood(x).mean()) < before - 1.0


def test_discriminative_circuit_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    x = rng.normal(size=(400, 4)) + np.where(y[:, None] == 1, 2.0, -2.0) * np.array([1, 1, 0, 0])
    circuit = pc.builders.rat_spn(4, depth=1, num_repetitions=2, num_sums=3, num_leaves=3, num_classes=2, seed=0)
    program = circuit.compile(dtype="float64")
    history = fit(program, x[:300], labels=y[:300], valid=x[300:], valid_labels=y[300:], method="adam", lr=0.05,
                  epochs=15, batch_size=50, progress=False, product_dropout=0.1, input_dropout=0.1)
    assert history["valid_acc"][-1] >= 0.95
    assert set(history) >= {"train_loss", "train_acc", "valid_loss", "valid_acc"}


def test_input_dropout_marginalizes_the_dropped_variables():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    learner = GradientLearner(program, input_dropout=0.3)
    loss, _, _ = learner.loss_and_gradients(x[:40], rng=program.backend.rng(7))
    dropped = x[:40].astype(float)
    dropped[program.backend.rng(7).bernoulli_mask(dropped.shape, 0.3)] = np.nan
    assert np.isclose(loss, -program.log_likelihood(dropped).mean(), rtol=1e-12)


def test_component_input_dropout_with_one_leaf_unit_per_variable_marginalizes_it():
    x, _ = digits()
    circuit = pc.builders.rat_spn(64, depth=2, num_repetitions=1, num_sums=2, num_leaves=1, leaf="binomial",
                                  leaf_params={"n": 16}, seed=0)
    program = circuit.compile(dtype="float64")
    (layer,) = program.input_layers
    assert sorted(layer.variables_np.ravel()) == list(range(64))
    learner = GradientLearner(program, input_dropout=0.3, input_dropout_unit="component")
    loss, _, _ = learner.loss_and_gradients(x[:40], rng=program.backend.rng(7))
    unit_mask = program.backend.rng(7).bernoulli_mask((40, 64), 0.3)
    dropped = x[:40].astype(float)
    rows, units = np.nonzero(unit_mask)
    dropped[rows, layer.variables_np[units, 0]] = np.nan
    assert 0.2 < unit_mask.mean() < 0.4
    assert np.isclose(loss, -program.log_likelihood(dropped).mean(), rtol=1e-12)


def test_component_input_dropout_gradient_equals_finite_differences_under_its_mask():
    x, y, program = small_classifier(num_leaves=3)
    learner = GradientLearner(program, objective="cross-entropy", min_std=1e-3, product_dropout=0.2,
                              input_dropout=0.4, input_dropout_unit="component")

    def loss_and_gradients():
        return learner.loss_and_gradients(x, y, rng=program.backend.rng(5))

    base, grads, _ = loss_and_gradients()
    variable_dropout = GradientLearner(program, objective="cross-entropy", input_dropout=0.4, product_dropout=0.2)
    assert not np.isclose(base, variable_dropout.loss_and_gradients(x, y, rng=program.backend.rng(5))[0])
    for key in ("weights", "leaves/0/mean", "leaves/0/std"):
        assert np.count_nonzero(grads[key] == 0) < grads[key].size
        for j in (1, 4):
            index = np.unravel_index(j, learner.theta[key].shape)
            fd = _finite_difference(learner, key, index, lambda: loss_and_gradients()[0])
            assert np.isclose(fd, grads[key][index], atol=1e-6)


def test_unknown_input_dropout_unit_is_refused():
    program = small_pd().compile()
    with pytest.raises(ValueError, match="input_dropout_unit must be one of"):
        GradientLearner(program, input_dropout=0.1, input_dropout_unit="pixel")


def test_product_dropout_sets_product_units_to_log_zero_in_training_only():
    x, _ = digits()
    program = pc.builders.rat_spn(64, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, leaf="binomial",
                                  leaf_params={"n": 16}, seed=0).compile(dtype="float64")
    products = [layer for layer in program.layers if layer.kind == "product"]
    clean = program.forward(x[:10]).copy()
    clean_values = program.values.copy()
    program._forward(program.prepare(x[:10]), PassContext(product_dropout=0.5, rng=program.backend.rng(0)))
    for layer in products:
        dropped = program.values[layer.start:layer.stop]
        kept = np.isfinite(dropped)
        assert 0 < kept.mean() < 1
    assert np.array_equal(program.forward(x[:10]), clean)
    assert np.array_equal(program.values, clean_values)


def _dropout_pass(program, x, spare):
    program._forward(program.prepare(x), PassContext(product_dropout=0.6, spare_root_inputs=spare,
                                                     rng=program.backend.rng(4)))
    return program.values.copy()


def test_sparing_root_inputs_keeps_the_products_under_the_class_roots_and_drops_the_rest_alike():
    x, _ = digits()
    program = pc.builders.rat_spn(64, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, num_classes=3,
                                  leaf="binomial", leaf_params={"n": 16}, seed=0).compile(dtype="float64")
    products = [layer for layer in program.layers if layer.kind == "product"]
    top = products[-1]
    assert top.root_input_rows is not None and all(l.root_input_rows is None for l in products[:-1])
    spared, dropped = _dropout_pass(program, x[:10], True), _dropout_pass(program, x[:10], False)
    assert np.array_equal(spared[:top.start], dropped[:top.start])
    for layer in products[:-1]:
        assert 0 < np.isneginf(spared[layer.start:layer.stop]).mean() < 1
    inputs_sum = sum(spared[top.inputs_np[:, j]] for j in range(top.inputs_np.shape[1]))
    assert np.array_equal(spared[top.start:top.stop], inputs_sum)
    assert np.isneginf(dropped[top.start:top.stop]).sum() > np.isneginf(inputs_sum).sum()


def test_sparing_root_inputs_keeps_the_products_inside_a_fused_root():
    x, _ = digits()
    program = pc.builders.rat_spn(64, depth=2, num_repetitions=1, num_sums=2, num_leaves=2, leaf="binomial",
                                  leaf_params={"n": 16}, seed=0).compile(dtype="float64")
    root_layer = program.layers[-1]
    assert root_layer.kind == "sum" and root_layer.root_nodes is not None

    def recomputed(values):
        terms = values[root_layer.left][:, :, :, None, :] + values[root_layer.right][:, :, None, :, :]
        terms = terms.reshape(root_layer.N, 1, -1, values.shape[1])
        log_w = np.log(root_layer.weights(program))[..., None]
        return logsumexp(log_w + terms, axis=2).reshape(-1, values.shape[1])

    spared, dropped = _dropout_pass(program, x[:10], True), _dropout_pass(program, x[:10], False)
    assert np.allclose(spared[root_layer.start:root_layer.stop], recomputed(spared), rtol=1e-12)
    assert not np.allclose(dropped[root_layer.start:root_layer.stop], recomputed(dropped))


def test_cross_entropy_leaves_out_examples_whose_roots_are_all_minus_infinity():
    be = pc.backend.get_backend("numpy", "float64")
    roots = np.array([[0.0, -1.0], [-np.inf, -np.inf]])
    value = pc.learning.cross_entropy(be, roots, np.array([0, 1]))
    p = np.exp(0.0) / (np.exp(0.0) + np.exp(-1.0))
    assert value.counted == 1 and np.isclose(value.loss, -np.log(p))
    assert np.allclose(value.grad_root, [[p - 1, 1 - p], [0, 0]])


# ---- fit: history, checkpoints, errors ------------------------------------------------------------
@pytest.mark.parametrize("method, options", [
    ("usi", {}),
    ("em", {}),
    ("em", {"step_size": 0.3}),
    ("adam", {"product_dropout": 0.1, "input_dropout": 0.1}),
    ("adam", {"product_dropout": 0.1, "product_dropout_at_roots": False}),
    ("adam", {"lr_decay": 0.5}),
    ("sgd", {"momentum": 0.5}),
])
def test_resume_from_checkpoint_is_bit_identical(tmp_path, method, options):
    x, _ = digits()
    options = dict(options, method=method, batch_size=64, progress=False, seed=3, lr=0.05)
    straight = small_pd().compile()
    expected = fit(straight, x, epochs=4, **options)
    path = tmp_path / "run.npz"
    fit(small_pd().compile(), x, epochs=2, checkpoint=path, **options)
    resumed = small_pd().compile()
    history = fit(resumed, x, epochs=4, checkpoint=path, **options)
    assert history["epoch"] == [1, 2, 3, 4]
    assert np.array_equal(resumed.weights, straight.weights)
    for key in straight.leaf_tables:
        for name in straight.leaf_tables[key]:
            assert np.array_equal(resumed.leaf_tables[key][name], straight.leaf_tables[key][name])
    for key in expected:
        if key != "seconds":
            assert history[key] == expected[key]


def test_checkpoint_of_another_method_is_refused(tmp_path):
    x, _ = digits()
    path = tmp_path / "c.npz"
    fit(small_pd().compile(), x, method="usi", epochs=1, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="written by method 'usi'"):
        fit(small_pd().compile(), x, method="adam", epochs=2, progress=False, checkpoint=path)


def test_checkpoint_of_another_seed_is_refused(tmp_path):
    x, _ = digits()
    path = tmp_path / "c.npz"
    fit(small_pd().compile(), x, method="usi", epochs=1, progress=False, checkpoint=path, seed=1)
    with pytest.raises(ValueError, match="seed=1"):
        fit(small_pd().compile(), x, method="usi", epochs=2, progress=False, checkpoint=path, seed=2)
    fit(small_pd().compile(), x, method="usi", epochs=1, progress=False, checkpoint=path, seed=2, resume=False)


def test_checkpoint_holds_no_pickled_objects(tmp_path):
    x, _ = digits()
    path = tmp_path / "c.npz"
    fit(small_pd().compile(), x, method="adam", epochs=1, progress=False, checkpoint=path)
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


def test_history_has_one_entry_per_epoch_and_plots(tmp_path):
    x, _ = digits()
    history = fit(small_pd().compile(), x, method="usi", epochs=3, batch_size=100, valid=x[:50], progress=False)
    assert history["epoch"] == [1, 2, 3]
    assert all(len(history[k]) == 3 for k in ("train_ll", "valid_ll", "train_loss", "valid_loss", "seconds"))
    path = history.plot(tmp_path / "curve.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_valid_ll_is_the_mean_log_likelihood_after_the_epoch():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    history = fit(program, x, method="em", epochs=2, batch_size=100, valid=x[:50], progress=False)
    assert np.isclose(history["valid_ll"][-1], program.log_likelihood(x[:50]).mean(), rtol=1e-12)


def test_full_batch_em_train_ll_is_the_likelihood_before_each_epochs_update():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    start = program.log_likelihood(x).mean()
    history = fit(program, x, method="em", epochs=2, batch_size=100, progress=False)
    assert np.isclose(history["train_ll"][0], start, rtol=1e-12)
    assert history["train_ll"][1] > history["train_ll"][0]


def test_callback_returning_true_stops_training():
    x, _ = digits()
    history = fit(small_pd().compile(), x, method="usi", epochs=5, batch_size=100, progress=False,
                  callback=lambda epoch, history: epoch == 2)
    assert history["epoch"] == [1, 2]


def test_fit_writes_trained_parameters_back_into_the_circuit():
    x, _ = digits()
    circuit = small_pd()
    program = circuit.compile(dtype="float64")
    fit(program, x, method="usi", epochs=1, batch_size=100, progress=False)
    assert np.allclose(circuit.compile(dtype="float64").weights, program.weights)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"method": "nope"}, ValueError, "method must be one of"),
    ({"epochs": 0}, ValueError, "epochs must be a positive int"),
    ({"batch_size": -1}, ValueError, "batch_size must be a positive int"),
    ({"method": "em", "labels": np.zeros(300), "objective": "cross-entropy"}, ValueError,
     "cross-entropy objective needs labels and a gradient method"),
    ({"method": "adam", "labels": np.zeros(3)}, ValueError, r"labels must have shape \(300,\)"),
    ({"method": "adam", "labels": np.full(300, 2)}, ValueError, r"labels must lie in 0..0"),
    ({"method": "adam", "lr": -1.0}, ValueError, "lr must be a positive number"),
    ({"method": "em", "step_size": 1.5}, ValueError, r"step_size must be in \(0, 1\]"),
    ({"method": "adam", "product_dropout": 1.0}, ValueError, r"product_dropout must be in \[0, 1\)"),
    ({"freeze_leaves": {"gausian"}}, ValueError, "unknown leaf family"),
    ({"freeze_leaves": {"gaussian.sd"}}, ValueError, "'gaussian' leaves have no parameter 'sd'"),
    ({"freeze_leaves": {3}}, TypeError, "entries must be family names"),
    ({"valid": np.zeros((3, 5))}, ValueError, "valid has 5 variables per example"),
    ({"valid_labels": np.zeros(3)}, ValueError, "valid_labels were given without valid data"),
])
def test_bad_fit_arguments_are_refused_before_training(kwargs, error, message):
    x, _ = digits()
    program = small_pd().compile()
    weights = program.weights.copy()
    with pytest.raises(error, match=message):
        fit(program, x, progress=False, **kwargs)
    assert np.array_equal(program.weights, weights)


def test_bad_data_is_refused_before_training():
    program = small_pd().compile()
    with pytest.raises(ValueError, match="data has 3 variables per example"):
        fit(program, np.zeros((4, 3)), progress=False)
    with pytest.raises(ValueError, match="outside the domain"):
        fit(program, np.full((4, 64), 17.0), progress=False)


def test_several_roots_need_labels_for_likelihood_training():
    circuit = pc.builders.rat_spn(4, depth=1, num_repetitions=1, num_sums=2, num_leaves=2, num_classes=2, seed=0)
    with pytest.raises(ValueError, match="2 root outputs; pass labels"):
        fit(circuit.compile(), np.zeros((5, 4)), method="em", progress=False)


@pytest.mark.parametrize("device", DEVICE_BACKENDS)
@pytest.mark.parametrize("method", [name for name, entry in LEARNERS.items() if entry.family in ("em", "gradient")])
def test_fit_on_a_device_backend_matches_numpy(device, method, monkeypatch):
    # the host's compiled exp/log round differently from the device's ufuncs (within 1.5 ulps),
    # which changes exact ties among the hard choices of hard EM and USI: both run the ufuncs here
    monkeypatch.setattr(jit, "_AVAILABLE", False)
    x, _ = digits()
    x = x[:300]
    cpu = small_pd().compile(dtype="float64")
    gpu = small_pd().compile(backend=device, dtype="float64")
    expected = fit(cpu, x, method=method, epochs=2, batch_size=100, valid=x[:50], progress=False)
    history = fit(gpu, x, method=method, epochs=2, batch_size=100, valid=x[:50], progress=False)
    assert np.allclose(pc.to_numpy(gpu.weights), cpu.weights, atol=1e-8)
    assert np.allclose(history["valid_ll"], expected["valid_ll"], rtol=1e-9)


# ---- initialization ------------------------------------------------------------------------------
def test_quantile_means_are_the_means_of_equal_count_groups():
    x = np.array([[5.0, 0.0], [1.0, 1.0], [3.0, 2.0], [7.0, 3.0]])
    assert np.array_equal(pc.learning.quantile_means(x, 2), [[2.0, 6.0], [0.5, 2.5]])


def test_quantile_and_kmeans_means_are_sorted_per_variable():
    x, _ = digits()
    for means in (pc.learning.quantile_means(x.astype(float), 4), pc.learning.kmeans_means(x.astype(float), 4)):
        assert means.shape == (64, 4)
        assert np.all(np.diff(means, axis=1) >= 0)
    assert np.allclose(pc.learning.equidistant_means(3, 4)[0], [-1.5, -0.5, 0.5, 1.5])


def test_kmeans_finds_well_separated_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-5, 0.1, size=(50, 2)), rng.normal(5, 0.1, size=(150, 2))])
    means, stds = pc.learning.kmeans_means(x, 2, return_std=True)
    assert np.allclose(means, [[-5, 5], [-5, 5]], atol=0.1)
    assert np.allclose(stds, 0.1, atol=0.05)


def test_set_gaussian_leaves_sets_every_matching_leaf():
    circuit = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=3, seed=0)
    means = np.arange(48, dtype=float).reshape(16, 3)
    assert pc.learning.set_gaussian_leaves(circuit, means) == 16
    node = circuit.input_nodes[0]
    assert np.array_equal(node.family.mean, means[node.variables[0]])
    assert np.all(node.family.std == 1.0)


def test_init_gaussian_leaves_on_a_program_refreshes_its_tables():
    circuit = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=3, seed=0)
    program = circuit.compile(dtype="float64")
    assert pc.learning.init_gaussian_leaves(program, method="equidistant", std=0.5) == 16
    (table,) = program.leaf_tables.values()
    assert np.allclose(np.sort(np.unique(table["mean"])), [-1.5, 0.0, 1.5])
    assert np.all(table["std"] == 0.5)


def test_quantile_gaussian_leaves_build_circuits_at_the_quantile_means():
    x = np.random.default_rng(0).normal(size=(40, 16))
    circuit = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=4,
                                        leaf=pc.learning.quantile_gaussian_leaves(x), seed=0)
    means = pc.learning.quantile_means(x, 4)
    for node in circuit.input_nodes:
        assert np.array_equal(node.family.mean, means[node.variables[0]])


def test_dgc_spn_generative_setup_trains_with_fixed_quantile_leaves():
    x = np.random.default_rng(0).normal(size=(60, 16))
    circuit = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=4,
                                        leaf=pc.learning.quantile_gaussian_leaves(x), seed=0)
    program = circuit.compile(dtype="float64")
    before = tables_copy(program)
    history = fit(program, x, method="usi", epochs=3, batch_size=20, freeze_leaves={"gaussian"}, progress=False)
    assert history["train_ll"][-1] > history["train_ll"][0]
    for key, table in program.leaf_tables.items():
        assert all(np.array_equal(v, before[key][n]) for n, v in table.items())


def test_dropout_training_on_the_strict_device_matches_numpy():
    x, _ = digits()
    x = x[:200]
    cpu = small_pd().compile(dtype="float64")
    device = small_pd().compile(backend="strict", dtype="float64")
    options = dict(method="adam", epochs=2, batch_size=50, product_dropout=0.2, input_dropout=0.1, progress=False)
    fit(cpu, x, **options)
    fit(device, x, **options)
    assert np.allclose(pc.to_numpy(device.weights), cpu.weights, atol=1e-10)
