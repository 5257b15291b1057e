"""Gradient learning: Adam or SGD on log-space weights and unconstrained leaf parameters.

Weights are parametrized per sum unit (row) by logits ``theta`` with ``w = softmax(theta)``:
DGC-SPN 5.2's log-space accumulators (after Peharz et al. 2019), so a step needs no projection
back onto normalized non-negative weights. Masked entries have ``theta = -inf`` (weight 0) and
get no gradient. The backward pass gives ``g = dL/d(log w)``; the chain rule through the
softmax gives ``dL/dtheta_j = g_j - w_j sum_row(g)``. Leaf parameters are updated in their
unconstrained form (``family.to_unconstrained``: logits, means, log standard deviations, the
latter kept above ``log(min_std)``).

Objectives (:mod:`pcircuits.learning.objectives`): ``"nll"`` (mean negative log-likelihood,
generative; with labels the label's root is the example's model) and ``"cross-entropy"`` over
one root per class (discriminative: the root log-values are the class logits).

Regularizers of DGC-SPN 5.2 (after Peharz et al. 2019), applied in training steps only:
*product dropout* sets each product unit's value to 0 (log-value -inf) with probability
``product_dropout``, for every example separately and throughout the circuit (also inside
fused product-sum layers); *input dropout* sets all components of an input variable to 1 with
probability ``input_dropout``, i.e. marginalizes the variable (NaN input), as if it were not
part of the evidence (the paper's wording). ``input_dropout_unit="component"`` instead sets each
leaf unit to 1 on its own, as libspn-keras' input dropout does.
"""
from __future__ import annotations

import numpy as np

from ..distributions import Gaussian
from .em import frozen_parameters, prepared, trainable_tables
from .objectives import OBJECTIVES, check_labels, cross_entropy, negative_log_likelihood
from .weights import WeightRows

__all__ = ["GradientLearner", "Adam", "SGD", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "sgd")
INPUT_DROPOUT_UNITS = ("variable", "component")


class GradientLearner:
    """One first-order optimizer over all trainable parameters of a Program.

    Parameters
    ----------
    program : Program
    optimizer : {"adam", "sgd"}
    lr : float
        Learning rate (DGC-SPN used Adam with 1e-4 for 400 epochs; 1e-2 suits short runs).
    betas : (float, float)
        Adam's decay rates of the moment estimates.
    adam_eps : float
        Adam's denominator offset.
    momentum : float
        SGD's heavy-ball momentum in [0, 1).
    objective : {"nll", "cross-entropy"}
    learn_leaves : bool
        False keeps every leaf fixed (same as ``freeze_leaves=True``).
    freeze_leaves : bool or iterable of str
        Leaf families (by name, e.g. ``{"gaussian"}``) or single parameters (``"gaussian.std"``,
        as the DGC-SPN authors' library keeps its variances at 1) kept fixed; True for all.
    freeze_weights : bool
        Keep the sum weights fixed.
    min_std : float
        Floor of Gaussian standard deviations.
    product_dropout, input_dropout : float
        Dropout rates in [0, 1) used by training steps.
    input_dropout_unit : {"variable", "component"}
        What input dropout drops: a whole variable (all its leaf units) or each leaf unit alone.
    product_dropout_at_roots : bool
        False spares the products that feed a root directly (a classifier's top products), as
        libspn-keras' DGC-SPN example does in effect; True drops them like every other product.

    Attributes
    ----------
    theta : dict of str -> backend array
        The free parameters: ``"weights"`` (logits, shape (num_weights,)) and
        ``"leaves/<i>/<name>"`` for the i-th trainable leaf table.
    """

    def __init__(self, program, *, optimizer: str = "adam", lr: float = 1e-2, betas=(0.9, 0.999),
                 adam_eps: float = 1e-8, momentum: float = 0.0, objective: str = "nll", learn_leaves: bool = True,
                 freeze_leaves=False, freeze_weights: bool = False, min_std: float = 1e-2,
                 product_dropout: float = 0.0, input_dropout: float = 0.0, input_dropout_unit: str = "variable",
                 product_dropout_at_roots: bool = True):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"GradientLearner: optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if objective not in OBJECTIVES:
            raise ValueError(f"GradientLearner: objective must be one of {OBJECTIVES}, got {objective!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"GradientLearner: lr must be a positive number, got {lr!r}")
        if len(tuple(betas)) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"GradientLearner: betas must be two numbers in [0, 1), got {betas!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"GradientLearner: momentum must be in [0, 1), got {momentum!r}")
        if not (np.isfinite(min_std) and min_std > 0):
            raise ValueError(f"GradientLearner: min_std must be positive, got {min_std!r}")
        for name, rate in (("product_dropout", product_dropout), ("input_dropout", input_dropout)):
            if not 0 <= rate < 1:
                raise ValueError(f"GradientLearner: {name} must be in [0, 1), got {rate!r}")
        if input_dropout_unit not in INPUT_DROPOUT_UNITS:
            raise ValueError(f"GradientLearner: input_dropout_unit must be one of {INPUT_DROPOUT_UNITS}, "
                             f"got {input_dropout_unit!r}")
        if objective == "cross-entropy" and program.num_outputs < 2:
            raise ValueError(f"GradientLearner: cross-entropy needs one root per class (at least 2 root outputs); "
                             f"the circuit has {program.num_outputs}")
        self.program = program
        self.optimizer, self.lr, self.betas, self.adam_eps = optimizer, float(lr), tuple(betas), adam_eps
        self.momentum = momentum
        self.objective = objective
        self.min_std = min_std
        self.product_dropout, self.input_dropout = product_dropout, input_dropout
        self.input_dropout_unit = input_dropout_unit
        self.product_dropout_at_roots = bool(product_dropout_at_roots)
        self.rows = WeightRows(program)
        xp = program.backend.xp
        self.frozen = frozen = frozen_parameters(program, True if not learn_leaves else freeze_leaves)
        self.leaf_keys = trainable_tables(program, frozen)
        self.theta = {}
        if not freeze_weights:
            self.theta["weights"] = self.rows.logits(program.weights)
        for i, key in enumerate(self.leaf_keys):
            for name, value in key[0].to_unconstrained(xp, program.leaf_tables[key]).items():
                if name not in frozen.get(key, ()):
                    self.theta[f"leaves/{i}/{name}"] = value.copy()     # updated in place, so never a view
        self.moments = {k: (xp.zeros_like(v), xp.zeros_like(v)) for k, v in self.theta.items()}
        self.t = 0
        self._default_rng = None

    # ---- loss and gradients -------------------------------------------------------------
    def loss_and_gradients(self, x, labels=None, *, rng=None, train: bool = True):
        """Loss of a batch and its gradient with respect to every entry of ``theta``.

        Parameters
        ----------
        x : array, shape (batch, num_variables)
        labels : array of int, shape (batch,), optional
            Classes (cross-entropy) or the root of each example (class-conditional NLL).
        rng : RandomSource, optional
            Backend random source for the dropout masks (``program.backend.rng(seed)``).
        train : bool
            False evaluates without dropout.

        Returns
        -------
        loss : float
        grads : dict of str -> backend array (same keys and shapes as ``theta``)
        accuracy : float or None
            Fraction of examples whose largest root is their label (None without labels).
        """
        program = self.program
        be, xp = program.backend, program.backend.xp
        x = prepared(program, x)
        batch = x.shape[0]
        y = None
        if labels is not None:
            y = be.index(check_labels(labels, batch, program.num_outputs))
        elif self.objective == "cross-entropy":
            raise ValueError("GradientLearner: the cross-entropy objective needs labels")
        dropout = leaf_dropout = None
        if train and (self.input_dropout > 0 or self.product_dropout > 0):
            if rng is None:
                if self._default_rng is None:
                    self._default_rng = be.rng(None)
                rng = self._default_rng
            if self.input_dropout > 0 and self.input_dropout_unit == "variable":
                x = xp.where(rng.bernoulli_mask(x.shape, self.input_dropout), xp.nan, x)
            elif self.input_dropout > 0:
                leaf_dropout = (self.input_dropout, rng)
            if self.product_dropout > 0:
                dropout = (self.product_dropout, rng)
        out = program._forward(x, "sum", cache=True, product_dropout=dropout, leaf_dropout=leaf_dropout,
                               spare_root_inputs=not self.product_dropout_at_roots)
        if self.objective == "nll":
            value = negative_log_likelihood(be, out, y)
        else:
            value = cross_entropy(be, out, y)
        grads = program.backward(value.grad_root, leaves=bool(self.leaf_keys))
        result = {}
        if "weights" in self.theta:
            result["weights"] = self.rows.logit_gradient(grads.log_weights, program.weights)
        for i, key in enumerate(self.leaf_keys):
            for name, grad in grads.leaves.get(key, {}).items():
                if f"leaves/{i}/{name}" in self.theta:
                    result[f"leaves/{i}/{name}"] = grad
        accuracy = None if value.correct is None else value.correct / batch
        return value.loss, result, accuracy

    # ---- updates -------------------------------------------------------------------------
    def step(self, x, labels=None, *, rng=None):
        """One optimizer step on a batch; returns (loss, accuracy or None) before the step."""
        loss, grads, accuracy = self.loss_and_gradients(x, labels, rng=rng)
        self.apply_gradients(grads)
        return loss, accuracy

    def apply_gradients(self, grads: dict):
        """Update ``theta`` with the optimizer's rule and write it into the Program."""
        xp = self.program.backend.xp
        self.t += 1
        b1, b2 = self.betas
        # Adam's bias corrections folded into two scalars:
        # lr * m_hat / (sqrt(v_hat) + eps) = step * m / (sqrt(v) + eps_hat)
        step = self.lr * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        eps_hat = self.adam_eps * np.sqrt(1 - b2 ** self.t)
        for key, grad in grads.items():
            m, v = self.moments[key]
            update = xp.empty_like(grad)
            if self.optimizer == "sgd":
                m *= self.momentum
                m += grad
                xp.multiply(m, self.lr, out=update)
            else:
                m *= b1
                xp.multiply(grad, 1 - b1, out=update)
                m += update
                v *= b2
                xp.multiply(grad, grad, out=update)
                update *= 1 - b2
                v += update
                xp.sqrt(v, out=update)
                update += eps_hat
                xp.divide(m, update, out=update)
                update *= step
            if key == "weights" and self.rows.masked:
                update = xp.where(self.rows.allowed, update, 0)
            self.theta[key] -= update
        self.apply()

    def apply(self):
        """Write ``theta`` into the Program's weights and leaf tables."""
        program = self.program
        xp = program.backend.xp
        if "weights" in self.theta:
            program.set_weights(*self.rows.softmax(self.theta["weights"], return_log=True))
        for i, key in enumerate(self.leaf_keys):
            prefix = f"leaves/{i}/"
            if issubclass(key[0], Gaussian) and prefix + "std" in self.theta:
                name = prefix + "std"
                self.theta[name] = xp.maximum(self.theta[name], np.log(self.min_std))
            table = program.leaf_tables[key]
            free = {k[len(prefix):]: v for k, v in self.theta.items() if k.startswith(prefix)}
            fixed = self.frozen.get(key, frozenset())
            if fixed:
                free = {**key[0].to_unconstrained(xp, table), **free}
            update = key[0].from_unconstrained(xp, table, free)
            program.leaf_tables[key] = {k: v if k in fixed else update.get(k, v).astype(v.dtype, copy=True)
                                        for k, v in table.items()}

    # ---- state for checkpoints ------------------------------------------------------------
    def state(self) -> dict:
        """Free parameters, moment estimates and the step counter as named arrays."""
        out = {"t": np.array(self.t)}
        for k, v in self.theta.items():
            out[f"theta/{k}"] = v.copy()
            out[f"m/{k}"], out[f"v/{k}"] = (a.copy() for a in self.moments[k])
        return out

    def load_state(self, arrays: dict):
        """Restore what :meth:`state` returned and write the parameters into the Program."""
        xp = self.program.backend.xp
        missing = [k for k in self.theta if f"theta/{k}" not in arrays]
        if missing:
            raise ValueError(f"GradientLearner: the saved state lacks parameters {missing} (another circuit or "
                             f"other frozen parameters?)")
        self.t = int(arrays["t"])
        for k in list(self.theta):
            self.theta[k] = xp.array(arrays[f"theta/{k}"])
            self.moments[k] = (xp.array(arrays[f"m/{k}"]), xp.array(arrays[f"v/{k}"]))
        self.apply()


class Adam(GradientLearner):
    """:class:`GradientLearner` with Adam (Kingma and Ba 2014); keyword arguments as there."""

    def __init__(self, program, **options):
        super().__init__(program, optimizer="adam", **options)


class SGD(GradientLearner):
    """:class:`GradientLearner` with (momentum) SGD; keyword arguments as there."""

    def __init__(self, program, **options):
        super().__init__(program, optimizer="sgd", **options)
