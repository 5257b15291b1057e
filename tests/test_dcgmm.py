"""DCGMM layers and stacks (Gepperth, section III): modes against hand computations, gradients
against float64 finite differences, training, checkpoints, presets, and the circuit bridge."""
import math

import numpy as np
import pytest
from scipy.special import logsumexp

import pcircuits as pc
from pcircuits.backend import get_backend
from pcircuits.dcgmm import CGMM, Annealing, Classifier, Folding, MaxPooling, Stack, cgmm_circuit

BE = get_backend("numpy", "float64")


def built(layer, input_shape, seed=0):
    layer.build(input_shape, BE, np.random.default_rng(seed))
    return layer


def random_cgmm(input_shape, k, *, shared=True, seed=0):
    layer = built(CGMM(k, shared=shared), input_shape, seed)
    rng = np.random.default_rng(seed + 1)
    layer.set_parameters(logits=rng.normal(size=layer.logits.shape), means=rng.normal(size=layer.means.shape),
                         precisions=rng.uniform(0.5, 2.0, layer.precisions.shape))
    return layer


# ---- folding ---------------------------------------------------------------------------------

def test_folding_forward_is_the_remap_of_equation_9():
    x = np.random.default_rng(0).normal(size=(2, 5, 6, 2))
    layer = built(Folding(3, 2), (5, 6, 2))
    y = layer.forward(x)
    f, cin = 3, 2
    assert y.shape == (2, 2, 2, 18)
    for h in range(2):
        for w in range(2):
            for c in range(18):
                source = x[:, h * 2 + c // (f * cin), w * 2 + (c // cin) % f, c % cin]
                np.testing.assert_array_equal(y[:, h, w, c], source)


def test_folding_backward_averages_over_the_patches_that_copy_an_entry():
    layer = built(Folding(2, 1), (3, 3, 1))
    control = np.arange(16, dtype=float).reshape(1, 2, 2, 4)
    out = layer.backward(control)[0, :, :, 0]
    # the centre pixel is entry 3 of patch (0,0), 2 of (0,1), 1 of (1,0), 0 of (1,1)
    assert out[1, 1] == pytest.approx((3 + 6 + 9 + 12) / 4)
    assert out[0, 0] == pytest.approx(0.0)
    assert out[0, 1] == pytest.approx((1 + 4) / 2)
    assert out[2, 2] == pytest.approx(15.0)


def test_folding_backward_inverts_forward_on_consistent_patches():
    x = np.random.default_rng(1).normal(size=(3, 7, 7, 2))
    layer = built(Folding(3, 2), (7, 7, 2))
    np.testing.assert_allclose(layer.backward(layer.forward(x)), x)


def test_folding_vjp_matches_the_transpose_of_forward():
    rng = np.random.default_rng(2)
    layer = built(Folding(3, 2), (7, 6, 2))
    x, g = rng.normal(size=(2, 7, 6, 2)), rng.normal(size=(2, *layer.output_shape))
    assert np.sum(layer.forward(x) * g) == pytest.approx(np.sum(x * layer.vjp(x, g)))


# ---- max-pooling -----------------------------------------------------------------------------

def test_max_pooling_forward_takes_window_maxima():
    x = np.arange(25, dtype=float)[::-1].reshape(1, 5, 5, 1)
    layer = built(MaxPooling(2, 2), (5, 5, 1))
    y = layer.forward(x)[0, :, :, 0]
    np.testing.assert_array_equal(y, [[24, 22], [14, 12]])


def test_max_pooling_with_padding_rounds_the_output_up():
    x = np.arange(25, dtype=float).reshape(1, 5, 5, 1)
    layer = built(MaxPooling(2, 2, pad=True), (5, 5, 1))
    assert layer.output_shape == (3, 3, 1)
    np.testing.assert_array_equal(layer.forward(x)[0, :, :, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])


def test_max_pooling_backward_upsamples_and_copies_the_nearest_window_at_the_border():
    layer = built(MaxPooling(2, 2), (5, 5, 1))
    control = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    out = layer.backward(control)[0, :, :, 0]
    expected = np.array([[1, 1, 2, 2, 2], [1, 1, 2, 2, 2], [3, 3, 4, 4, 4], [3, 3, 4, 4, 4], [3, 3, 4, 4, 4]])
    np.testing.assert_array_equal(out, expected)


def test_max_pooling_vjp_matches_finite_differences():
    rng = np.random.default_rng(3)
    layer = built(MaxPooling(2, 2, pad=True), (5, 4, 2))
    x, g = rng.normal(size=(2, 5, 4, 2)), rng.normal(size=(2, *layer.output_shape))
    analytic = layer.vjp(x, g)
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = 1e-6
        numeric[idx] = np.sum((layer.forward(x + d) - layer.forward(x - d)) * g) / 2e-6
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)


# ---- cGMM ------------------------------------------------------------------------------------

def log_scores_by_hand(layer, x):
    n = x.shape[0]
    flat = x.reshape(n, layer.num_positions, layer.dim)
    means, prec, pi = layer.means, layer.precisions, layer.weights()
    out = np.zeros((n, layer.num_positions, layer.num_components))
    for p in range(layer.num_positions):
        q = 0 if layer.shared else p
        for k in range(layer.num_components):
            std = 1 / prec[q, k]
            density = -0.5 * ((flat[:, p] - means[q, k]) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
            out[:, p, k] = np.log(pi[q, k]) + density.sum(-1)
    return out


@pytest.mark.parametrize("shared", [True, False])
def test_cgmm_log_scores_equal_the_mixture_terms(shared):
    layer = random_cgmm((2, 3, 4), 5, shared=shared)
    x = np.random.default_rng(4).normal(size=(3, 2, 3, 4))
    np.testing.assert_allclose(layer.log_scores(x), log_scores_by_hand(layer, x), rtol=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_cgmm_forward_gives_responsibilities(shared):
    layer = random_cgmm((2, 3, 4), 5, shared=shared)
    x = np.random.default_rng(5).normal(size=(3, 2, 3, 4))
    scores = log_scores_by_hand(layer, x)
    expected = np.exp(scores - logsumexp(scores, axis=-1, keepdims=True))
    np.testing.assert_allclose(layer.forward(x), expected.reshape(3, 2, 3, 5), rtol=1e-10)


@pytest.mark.parametrize("bounded_dim", [0, 64], ids=["wide", "small"])
def test_cgmm_forward_in_blocks_gives_the_responsibilities_of_every_row(bounded_dim, monkeypatch):
    layer = random_cgmm((3, 2, 4), 5)
    monkeypatch.setattr(layer, "bounded_dim", bounded_dim)
    monkeypatch.setattr(layer, "block_rows", 4)
    monkeypatch.setattr(layer, "bounded_block_rows", 4)
    x = np.random.default_rng(8).normal(size=(3, 3, 2, 4))                    # 18 rows: blocks of 4, 4, 4, 4, 2
    scores = log_scores_by_hand(layer, x)
    expected = np.exp(scores - logsumexp(scores, axis=-1, keepdims=True))
    np.testing.assert_allclose(layer.forward(x), expected.reshape(3, 3, 2, 5), rtol=1e-10)


def test_cgmm_bounded_scores_never_exceed_zero():
    layer = random_cgmm((2, 3, 4), 5)
    rows = np.random.default_rng(11).normal(size=(500, 4)) * 3
    rows[:5] = layer.means[0]                                               # at the components' modes
    shifted = layer._scores_into(rows, layer._score_tables(rows.dtype, bounded=True), np.empty((500, 5)))
    assert shifted.max() <= 1e-12


def test_cgmm_forward_of_rows_far_from_every_component_gives_their_responsibilities():
    layer = random_cgmm((1, 3, 4), 5)
    x = np.random.default_rng(12).normal(size=(2, 1, 3, 4))
    x[0] += 40.0                                                            # log-scores ~1000 nats below the bound
    rows = x.reshape(-1, 4)
    shifted = layer._scores_into(rows, layer._score_tables(rows.dtype, bounded=True), np.empty((6, 5)))
    assert (np.exp(shifted).sum(-1) < layer.min_bounded_sum).sum() == 3     # the far rows, and only they
    scores = log_scores_by_hand(layer, x)
    expected = np.exp(scores - logsumexp(scores, axis=-1, keepdims=True))
    np.testing.assert_allclose(layer.forward(x), expected.reshape(2, 1, 3, 5), rtol=1e-10)


def test_cgmm_responsibilities_of_scores_far_below_the_bound_are_their_softmax():
    layer = random_cgmm((1, 3, 4), 5)
    x = np.random.default_rng(15).normal(size=(2, 1, 3, 4))
    x[0] += 40.0
    scores = layer.log_scores(x)
    kept = scores.copy()
    expected = np.exp(scores - logsumexp(scores, axis=-1, keepdims=True))
    np.testing.assert_allclose(layer.responsibilities(scores), expected, rtol=1e-10)
    np.testing.assert_array_equal(scores, kept)


def test_cgmm_forward_on_the_strict_device_backend_matches_numpy_for_far_rows():
    layer = random_cgmm((1, 3, 4), 5)
    device = CGMM(5)
    device.build((1, 3, 4), get_backend("strict", "float64"), np.random.default_rng(0))
    device.set_parameters(**{name: pc.to_numpy(value) for name, value in layer.parameters().items()})
    x = np.random.default_rng(13).normal(size=(2, 1, 3, 4))
    x[0] += 40.0
    np.testing.assert_allclose(pc.to_numpy(device.forward(device.backend.asarray(x))), layer.forward(x), rtol=1e-10)


def test_backend_matmul_add_accumulates_the_product_into_out():
    rng = np.random.default_rng(14)
    for dtype in (np.float32, np.float64):
        a, b = rng.normal(size=(6, 3)).astype(dtype), rng.normal(size=(3, 4)).astype(dtype)
        for out in (rng.normal(size=(6, 4)).astype(dtype), rng.normal(size=(4, 6)).astype(dtype).T):
            expected = out + a @ b
            get_backend("numpy", "float32").matmul_add(a, b, out)
            np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_cgmm_forward_marginalizes_missing_entries():
    layer = random_cgmm((1, 2, 3), 4)
    x = np.random.default_rng(9).normal(size=(2, 1, 2, 3))
    missing = x.copy()
    missing[:, :, :, 1] = np.nan
    reduced = random_cgmm((1, 2, 2), 4)
    reduced.set_parameters(logits=layer.logits, means=layer.means[..., [0, 2]], precisions=layer.precisions[..., [0, 2]])
    np.testing.assert_allclose(layer.forward(missing), reduced.forward(x[..., [0, 2]]), rtol=1e-10)


def test_cgmm_keeps_its_weights_uniform_unless_given_a_weight_rate():
    layer = built(CGMM(4), (2, 2, 3))
    x = np.random.default_rng(10).normal(size=(5, 2, 2, 3))
    _, grads = layer.objective_and_gradients(x)
    assert np.abs(grads["logits"]).max() > 0
    layer.apply_gradients(grads)
    np.testing.assert_array_equal(layer.weights(), np.full((1, 4), 0.25))
    layer.rates = dict(layer.rates, logits=2.0)
    layer.apply_gradients(grads)
    np.testing.assert_allclose(layer.logits, 2.0 * layer.learning_rate * grads["logits"])


def test_cgmm_exact_log_likelihood_is_the_log_sum_of_the_scores():
    layer = random_cgmm((2, 2, 3), 4)
    x = np.random.default_rng(6).normal(size=(3, 2, 2, 3))
    np.testing.assert_allclose(layer.log_likelihood(x), logsumexp(log_scores_by_hand(layer, x), axis=-1))
    np.testing.assert_allclose(layer.log_likelihood(x, kind="max-component"), log_scores_by_hand(layer, x).max(-1))


@pytest.mark.parametrize("shared", [True, False])
def test_cgmm_marginalizes_missing_entries(shared):
    layer = random_cgmm((1, 2, 3), 4, shared=shared)
    x = np.random.default_rng(7).normal(size=(2, 1, 2, 3))
    missing = x.copy()
    missing[:, :, :, 1] = np.nan
    reduced = random_cgmm((1, 2, 2), 4, shared=shared)
    reduced.set_parameters(logits=layer.logits, means=layer.means[..., [0, 2]],
                           precisions=layer.precisions[..., [0, 2]])
    np.testing.assert_allclose(layer.log_scores(missing), reduced.log_scores(x[..., [0, 2]]), rtol=1e-10)


def test_cgmm_backward_with_one_hot_control_and_no_noise_outputs_the_chosen_means():
    layer = random_cgmm((2, 2, 3), 4)
    choice = np.array([[0, 3], [2, 1]])
    control = np.eye(4)[choice][None]
    out = layer.backward(control, BE.rng(0), divisor=math.inf)
    np.testing.assert_array_equal(out[0], layer.means[0][choice])


def test_cgmm_backward_top_1_picks_the_largest_control_entry():
    layer = random_cgmm((1, 3, 2), 4, shared=False)
    control = np.random.default_rng(8).random((5, 1, 3, 4))
    out = layer.backward(control, BE.rng(1), top_s=1, divisor=math.inf)
    best = control.argmax(-1)[:, 0]                                      # (5, 3)
    expected = layer.means[np.arange(3)[None, :], best]
    np.testing.assert_array_equal(out[:, 0], expected)


def test_cgmm_backward_samples_have_the_component_spread():
    layer = random_cgmm((1, 1, 2), 3)
    control = np.tile(np.array([0.0, 1.0, 0.0]), (20000, 1, 1, 1))
    out = layer.backward(control, BE.rng(2))[:, 0, 0]
    np.testing.assert_allclose(out.mean(0), layer.means[0, 1], atol=0.05)
    np.testing.assert_allclose(out.std(0), 1 / layer.precisions[0, 1], rtol=0.05)


def objective_by_hand(layer, x):
    scores = log_scores_by_hand(layer, x)
    kernel = layer.annealing.kernel()
    smoothed = scores if kernel is None else scores @ kernel.T
    return smoothed.max(-1).mean()


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("annealed", [True, False])
def test_cgmm_objective_gradients_match_finite_differences(shared, annealed):
    layer = random_cgmm((2, 2, 3), 4, shared=shared)
    if not annealed:
        layer.annealing.sigma = layer.annealing.sigma_min
    x = np.random.default_rng(9).normal(size=(5, 2, 2, 3))
    objective, grads = layer.objective_and_gradients(x)
    assert objective == pytest.approx(objective_by_hand(layer, x), rel=1e-10)
    scale = 1 if shared else layer.num_positions
    for name, grad in grads.items():
        base = getattr(layer, name).copy()
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            values = []
            for sign in (1, -1):
                moved = base.copy()
                moved[idx] += sign * 1e-6
                layer.set_parameters(**{name: moved})
                values.append(objective_by_hand(layer, x))
            layer.set_parameters(**{name: base})
            numeric[idx] = (values[0] - values[1]) / 2e-6
        np.testing.assert_allclose(grad, numeric * scale, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("shared", [True, False])
def test_cgmm_input_gradient_matches_finite_differences(shared):
    layer = random_cgmm((2, 2, 3), 4, shared=shared)
    x = np.random.default_rng(10).normal(size=(3, 2, 2, 3))
    objective, grad = layer.input_gradient(x)
    np.testing.assert_allclose(objective, log_scores_by_hand(layer, x).max(-1).mean(-1))
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = 1e-6
        numeric[idx] = (layer.input_gradient(x + d)[0] - layer.input_gradient(x - d)[0]).sum() / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_ascent_step_raises_the_objective_and_keeps_precisions_in_range():
    layer = random_cgmm((3, 3, 2), 4)
    x = np.random.default_rng(11).normal(size=(20, 3, 3, 2))
    before, grads = layer.objective_and_gradients(x)
    layer.learning_rate = 1e-3
    layer.apply_gradients(grads)
    after, _ = layer.objective_and_gradients(x)
    assert after > before
    assert layer.precisions.max() <= layer.max_precision and layer.precisions.min() >= layer.min_precision


# ---- annealing -------------------------------------------------------------------------------

def test_annealing_kernel_is_row_normalized_and_becomes_the_identity():
    schedule = Annealing(9)
    np.testing.assert_allclose(schedule.kernel().sum(1), 1.0)
    schedule.sigma = schedule.sigma_min
    assert schedule.kernel() is None


def test_annealing_shrinks_sigma_when_the_objective_stalls():
    schedule = Annealing(25)
    start = schedule.sigma
    for step in range(200):
        schedule.add(-100.0 + min(step, 40))          # improves, then is flat
    assert schedule.sigma < start


def test_annealing_keeps_sigma_while_the_objective_improves_steadily():
    schedule = Annealing(25)
    start = schedule.sigma
    for step in range(200):
        schedule.add(float(step))
    assert schedule.sigma == start


# ---- classifier ------------------------------------------------------------------------------

def test_classifier_gradients_match_finite_differences():
    layer = built(Classifier(3), (1, 2, 4))
    rng = np.random.default_rng(12)
    layer.set_parameters(weight=rng.normal(size=layer.weight.shape), bias=rng.normal(size=3))
    sources = [rng.random((6, 1, 2, 4))]
    labels = rng.integers(0, 3, 6)
    _, _, grads = layer.loss_and_gradients(sources, labels)
    for name, grad in grads.items():
        base = getattr(layer, name).copy()
        numeric = np.zeros_like(base)
        for idx in np.ndindex(base.shape):
            values = []
            for sign in (1, -1):
                moved = base.copy()
                moved[idx] += sign * 1e-6
                layer.set_parameters(**{name: moved})
                values.append(layer.loss_and_gradients(sources, labels)[0])
            layer.set_parameters(**{name: base})
            numeric[idx] = (values[0] - values[1]) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_classifier_backward_gives_a_positive_control_for_the_layer_below():
    layer = built(Classifier(3), (2, 2, 4))
    layer.set_parameters(weight=np.random.default_rng(13).normal(size=layer.weight.shape))
    control = layer.backward(np.eye(3)[[0, 2]].reshape(2, 1, 1, 3))
    assert control.shape == (2, 2, 2, 4) and (control > 0).all()


# ---- stack -----------------------------------------------------------------------------------

def small_stack(**kwargs):
    return Stack([Folding(4, 2), CGMM(9), Folding(3, 1), CGMM(4)], (8, 8), dtype="float64", **kwargs)


def toy_images(n=96, seed=0):
    rng = np.random.default_rng(seed)
    bars = np.zeros((n, 8, 8, 1))
    rows = rng.integers(0, 8, n)
    bars[np.arange(n), rows, :, 0] = 1.0
    return bars + 0.05 * rng.normal(size=bars.shape)


def test_stack_names_the_layers_that_do_not_fit():
    with pytest.raises(ValueError, match=r"L3 F\(5,1\) cannot take the output of layer L2 G\(9\) \(shape 3x3x9\)"):
        Stack([Folding(4, 2), CGMM(9), Folding(5, 1), CGMM(4)], (8, 8))


def test_stack_rejects_a_classifier_that_is_not_last_or_not_above_a_cgmm():
    with pytest.raises(ValueError, match="must be the last layer"):
        Stack([Folding(4, 2), CGMM(9), Classifier(2), CGMM(3)], (8, 8))
    with pytest.raises(ValueError, match="directly above a CGMM"):
        Stack([Folding(4, 2), CGMM(9), Folding(3, 1), Classifier(2)], (8, 8))


def test_stack_without_cgmm_layer_is_rejected():
    with pytest.raises(ValueError, match="at least one CGMM"):
        Stack([Folding(4, 2)], (8, 8))


def test_delays_grow_by_a_tenth_per_cgmm_layer_below():
    stack = Stack([Folding(4, 2), CGMM(9), Folding(3, 1), CGMM(4), Classifier(2, num_inputs=2)], (8, 8))
    assert stack.delays() == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_a_delay_that_never_lets_the_top_layer_learn_is_refused():
    with pytest.raises(ValueError, match="would start after 100% of training"):
        small_stack().fit(toy_images(16), epochs=1, delay=1.0, progress=False)


def test_labels_without_a_classifier_are_refused():
    with pytest.raises(ValueError, match="no Classifier layer"):
        small_stack().fit(toy_images(16), np.zeros(16, dtype=int), epochs=1, progress=False)


def test_training_data_with_missing_values_is_refused():
    x = toy_images(16)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        small_stack().fit(x, epochs=1, progress=False)


def test_training_lowers_every_layer_loss():
    """Each layer's loss, on the inputs the trained layers below give it, is lower with its
    trained parameters than with its initial ones."""
    stack = small_stack()
    x = toy_images()
    initial = stack.state_arrays()
    stack.fit(x, epochs=3, batch_size=16, progress=False)
    trained = stack.state_arrays()
    acts = stack.activities(x)
    for i, layer in enumerate(stack.layers):
        if isinstance(layer, CGMM):
            losses = []
            for state in (initial, trained):
                layer.set_parameters(**{name: state[f"{layer.name}/{name}"] for name in layer.parameters()})
                losses.append(-layer.objective_and_gradients(acts[i])[0])
            assert losses[1] < losses[0], layer.name


def test_history_has_one_loss_per_cgmm_layer_and_the_classifier_accuracy():
    stack = Stack([Folding(4, 2), CGMM(9), Classifier(3)], (8, 8), dtype="float64")
    x = toy_images(48)
    history = stack.fit(x, np.arange(48) % 3, epochs=2, batch_size=16, progress=False)
    assert history.num_epochs == 2
    assert {"loss_L2", "loss_L3", "train_acc", "seconds"} <= set(history)


def test_classifier_learns_a_separable_labelling():
    stack = Stack([Folding(4, 2), CGMM(9), Folding(3, 1), CGMM(4), Classifier(2, num_inputs=2)], (8, 8),
                  dtype="float64")
    x = toy_images(160, seed=3)
    labels = (np.argmax(x[:, :, 0, 0], axis=1) < 4).astype(int)
    stack.fit(x, labels, epochs=15, batch_size=16, progress=False)
    assert (stack.predict(x) == labels).mean() > 0.8


def test_resumed_training_is_bit_identical(tmp_path):
    x = toy_images()
    whole = small_stack()
    full = whole.fit(x, epochs=4, batch_size=16, progress=False, seed=3)
    part = small_stack()
    path = tmp_path / "run.npz"
    part.fit(x, epochs=4, batch_size=16, progress=False, seed=3, checkpoint=path,
             callback=lambda epoch, history: epoch == 2)
    resumed = small_stack()
    history = resumed.fit(x, epochs=4, batch_size=16, progress=False, seed=3, checkpoint=path)
    for key, value in whole.state_arrays().items():
        np.testing.assert_array_equal(resumed.state_arrays()[key], value)
    assert history["loss_L4"] == full["loss_L4"]


def test_checkpoint_of_another_run_is_refused(tmp_path):
    x = toy_images()
    path = tmp_path / "run.npz"
    small_stack().fit(x, epochs=1, batch_size=16, progress=False, checkpoint=path)
    with pytest.raises(pc.errors.CheckpointError, match="batch_size"):
        small_stack().fit(x, epochs=2, batch_size=32, progress=False, checkpoint=path)


def test_layer_log_likelihoods_give_each_cgmm_layer_a_value_per_example():
    stack = small_stack()
    x = toy_images(10)
    lls = stack.layer_log_likelihoods(x)
    assert set(lls) == {"L2", "L4"} and all(v.shape == (10,) for v in lls.values())
    acts = stack.layers[0].forward(x)
    np.testing.assert_allclose(lls["L2"], stack.layers[1].log_likelihood(acts).mean(-1))
    np.testing.assert_allclose(stack.outlier_scores(x), -lls["L4"])


def test_sample_and_inpaint_shapes_and_observed_pixels():
    stack = small_stack()
    x = toy_images()
    stack.fit(x, epochs=2, batch_size=16, progress=False)
    samples = stack.sample(5, seed=1)
    assert samples.shape == (5, 8, 8, 1) and np.isfinite(samples).all()
    occluded = x[:4].copy()
    occluded[:, :, 4:] = np.nan
    filled = stack.inpaint(occluded)
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[:, :, :4], x[:4, :, :4])


def test_sampling_is_reproducible_from_its_seed():
    stack = small_stack()
    np.testing.assert_array_equal(stack.sample(3, seed=4), stack.sample(3, seed=4))


def test_sharpening_raises_the_target_layer_objective():
    stack = small_stack()
    stack.fit(toy_images(), epochs=3, batch_size=16, progress=False)
    control = stack.layers[0].backward(stack.layers[1].backward(np.ones((6, 3, 3, 9)), BE.rng(0)))
    target = stack.layers[1]
    before = target.input_gradient(stack.layers[0].forward(control))[0]
    after = target.input_gradient(stack.layers[0].forward(stack.sharpen(control, 0, iterations=20)))[0]
    assert np.all(after >= before - 1e-9) and np.mean(after - before) > 0


def test_sharpening_with_the_paper_step_stays_bounded_at_the_precision_limit():
    stack = small_stack()
    target = stack.layers[1]
    target.set_parameters(precisions=np.full(target.precisions.shape, target.max_precision))
    control = np.random.default_rng(0).normal(size=(4, 8, 8, 1))
    sharpened = stack.sharpen(control, 0, iterations=300, step_size=1.0)
    assert np.abs(sharpened).max() <= np.abs(control).max() + 1


def test_stack_renders_a_layer_diagram(tmp_path):
    source = small_stack().to_dot()
    assert "L2 G(9)" in source and "3x3x9" in source
    path = small_stack().render(tmp_path / "stack.dot")
    assert "digraph" in open(path).read()


# ---- presets ---------------------------------------------------------------------------------

TABLE_V_PARAMETERS = {"A": 38416, "B": 293657, "C": 243236, "D": 40850, "E": 186625, "F": 50850, "G": 16375}


def table_vi_shape(layer, shape):
    h, w, c = shape
    if isinstance(layer, Folding):
        f, s = layer.kernel_size, layer.stride
        return 1 + (h - f) // s, 1 + (w - f) // s, f * f * c
    if isinstance(layer, MaxPooling):
        f, s = layer.kernel_size, layer.stride
        rounding = (lambda v: -(-v // s)) if layer.pad else (lambda v: v // s)
        return 1 + rounding(h - f), 1 + rounding(w - f), c
    if isinstance(layer, CGMM):
        return h, w, layer.num_components
    return 1, 1, layer.num_classes


@pytest.mark.parametrize("instance", sorted(TABLE_V_PARAMETERS))
def test_preset_layer_shapes_follow_table_vi(instance):
    stack = pc.builders.dcgmm(instance, (28, 28), 1)
    shape = (28, 28, 1)
    for layer in stack.layers:
        shape = table_vi_shape(layer, shape)
        assert layer.output_shape == shape, layer.notation
    assert stack.layers[-1].output_shape[:2] in ((1, 1), (10, 10))


@pytest.mark.parametrize("instance", sorted(TABLE_V_PARAMETERS))
def test_preset_centroid_counts_equal_table_v(instance):
    assert pc.builders.dcgmm(instance).num_means() == TABLE_V_PARAMETERS[instance]


def test_preset_with_classes_ends_in_a_classifier_on_the_two_highest_cgmm_layers():
    stack = pc.builders.dcgmm("B", num_classes=10)
    assert stack.notation.endswith("G(49)-C(10)") and stack.classifier.num_inputs == 2


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="instance must be one of"):
        pc.builders.dcgmm("Z")


# ---- the circuit bridge ----------------------------------------------------------------------

@pytest.mark.parametrize("shared", [True, False])
def test_exported_position_circuit_equals_the_layer_exact_log_likelihood(shared):
    layer = random_cgmm((2, 3, 4), 5, shared=shared)
    x = np.random.default_rng(14).normal(size=(7, 2, 3, 4))
    circuit = cgmm_circuit(layer, position=(1, 2))
    assert circuit.check().ok
    program = circuit.compile(dtype="float64")
    np.testing.assert_allclose(program.log_likelihood(x[:, 1, 2, :]), layer.log_likelihood(x)[:, 5], rtol=1e-10)


def test_exported_layer_circuit_ties_parameters_across_positions():
    layer = random_cgmm((2, 2, 3), 4)
    circuit = cgmm_circuit(layer)
    sums = [node for node in circuit.nodes if isinstance(node, pc.SumNode)]
    assert len(sums) == 4 and len({id(node.params) for node in sums}) == 1
    x = np.random.default_rng(15).normal(size=(3, 2, 2, 3))
    np.testing.assert_allclose(circuit.compile(dtype="float64").log_likelihood(x.reshape(3, -1)),
                               layer.log_likelihood(x), rtol=1e-10)


def test_a_product_over_overlapping_folded_positions_is_not_decomposable():
    stack = Stack([Folding(2, 1), CGMM(3), Folding(2, 1), CGMM(2)], (3, 3), dtype="float64")
    pixels = stack.layers[0].forward(np.arange(9.0).reshape(1, 3, 3, 1))[0]
    layer = cgmm_circuit(stack.layers[1], variables=pixels)
    assert layer.check().ok
    whole = pc.Circuit(pc.ProductNode(layer.roots, "cartesian"))
    kinds = {violation.kind for violation in whole.check().violations}
    assert kinds == {"decomposability"}


def test_stack_on_the_strict_device_backend_matches_numpy():
    """The strict backend enforces CuPy's rules (no implicit host transfers) on the CPU."""
    layers = lambda: [Folding(4, 2), CGMM(9), MaxPooling(2, 1), Folding(2, 1), CGMM(4), Classifier(2, num_inputs=2)]
    x, labels = toy_images(48), np.arange(48) % 2
    stacks = [Stack(layers(), (8, 8), backend=name, dtype="float64") for name in ("numpy", "strict")]
    for stack in stacks:
        stack.fit(x, labels, epochs=2, batch_size=16, progress=False)
    for key, value in stacks[0].state_arrays().items():
        np.testing.assert_allclose(stacks[1].state_arrays()[key], value, rtol=1e-10, atol=1e-12)
    occluded = x[:3].copy()
    occluded[:, :, 4:] = np.nan
    np.testing.assert_allclose(stacks[1].inpaint(occluded), stacks[0].inpaint(occluded), rtol=1e-10)
    np.testing.assert_allclose(stacks[1].sample(2, classes=[0, 1], sharpen=True, sharpen_iterations=3),
                               stacks[0].sample(2, classes=[0, 1], sharpen=True, sharpen_iterations=3), rtol=1e-10)
