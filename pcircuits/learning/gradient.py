"""Gradient learning: Adam or SGD on log-space weights and unconstrained leaf parameters.

Weights are parametrized per row by logits ``theta`` with ``w = softmax(theta)`` (log-space
accumulators, DGC-SPN 5.2), so no projection is needed after a step; the gradient of the logits
follows from the log-weight gradient ``g`` of the backward pass as ``g_j - w_j sum_row(g)``.
Leaf parameters are updated in their unconstrained form (logits, means, log standard deviations).

Objectives: ``"nll"`` (mean negative log-likelihood, generative) and ``"cross-entropy"`` over
one root per class (discriminative: the root log-values are the class logits). Regularizers of
DGC-SPN 5.2: product dropout (each product unit's value set to 0 with probability ``rate``) and
input dropout (each input variable marginalized with probability ``rate``).
"""
from __future__ import annotations

import numpy as np

from .weights import WeightRows

__all__ = ["GradientLearner", "OBJECTIVES", "OPTIMIZERS"]

OBJECTIVES = ("nll", "cross-entropy")
OPTIMIZERS = ("adam", "sgd")


class GradientLearner:
    """One optimizer over all of a Program's parameters.

    Parameters
    ----------
    program : Program
    optimizer : {"adam", "sgd"}
    lr : float
    betas : (float, float)
        Adam's decay rates.
    objective : {"nll", "cross-entropy"}
    learn_leaves : bool
        Also update the leaf parameters.
    product_dropout, input_dropout : float
        Dropout rates in [0, 1) applied during training steps.
    """

    def __init__(self, program, *, optimizer: str = "adam", lr: float = 1e-2, betas=(0.9, 0.999),
                 adam_eps: float = 1e-8, objective: str = "nll", learn_leaves: bool = True,
                 product_dropout: float = 0.0, input_dropout: float = 0.0):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"GradientLearner: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"GradientLearner: objective must be one of {OBJECTIVES}, got {objective!r}")
        if not lr > 0:
            raise ValueError(f"GradientLearner: lr must be positive, got {lr!r}")
        for name, rate in (("product_dropout", product_dropout), ("input_dropout", input_dropout)):
            if not 0 <= rate < 1:
                raise ValueError(f"GradientLearner: {name} must be in [0, 1), got {rate!r}")
        if objective == "cross-entropy" and program.num_outputs < 2:
            raise ValueError("GradientLearner: cross-entropy needs one root per class (at least 2 roots)")
        self.program = program
        self.optimizer, self.lr, self.betas, self.adam_eps = optimizer, lr, betas, adam_eps
        self.objective, self.learn_leaves = objective, learn_leaves
        self.product_dropout, self.input_dropout = product_dropout, input_dropout
        self.rows = WeightRows(program)
        xp = program.backend.xp
        with np.errstate(divide="ignore"):
            self.theta = {"weights": xp.where(self.rows.allowed, xp.log(program.weights), -xp.inf)}
        self.leaf_keys = sorted((k for k in program.leaf_tables if k[0].to_unconstrained(xp, program.leaf_tables[k])),
                                key=lambda k: (k[0].name, k[1], str(k[2]))) if learn_leaves else []
        for i, key in enumerate(self.leaf_keys):
            for name, value in key[0].to_unconstrained(xp, program.leaf_tables[key]).items():
                self.theta[f"leaves/{i}/{name}"] = value
        self.moments = {k: (xp.zeros_like(v), xp.zeros_like(v)) for k, v in self.theta.items()}
        self.t = 0

    # ---- loss and gradients -------------------------------------------------------------
    def loss_and_gradients(self, x, labels=None, *, rng=None, train: bool = True):
        """Loss of a batch and gradients w.r.t. every entry of ``theta``; also the accuracy."""
        program = self.program
        be, xp = program.backend, program.backend.xp
        x = program.prepare(x)
        batch = x.shape[0]
        if train and self.input_dropout > 0:
            x = xp.where(rng.uniform(x.shape) < self.input_dropout, xp.nan, x)
        dropout = (self.product_dropout, rng) if train and self.product_dropout > 0 else None
        out = program._forward(x, "sum", cache=True, product_dropout=dropout)
        accuracy = None
        if self.objective == "nll":
            loss = -float(out.sum()) / batch
            grad_root = xp.full(out.shape, -1.0 / batch, dtype=be.dtype)
        else:
            y = _labels(labels, batch, program.num_outputs, xp)
            shifted = out - out.max(axis=1, keepdims=True)
            log_p = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
            loss = -float(log_p[xp.arange(batch), y].mean())
            grad_root = xp.exp(log_p)
            grad_root[xp.arange(batch), y] -= 1
            grad_root /= batch
            accuracy = float((xp.argmax(out, axis=1) == y).mean())
        grads = program.backward(grad_root, leaves=bool(self.leaf_keys))
        g = grads.log_weights
        w = program.weights
        out_grads = {"weights": xp.where(self.rows.allowed, g - w * self.rows.row_sum(g), 0)}
        for i, key in enumerate(self.leaf_keys):
            for name, value in grads.leaves.get(key, {}).items():
                out_grads[f"leaves/{i}/{name}"] = value
        return loss, out_grads, accuracy

    # ---- updates -------------------------------------------------------------------------
    def step(self, x, labels=None, *, rng=None):
        """One optimizer step on a batch; returns (loss, accuracy or None)."""
        loss, grads, accuracy = self.loss_and_gradients(x, labels, rng=rng)
        xp = self.program.backend.xp
        self.t += 1
        b1, b2 = self.betas
        for key, grad in grads.items():
            if self.optimizer == "sgd":
                self.theta[key] = self.theta[key] - self.lr * grad
                continue
            m, v = self.moments[key]
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            self.moments[key] = (m, v)
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            step = self.lr * m_hat / (xp.sqrt(v_hat) + self.adam_eps)
            if key == "weights":
                step = xp.where(self.rows.allowed, step, 0)
            self.theta[key] = self.theta[key] - step
        self.apply()
        return loss, accuracy

    def apply(self):
        """Write ``theta`` into the Program's weights and leaf tables."""
        program = self.program
        xp = program.backend.xp
        program.set_weights(self.rows.softmax(self.theta["weights"]))
        for i, key in enumerate(self.leaf_keys):
            prefix = f"leaves/{i}/"
            free = {k[len(prefix):]: v for k, v in self.theta.items() if k.startswith(prefix)}
            table = program.leaf_tables[key]
            update = key[0].from_unconstrained(xp, table, free)
            program.leaf_tables[key] = {k: update.get(k, v).astype(v.dtype) for k, v in table.items()}

    # ---- state for checkpoints ------------------------------------------------------------
    def state(self) -> dict:
        out = {"t": np.array(self.t)}
        for k, v in self.theta.items():
            out[f"theta/{k}"] = v
            out[f"m/{k}"], out[f"v/{k}"] = self.moments[k]
        return out

    def load_state(self, arrays: dict):
        xp = self.program.backend.xp
        self.t = int(arrays["t"])
        for k in list(self.theta):
            self.theta[k] = xp.asarray(arrays[f"theta/{k}"])
            self.moments[k] = (xp.asarray(arrays[f"m/{k}"]), xp.asarray(arrays[f"v/{k}"]))
        self.apply()


def _labels(labels, batch: int, num_classes: int, xp):
    if labels is None:
        raise ValueError("cross-entropy needs labels")
    y = np.asarray(labels)
    if y.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {y.shape}")
    if y.dtype.kind not in "iu" and not np.all(y == np.round(y)):
        raise ValueError("labels must be integers")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got values from {y.min()} to {y.max()}")
    return xp.asarray(y.astype(np.int64))
