"""Two standard losses with their gradients, for training critics and auto-encoders.

Each returns ``(loss, grad)``: the loss as a Python float (the mean over every entry, so it does
not grow with the batch or the number of networks) and its gradient with respect to the
prediction, an array of the prediction's shape, ready for ``network.backward``.
"""
from __future__ import annotations

from ..backend import array_module
from .activations import _sigmoid

__all__ = ["mean_squared_error", "binary_cross_entropy_with_logits"]


def _check(name: str, prediction, target):
    if tuple(prediction.shape) != tuple(target.shape):
        raise ValueError(f"{name}: prediction has shape {tuple(prediction.shape)}, target "
                         f"{tuple(target.shape)}; they must be equal")
    if prediction.size == 0:
        raise ValueError(f"{name}: empty prediction")


def mean_squared_error(prediction, target) -> tuple[float, object]:
    """``mean((prediction - target)**2)`` and its gradient ``2 (prediction - target) / n``.

    Parameters
    ----------
    prediction, target : array, same shape
    """
    _check("mean_squared_error", prediction, target)
    xp = array_module(prediction)
    difference = xp.subtract(prediction, target, dtype=prediction.dtype)
    loss = float(xp.vdot(difference, difference)) / difference.size
    difference *= 2.0 / difference.size
    return loss, difference


def binary_cross_entropy_with_logits(logits, target) -> tuple[float, object]:
    """Mean Bernoulli negative log-likelihood of ``target`` in [0, 1] under ``sigmoid(logits)``.

    ``softplus(z) - t z`` per entry (no overflow for large ``|z|``); gradient
    ``(sigmoid(z) - t) / n``. A GAN critic's loss is this with target 1 for data, 0 for samples.

    Parameters
    ----------
    logits, target : array, same shape
    """
    _check("binary_cross_entropy_with_logits", logits, target)
    xp = array_module(logits)
    softplus = xp.maximum(logits, 0) + xp.log1p(xp.exp(-xp.abs(logits)))
    loss = float((softplus - target * logits).mean())
    grad = _sigmoid(xp, logits)
    grad -= target
    grad *= 1.0 / logits.size
    return loss, grad
