"""Learning: EM monotonicity, hard-EM winners, smoothing, Adam, discrimination, checkpoints."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.learning import EM, GradientLearner, WeightRows, fit

from strategies import DISCRETE_FAMILIES, valid_circuits

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def digits():
    d = pc.datasets.load_digits_8x8()
    return d.x_train.reshape(len(d.x_train), -1)[:300], d.y_train[:300]


def small_pd(leaf="binomial"):
    return pc.builders.poon_domingos(8, 8, delta=4, num_sums=3, num_leaves=3, leaf=leaf, leaf_params={"n": 16}, seed=0)


@FAST
@given(valid_circuits(families=DISCRETE_FAMILIES), st.integers(0, 2**31 - 1))
def test_full_batch_soft_em_never_lowers_training_log_likelihood(circuit, seed):
    program = circuit.compile(dtype="float64")
    data = program.sample(40, seed=seed)
    em = EM(program, "soft", mode="full-batch", eps=0.0, leaf_eps=1e-12)
    before = float(program.log_likelihood(data).sum())
    for _ in range(3):
        em.step(data)
        em.end_epoch()
        after = float(program.log_likelihood(data).sum())
        assert after >= before - 1e-7 * max(1.0, abs(before))
        before = after


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


def test_hard_em_with_max_inference_uses_max_values():
    # a sum over two products whose max and sum semantics pick different winners
    x0 = [pc.InputNode(0, pc.Indicator([0], 2)), pc.InputNode(0, pc.Indicator([1], 2))]
    left = pc.SumNode(x0, weights=[[0.5, 0.5]])        # value 0.5 under sum, max 0.5 too
    mixed = pc.SumNode(x0, weights=[[0.55, 0.45]])     # marginal 1.0, max 0.55
    top = pc.SumNode([left, mixed], weights=[[0.5, 0.5]])
    program = pc.Circuit(top).compile(dtype="float64")
    x = np.full((3, 1), np.nan)
    sum_counts = EM(program, "hard", inference="sum").statistics(x)["weights"]
    max_counts = EM(program, "hard", inference="max").statistics(x)["weights"]
    top_slots = slice(program.plan.weight_offsets[-2], program.plan.weight_offsets[-1])
    assert sum_counts[top_slots].tolist() == [0.0, 3.0] or sum_counts[top_slots].tolist() == [3.0, 0.0]
    assert max_counts[top_slots].tolist() == [0.0, 3.0]


def test_smoothing_formula_is_dgc_spn_additive_smoothing_renormalized():
    program = _two_leaf_mixture([0.5, 0.5]).compile(dtype="float64")
    rows = WeightRows(program)
    counts = np.array([3.0, 1.0])
    eps = 1e-2 / 2
    raw = (counts + eps) / (counts.sum() + eps)
    assert np.allclose(rows.smoothed(counts), raw / raw.sum())
    assert np.allclose(rows.smoothed(counts, eps=0.5), (counts + 0.5) / (counts + 0.5).sum())


def test_online_accumulators_give_the_weights_of_all_counts_so_far():
    program = _two_leaf_mixture([0.2, 0.8]).compile(dtype="float64")
    em = EM(program, "usi", mode="online")
    em.step(np.ones((3, 1)))
    em.step(np.zeros((2, 1)))   # x = 0: values 0.1 and 0.4 -> the second input wins
    counts = np.array([3.0, 2.0])
    raw = (counts + 5e-3) / (5 + 5e-3)
    assert np.allclose(program.weights, raw / raw.sum())


def test_masked_weights_stay_zero_under_em_and_adam():
    leaves = [pc.InputNode(0, pc.Bernoulli([p])) for p in (0.2, 0.5, 0.8)]
    mask = np.array([[True, False, True], [True, True, False]])
    root = pc.SumNode([pc.SumNode(leaves, mask=mask, rng=0)], weights=[[0.5, 0.5]])
    data = np.random.default_rng(0).integers(0, 2, size=(50, 1)).astype(float)
    for method in ("em", "adam"):
        program = pc.Circuit(root).copy().compile(dtype="float64")
        fit(program, data, method=method, epochs=3, batch_size=10, progress=False)
        assert np.all(program.weights[:6].reshape(2, 3)[~mask] == 0)
        assert np.allclose(program.weights[:6].reshape(2, 3).sum(axis=1), 1)


def test_frozen_leaves_stay_unchanged():
    x, _ = digits()
    circuit = small_pd()
    program = circuit.compile(dtype="float64")
    before = {k: {n: v.copy() for n, v in t.items()} for k, t in program.leaf_tables.items()}
    fit(program, x, method="usi", epochs=2, batch_size=100, freeze_leaves=True, progress=False)
    for key, table in program.leaf_tables.items():
        for name, value in table.items():
            assert np.array_equal(value, before[key][name])


def test_em_updates_leaves_when_not_frozen():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    before = {k: t["p"].copy() for k, t in program.leaf_tables.items()}
    fit(program, x, method="em", epochs=1, batch_size=100, progress=False)
    assert any(not np.allclose(t["p"], before[k]) for k, t in program.leaf_tables.items())


def test_logit_gradient_equals_finite_differences():
    circuit = small_pd()
    program = circuit.compile(dtype="float64")
    x, _ = digits()
    learner = GradientLearner(program, objective="nll", learn_leaves=False)
    _, grads, _ = learner.loss_and_gradients(x[:20], train=False)
    theta = learner.theta["weights"].copy()
    rng = np.random.default_rng(0)
    for j in rng.choice(len(theta), size=5, replace=False):
        values = []
        for h in (1e-6, -1e-6):
            learner.theta["weights"] = theta.copy()
            learner.theta["weights"][j] += h
            learner.apply()
            values.append(-float(program.log_likelihood(x[:20]).mean()))
        assert np.isclose((values[0] - values[1]) / 2e-6, grads["weights"][j], atol=1e-5)


def test_adam_lowers_the_negative_log_likelihood():
    x, _ = digits()
    program = small_pd().compile(dtype="float64")
    history = fit(program, x, method="adam", lr=0.05, epochs=5, batch_size=50, progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0] - 1.0


def test_discriminative_circuit_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=400)
    x = rng.normal(size=(400, 4)) + np.where(y[:, None] == 1, 2.0, -2.0) * np.array([1, 1, 0, 0])
    circuit = pc.builders.rat_spn(4, depth=1, num_repetitions=2, num_sums=3, num_leaves=3, num_classes=2, seed=0)
    program = circuit.compile(dtype="float64")
    history = fit(program, x[:300], labels=y[:300], valid=x[300:], valid_labels=y[300:], method="adam", lr=0.05,
                  epochs=15, batch_size=50, progress=False, product_dropout=0.1, input_dropout=0.1)
    assert history["valid_acc"][-1] >= 0.95


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    x, _ = digits()
    for method in ("usi", "adam", "em"):
        straight = small_pd().compile(dtype="float64")
        fit(straight, x, method=method, epochs=4, batch_size=64, progress=False, seed=3, lr=0.05,
            product_dropout=0.1 if method == "adam" else 0.0)
        interrupted = small_pd().compile(dtype="float64")
        path = tmp_path / f"{method}.npz"
        fit(interrupted, x, method=method, epochs=2, batch_size=64, progress=False, seed=3, lr=0.05,
            checkpoint=path, product_dropout=0.1 if method == "adam" else 0.0)
        resumed = small_pd().compile(dtype="float64")
        history = fit(resumed, x, method=method, epochs=4, batch_size=64, progress=False, seed=3, lr=0.05,
                      checkpoint=path, product_dropout=0.1 if method == "adam" else 0.0)
        assert history["epoch"] == [1, 2, 3, 4]
        assert np.array_equal(resumed.weights, straight.weights), method
        for key in straight.leaf_tables:
            for name in straight.leaf_tables[key]:
                assert np.array_equal(resumed.leaf_tables[key][name], straight.leaf_tables[key][name])


def test_checkpoint_of_another_method_is_refused(tmp_path):
    x, _ = digits()
    path = tmp_path / "c.npz"
    fit(small_pd().compile(), x, method="usi", epochs=1, progress=False, checkpoint=path)
    with pytest.raises(ValueError, match="written by method 'usi'"):
        fit(small_pd().compile(), x, method="adam", epochs=2, progress=False, checkpoint=path)


def test_history_has_one_entry_per_epoch_and_plots(tmp_path):
    x, _ = digits()
    history = fit(small_pd().compile(), x, method="usi", epochs=3, batch_size=100, valid=x[:50], progress=False)
    assert history["epoch"] == [1, 2, 3] and len(history["valid_ll"]) == 3 and len(history["seconds"]) == 3
    path = history.plot(tmp_path / "curve.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_fit_writes_trained_parameters_back_into_the_circuit():
    x, _ = digits()
    circuit = small_pd()
    program = circuit.compile(dtype="float64")
    fit(program, x, method="usi", epochs=1, batch_size=100, progress=False)
    assert np.allclose(circuit.compile(dtype="float64").weights, program.weights)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "nope"}, "method must be one of"),
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"batch_size": -1}, "batch_size must be a positive int"),
    ({"method": "em", "labels": np.zeros(300)}, "cross-entropy objective needs labels and a gradient method"),
    ({"method": "adam", "labels": np.zeros(3)}, r"labels must have shape \(300,\)"),
])
def test_bad_fit_arguments_are_refused_before_training(kwargs, message):
    x, _ = digits()
    with pytest.raises(ValueError, match=message):
        fit(small_pd().compile(), x, progress=False, **kwargs)


def test_quantile_and_kmeans_means_are_sorted_per_variable():
    x, _ = digits()
    for means in (pc.learning.quantile_means(x.astype(float), 4), pc.learning.kmeans_means(x.astype(float), 4)):
        assert means.shape == (64, 4)
        assert np.all(np.diff(means, axis=1) >= 0)
    assert np.allclose(pc.learning.equidistant_means(3, 4)[0], [-1.5, -0.5, 0.5, 1.5])


def test_set_gaussian_leaves_sets_every_matching_leaf():
    circuit = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=3, seed=0)
    means = np.arange(48, dtype=float).reshape(16, 3)
    assert pc.learning.set_gaussian_leaves(circuit, means) == 16
    node = circuit.input_nodes[0]
    assert np.array_equal(node.family.mean, means[node.variables[0]])
