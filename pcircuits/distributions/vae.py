"""VAE leaves: every unit is a small variational auto-encoder over a set of variables (a superpixel).

Tan, Peharz and Adel (*Sum Product Network with VAE leaves*) stop a dense Poon-Domingos SPN at
superpixels and model each superpixel with a VAE. Here one unit of a :class:`VAE` family is
one such VAE: an encoder MLP maps the superpixel (missing entries zero-filled, with the
observation mask as extra input) to a diagonal Gaussian posterior over ``latent_dim`` latents,
a decoder MLP maps a latent to Bernoulli, Binomial or Gaussian pixel distributions. All units of
a layer run as one stacked network pass (:mod:`pcircuits.nn`: weights ``(U, in, out)``, one
batched matmul per dense layer for all U networks).

The log-value of a unit is a *lower bound* of its log-density: the ELBO for ``num_samples = 1``
(the reconstruction term from one reparameterized draw, the KL term in closed form) or the
importance-weighted bound of Burda et al. with ``num_samples`` draws. A circuit over such leaves
therefore computes a lower bound of ``log p(x)`` (``Program.exact`` is False).

Missing values: a unit whose variables are all missing contributes exactly ``log 1 = 0``, so
marginals over whole superpixels are exact marginals of the bound. A partly observed unit is
encoded from its observed entries (the rest zero-filled, the mask as input) and only observed
entries enter the reconstruction term: the bound of the observed part under the encoder's
amortized posterior.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import jit
from ..constraints import real
from .base import LeafFamily, make_rng

__all__ = ["VAE", "PIXELS"]

#: The pixel models of the decoder.
PIXELS = ("bernoulli", "binomial", "gaussian")

_ENCODER = ("encoder_w1", "encoder_b1", "encoder_w2", "encoder_b2")
_DECODER = ("decoder_w1", "decoder_b1", "decoder_w2", "decoder_b2")
_NN_NAMES = ("0.weight", "0.bias", "2.weight", "2.bias")
_LOG_2PI = math.log(2 * math.pi)
_LOG_STD_BOUND = 7.0     # a Gaussian pixel's log std is 7 tanh(output / 7): in (-7, 7), never overflowing
_LOG_SIGMA_BOUND = 8.0   # the posterior's log std is 8 tanh(output / 8), so a large step cannot overflow it
_BLOCK_ELEMENTS = 1 << 18   # values per temporary array when a pass runs over blocks of units


def _soft_bound(xp, a, bound: float):
    """``bound * tanh(a / bound)`` and its derivative: the identity near 0, smooth and inside
    (-bound, bound) everywhere, with a gradient that never vanishes (a hard clip's would, and a
    unit pushed past it would stay there)."""
    t = xp.tanh(a / bound)
    return bound * t, 1.0 - t * t


#: The dtypes the compiled kernels take.
_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _compiled(be) -> bool:
    """Whether a pass on ``be`` runs the compiled elementwise kernels (:func:`_kernels`): host NumPy
    arrays with :func:`pcircuits.jit.available`. Otherwise (CuPy, the strict device,
    ``PCIRCUITS_JIT=0``, no Numba) the NumPy expressions beside each call run: they define what
    the kernels compute."""
    return be.on_host and jit.available()


@functools.lru_cache(maxsize=None)
def _kernels():
    """The module of compiled kernels (:mod:`pcircuits.distributions._vae_kernels`), imported on the
    first compiled pass so that importing pcircuits does not import Numba."""
    from . import _vae_kernels
    return _vae_kernels


def _posterior(be, stats, noise, keep: bool = True):
    """The posterior of encoder outputs ``stats`` (U, B, 2k): mean ``mu`` (U, B, k), the bounded
    log std ``log_sigma`` and ``sigma``, ``d log_sigma / d stats[..., k:]``, the latents
    ``mu + sigma noise`` (U, B, S, k) for ``noise`` (U, B, S, k), and with one draw (``S = 1``) the
    closed-form ``KL(q || N(0, I))`` (U, B), else None. Without ``keep`` (no gradient to follow)
    the compiled path may leave the first four None where the bound does not use them.
    Compiled where :func:`_compiled`, else :func:`_posterior_numpy`."""
    if not (_compiled(be) and stats.dtype in _KERNEL_DTYPES):
        return _posterior_numpy(be, stats, noise)
    units, batch, two_k = stats.shape
    k = two_k // 2
    dtype = stats.dtype
    one, bound = dtype.type(1), dtype.type(_LOG_SIGMA_BOUND)
    flat = np.ascontiguousarray(stats).reshape(-1)
    single = noise.shape[2] == 1
    arrays = [np.empty((units, batch, k), dtype) if keep or not single else None for _ in range(4)]
    outputs = [None if a is None else a.reshape(-1) for a in arrays]
    mu, log_sigma, sigma, slope = arrays
    if not single:
        _kernels()._posterior_kernel(flat, None, (0,) * k, bound, one, *outputs, None, None)
        return mu, log_sigma, sigma, slope, mu[:, :, None, :] + sigma[:, :, None, :] * noise, None
    z = np.empty(noise.shape, dtype)
    kl = np.empty((units, batch), dtype)
    _kernels()._posterior_kernel(flat, np.ascontiguousarray(noise, dtype).reshape(-1), (0,) * k, bound, one,
                                 *outputs, z.reshape(-1), kl.reshape(-1))
    return mu, log_sigma, sigma, slope, z, kl


def _posterior_numpy(be, stats, noise):
    """:func:`_posterior` in array expressions."""
    xp = be.xp
    k = stats.shape[2] // 2
    # contiguous copies: elementwise work on views with a stride of 2k runs k-long inner loops
    mu, raw_log_sigma = xp.ascontiguousarray(stats[..., :k]), xp.ascontiguousarray(stats[..., k:])
    log_sigma, slope = _soft_bound(xp, raw_log_sigma, _LOG_SIGMA_BOUND)
    sigma = xp.exp(log_sigma)
    z = mu[:, :, None, :] + sigma[:, :, None, :] * noise
    if noise.shape[2] > 1:
        return mu, log_sigma, sigma, slope, z, None
    kl = mu * mu
    kl += sigma * sigma
    kl -= 2.0 * log_sigma
    return mu, log_sigma, sigma, slope, z, 0.5 * (kl @ xp.ones(k, dtype=kl.dtype) - k)


def _scaled_rows(be, a, scale):
    """``a * scale[..., None]`` for ``a`` (U, N, d) and ``scale`` (U, N), a new array (compiled
    where :func:`_compiled`: NumPy's broadcast runs a d-long inner loop per row)."""
    if not (_compiled(be) and a.dtype in _KERNEL_DTYPES and a.dtype == scale.dtype):
        return a * scale[..., None]
    out = np.empty_like(a)
    _kernels()._scaled_rows_kernel(a, scale, out)
    return out


def _discrete_log_density(be, logits, values, observed, trials: int, grad: bool):
    """``sum_d m (x l - n softplus(l))`` over the last axis, shape (U, N), for logits ``l``, pixel
    values ``x`` (U, N, d) and the observation mask ``m`` (U, N, d), or None when all are observed;
    with ``grad`` also its derivative ``m (x - n sigmoid(l))`` (U, N, d), else None.

    The compiled path takes one pass over the pixels (one ``exp`` each, one ``log`` per four
    pixels of a row, the derivative in the same pass); :func:`_discrete_log_density_numpy` is the
    definition and the path everywhere else."""
    if not (_compiled(be) and logits.dtype in _KERNEL_DTYPES):
        return _discrete_log_density_numpy(be, logits, values, observed, trials, grad)
    dtype = logits.dtype
    d = logits.shape[-1]
    logits_flat, values_flat = (np.ascontiguousarray(a, dtype=dtype).reshape(-1) for a in (logits, values))
    mask = None if observed is None else np.ascontiguousarray(observed, dtype=dtype).reshape(-1)
    d_out = np.empty(logits.shape, dtype) if grad else None
    d_flat = None if d_out is None else d_out.reshape(-1)
    n, one = dtype.type(trials), dtype.type(1)
    if d % 4 == 0:
        pair_terms = np.empty(logits.size // 2, dtype)
        pair_factors = np.empty(logits.size // 2, dtype)
        _kernels()._pixel_pairs_kernel(logits_flat, values_flat, mask, n, one, pair_terms, pair_factors, d_flat)
        sums = np.empty(logits.shape[:-1] + (d // 4,), dtype)
        _kernels()._quad_sums_kernel(pair_terms, pair_factors, n, sums.reshape(-1))
    else:
        sums = np.empty(logits.shape, dtype)
        _kernels()._pixel_terms_kernel(logits_flat, values_flat, mask, n, one, sums.reshape(-1), d_flat)
    return sums @ np.ones(sums.shape[-1], dtype), d_out


def _discrete_log_density_numpy(be, logits, values, observed, trials: int, grad: bool):
    """:func:`_discrete_log_density` in array expressions.

    With ``softplus(l) = (l + |l|) / 2 + log(1 + exp(-|l|))`` the sums of ``x l``, ``l`` and
    ``|l|`` are matrix products with a vector of ones (a reduction over a short last axis is
    several times slower), and the logs are taken of products of four factors
    ``1 + exp(-|l|)``, each in (1, 2]: a quarter of the logs, which cost as much as the exps.
    A masked logit is set to 0; its factor ``1 + exp(0)`` adds ``n log 2``, taken off again.
    """
    xp = be.xp
    n = float(trials)
    masked = logits if observed is None else logits * observed
    d = masked.shape[-1]
    ones = xp.ones(d, dtype=masked.dtype)
    denominator = xp.abs(masked)
    value = (values * masked) @ ones
    value -= (0.5 * n) * (masked @ ones + denominator @ ones)
    xp.negative(denominator, out=denominator)
    xp.exp(denominator, out=denominator)
    denominator += 1
    group = next(g for g in (4, 2, 1) if d % g == 0)
    factors = denominator.reshape(denominator.shape[:-1] + (d // group, group))
    product = factors[..., 0] * factors[..., 1] if group > 1 else factors[..., 0].copy()
    for i in range(2, group):
        product *= factors[..., i]
    xp.log(product, out=product)
    value -= n * (product @ xp.ones(d // group, dtype=masked.dtype))
    if observed is not None:
        value += (n * math.log(2.0)) * (d - observed.astype(value.dtype) @ xp.ones(d, dtype=value.dtype))
    if not grad:
        return value, None
    from ..nn.activations import _sigmoid  # here, as nn below: importing pcircuits does not import pcircuits.nn
    prob = _sigmoid(xp, masked, exp_minus_abs=denominator - 1)
    d_out = values - n * prob
    if observed is not None:
        d_out *= observed
    return value, d_out.astype(logits.dtype)


@functools.lru_cache(maxsize=64)
def _stacked_networks(units: int, two_d: int, hidden: int, latent: int, decoder_hidden: int, decoder_out: int,
                      activation: str):
    """The encoder and decoder of ``units`` stacked VAEs (networks hold no parameters: made once
    per shape, not once per pass)."""
    from .. import nn
    return (nn.mlp(units, [two_d, hidden, 2 * latent], activation=activation),
            nn.mlp(units, [latent, decoder_hidden, decoder_out], activation=activation))


@functools.lru_cache(maxsize=64)
def _stacked_decoder_hidden(units: int, latent: int, decoder_hidden: int, activation: str):
    """The decoder of :func:`_stacked_networks` without its last dense layer (same parameter names)."""
    from .. import nn
    return nn.mlp(units, [latent, decoder_hidden], activation=activation, output_activation=activation)


def _by_pixel(be, params, x, samples: int, keep: bool) -> bool:
    """Whether :meth:`VAE._bound` takes its compiled path by pixel (:meth:`VAE._bound_by_pixel`):
    the value alone, one draw, all pixels observed and discrete, ``d`` a multiple of 4, and
    ``x`` (B, U, d) laid out by unit and pixel, as a gather ``x[:, variables]`` leaves it."""
    return (not keep and samples == 1 and params["pixel"] != "gaussian" and _compiled(be)
            and x.dtype in _KERNEL_DTYPES and x.dtype == params["decoder_w2"].dtype and x.shape[2] % 4 == 0
            and x.transpose(1, 2, 0).flags.c_contiguous)


class VAE(LeafFamily):
    """``num_units`` variational auto-encoders over the same ``d`` variables, one per leaf unit.

    Parameters
    ----------
    encoder_w1, encoder_b1, encoder_w2, encoder_b2 : array_like
        Shapes ``(U, 2d, hidden)``, ``(U, hidden)``, ``(U, hidden, 2 latent_dim)``,
        ``(U, 2 latent_dim)``: input ``[x with missing entries 0, observation mask]``, output
        ``[posterior mean, log posterior std]``.
    decoder_w1, decoder_b1, decoder_w2, decoder_b2 : array_like
        Shapes ``(U, latent_dim, hidden)``, ``(U, hidden)``, ``(U, hidden, p d)``, ``(U, p d)``
        with ``p = 2`` for Gaussian pixels (mean, log std) and 1 otherwise (logits).
    pixel : {"bernoulli", "binomial", "gaussian"}
        The decoder's pixel distribution.
    trials : int
        Binomial pixels: the number of trials ``n`` (pixel values ``0..n``; 255 for 8-bit grey
        levels). 1 for the other pixel models.
    num_samples : int
        Latent draws per example: 1 gives the ELBO, more the importance-weighted bound.
    activation : str
        Hidden activation of both networks (a name of :data:`pcircuits.nn.ACTIVATIONS`).

    Examples
    --------
    >>> import pcircuits as pc
    >>> family = pc.VAE.random(2, 16, latent_dim=2, hidden=16, rng=0)   # 2 VAEs over a 4x4 superpixel
    >>> leaf = pc.InputNode(range(16), family)
    """

    name = "vae"
    param_names = _ENCODER + _DECODER
    constraints = {name: real for name in _ENCODER + _DECODER}
    supports_em = False
    exact = False
    stochastic = True
    conditional = True
    multivariate = True

    def __init__(self, encoder_w1, encoder_b1, encoder_w2, encoder_b2, decoder_w1, decoder_b1, decoder_w2,
                 decoder_b2, *, pixel: str = "bernoulli", trials: int = 1, num_samples: int = 1,
                 activation: str = "relu"):
        from ..nn import ACTIVATIONS
        if pixel not in PIXELS:
            raise ValueError(f"VAE: pixel must be one of {PIXELS}, got {pixel!r}")
        for name, value, low in (("trials", trials, 1), ("num_samples", num_samples, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"VAE: {name} must be a positive int, got {value!r}")
        if pixel != "binomial" and trials != 1:
            raise ValueError(f"VAE: trials is the number of trials of binomial pixels; {pixel} pixels need 1, "
                             f"got {trials}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"VAE: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        arrays = dict(zip(self.param_names, (encoder_w1, encoder_b1, encoder_w2, encoder_b2, decoder_w1,
                                             decoder_b1, decoder_w2, decoder_b2)))
        for name, value in arrays.items():
            try:
                arr = np.array(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"VAE: {name} must be numeric, got {type(value).__name__}") from None
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"VAE: {name} must be finite")
            setattr(self, name, arr)
        self.pixel, self.trials = pixel, int(trials)
        self.num_samples, self.activation = int(num_samples), activation
        problems = self.shape_problems()
        if problems:
            raise ValueError(f"VAE: {problems[0]}")

    # ---- sizes --------------------------------------------------------------------------
    @property
    def num_variables(self) -> int:
        return int(self.encoder_w1.shape[1]) // 2

    @property
    def latent_dim(self) -> int:
        return int(self.decoder_w1.shape[1])

    @property
    def hidden(self) -> tuple[int, int]:
        """Hidden units of the encoder and of the decoder."""
        return int(self.encoder_w1.shape[2]), int(self.decoder_w1.shape[2])

    def shape_problems(self) -> list[str]:
        problems = super().shape_problems()
        if problems:
            return problems
        ranks = {"encoder_w1": 3, "encoder_b1": 2, "encoder_w2": 3, "encoder_b2": 2,
                 "decoder_w1": 3, "decoder_b1": 2, "decoder_w2": 3, "decoder_b2": 2}
        for name, rank in ranks.items():
            if getattr(self, name).ndim != rank:
                return [f"{name} must have {rank} dimensions, got shape {getattr(self, name).shape}"]
        units = self.encoder_w1.shape[0]
        two_d, h_enc = self.encoder_w1.shape[1:]
        k2 = self.encoder_w2.shape[2]
        k, h_dec = self.decoder_w1.shape[1:]
        out = (2 if self.pixel == "gaussian" else 1) * (two_d // 2)
        expected = {"encoder_w1": (units, two_d, h_enc), "encoder_b1": (units, h_enc),
                    "encoder_w2": (units, h_enc, 2 * k), "encoder_b2": (units, 2 * k),
                    "decoder_w1": (units, k, h_dec), "decoder_b1": (units, h_dec),
                    "decoder_w2": (units, h_dec, out), "decoder_b2": (units, out)}
        if two_d % 2 or two_d == 0:
            return [f"encoder_w1 must have 2 d inputs (values and mask), got {two_d}"]
        if k2 % 2:
            return [f"encoder_w2 must have 2 latent_dim outputs (mean and log std), got {k2}"]
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                return [f"{name} has shape {getattr(self, name).shape}, expected {shape} for {units} units, "
                        f"d={two_d // 2}, latent_dim={k}, {self.pixel} pixels"]
        return []

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def random(cls, num_units: int, num_variables: int | None = None, rng=None, *, latent_dim: int = 2,
               hidden: int = 16, pixel: str = "bernoulli", trials: int = 1, num_samples: int = 1,
               activation: str = "relu") -> "VAE":
        """Glorot-initialized encoders and decoders (zero biases) from ``rng``.

        Parameters
        ----------
        num_units : int
            VAEs in the family.
        num_variables : int
            ``d``: variables per VAE (16 for a 4x4 superpixel).
        rng : int, Generator or None
        latent_dim, hidden, pixel, trials, num_samples, activation
            As for :class:`VAE`; ``hidden`` is the width of both networks' hidden layer.
        """
        from .. import nn
        d = 1 if num_variables is None else int(num_variables)
        for name, value in (("num_units", num_units), ("num_variables", d), ("latent_dim", latent_dim),
                            ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"VAE.random: {name} must be a positive int, got {value!r}")
        if pixel not in PIXELS:
            raise ValueError(f"VAE.random: pixel must be one of {PIXELS}, got {pixel!r}")
        gen = make_rng(rng)
        out = (2 if pixel == "gaussian" else 1) * d
        encoder = nn.mlp(num_units, [2 * d, hidden, 2 * latent_dim]).init(seed=int(gen.integers(2 ** 63)),
                                                                          dtype="float64")
        decoder = nn.mlp(num_units, [latent_dim, hidden, out]).init(seed=int(gen.integers(2 ** 63)), dtype="float64")
        arrays = [encoder[n] for n in _NN_NAMES] + [decoder[n] for n in _NN_NAMES]
        return cls(*arrays, pixel=pixel, trials=trials, num_samples=num_samples, activation=activation)

    def config(self) -> dict:
        return {"pixel": self.pixel, "trials": self.trials, "num_samples": self.num_samples,
                "activation": self.activation}

    def layer_settings(self) -> tuple:
        return tuple(sorted(self.config().items()))

    def max_value(self) -> int | None:
        return None if self.pixel == "gaussian" else self.trials

    def __repr__(self) -> str:
        return (f"VAE(num_units={self.num_units}, d={self.num_variables}, latent_dim={self.latent_dim}, "
                f"hidden={self.hidden[0]}, pixel={self.pixel!r})")

    # ---- the math: params hold the stacked arrays (U first) and the layer settings ------
    @staticmethod
    def _networks(params, folded: bool = False):
        """The stacked encoder and decoder with their parameters. ``folded``: the encoder of inputs
        without missing values, which takes the ``d`` pixel values only: the mask inputs, all 1,
        add their weights' row sums to the first bias, and binomial pixels' ``1 / n`` scale goes
        into the weights (the first product halves; :meth:`_unfold_grads` maps its gradients back)."""
        units, two_d, hidden = params["encoder_w1"].shape
        latent = params["decoder_w1"].shape[1]
        d = two_d // 2
        encoder, decoder = _stacked_networks(units, d if folded else two_d, hidden, latent,
                                             params["decoder_w1"].shape[2], params["decoder_w2"].shape[2],
                                             params["activation"])
        enc_params = dict(zip(_NN_NAMES, (params[n] for n in _ENCODER)))
        if folded:
            if "folded_w1" not in params:
                params = VAE._with_folded_encoder(params)
            enc_params["0.weight"], enc_params["0.bias"] = params["folded_w1"], params["folded_b1"]
        return encoder, enc_params, decoder, dict(zip(_NN_NAMES, (params[n] for n in _DECODER)))

    @staticmethod
    def _with_folded_encoder(params) -> dict:
        """``params`` with the first layer of the folded encoder (see :meth:`_networks`), made
        once per pass for all units (the blocks take slices of it)."""
        w1 = params["encoder_w1"]
        d = w1.shape[1] // 2
        weight = w1[:, :d] * (1.0 / params["trials"]) if params["pixel"] == "binomial" else w1[:, :d]
        return {**params, "folded_w1": weight, "folded_b1": params["encoder_b1"] + w1[:, d:].sum(axis=1)}

    @staticmethod
    def _unfold_grads(xp, params, grads):
        """The gradients of :meth:`_networks`' folded encoder as gradients of the VAE's parameters."""
        w, b = grads["encoder_w1"], grads["encoder_b1"]
        if params["pixel"] == "binomial":
            w = w * (1.0 / params["trials"])
        grads["encoder_w1"] = xp.concatenate([w, xp.broadcast_to(b[:, None, :], w.shape)], axis=1)
        return grads

    @staticmethod
    def _encoder_input(be, params, x):
        """Encoder inputs (U, B, 2d) from x (B, U, d); the observation mask (U, B, d), or None when
        nothing is missing; and the zero-filled values (U, B, d). Compiled where :func:`_compiled`
        (one pass; the mask then holds 0.0 and 1.0 in the dtype of ``x``)."""
        xp = be.xp
        if _compiled(be) and x.dtype in _KERNEL_DTYPES:
            units, batch, d = x.shape[1], x.shape[0], x.shape[2]
            inputs = np.empty((units, batch, 2 * d), x.dtype)
            values, observed = np.empty((units, batch, d), x.dtype), np.empty((units, batch, d), x.dtype)
            scale = x.dtype.type(1.0 / params["trials"] if params["pixel"] == "binomial" else 1.0)
            missing = _kernels()._encoder_input_kernel(x, scale, inputs, values, observed)
            return inputs, observed if missing else None, values
        units, d = x.shape[1], x.shape[2]
        observed = None
        values = xp.ascontiguousarray(x.transpose(1, 0, 2))
        inputs = xp.empty((units, x.shape[0], 2 * d), dtype=x.dtype)
        missing = xp.isnan(x)
        if be.maybe_any(missing):
            observed = ~missing.transpose(1, 0, 2)
            values = xp.where(observed, values, 0).astype(x.dtype)
            inputs[..., d:] = observed
        else:
            inputs[..., d:] = 1
        inputs[..., :d] = values
        if params["pixel"] == "binomial":
            inputs[..., :d] *= 1.0 / params["trials"]
        return inputs, observed, values

    @classmethod
    def _reconstruction(cls, be, params, out, values, observed, grad: bool):
        """``sum_d log p(values | out)`` over the observed pixels, shape (U, N), for decoder
        outputs ``out`` (U, N, p d), values (U, N, d) and the mask (U, N, d) or None; with ``grad``
        also the derivative of the per-pixel log-probabilities with respect to ``out`` (U, N, p d)."""
        xp = be.xp
        d = values.shape[2]
        if params["pixel"] != "gaussian":
            value, d_out = _discrete_log_density(be, out, values, observed, params["trials"], grad)
            if params["pixel"] == "binomial":
                value += cls._binomial_coefficients(be, params, values, observed)
            return value, d_out
        mean, (log_std, slope) = out[..., :d], _soft_bound(xp, out[..., d:], _LOG_STD_BOUND)
        inv_std = xp.exp(-log_std)
        z = values - mean
        z *= inv_std
        lp = z * z
        lp *= -0.5
        lp -= log_std
        lp -= 0.5 * _LOG_2PI
        if observed is not None:
            lp *= observed
        value = lp @ xp.ones(d, dtype=lp.dtype)
        if not grad:
            return value, None
        d_out = xp.concatenate([z * inv_std, (z * z - 1.0) * slope], axis=-1)
        if observed is not None:
            d_out *= xp.concatenate([observed, observed], axis=-1)
        return value, d_out.astype(out.dtype)

    @staticmethod
    def _binomial_coefficients(be, params, values, observed):
        """``sum_d m log C(n, x)`` (U, N) of pixel values ``x`` (U, N, d), mask ``m`` or None."""
        xp = be.xp
        n = float(params["trials"])
        coefficients = be.gammaln(n + 1) - be.gammaln(values + 1) - be.gammaln(n - values + 1)
        if observed is not None:
            coefficients *= observed
        return coefficients.astype(values.dtype) @ xp.ones(values.shape[2], dtype=values.dtype)

    @classmethod
    def _bound_by_pixel(cls, be, params, x, noise):
        """:meth:`_bound`'s value where :func:`_by_pixel`: the networks read ``x`` where the gather
        put it (no (U, B, d) copy), the decoder's last product is laid out by pixel (U, d, B), and
        one compiled loop over it adds the bias and takes the pixels' log-densities, reading
        contiguous rows (:func:`_discrete_log_density` is its definition)."""
        encoder, enc_params = cls._networks(params, folded=True)[:2]
        units, batch, _, latent = noise.shape
        hidden = _stacked_decoder_hidden(units, latent, params["decoder_w1"].shape[2], params["activation"])
        stats, _ = encoder._forward(enc_params, x.transpose(1, 0, 2), False)
        z, kl = _posterior(be, stats, noise, keep=False)[4:]
        h, _ = hidden._forward({"0.weight": params["decoder_w1"], "0.bias": params["decoder_b1"]},
                               z.reshape(units, batch, latent), False)
        products = np.matmul(params["decoder_w2"].transpose(0, 2, 1), h.transpose(0, 2, 1))     # (U, d, B)
        dtype = products.dtype
        recon = np.empty((units, batch), dtype)
        _kernels()._column_log_density_kernel(products, params["decoder_b2"], x.transpose(1, 2, 0),
                                              dtype.type(params["trials"]), dtype.type(1), recon)
        if params["pixel"] == "binomial":
            recon += cls._binomial_coefficients(be, params, x.transpose(1, 0, 2), None)
        return recon - kl

    @classmethod
    def draw_noise(cls, be, params, batch, rng):
        """Standard normal draws, shape (U, batch, num_samples, latent_dim)."""
        units, latent = params["decoder_w1"].shape[:2]
        return rng.normal((units, batch, int(params["num_samples"]), latent)).astype(be.dtype)

    @classmethod
    def _bound(cls, be, params, x, noise, keep: bool, complete: bool = False):
        """The bound (U, B) and, with ``keep``, what :meth:`grad` needs."""
        xp = be.xp
        if complete and _by_pixel(be, params, x, noise.shape[2], keep):
            return cls._bound_by_pixel(be, params, x, noise), None
        encoder, enc_params, decoder, dec_params = cls._networks(params, folded=complete)
        if complete:
            inputs = values = xp.ascontiguousarray(x.transpose(1, 0, 2))
            observed = None
        else:
            inputs, observed, values = cls._encoder_input(be, params, x)
        # the networks' unchecked passes: the family checked the parameters' shapes, the pass the inputs'
        stats, enc_cache = encoder._forward(enc_params, inputs, False)
        latent = stats.shape[2] // 2
        mu, log_sigma, sigma, sigma_slope, z, kl = _posterior(be, stats, noise, keep)
        units, batch, samples, _ = noise.shape
        out, dec_cache = decoder._forward(dec_params, z.reshape(units, batch * samples, latent), False)
        if samples > 1:
            values = xp.repeat(values, samples, axis=1)
            observed = None if observed is None else xp.repeat(observed, samples, axis=1)
        recon, d_out = cls._reconstruction(be, params, out, values, observed, keep)
        recon = recon.reshape(units, batch, samples)
        if samples == 1:
            value = recon[:, :, 0] - kl
            weights = None
        else:
            log_w = recon - 0.5 * (z * z).sum(axis=3) + 0.5 * (noise * noise).sum(axis=3) \
                + log_sigma.sum(axis=2)[:, :, None]
            top = log_w.max(axis=2, keepdims=True)
            shifted = xp.exp(log_w - top)
            total = shifted.sum(axis=2, keepdims=True)
            value = (top + xp.log(total))[:, :, 0] - math.log(samples)
            weights = shifted / total                                              # (U, B, S)
        seen = None
        if observed is not None:
            seen = observed.reshape(units, batch, samples, -1)[:, :, 0].any(axis=2)   # (U, B)
            value = xp.where(seen, value, 0)
        if not keep:
            return value, None
        return value, dict(encoder=encoder, enc_params=enc_params, enc_cache=enc_cache, decoder=decoder,
                           dec_params=dec_params, dec_cache=dec_cache, mu=mu, log_sigma=log_sigma, sigma=sigma,
                           z=z, d_out=d_out, weights=weights, seen=seen,
                           observed=None if observed is None else observed.reshape(units, batch, samples, -1)[:, :, 0],
                           sigma_slope=sigma_slope, folded=complete)

    @staticmethod
    def _blocks(be, params, batch: int, samples: int, inputs: bool = True) -> list[tuple[int, int]]:
        """Consecutive unit ranges whose temporaries stay near ``_BLOCK_ELEMENTS`` values each, on
        the host: small arrays are reused by the allocator and stay in cache, where arrays over
        all units would be fresh memory for every pass (twice as slow on a CPU). A device runs
        all units in one stacked pass. ``inputs``: whether the pass builds the (U, B, 2d) encoder
        inputs (the pass by pixel, :func:`_by_pixel`, does not)."""
        units = params["encoder_w1"].shape[0]
        if not be.on_host:
            return [(0, units)]
        width = max(params["encoder_w1"].shape[1] if inputs else 0, params["encoder_w1"].shape[2],
                    params["decoder_w1"].shape[2], params["decoder_w2"].shape[2])
        size = max(1, _BLOCK_ELEMENTS // (batch * samples * width))
        return [(lo, min(lo + size, units)) for lo in range(0, units, size)]

    @staticmethod
    def _block_params(params, lo: int, hi: int) -> dict:
        return {name: value[lo:hi] if hasattr(value, "shape") else value for name, value in params.items()}

    @classmethod
    def log_prob(cls, be, params, x, noise=None):
        """The bound of every unit at ``x`` (batch, U, d), shape (batch, U); seed-0 noise when none is given."""
        return cls.log_prob_and_state(be, params, x, noise, keep=False)[0]

    @classmethod
    def log_prob_and_state(cls, be, params, x, noise=None, *, keep: bool = True):
        """:meth:`log_prob` and what :meth:`grad` reuses (the networks' activations, per block of
        units), so that a training step does not run the networks twice."""
        if noise is None:
            noise = cls.draw_noise(be, params, x.shape[0], be.rng(0))
        complete = not be.maybe_any(be.xp.isnan(x))
        if complete:
            params = cls._with_folded_encoder(params)
        values, states = [], []
        by_pixel = complete and _by_pixel(be, params, x, noise.shape[2], keep)
        for lo, hi in cls._blocks(be, params, x.shape[0], noise.shape[2], inputs=not by_pixel):
            value, state = cls._bound(be, cls._block_params(params, lo, hi), x[:, lo:hi], noise[lo:hi], keep=keep,
                                      complete=complete)
            values.append(value)
            states.append(state)
        return be.xp.concatenate(values, axis=0).T, states

    @classmethod
    def grad(cls, be, params, x, g, noise=None, state=None):
        """Gradients of ``sum(g * bound)`` with respect to all network weights (reparameterized
        through the given noise) and to the inputs (Gaussian pixels; zero for discrete pixels).
        ``state`` is what :meth:`log_prob_and_state` returned for the same inputs and noise."""
        xp = be.xp
        if noise is None:
            noise = cls.draw_noise(be, params, x.shape[0], be.rng(0))
        blocks = cls._blocks(be, params, x.shape[0], noise.shape[2])
        complete = state is None and not be.maybe_any(xp.isnan(x))
        if complete:
            params = cls._with_folded_encoder(params)
        grads, grad_x = [], []
        for position, (lo, hi) in enumerate(blocks):
            block = cls._block_params(params, lo, hi)
            c = state[position] if state is not None else \
                cls._bound(be, block, x[:, lo:hi], noise[lo:hi], True, complete)[1]
            block_grads, block_grad_x = cls._block_grad(be, block, x[:, lo:hi], g[:, lo:hi], noise[lo:hi], c)
            grads.append(block_grads)
            grad_x.append(block_grad_x)
        return ({name: xp.concatenate([b[name] for b in grads], axis=0) for name in grads[0]},
                xp.zeros_like(x) if grad_x[0] is None else xp.concatenate(grad_x, axis=1))

    @classmethod
    def _block_grad(cls, be, params, x, g, noise, c):
        """:meth:`grad` for one block of units, from its :meth:`_bound` state ``c``."""
        xp = be.xp
        units, batch, samples, latent = noise.shape
        g = g.T if c["seen"] is None else xp.where(c["seen"], g.T, 0)
        g = g.astype(be.dtype)                                                     # (U, B)
        per_sample = g[:, :, None] if c["weights"] is None else g[:, :, None] * c["weights"]   # (U, B, S)
        grad_out = _scaled_rows(be, c["d_out"], per_sample.reshape(units, batch * samples))
        dec_grads, grad_z = c["decoder"]._backward(c["dec_params"], c["dec_cache"],
                                                   grad_out.astype(be.dtype, copy=False), True, True)
        grad_z = grad_z.reshape(units, batch, samples, latent)
        if c["weights"] is not None:
            grad_z = grad_z - c["z"] * per_sample[..., None]                       # log p(z)
        grad_mu = grad_z.sum(axis=2)
        grad_log_sigma = (grad_z * noise).sum(axis=2) * c["sigma"]
        if c["weights"] is None:                                                   # closed-form KL
            grad_mu = grad_mu - g[:, :, None] * c["mu"]
            grad_log_sigma = grad_log_sigma - g[:, :, None] * (c["sigma"] * c["sigma"] - 1.0)
        else:                                                                      # -log q(z | x)
            grad_log_sigma = grad_log_sigma + per_sample.sum(axis=2)[:, :, None]
        grad_log_sigma = grad_log_sigma * c["sigma_slope"]
        grad_stats = xp.concatenate([grad_mu, grad_log_sigma], axis=2).astype(be.dtype, copy=False)
        gaussian = params["pixel"] == "gaussian"
        enc_grads, grad_inputs = c["encoder"]._backward(c["enc_params"], c["enc_cache"], grad_stats, gaussian, True)
        grads = {name: enc_grads[n] for name, n in zip(_ENCODER, _NN_NAMES)}
        grads.update({name: dec_grads[n] for name, n in zip(_DECODER, _NN_NAMES)})
        if c["folded"]:
            grads = cls._unfold_grads(xp, params, grads)
        if not gaussian:
            return grads, None
        d = x.shape[2]
        # the reconstruction term's own dependence on x: -d/d mean of the pixel log-density
        d_mean = c["d_out"][..., :d] * per_sample.reshape(units, batch * samples, 1)
        grad_x = -d_mean.reshape(units, batch, samples, d).sum(axis=2) + grad_inputs[..., :d]
        if c["observed"] is not None:
            grad_x = xp.where(c["observed"], grad_x, 0)
        return grads, grad_x.transpose(1, 0, 2)

    # ---- top-down values ----------------------------------------------------------------
    @classmethod
    def _decode_at(cls, be, params, x, rng=None):
        """Decoder outputs (U, B, p d) at the posterior mean latent (or a posterior draw with
        ``rng``); units with no observed input use the prior (mean 0, or a prior draw)."""
        xp = be.xp
        encoder, enc_params, decoder, dec_params = cls._networks(params)
        inputs, observed, _ = cls._encoder_input(be, params, x)
        stats, _ = encoder.forward(enc_params, inputs)
        latent = stats.shape[2] // 2
        seen = True if observed is None else observed.any(axis=2)[:, :, None]
        mu = xp.where(seen, stats[..., :latent], 0)
        if rng is None:
            z = mu
        else:
            sigma = xp.where(seen, xp.exp(_soft_bound(xp, stats[..., latent:], _LOG_SIGMA_BOUND)[0]), 1)
            z = mu + sigma * rng.normal(mu.shape).astype(mu.dtype)
        out, _ = decoder.forward(dec_params, xp.ascontiguousarray(z.astype(be.dtype)))
        return out

    @classmethod
    def _pixel_mean(cls, be, params, out):
        xp = be.xp
        if params["pixel"] == "gaussian":
            return out[..., :out.shape[2] // 2]
        from ..nn.activations import _sigmoid
        prob = _sigmoid(xp, out)
        return prob * params["trials"] if params["pixel"] == "binomial" else prob

    @classmethod
    def conditional_mean(cls, be, params, x):
        """Pixel means decoded at the posterior mean latent given the observed entries, (B, U, d)."""
        return cls._pixel_mean(be, params, cls._decode_at(be, params, x)).transpose(1, 0, 2).astype(be.dtype)

    @classmethod
    def conditional_mode(cls, be, params, x):
        """The decoder's most probable pixels at the posterior mean latent, (B, U, d)."""
        xp = be.xp
        out = cls._decode_at(be, params, x)
        mean = cls._pixel_mean(be, params, out)
        if params["pixel"] == "bernoulli":
            mode = (out > 0).astype(be.dtype)
        elif params["pixel"] == "binomial":
            n = params["trials"]
            mode = xp.floor((n + 1) * mean / n).clip(0, n)
        else:
            mode = mean
        return mode.transpose(1, 0, 2).astype(be.dtype)

    @classmethod
    def conditional_sample(cls, be, params, x, rng):
        """A posterior latent draw (prior for unobserved units) decoded and sampled, (B, U, d)."""
        xp = be.xp
        out = cls._decode_at(be, params, x, rng)
        mean = cls._pixel_mean(be, params, out)
        if params["pixel"] == "bernoulli":
            draw = (rng.uniform(mean.shape) < mean).astype(be.dtype)
        elif params["pixel"] == "binomial":
            n = params["trials"]
            draw = rng.binomial(xp.full(mean.shape, n, dtype=be.dtype), mean / n).astype(be.dtype)
        else:
            d = out.shape[2] // 2
            std = xp.exp(_soft_bound(xp, out[..., d:], _LOG_STD_BOUND)[0])
            draw = mean + std * rng.normal(mean.shape).astype(be.dtype)
        return draw.transpose(1, 0, 2)

    @classmethod
    def _unconditional(cls, be, params):
        units, two_d = params["encoder_w1"].shape[:2]
        return be.xp.full((1, units, two_d // 2), np.nan, dtype=be.dtype)

    @classmethod
    def mode(cls, be, params):
        """The decoder's most probable pixels at the prior mean latent, (U, d)."""
        return cls.conditional_mode(be, params, cls._unconditional(be, params))[0]

    @classmethod
    def mean(cls, be, params):
        """The decoder's pixel means at the prior mean latent, (U, d)."""
        return cls.conditional_mean(be, params, cls._unconditional(be, params))[0]

    @classmethod
    def sample(cls, be, params, rng):
        """Ancestral draws: latent from the prior, pixels from the decoder, (U, d)."""
        return cls.conditional_sample(be, params, cls._unconditional(be, params), rng)[0]
