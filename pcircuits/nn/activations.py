"""Elementwise activations with their derivatives written out.

Every activation keeps what its backward pass needs without holding on to its input: the
output itself (ReLU, LeakyReLU, Tanh, Sigmoid, ELU: the derivative is a function of ``y``) or
the derivative (Softplus). So an activation after a dense layer may compute in place, in the
dense layer's fresh output, and the next dense layer's cached input is the activation's output:
no extra copy is kept. Each activation works with any number of networks and features.
"""
from __future__ import annotations

import math

import numpy as np

from .. import jit
from ..backend import array_module
from .layers import Layer, _compiled

if jit.available():
    from .layers import _relu_vjp_kernel

__all__ = ["Activation", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "ELU", "Identity", "ACTIVATIONS",
           "activation"]


class Activation(Layer):
    """Base class of the parameter-free elementwise layers (shape in = shape out)."""

    def _backward(self, params, cache, grad_y, input_grad, overwrite):
        if not input_grad:
            return {}, None
        return {}, self._vjp(cache, grad_y, grad_y if overwrite else None)

    def _vjp(self, cache, grad_y, out):
        """``grad_y * f'(x)`` from the cache, written into ``out`` when it is given."""
        raise NotImplementedError(f"{type(self).__name__}._vjp")


class ReLU(Activation):
    """``max(x, 0)``; derivative 1 where the output is positive, else 0."""

    kind = "relu"

    def _forward(self, params, x, overwrite):
        xp = array_module(x)
        y = xp.maximum(x, _zeros(xp, x.shape, x.dtype), out=x if overwrite else None)
        return y, y

    def _vjp(self, y, grad_y, out):
        if _compiled(y, grad_y) and grad_y.shape == y.shape and (out is None or out is grad_y):
            out = np.empty_like(grad_y) if out is None else out
            _relu_vjp_kernel(y, grad_y, out)
            return out
        return array_module(y).multiply(grad_y, y > 0, out=out)


class LeakyReLU(Activation):
    """``x`` for positive ``x``, else ``negative_slope * x``.

    Parameters
    ----------
    negative_slope : float
        Non-negative, so that the sign of the output tells the branch (0 gives ReLU).
    """

    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) \
                or not (math.isfinite(negative_slope) and negative_slope >= 0):
            raise ValueError(f"LeakyReLU: negative_slope must be a non-negative number, got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def _slopes(self, xp, positive, dtype):
        return xp.where(positive, xp.asarray(1, dtype=dtype), xp.asarray(self.negative_slope, dtype=dtype))

    def _forward(self, params, x, overwrite):
        xp = array_module(x)
        y = xp.multiply(x, self._slopes(xp, x > 0, x.dtype), out=x if overwrite else None)
        return y, y

    def _vjp(self, y, grad_y, out):
        xp = array_module(y)
        return xp.multiply(grad_y, self._slopes(xp, y > 0, y.dtype), out=out)

    def config(self):
        return {"kind": self.kind, "negative_slope": self.negative_slope}

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope:g})"


class Tanh(Activation):
    """``tanh(x)``; derivative ``1 - y**2``."""

    kind = "tanh"

    def _forward(self, params, x, overwrite):
        y = array_module(x).tanh(x, out=x if overwrite else None)
        return y, y

    def _vjp(self, y, grad_y, out):
        xp = array_module(y)
        slope = xp.multiply(y, y)
        xp.subtract(1, slope, out=slope)
        return xp.multiply(grad_y, slope, out=out)


class Sigmoid(Activation):
    """``1 / (1 + exp(-x))``, evaluated without overflow; derivative ``y (1 - y)``."""

    kind = "sigmoid"

    def _forward(self, params, x, overwrite):
        y = _sigmoid(array_module(x), x, out=x if overwrite else None)
        return y, y

    def _vjp(self, y, grad_y, out):
        xp = array_module(y)
        slope = xp.subtract(1, y)
        slope *= y
        return xp.multiply(grad_y, slope, out=out)


class Softplus(Activation):
    """``log(1 + exp(x))``, evaluated without overflow; derivative ``sigmoid(x)`` (kept as cache)."""

    kind = "softplus"
    keeps_output = False

    def _forward(self, params, x, overwrite):
        xp = array_module(x)
        small = xp.abs(x)
        xp.negative(small, out=small)
        xp.exp(small, out=small)                       # exp(-|x|) in (0, 1]
        slope = _sigmoid(xp, x, exp_minus_abs=small)
        xp.log1p(small, out=small)
        y = xp.maximum(x, _zeros(xp, x.shape, x.dtype), out=x if overwrite else None)
        y += small
        return y, slope

    def _vjp(self, slope, grad_y, out):
        return array_module(slope).multiply(grad_y, slope, out=out)


class ELU(Activation):
    """``x`` for positive ``x``, else ``alpha (exp(x) - 1)``; derivative 1 or ``y + alpha``.

    Parameters
    ----------
    alpha : float
        Positive (the output's sign then tells the branch).
    """

    kind = "elu"

    def __init__(self, alpha: float = 1.0):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"ELU: alpha must be a positive number, got {alpha!r}")
        self.alpha = float(alpha)

    def _forward(self, params, x, overwrite):
        xp = array_module(x)
        negative = xp.minimum(x, 0)
        xp.expm1(negative, out=negative)
        negative *= self.alpha
        y = xp.where(x > 0, x, negative)
        return y, y

    def _vjp(self, y, grad_y, out):
        xp = array_module(y)
        slope = xp.where(y > 0, xp.asarray(1, dtype=y.dtype), y + self.alpha)
        return xp.multiply(grad_y, slope, out=out)

    def config(self):
        return {"kind": self.kind, "alpha": self.alpha}

    def __repr__(self):
        return f"ELU({self.alpha:g})"


class Identity(Activation):
    """``y = x``: hands its input back (a linear output layer in :func:`~pcircuits.nn.mlp`)."""

    kind = "identity"
    keeps_output = False
    passes_through = True

    def _forward(self, params, x, overwrite):
        return x, None

    def _vjp(self, cache, grad_y, out):
        return grad_y


#: One flat float buffer of zeros per (array module, dtype), grown to the largest size asked for.
_ZERO_BUFFERS: dict = {}


def _zeros(xp, shape, dtype):
    """A read-only array of zeros of this shape, a view of a shared buffer (never write to it).

    ``maximum(x, zeros)`` over two contiguous arrays runs NumPy's vectorized loop and is about
    three times faster than ``maximum(x, 0)``, whose broadcast scalar takes a slower path.
    """
    size = 1
    for n in shape:
        size *= n
    key = (xp.__name__, dtype)
    buffer = _ZERO_BUFFERS.get(key)
    if buffer is None or buffer.size < size:
        buffer = xp.zeros(max(size, 1), dtype=dtype)
        if xp.__name__ == "numpy":
            buffer.flags.writeable = False
        _ZERO_BUFFERS[key] = buffer
    return buffer[:size].reshape(shape)


def _sigmoid(xp, x, out=None, exp_minus_abs=None):
    """``1 / (1 + exp(-x))`` from ``e = exp(-|x|)``: ``1 / (1 + e)`` for ``x >= 0``, else ``e / (1 + e)``."""
    if exp_minus_abs is None:
        exp_minus_abs = xp.exp(-xp.abs(x))
    numerator = xp.where(x >= 0, xp.asarray(1, dtype=x.dtype), exp_minus_abs)
    denominator = exp_minus_abs + 1
    return xp.divide(numerator, denominator, out=out)


#: The activations by name (what ``mlp(activation=...)`` accepts).
ACTIVATIONS: dict[str, type[Activation]] = {cls.kind: cls for cls in (ReLU, LeakyReLU, Tanh, Sigmoid, Softplus,
                                                                      ELU, Identity)}


def activation(spec, **settings) -> Activation:
    """An activation layer from its name (``"relu"``, ``"leaky_relu"``, ...), or ``spec`` itself.

    >>> activation("leaky_relu", negative_slope=0.2)
    LeakyReLU(0.2)
    """
    if isinstance(spec, Activation):
        if settings:
            raise ValueError(f"activation: settings {sorted(settings)} given with the layer {spec!r}")
        return spec
    if spec is None:
        return Identity()
    if spec not in ACTIVATIONS:
        raise ValueError(f"unknown activation {spec!r}; known: {sorted(ACTIVATIONS)} or an Activation layer")
    return ACTIVATIONS[spec](**settings)
