"""Training objectives on the root log-values, and the checks of class labels.

Each objective takes the root log-values of a batch, shape ``(batch, num_outputs)``, and
returns the mean loss together with ``grad_root``, the gradient of that mean loss with respect
to the root log-values, which :meth:`Program.backward` turns into gradients of every parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy

__all__ = ["Objective", "OBJECTIVES", "check_labels", "negative_log_likelihood", "cross_entropy"]

OBJECTIVES = ("nll", "cross-entropy")


@dataclass
class Objective:
    """The value of an objective on one batch.

    Attributes
    ----------
    loss : float
        Mean loss over the examples it is defined for (see ``counted``).
    grad_root : backend array, shape (batch, num_outputs)
        d(mean loss) / d(root log-values).
    counted : int
        Examples in the mean (cross-entropy leaves out examples whose roots are all -inf,
        which product dropout can cause).
    correct : int or None
        Examples whose largest root is their label's (None without labels or with one root).
    """

    loss: float
    grad_root: object
    counted: int
    correct: int | None


def check_labels(labels, num_examples: int, num_outputs: int, *, what: str = "labels") -> np.ndarray:
    """Validate class labels (the root of each example) and return them as int64.

    Raises ``ValueError`` naming the problem: wrong shape, non-integer values, values outside
    ``0 .. num_outputs - 1``.
    """
    y = np.asarray(to_numpy(labels))
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{what} must be an integer array, got dtype {y.dtype}")
    if y.shape != (num_examples,):
        raise ValueError(f"{what} must have shape ({num_examples},), one per example; got {y.shape}")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise ValueError(f"{what} must be integers (class / root indices)")
    if num_examples and (y.min() < 0 or y.max() >= num_outputs):
        raise ValueError(f"{what} must lie in 0..{num_outputs - 1} (the circuit has {num_outputs} root outputs), "
                         f"got values from {y.min():g} to {y.max():g}")
    return y.astype(np.int64)


def negative_log_likelihood(backend, root_values, labels=None) -> Objective:
    """Mean negative log-likelihood ``-1/B sum_b log p_{y_b}(x_b)``.

    Parameters
    ----------
    root_values : backend array, shape (batch, num_outputs)
    labels : backend int array, shape (batch,), optional
        Which root models each example (class-conditional circuits); required when there is
        more than one root output.
    """
    xp = backend.xp
    batch, num_outputs = root_values.shape
    grad_root = xp.zeros(root_values.shape, dtype=backend.dtype)
    rows = xp.arange(batch)
    if labels is None:
        if num_outputs != 1:
            raise ValueError(f"negative_log_likelihood: the circuit has {num_outputs} root outputs; pass labels "
                             f"(the root of each example)")
        chosen = root_values[:, 0]
        grad_root[:, 0] = -1.0 / batch
        correct = None
    else:
        chosen = root_values[rows, labels]
        grad_root[rows, labels] = -1.0 / batch
        correct = int((xp.argmax(root_values, axis=1) == labels).sum()) if num_outputs > 1 else None
    return Objective(-float(chosen.sum()) / batch, grad_root, batch, correct)


def cross_entropy(backend, root_values, labels) -> Objective:
    """Mean cross-entropy of ``softmax(root log-values)`` against the labels (one root per class).

    ``grad_root = (softmax - onehot) / B``. Examples whose roots are all -inf (every path cut by
    product dropout) have no defined class distribution: they get no gradient and are left out
    of the mean, as are examples whose label root alone is -inf (an infinite loss) from the
    reported loss.
    """
    xp = backend.xp
    batch, num_outputs = root_values.shape
    if num_outputs < 2:
        raise ValueError(f"cross_entropy: needs one root per class (at least 2 root outputs), got {num_outputs}")
    top = root_values.max(axis=1, keepdims=True)
    defined = xp.isfinite(top[:, 0])
    top = xp.where(xp.isfinite(top), top, 0)
    shifted = root_values - top
    with np.errstate(divide="ignore", invalid="ignore"):
        log_normalizer = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_normalizer
    rows = xp.arange(batch)
    per_example = -log_p[rows, labels]
    counted = int(defined.sum())
    scale = 1.0 / max(counted, 1)
    grad_root = xp.where(defined[:, None], xp.exp(log_p), 0).astype(backend.dtype)
    grad_root[rows, labels] -= defined.astype(backend.dtype)
    grad_root *= scale
    finite = defined & xp.isfinite(per_example)
    loss = float(xp.where(finite, per_example, 0).sum()) / max(int(finite.sum()), 1)
    correct = int((xp.argmax(root_values, axis=1) == labels).sum())
    return Objective(loss, grad_root, counted, correct)
