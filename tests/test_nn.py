"""pcircuits.nn: gradients against finite differences (float64), independence of the stacked
networks, initialization statistics, Adam, dtypes, saving and loading, and the error messages."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pcircuits import nn
from pcircuits.backend import get_backend, to_numpy
from pcircuits.errors import CheckpointError
from pcircuits.optim import Adam

from devices import DEVICE_BACKENDS

ACTIVATION_NAMES = sorted(nn.ACTIVATIONS)
ACTIVATION_LAYERS = [nn.ReLU(), nn.LeakyReLU(0.2), nn.Tanh(), nn.Sigmoid(), nn.Softplus(), nn.ELU(0.7),
                     nn.Identity()]


def away_from_kinks(rng, shape, margin=0.05):
    """Normal draws with |x| >= margin, so ReLU-like kinks lie outside the finite-difference steps."""
    x = rng.normal(size=shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin, x)


def numeric_gradient(f, array, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every entry of ``array`` (changed in place)."""
    grad = np.zeros_like(array)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = f()
        flat[i] = keep - eps
        down = f()
        flat[i] = keep
        out[i] = (up - down) / (2 * eps)
    return grad


def check_gradients(layer, params, x, rng, rtol=1e-6, atol=1e-8):
    """Analytic gradients of sum(w * y) equal central differences for every parameter and the input."""
    y, _ = layer.forward(params, x)
    w = rng.normal(size=y.shape)

    def objective():
        return float(np.sum(w * layer.forward(params, x)[0]))

    y, cache = layer.forward(params, x)
    grads, grad_x = layer.backward(params, cache, w)
    assert sorted(grads) == sorted(params)
    for name in params:
        np.testing.assert_allclose(grads[name], numeric_gradient(objective, params[name]), rtol=rtol, atol=atol,
                                   err_msg=name)
    np.testing.assert_allclose(grad_x, numeric_gradient(objective, x), rtol=rtol, atol=atol, err_msg="input")


# ---- gradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shared_input", [False, True])
def test_stacked_dense_gradients_equal_finite_differences(bias, shared_input):
    rng = np.random.default_rng(0)
    layer = nn.StackedDense(3, 4, 5, bias=bias)
    params = layer.init(1, dtype="float64")
    if bias:
        params["bias"] = rng.normal(size=params["bias"].shape)
    x = rng.normal(size=(6, 4) if shared_input else (3, 6, 4))
    check_gradients(layer, params, x, rng)


@pytest.mark.parametrize("layer", ACTIVATION_LAYERS, ids=repr)
def test_activation_gradients_equal_finite_differences(layer):
    rng = np.random.default_rng(1)
    x = away_from_kinks(rng, (2, 5, 3)) * 3
    check_gradients(layer, {}, x, rng)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_mlp_gradients_equal_finite_differences_for_every_activation(name):
    rng = np.random.default_rng(2)
    net = nn.mlp(2, [3, 4, 4, 2], activation=name, output_activation=name)
    params = net.init(3, dtype="float64")
    for key in params:
        if key.endswith("bias"):
            params[key] = rng.normal(size=params[key].shape) * 0.1
    x = rng.normal(size=(2, 5, 3))
    # Pre-activations near a kink would make the difference quotient straddle it; this seed has none.
    check_gradients(net, params, x, rng)


def test_nested_sequential_gradients_equal_finite_differences():
    rng = np.random.default_rng(4)
    net = nn.Sequential([nn.mlp(2, [3, 4], output_activation="tanh"), nn.mlp(2, [4, 2], activation="softplus")])
    params = net.init(5, dtype="float64")
    assert sorted(params) == ["0.0.bias", "0.0.weight", "1.0.bias", "1.0.weight"]
    check_gradients(net, params, rng.normal(size=(2, 3, 3)), rng)


@pytest.mark.parametrize("loss", [nn.mean_squared_error, nn.binary_cross_entropy_with_logits])
def test_loss_gradients_equal_finite_differences(loss):
    rng = np.random.default_rng(6)
    prediction = rng.normal(size=(2, 4, 3)) * 3
    target = rng.random((2, 4, 3))
    value, grad = loss(prediction, target)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(prediction, target)[0], prediction), rtol=1e-6,
                               atol=1e-9)
    assert np.isfinite(value)


def test_binary_cross_entropy_is_finite_and_exact_for_huge_logits():
    logits = np.array([[[-800.0, 800.0, 0.0]]])
    target = np.array([[[0.0, 1.0, 1.0]]])
    value, grad = nn.binary_cross_entropy_with_logits(logits, target)
    assert value == pytest.approx(math.log(2) / 3)
    np.testing.assert_allclose(grad, [[[0.0, 0.0, -0.5 / 3]]], atol=1e-300)


def test_softplus_and_sigmoid_do_not_overflow_for_huge_inputs():
    x = np.array([[[-1000.0, -30.0, 0.0, 30.0, 1000.0]]])
    softplus, _ = nn.Softplus().forward({}, x)
    sigmoid, _ = nn.Sigmoid().forward({}, x)
    np.testing.assert_allclose(softplus[0, 0], [0.0, math.log1p(math.exp(-30)), math.log(2), 30 + math.log1p(
        math.exp(-30)), 1000.0], rtol=1e-15)
    np.testing.assert_allclose(sigmoid[0, 0], [0.0, 1 / (1 + math.exp(30)), 0.5, 1 / (1 + math.exp(-30)), 1.0],
                               rtol=1e-15)


def test_input_grad_false_skips_only_the_input_gradient():
    rng = np.random.default_rng(7)
    net = nn.mlp(2, [3, 5, 2], activation="tanh")
    params = net.init(0, dtype="float64")
    x = rng.normal(size=(2, 4, 3))
    y, cache = net.forward(params, x)
    g = rng.normal(size=y.shape)
    full, grad_x = net.backward(params, cache, g)
    partial, none = net.backward(params, cache, g, input_grad=False)
    assert none is None and grad_x.shape == x.shape
    for name in full:
        np.testing.assert_array_equal(partial[name], full[name])


# ---- stacking ----------------------------------------------------------------------------
def test_each_stacked_network_equals_the_same_network_run_alone():
    rng = np.random.default_rng(8)
    stacked = nn.mlp(4, [3, 6, 2], activation="elu", output_activation="sigmoid")
    params = stacked.init(1, dtype="float64")
    x = rng.normal(size=(4, 7, 3))
    y, cache = stacked.forward(params, x)
    g = rng.normal(size=y.shape)
    grads, grad_x = stacked.backward(params, cache, g)
    single = nn.mlp(1, [3, 6, 2], activation="elu", output_activation="sigmoid")
    for l, alone in enumerate(nn.split_params(params, [1] * 4)):
        y_l, cache_l = single.forward(alone, x[l:l + 1])
        grads_l, grad_x_l = single.backward(alone, cache_l, g[l:l + 1])
        np.testing.assert_allclose(y_l, y[l:l + 1], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(grad_x_l, grad_x[l:l + 1], rtol=1e-13, atol=1e-15)
        for name in grads:
            np.testing.assert_allclose(grads_l[name], grads[name][l:l + 1], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("out", [1, 3, 16, 300])
def test_bias_is_added_to_every_example_for_any_batch_size(out):
    rng = np.random.default_rng(17)
    layer = nn.StackedDense(2, 3, out)
    params = layer.init(0, dtype="float64")
    params["bias"] = rng.normal(size=(2, out))
    for batch in (1, 2, 7, 12, 100):
        x = rng.normal(size=(2, batch, 3))
        y, _ = layer.forward(params, x)
        np.testing.assert_allclose(y, x @ params["weight"] + params["bias"][:, None, :], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_bias_and_relu_passes_give_the_numpy_results_bit_for_bit(dtype, monkeypatch):
    from pcircuits import jit
    from pcircuits.nn import activations, layers
    if not jit.available():
        pytest.skip("needs Numba")
    net = nn.mlp(3, [5, 7, 4])
    params = net.init(0, dtype=dtype)
    x = np.random.default_rng(0).normal(size=(3, 11, 5)).astype(dtype)
    x[0, 0, 0], x[1, 0, 0] = np.nan, -np.inf

    def run():
        with np.errstate(invalid="ignore"):
            y, cache = net.forward(params, x)
            grad_y = np.ones_like(y)
            grad_y[2, 0, :] = np.inf
            grads, grad_x = net.backward(params, cache, grad_y)
        return y, grads, grad_x

    compiled = run()
    monkeypatch.setattr(layers, "_compiled", lambda y, other: False)
    monkeypatch.setattr(activations, "_compiled", lambda y, other: False)
    reference = run()
    assert np.array_equal(compiled[0], reference[0], equal_nan=True)
    assert all(np.array_equal(compiled[1][k], reference[1][k], equal_nan=True) for k in reference[1])
    assert np.array_equal(compiled[2], reference[2], equal_nan=True)


def test_changing_one_networks_weights_changes_only_its_output():
    rng = np.random.default_rng(9)
    net = nn.mlp(5, [3, 4, 2])
    params = net.init(2, dtype="float64")
    x = rng.normal(size=(5, 6, 3))
    before, _ = net.forward(params, x)
    params["0.weight"][2] += 0.5
    params["2.bias"][2] -= 1.0
    after, _ = net.forward(params, x)
    changed = np.any(after != before, axis=(1, 2))
    assert changed.tolist() == [False, False, True, False, False]


def test_shared_input_equals_the_input_repeated_for_every_network():
    rng = np.random.default_rng(10)
    net = nn.mlp(3, [4, 5, 2], activation="tanh")
    params = net.init(3, dtype="float64")
    x = rng.normal(size=(6, 4))
    y_shared, cache_shared = net.forward(params, x)
    y_repeated, cache_repeated = net.forward(params, np.broadcast_to(x, (3, 6, 4)).copy())
    np.testing.assert_allclose(y_shared, y_repeated, rtol=1e-14)
    g = rng.normal(size=y_shared.shape)
    grads_shared, grad_x_shared = net.backward(params, cache_shared, g)
    grads_repeated, grad_x_repeated = net.backward(params, cache_repeated, g)
    assert grad_x_shared.shape == (6, 4)
    np.testing.assert_allclose(grad_x_shared, grad_x_repeated.sum(axis=0), rtol=1e-12)
    for name in grads_shared:
        np.testing.assert_allclose(grads_shared[name], grads_repeated[name], rtol=1e-12)


def test_concatenated_networks_compute_what_each_computed_and_split_back():
    rng = np.random.default_rng(11)
    small, large = nn.mlp(2, [3, 4, 1]), nn.mlp(3, [3, 4, 1])
    p_small, p_large = small.init(0, dtype="float64"), large.init(1, dtype="float64")
    joint = nn.concatenate_params([p_small, p_large])
    x = rng.normal(size=(5, 6, 3))
    y, _ = nn.mlp(5, [3, 4, 1]).forward(joint, x)
    np.testing.assert_array_equal(y[:2], small.forward(p_small, x[:2])[0])
    np.testing.assert_array_equal(y[2:], large.forward(p_large, x[2:])[0])
    back_small, back_large = nn.split_params(joint, [2, 3])
    for name in p_small:
        np.testing.assert_array_equal(back_small[name], p_small[name])
        np.testing.assert_array_equal(back_large[name], p_large[name])


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_passes_never_modify_the_callers_arrays(name):
    rng = np.random.default_rng(12)
    net = nn.Sequential([nn.activation(name), nn.StackedDense(2, 3, 3), nn.activation(name), nn.activation(name),
                         nn.StackedDense(2, 3, 3), nn.activation(name)])
    params = net.init(0, dtype="float64")
    x = rng.normal(size=(2, 4, 3))
    x_copy = x.copy()
    y, cache = net.forward(params, x)
    y_copy = y.copy()
    g = rng.normal(size=y.shape)
    g_copy = g.copy()
    grads, _ = net.backward(params, cache, g)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(g, g_copy)
    np.testing.assert_array_equal(y, y_copy)
    # in-place work inside the Sequential gives the same gradients as the layers run one by one
    expected = g
    caches = []
    h = x
    for layer in net:
        h, c = layer.forward(params_of(net, params, layer), h)
        caches.append(c)
    for layer, c in zip(reversed(net.layers), reversed(caches)):
        _, expected = layer.backward(params_of(net, params, layer), c, expected)
    np.testing.assert_allclose(net.backward(params, cache, g)[1], expected, rtol=1e-14)


def params_of(net, params, layer):
    position = next(i for i, candidate in enumerate(net.layers) if candidate is layer)
    return {name.split(".", 1)[1]: value for name, value in params.items() if name.startswith(f"{position}.")}


def stacked_elbo(encoder, decoder, enc_params, dec_params, x, eps, flows):
    """The VAE-leaf pattern (docs/nn.md): ELBO of binary ``x`` under L stacked VAEs with a
    Bernoulli decoder, and the gradients of ``sum(flows * elbo)`` by reparameterization."""
    latent = eps.shape[-1]
    code, enc_cache = encoder.forward(enc_params, x)                   # (L, B, 2 * latent)
    mean, log_var = code[..., :latent], code[..., latent:]
    std = np.exp(0.5 * log_var)
    z = mean + std * eps
    logits, dec_cache = decoder.forward(dec_params, z)                 # (L, B, D)
    softplus = np.logaddexp(0, logits)
    elbo = (x * logits - softplus).sum(-1) - 0.5 * (mean ** 2 + std ** 2 - log_var - 1).sum(-1)
    w = flows[..., None]
    dec_grads, grad_z = decoder.backward(dec_params, dec_cache, w * (x - np.exp(logits - softplus)))
    grad_code = np.concatenate([grad_z - w * mean, grad_z * eps * 0.5 * std - w * 0.5 * (std ** 2 - 1)], axis=-1)
    enc_grads, _ = encoder.backward(enc_params, enc_cache, grad_code, input_grad=False)
    return elbo, enc_grads, dec_grads


def test_stacked_vae_elbo_gradients_equal_finite_differences():
    rng = np.random.default_rng(18)
    networks, batch, pixels, latent = 3, 5, 4, 2
    encoder = nn.mlp(networks, [pixels, 6, 2 * latent], activation="tanh")
    decoder = nn.mlp(networks, [latent, 6, pixels], activation="softplus")
    enc_params, dec_params = encoder.init(0, dtype="float64"), decoder.init(1, dtype="float64")
    x = (rng.random((networks, batch, pixels)) < 0.5).astype(np.float64)
    eps = rng.normal(size=(networks, batch, latent))
    flows = rng.random((networks, batch))
    _, enc_grads, dec_grads = stacked_elbo(encoder, decoder, enc_params, dec_params, x, eps, flows)

    def objective():
        return float((flows * stacked_elbo(encoder, decoder, enc_params, dec_params, x, eps, flows)[0]).sum())

    for params, grads in ((enc_params, enc_grads), (dec_params, dec_grads)):
        for name in params:
            np.testing.assert_allclose(grads[name], numeric_gradient(objective, params[name]), rtol=1e-6,
                                       atol=1e-8, err_msg=name)


# ---- initialization ----------------------------------------------------------------------
@pytest.mark.parametrize("init", nn.INITIALIZERS)
@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_initial_weights_have_the_glorot_variance(init, gain):
    layer = nn.StackedDense(20, 100, 300, init=init, gain=gain)
    params = layer.init(0, dtype="float64")
    weight = params["weight"]
    variance = gain ** 2 * 2 / (100 + 300)
    assert abs(weight.mean()) < 0.01 * math.sqrt(variance)
    assert weight.var() == pytest.approx(variance, rel=0.01)
    np.testing.assert_array_equal(params["bias"], 0)
    if init == "glorot_uniform":
        assert np.abs(weight).max() <= gain * math.sqrt(6 / 400)


def test_initialization_is_determined_by_the_seed_and_independent_across_networks():
    net = nn.mlp(3, [4, 8, 2])
    a, b, c = net.init(7), net.init(7), net.init(8)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["0.weight"], c["0.weight"])
    assert not np.array_equal(a["0.weight"][0], a["0.weight"][1])
    generator_draw = net.init(np.random.default_rng(7))
    np.testing.assert_array_equal(generator_draw["2.weight"], a["2.weight"])


def test_float32_initialization_is_the_float64_one_rounded():
    net = nn.mlp(2, [5, 3])
    single, double = net.init(0, dtype="float32"), net.init(0, dtype="float64")
    for name in single:
        assert single[name].dtype == np.float32 and double[name].dtype == np.float64
        np.testing.assert_array_equal(single[name], double[name].astype(np.float32))


# ---- training, dtypes --------------------------------------------------------------------
def test_adam_fits_a_different_function_in_each_stacked_network():
    rng = np.random.default_rng(13)
    x = rng.uniform(-2, 2, size=(2, 64, 1))
    target = np.concatenate([np.sin(x[:1]), 0.3 * x[1:] ** 2], axis=0)
    net = nn.mlp(2, [1, 16, 1], activation="tanh")
    params = net.init(0, dtype="float64")
    optimizer = Adam(params, lr=0.02)
    losses = []
    for _ in range(400):
        y, cache = net.forward(params, x)
        loss, grad = nn.mean_squared_error(y, target)
        grads, _ = net.backward(params, cache, grad, input_grad=False)
        optimizer.step(grads)
        losses.append(loss)
    per_network = ((net.forward(params, x)[0] - target) ** 2).mean(axis=(1, 2))
    assert losses[-1] < 0.02 * losses[0]
    assert np.all(per_network < 0.01)


def test_float32_passes_agree_with_float64():
    rng = np.random.default_rng(14)
    net = nn.mlp(3, [8, 16, 4], activation="softplus", output_activation="sigmoid")
    p64 = net.init(0, dtype="float64")
    p32 = {name: value.astype(np.float32) for name, value in p64.items()}
    x = rng.normal(size=(3, 32, 8))
    y64, c64 = net.forward(p64, x)
    y32, c32 = net.forward(p32, x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
    g = rng.normal(size=y64.shape)
    grads64, gx64 = net.backward(p64, c64, g)
    grads32, gx32 = net.backward(p32, c32, g.astype(np.float32))
    np.testing.assert_allclose(gx32, gx64, rtol=1e-4, atol=1e-5)
    for name in grads64:
        assert grads32[name].dtype == np.float32
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-4, atol=1e-5)


# ---- parameters, configs and files -------------------------------------------------------
def test_mlp_names_its_parameters_by_position_with_real_constraints():
    net = nn.mlp(98, [32, 16, 4], activation=nn.LeakyReLU(0.2))
    assert list(net.param_shapes()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert net.param_shapes()["0.weight"] == (98, 32, 16)
    assert {c.name for c in net.param_constraints().values()} == {"real"}
    assert net.num_params == 98 * (32 * 16 + 16 + 16 * 4 + 4)
    assert (net.num_networks, net.in_features, net.out_features) == (98, 32, 4)


def test_config_rebuilds_the_same_network_through_json():
    net = nn.mlp(2, [3, 5, 5, 1], activation=nn.LeakyReLU(0.3), output_activation="sigmoid", init="glorot_normal",
                 gain=2.0, bias=False)
    config = json.loads(json.dumps(net.config()))
    rebuilt = nn.layer_from_config(config)
    assert rebuilt.config() == net.config() and repr(rebuilt) == repr(net)
    params = net.init(0, dtype="float64")
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    np.testing.assert_array_equal(rebuilt.forward(params, x)[0], net.forward(params, x)[0])


def test_saved_network_and_optimizer_resume_training_bit_for_bit(tmp_path):
    rng = np.random.default_rng(15)
    x, target = rng.normal(size=(2, 16, 3)).astype(np.float32), rng.normal(size=(2, 16, 1)).astype(np.float32)
    net = nn.mlp(2, [3, 8, 1])

    def train(params, optimizer, steps):
        for _ in range(steps):
            y, cache = net.forward(params, x)
            grads, _ = net.backward(params, cache, nn.mean_squared_error(y, target)[1], input_grad=False)
            optimizer.step(grads)

    params = net.init(0)
    optimizer = Adam(params, lr=0.01)
    train(params, optimizer, 5)
    nn.save_network(tmp_path / "net.npz", net, params, optimizer=optimizer, meta={"epoch": 5})
    train(params, optimizer, 5)

    saved = nn.load_network(tmp_path / "net.npz")
    assert saved.meta == {"epoch": 5} and saved.network.config() == net.config()
    assert all(v.dtype == np.float32 for v in saved.params.values())
    resumed = Adam(saved.params, lr=0.01)
    resumed.load_state(saved.optimizer_state)
    train(saved.params, resumed, 5)
    for name in params:
        np.testing.assert_array_equal(saved.params[name], params[name])
    with np.load(tmp_path / "net.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


def test_load_params_refuses_wrong_shapes_and_non_finite_values():
    net = nn.mlp(2, [3, 1])
    arrays = nn.numpy_params(net.init(0))
    with pytest.raises(ValueError, match=r"layer 0 StackedDense\(2, 3, 1\): parameter 'weight' has shape \(2, 1, 3\)"):
        nn.load_params(net, {**arrays, "0.weight": np.zeros((2, 1, 3))})
    with pytest.raises(ValueError, match="'0.bias' is not finite"):
        nn.load_params(net, {**arrays, "0.bias": np.full((2, 1), np.nan)})
    with pytest.raises(ValueError, match=r"unknown parameters \['0.scale'\]"):
        nn.load_params(net, {**arrays, "0.scale": np.zeros(2)})


def test_load_network_refuses_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="cannot be read"):
        nn.load_network(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot be read"):
        nn.load_network(tmp_path / "junk.npz")


# ---- errors ------------------------------------------------------------------------------
def test_wrong_input_shapes_name_the_layer_and_the_shapes():
    net = nn.mlp(98, [32, 16, 4])
    params = net.init(0)
    with pytest.raises(ValueError, match=r"StackedDense\(98, 32, 16\): input has shape \(98, 10, 30\), "
                                         r"expected \(98, batch, 32\) or \(batch, 32\)"):
        net.forward(params, np.zeros((98, 10, 30), np.float32))
    with pytest.raises(ValueError, match=r"input has shape \(97, 10, 32\)"):
        net.forward(params, np.zeros((97, 10, 32), np.float32))
    with pytest.raises(ValueError, match=r"input has shape \(32,\)"):
        net.forward(params, np.zeros(32, np.float32))
    with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
        net.forward(params, np.zeros((10, 32), np.int64))
    with pytest.raises(TypeError, match="input is float64 but parameter '0.weight' is float32"):
        net.forward(params, np.zeros((10, 32)))


def test_wrong_parameters_and_gradients_name_the_layer():
    net = nn.mlp(2, [3, 4, 1])
    params = net.init(0, dtype="float64")
    x = np.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r"layer 2 StackedDense\(2, 4, 1\): parameters missing \['bias'\]; expected"):
        net.forward(params={k: v for k, v in params.items() if k != "2.bias"}, x=x)
    with pytest.raises(ValueError, match=r"layer 0 StackedDense\(2, 3, 4\): parameter 'weight' has shape \(2, 4, 3\)"):
        net.forward({**params, "0.weight": np.zeros((2, 4, 3))}, x)
    y, cache = net.forward(params, x)
    with pytest.raises(ValueError, match=r"grad_y has shape \(2, 5, 2\) and dtype float64, the output had "
                                         r"\(2, 5, 1\) and float64"):
        net.backward(params, cache, np.zeros((2, 5, 2)))
    with pytest.raises(TypeError, match="cache must be what forward returned"):
        net.backward(params, [None], np.zeros((2, 5, 1)))


def test_inconsistent_architectures_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"layer 0 StackedDense\(2, 3, 4\) gives 4 features but layer 2 "
                                         r"StackedDense\(2, 5, 1\) takes 5"):
        nn.Sequential([nn.StackedDense(2, 3, 4), nn.ReLU(), nn.StackedDense(2, 5, 1)])
    with pytest.raises(ValueError, match=r"stacks 2 networks but layer 1 StackedDense\(3, 4, 1\) stacks 3"):
        nn.Sequential([nn.StackedDense(2, 3, 4), nn.StackedDense(3, 4, 1)])
    with pytest.raises(ValueError, match="in_features must be a positive integer, got 0"):
        nn.mlp(2, [0, 4])
    with pytest.raises(ValueError, match="init must be one of"):
        nn.StackedDense(1, 2, 3, init="he")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nn.mlp(1, [2, 3, 1], activation="gelu")
    with pytest.raises(ValueError, match="negative_slope must be a non-negative number"):
        nn.LeakyReLU(-0.1)
    with pytest.raises(ValueError, match="unknown layer kind 'conv'"):
        nn.layer_from_config({"kind": "conv"})


def test_concatenating_different_architectures_is_refused():
    a, b = nn.mlp(2, [3, 4]).init(0), nn.mlp(2, [3, 5]).init(0)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(2, 3, 5\) in dict 1 but \(2, 3, 4\) in dict 0"):
        nn.concatenate_params([a, b])
    with pytest.raises(ValueError, match="sizes add up to 3"):
        nn.split_params(a, [1, 2])


def test_loss_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"prediction has shape \(2, 3\), target \(3, 2\)"):
        nn.mean_squared_error(np.zeros((2, 3)), np.zeros((3, 2)))


@pytest.mark.parametrize("device", DEVICE_BACKENDS)
def test_device_passes_agree_with_numpy(device):
    rng = np.random.default_rng(16)
    net = nn.mlp(4, [6, 8, 3], activation="softplus", output_activation="tanh")
    p_cpu = net.init(0, dtype="float64")
    p_gpu = net.init(0, backend=device, dtype="float64")
    xp = get_backend(device, "float64").xp
    x = rng.normal(size=(4, 10, 6))
    y_cpu, c_cpu = net.forward(p_cpu, x)
    y_gpu, c_gpu = net.forward(p_gpu, xp.asarray(x))
    np.testing.assert_allclose(to_numpy(y_gpu), y_cpu, rtol=1e-12)
    g = rng.normal(size=y_cpu.shape)
    grads_cpu, gx_cpu = net.backward(p_cpu, c_cpu, g)
    grads_gpu, gx_gpu = net.backward(p_gpu, c_gpu, xp.asarray(g))
    np.testing.assert_allclose(to_numpy(gx_gpu), gx_cpu, rtol=1e-11)
    for name in grads_cpu:
        np.testing.assert_allclose(to_numpy(grads_gpu[name]), grads_cpu[name], rtol=1e-11, atol=1e-14)
