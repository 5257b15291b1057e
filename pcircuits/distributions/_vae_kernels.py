"""The compiled kernels of the VAE leaf pass (:mod:`pcircuits.distributions.vae`), imported on
first use: importing this module imports Numba. Each kernel has its NumPy definition in ``vae.py``
beside the function that calls it, and runs only where :func:`pcircuits.jit.available`.
"""
import math

import numpy as np
from numba import types as _types
from numba.extending import overload as _overload

from .. import jit


_EXPM1_32 = tuple(np.float32(1 / math.factorial(k)) for k in range(8, 0, -1))
_EXPM1_64 = tuple(1 / math.factorial(k) for k in range(14, 0, -1))


def _tanh(x):
    """``tanh`` of a float32 or float64 scalar inside a kernel."""
    raise NotImplementedError("compiled kernels only")


@_overload(_tanh, inline="always")
def _tanh_typed(x):
    # tanh |x| = -m / (2 + m) with m = expm1(-2 |x|): the Taylor polynomial of expm1 for
    # 2 |x| < 1/2 (degree 8 resp. 14: within an ulp there), exp(-2 |x|) - 1 beyond, where
    # the subtraction loses nothing. Both are computed and one kept, so the loop vectorizes.
    if x == _types.float32:
        coefficients, exp, real = _EXPM1_32, jit.exp32, np.float32
    else:
        coefficients, exp, real = _EXPM1_64, jit.exp64, np.float64
    zero, one, two, quarter = real(0), real(1), real(2), real(0.25)

    def tanh(x):
        a = abs(x)
        y = -two * a
        p = coefficients[0]
        for c in coefficients[1:]:
            p = p * y + c
        m = p * y if a < quarter else exp(y) - one
        t = -m / (two + m)
        return t if x > zero else (-t if x < zero else x)
    return tanh


@jit.kernel
def _posterior_kernel(stats, noise, latent, bound, one, mu, log_sigma, sigma, slope, z, kl):
    """Rows ``[mu, raw]`` of encoder outputs ``stats`` (flat, ``2k`` per row; ``k = len(latent)``,
    a tuple so that the compiler knows it and unrolls the loop over a row): ``mu``,
    ``log_sigma = bound tanh(raw / bound)``, ``sigma``, the slope ``1 - tanh^2`` (flat, ``k``
    per row; None: not wanted), and with ``z`` (one draw per example; None: the caller draws)
    the latents ``mu + sigma noise`` and the closed-form ``KL(q || N(0, I))`` per row."""
    k = len(latent)
    half = one / (one + one)
    for r in range(stats.size // (2 * k)):
        total = one - one
        for j in range(k):
            m = stats[2 * k * r + j]
            t = _tanh(stats[2 * k * r + k + j] / bound)
            ls = bound * t
            sg = jit.exp_of(ls)
            if mu is not None:
                mu[k * r + j] = m
                log_sigma[k * r + j] = ls
                sigma[k * r + j] = sg
                slope[k * r + j] = one - t * t
            if z is not None:
                z[k * r + j] = m + sg * noise[k * r + j]
                total += half * (m * m + sg * sg - one) - ls
        if z is not None:
            kl[r] = total


@jit.kernel
def _encoder_input_kernel(x, scale, inputs, values, observed):
    """From ``x`` (B, U, d) with NaN for missing entries: ``values`` (U, B, d) zero-filled,
    ``observed`` (U, B, d) 1 or 0, ``inputs`` (U, B, 2d) ``[scale values, observed]``;
    returns whether any entry is missing."""
    batch, units, d = x.shape
    one = scale / scale
    zero = one - one
    missing = 0
    for u in range(units):
        for b in range(batch):
            for j in range(d):
                v = x[b, u, j]
                seen = v == v
                v = v if seen else zero
                m = one if seen else zero
                values[u, b, j] = v
                observed[u, b, j] = m
                inputs[u, b, j] = v * scale
                inputs[u, b, d + j] = m
                missing += 0 if seen else 1
    return missing > 0


@jit.kernel
def _scaled_rows_kernel(a, scale, out):
    """``out = a * scale[..., None]``."""
    units, rows, d = a.shape
    for u in range(units):
        for r in range(rows):
            w = scale[u, r]
            for j in range(d):
                out[u, r, j] = a[u, r, j] * w


@jit.kernel
def _pixel_pairs_kernel(logits, values, observed, trials, one, pair_terms, pair_factors, d_out):
    """Pixels ``2g`` and ``2g + 1`` of flat arrays: ``pair_terms[g]`` is the sum of their
    ``m (x l - n max(l, 0))``, ``pair_factors[g]`` the product of their ``1 + m exp(-|l|)``,
    and ``d_out`` (None: not wanted) ``m (x - n sigmoid(l))``; ``observed`` None: all observed."""
    zero = one - one
    for g in range(logits.size // 2):
        term = zero
        factor = one
        for i in (2 * g, 2 * g + 1):
            v = logits[i]
            e = jit.exp_of(-abs(v))
            x = values[i]
            m = one if observed is None else observed[i]
            term += m * (x * v - trials * max(v, zero))
            factor *= one + m * e
            if d_out is not None:
                d_out[i] = m * (x - trials * (one if v >= zero else e) / (one + e))
        pair_terms[g] = term
        pair_factors[g] = factor


@jit.kernel
def _quad_sums_kernel(pair_terms, pair_factors, trials, sums):
    """``sums[q]``: the log-densities of pixels ``4q .. 4q + 3`` from their two pairs (one log for four pixels)."""
    for q in range(sums.size):
        sums[q] = pair_terms[2 * q] + pair_terms[2 * q + 1] \
            - trials * jit.log_of(pair_factors[2 * q] * pair_factors[2 * q + 1])


@jit.kernel
def _pixel_terms_kernel(logits, values, observed, trials, one, terms, d_out):
    """:func:`_pixel_pairs_kernel` for one pixel at a time (rows of an odd length): ``terms[i]``
    is ``m (x l - n softplus(l))``."""
    zero = one - one
    for i in range(logits.size):
        v = logits[i]
        e = jit.exp_of(-abs(v))
        x = values[i]
        m = one if observed is None else observed[i]
        terms[i] = m * (x * v - trials * (max(v, zero) + jit.log_of(one + e)))
        if d_out is not None:
            d_out[i] = m * (x - trials * (one if v >= zero else e) / (one + e))


@jit.kernel
def _column_log_density_kernel(products, bias, values, trials, one, sums):
    """The log-densities ``sums`` (U, N) of all-observed pixels, from the decoder's last products
    laid out by pixel, ``products`` (U, d, N) with ``d`` a multiple of 4, and its bias (U, d):
    logits ``l = products + bias``, pixel values ``values`` (U, d, N), each pixel
    ``x l - n max(l, 0) - n log(1 + exp(-|l|))``, one ``log`` for pixels ``j .. j + 3`` of a row.
    Every loop runs over the N rows, reading contiguous memory."""
    units, d, rows = products.shape
    zero = one - one
    for u in range(units):
        for q in range(0, d, 4):
            b0, b1, b2, b3 = bias[u, q], bias[u, q + 1], bias[u, q + 2], bias[u, q + 3]
            for r in range(rows):
                v0 = products[u, q, r] + b0
                v1 = products[u, q + 1, r] + b1
                v2 = products[u, q + 2, r] + b2
                v3 = products[u, q + 3, r] + b3
                term = values[u, q, r] * v0 - trials * max(v0, zero) \
                    + values[u, q + 1, r] * v1 - trials * max(v1, zero) \
                    + values[u, q + 2, r] * v2 - trials * max(v2, zero) \
                    + values[u, q + 3, r] * v3 - trials * max(v3, zero)
                factor = (one + jit.exp_of(-abs(v0))) * (one + jit.exp_of(-abs(v1))) \
                    * ((one + jit.exp_of(-abs(v2))) * (one + jit.exp_of(-abs(v3))))
                term -= trials * jit.log_of(factor)
                sums[u, r] = term if q == 0 else sums[u, r] + term
