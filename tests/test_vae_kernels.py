"""The VAE leaf pass's compiled elementwise kernels against the NumPy expressions that define them:
the same values and gradients (float64 to 1e-12, float32 to a few ulps of the terms summed), exact
zeros for fully missing superpixels, and the NumPy path wherever the kernels are off."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pcircuits as pc
from pcircuits import jit
from pcircuits.backend import Backend
from pcircuits.distributions import vae

pytestmark = pytest.mark.skipif(not jit.available(), reason="needs Numba (pip install 'pcircuits[fast]')")

VARIANTS = [("bernoulli", 1, 1), ("bernoulli", 1, 3), ("binomial", 3, 1), ("binomial", 2, 2), ("gaussian", 1, 2)]


def _close(got, want, dtype, scale):
    """Within 1e-12 (float64) or 8 float32 ulps of ``scale``, the size of the terms summed."""
    tolerance = (1e-12 if dtype == np.float64 else 8 * np.finfo(np.float32).eps) * scale
    return np.all(np.abs(got.astype(np.float64) - want.astype(np.float64)) <= tolerance)


def _pixels(shape, trials, dtype, seed=0):
    """Logits over several scales, pixel values 0..trials and a mask with partly and fully missing rows."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=shape) * rng.choice([0.1, 2.0, 12.0], size=shape)).astype(dtype)
    values = rng.integers(0, trials + 1, size=shape).astype(dtype)
    observed = rng.random(shape) < 0.7
    observed[:, 0] = False                                   # fully missing rows
    return logits, values, observed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [3, 4, 16])
@pytest.mark.parametrize("trials", [1, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_the_pixel_log_density_kernel_computes_the_numpy_definition(dtype, d, trials, masked):
    be = Backend("numpy", dtype=np.dtype(dtype).name)
    logits, values, observed = _pixels((3, 5, d), trials, dtype)
    mask = observed.astype(dtype) if masked else None
    got, got_grad = vae._discrete_log_density(be, logits, values, mask, trials, True)
    want, want_grad = vae._discrete_log_density_numpy(be, logits, values, mask, trials, True)
    assert got.dtype == want.dtype == got_grad.dtype == dtype
    softplus = np.logaddexp(0, logits.astype(np.float64))
    scale = (np.abs(values * logits) + trials * softplus).sum(axis=-1) + trials
    assert _close(got, want, dtype, scale)
    assert _close(got_grad, want_grad, dtype, trials + values)
    forward_only, no_grad = vae._discrete_log_density(be, logits, values, mask, trials, False)
    assert no_grad is None and np.array_equal(forward_only, got)
    if masked:
        assert np.array_equal(got[:, 0], np.zeros(3, dtype))
        assert np.array_equal(got_grad[~observed], np.zeros((~observed).sum(), dtype))


def _leaf_program(pixel, trials, samples, dtype, units=3, d=4):
    family = pc.VAE.random(units, d, rng=1, latent_dim=2, hidden=5, pixel=pixel, trials=trials, num_samples=samples)
    left = pc.InputNode(range(d), family)
    right = pc.InputNode(range(d, 2 * d), pc.VAE.random(units, d, rng=2, latent_dim=2, hidden=5, pixel=pixel,
                                                         trials=trials, num_samples=samples))
    root = pc.SumNode([pc.ProductNode([left, right], "cartesian")], num_units=1, rng=0)
    return pc.Circuit(root).compile(dtype=dtype)


def _images(pixel, trials, batch, d, missing, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, 2 * d)
    x = rng.normal(size=shape) if pixel == "gaussian" else rng.integers(0, trials + 1, size=shape).astype(float)
    if missing:
        x[rng.random(shape) < 0.3] = np.nan
        x[0, :d] = np.nan                                    # a fully missing superpixel
    return x


def _pass(program, x):
    """Values of all units, the log-likelihoods of a pass without gradients, leaf parameter
    gradients and input gradients of one forward and backward pass."""
    likelihoods = program.log_likelihood(x)
    values = program.forward(x).copy()
    gradients = program.backward(inputs=True)
    leaves = {(key, name): g.copy() for key, grads in gradients.leaves.items() for name, g in grads.items()}
    return program.values.copy(), np.concatenate([values.ravel(), likelihoods]), leaves, gradients.inputs.copy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("pixel, trials, samples", VARIANTS)
@pytest.mark.parametrize("missing", [False, True])
def test_compiled_and_numpy_leaf_passes_give_the_same_values_and_gradients(dtype, pixel, trials, samples, missing,
                                                                            monkeypatch):
    program = _leaf_program(pixel, trials, samples, dtype)
    x = _images(pixel, trials, 6, 4, missing)
    compiled = _pass(program, x)
    monkeypatch.setattr(vae, "_compiled", lambda be: False)
    reference = _pass(program, x)
    tolerance = 1e-10 if dtype == "float64" else 2e-4
    for got, want in zip(compiled[:2], reference[:2]):
        assert np.allclose(got, want, rtol=tolerance, atol=tolerance)
    for name in reference[2]:
        assert np.allclose(compiled[2][name], reference[2][name], rtol=tolerance, atol=tolerance), name
    assert np.allclose(compiled[3], reference[3], rtol=tolerance, atol=tolerance)
    if missing:
        assert np.array_equal(compiled[0][:3, 0], np.zeros(3))         # the fully missing superpixel: log 1


def test_the_kernels_are_off_with_pcircuits_jit_0_and_the_pass_gives_the_numpy_values(monkeypatch):
    code = ("import numpy as np, pcircuits as pc\n"
            "from pcircuits.distributions import vae\n"
            "f = pc.VAE.random(2, 4, rng=0, latent_dim=2, hidden=3)\n"
            "p = pc.Circuit(pc.SumNode([pc.InputNode(range(4), f)], num_units=1, rng=0)).compile(dtype='float64')\n"
            "x = np.array([[0, 1, 1, 0], [1, np.nan, 0, 1.]])\n"
            "print(vae._compiled(p.backend), *p.log_likelihood(x).tolist())")
    env = dict(os.environ, PCIRCUITS_JIT="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    flag, *values = result.stdout.split()
    family = pc.VAE.random(2, 4, rng=0, latent_dim=2, hidden=3)
    program = pc.Circuit(pc.SumNode([pc.InputNode(range(4), family)], num_units=1, rng=0)).compile(dtype="float64")
    monkeypatch.setattr(vae, "_compiled", lambda be: False)
    want = program.log_likelihood(np.array([[0, 1, 1, 0], [1, np.nan, 0, 1.]]))
    assert flag == "False"
    assert np.allclose([float(v) for v in values], want, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_tanh_is_within_three_ulps(dtype):
    from pcircuits.distributions import _vae_kernels

    @jit.kernel
    def tanh_all(a, out):
        for i in range(a.size):
            out[i] = _vae_kernels._tanh(a[i])

    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(size=4000) * s for s in (1e-30, 1e-6, 0.1, 0.25, 1.0, 5.0, 40.0)]
                       + [[0.0, -0.0, 0.25, -0.25, np.inf, -np.inf]]).astype(dtype)
    got = np.empty_like(a)
    tanh_all(a, got)
    exact = np.tanh(a.astype(np.longdouble))
    ulps = np.abs(got - exact) / np.spacing(np.abs(exact.astype(dtype))).astype(np.longdouble)
    assert ulps.max() <= 3
    assert np.array_equal(np.signbit(got), np.signbit(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("samples", [1, 3])
def test_the_posterior_kernel_computes_the_numpy_definition(dtype, samples, monkeypatch):
    be = Backend("numpy", dtype=np.dtype(dtype).name)
    rng = np.random.default_rng(1)
    stats = (rng.normal(size=(3, 5, 6)) * rng.choice([0.01, 1.0, 30.0], size=(3, 5, 6))).astype(dtype)
    noise = rng.normal(size=(3, 5, samples, 3)).astype(dtype)
    compiled = vae._posterior(be, stats, noise)
    reference = vae._posterior_numpy(be, stats, noise)
    assert (compiled[5] is None) == (reference[5] is None) == (samples > 1)
    for got, want in zip(compiled, reference):
        if want is not None:
            assert got.dtype == dtype and got.shape == want.shape
            assert np.allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-5,
                               atol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("pixel, trials, samples", VARIANTS)
def test_the_encoder_folded_for_complete_inputs_gives_the_same_bound_and_gradients(pixel, trials, samples):
    be = Backend("numpy", dtype="float64")
    family = pc.VAE.random(3, 4, rng=0, latent_dim=2, hidden=5, pixel=pixel, trials=trials, num_samples=samples)
    params = {**{name: getattr(family, name) for name in family.param_names}, **family.config()}
    x = _images(pixel, trials, 6, 4, missing=False)[:, :4].reshape(6, 1, 4).repeat(3, axis=1)
    noise = family.draw_noise(be, params, 6, be.rng(0))
    g = np.random.default_rng(2).normal(size=(6, 3))
    folded = pc.VAE._bound(be, params, x, noise, True, complete=True)
    unfolded = pc.VAE._bound(be, params, x, noise, True, complete=False)
    assert folded[1]["folded"] and not unfolded[1]["folded"]
    assert np.allclose(folded[0], unfolded[0], rtol=1e-12, atol=1e-12)
    grads_f, grad_x_f = pc.VAE._block_grad(be, params, x, g, noise, folded[1])
    grads_u, grad_x_u = pc.VAE._block_grad(be, params, x, g, noise, unfolded[1])
    for name in grads_u:
        assert grads_f[name].shape == grads_u[name].shape
        assert np.allclose(grads_f[name], grads_u[name], rtol=1e-11, atol=1e-12), name
    if pixel == "gaussian":
        assert np.allclose(grad_x_f, grad_x_u, rtol=1e-11, atol=1e-12)
    else:
        assert grad_x_f is None and grad_x_u is None                    # discrete pixels: no input gradient


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pixel, trials", [("bernoulli", 1), ("binomial", 3)])
@pytest.mark.parametrize("d", [4, 8])
def test_the_bound_by_pixel_of_gathered_inputs_computes_the_numpy_definition(dtype, pixel, trials, d, monkeypatch):
    be = Backend("numpy", dtype=np.dtype(dtype).name)
    family = pc.VAE.random(3, d, rng=0, latent_dim=2, hidden=5, pixel=pixel, trials=trials)
    params = {**{name: getattr(family, name).astype(dtype) for name in family.param_names}, **family.config()}
    images = np.random.default_rng(1).integers(0, trials + 1, size=(7, 2 * d)).astype(dtype)
    x = images[:, (np.arange(3)[:, None] + np.arange(d)) % (2 * d)]     # gathered: laid out (U, d, B)
    noise = family.draw_noise(be, params, 7, be.rng(0)).astype(dtype)
    assert vae._by_pixel(be, params, x, 1, keep=False)
    got = pc.VAE.log_prob(be, params, x, noise)
    monkeypatch.setattr(vae, "_compiled", lambda be: False)
    want = pc.VAE.log_prob(be, params, x, noise)
    assert got.dtype == dtype and got.shape == want.shape == (7, 3)
    scale = np.abs(want).max()
    assert _close(got, want, dtype, 4 * d * scale)


def test_the_bound_by_pixel_is_only_the_value_of_one_draw_of_gathered_complete_discrete_pixels():
    be = Backend("numpy", dtype="float64")
    family = pc.VAE.random(3, 4, rng=0, latent_dim=2, hidden=5)
    params = {**{name: getattr(family, name) for name in family.param_names}, **family.config()}
    x = np.zeros((5, 8))[:, np.arange(12).reshape(3, 4) % 8]
    assert vae._by_pixel(be, params, x, 1, keep=False)
    assert not vae._by_pixel(be, params, x, 1, keep=True)                    # gradients need the other layout
    assert not vae._by_pixel(be, params, x, 2, keep=False)
    assert not vae._by_pixel(be, params, np.ascontiguousarray(x), 1, keep=False)
    assert not vae._by_pixel(be, {**params, "pixel": "gaussian"}, x, 1, keep=False)
    assert not vae._by_pixel(be, params, np.zeros((5, 8))[:, np.arange(9).reshape(3, 3) % 8], 1, keep=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pixel, trials", [("bernoulli", 1), ("binomial", 3)])
@pytest.mark.parametrize("missing", [False, True])
def test_the_encoder_input_kernel_builds_the_numpy_inputs(dtype, pixel, trials, missing, monkeypatch):
    be = Backend("numpy", dtype=np.dtype(dtype).name)
    params = {"pixel": pixel, "trials": trials}
    x = _images(pixel, trials, 5, 6, missing).reshape(5, 2, 6).astype(dtype)
    compiled = pc.VAE._encoder_input(be, params, x)
    monkeypatch.setattr(vae, "_compiled", lambda be: False)
    reference = pc.VAE._encoder_input(be, params, x)
    assert np.array_equal(compiled[0], reference[0]) and compiled[0].dtype == dtype
    assert np.array_equal(compiled[2], reference[2]) and compiled[2].dtype == dtype
    if missing:
        assert compiled[1].dtype == dtype and np.array_equal(compiled[1], reference[1].astype(dtype))
    else:
        assert compiled[1] is None and reference[1] is None
