"""Gradient learning: Adam or SGD on log-space weights and unconstrained leaf parameters.

Weights are parametrized per sum unit (row) by logits ``theta`` with ``w = softmax(theta)``:
DGC-SPN 5.2's log-space accumulators (after Peharz et al. 2019), so a step needs no projection
back onto normalized non-negative weights. Masked entries have ``theta = -inf`` (weight 0) and
get no gradient. The backward pass gives ``g = dL/d(log w)``; the chain rule through the
softmax gives ``dL/dtheta_j = g_j - w_j sum_row(g)``. Leaf parameters are updated in the
unconstrained form of their declared constraints (:mod:`pcircuits.constraints`: logits, means,
log standard deviations), kept inside the constraints' floors (``log(min_std)``). The update
itself is :mod:`pcircuits.optim`'s Adam or SGD over these named arrays.

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

from ..arguments import Argument, Number, Options, Pair, check_arguments
from ..optim import make_optimizer
from ..program.context import PassContext
from .em import frozen_parameters, prepared, resolved_constraints, trainable_tables
from .learner import PARAMETER_OPTIONS, Learner, register_learner
from .objectives import OBJECTIVES, check_labels, cross_entropy, negative_log_likelihood
from .weights import WeightRows

__all__ = ["GradientLearner", "Adam", "SGD", "OPTIMIZERS", "GRADIENT_OPTIONS"]

OPTIMIZERS = ("adam", "sgd")
INPUT_DROPOUT_UNITS = ("variable", "component")

#: The options of the gradient methods (``fit(method="adam" | "sgd", ...)``).
GRADIENT_OPTIONS = {
    "lr": Argument(Number(0, closed="right"), "Learning rate (DGC-SPN used Adam with 1e-4 for 400 epochs; 1e-2 suits\n"
                   "short runs)."),
    "lr_decay": Argument(Number(0, 1, "right"), "Epoch ``e`` (from 0) steps with ``lr * lr_decay ** e``."),
    "optimizer_betas": Argument(Pair(Number(0, 1, "left")), "Adam's decay rates of the moment estimates."),
    "momentum": Argument(Number(0, 1, "left"), "SGD's heavy-ball momentum."),
    "product_dropout": Argument(Number(0, 1, "left"), "DGC-SPN 5.2's product dropout rate (training batches only)."),
    "input_dropout": Argument(Number(0, 1, "left"), "DGC-SPN 5.2's input dropout rate (training batches only)."),
    "input_dropout_unit": Argument(Options(*INPUT_DROPOUT_UNITS), "Input dropout drops whole variables (the paper) or\n"
                                   "single leaf units (libspn-keras)."),
    "product_dropout_at_roots": Argument(Options(True, False), "False keeps the products that feed a root directly\n"
                                         "out of product dropout (libspn-keras' DGC-SPN example in effect); the paper\n"
                                         "drops products \"throughout the entire network\".", type_name="bool"),
}


class GradientLearner(Learner):
    """One first-order optimizer over all trainable parameters of a Program.

    Parameters
    ----------
    program : Program
    optimizer : {"adam", "sgd"}
    lr : float
        Learning rate (DGC-SPN used Adam with 1e-4 for 400 epochs; 1e-2 suits short runs).
    lr_decay : float in (0, 1]
        Epoch ``e`` (from 0, see :meth:`start_epoch`) steps with ``lr * lr_decay ** e``.
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
        Floor of the parameters declared ``positive(floor="min_std")`` (Gaussian standard deviations).
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
    optimizer : pcircuits.optim.Optimizer
        Updates ``theta`` in place.
    """

    objectives = OBJECTIVES

    def __init__(self, program, *, optimizer: str = "adam", lr: float = 1e-2, lr_decay: float = 1.0,
                 betas=(0.9, 0.999), adam_eps: float = 1e-8, momentum: float = 0.0, objective: str = "nll",
                 learn_leaves: bool = True, freeze_leaves=False, freeze_weights: bool = False, min_std: float = 1e-2,
                 product_dropout: float = 0.0, input_dropout: float = 0.0, input_dropout_unit: str = "variable",
                 product_dropout_at_roots: bool = True):
        check_arguments("GradientLearner", {"optimizer": Argument(Options(*OPTIMIZERS), ""),
                                            "objective": Argument(Options(*OBJECTIVES), ""),
                                            **GRADIENT_OPTIONS, **PARAMETER_OPTIONS},
                        dict(optimizer=optimizer, objective=objective, lr=lr, lr_decay=lr_decay, optimizer_betas=betas,
                             momentum=momentum, learn_leaves=learn_leaves, freeze_weights=freeze_weights,
                             min_std=min_std, product_dropout=product_dropout, input_dropout=input_dropout,
                             input_dropout_unit=input_dropout_unit, product_dropout_at_roots=product_dropout_at_roots))
        if objective == "cross-entropy" and program.num_outputs < 2:
            raise ValueError(f"GradientLearner: cross-entropy needs one root per class (at least 2 root outputs); "
                             f"the circuit has {program.num_outputs}")
        self.program = program
        self.lr, self.lr_decay = float(lr), float(lr_decay)
        self.objective = objective
        self.min_std = min_std
        self.product_dropout, self.input_dropout = product_dropout, input_dropout
        self.input_dropout_unit = input_dropout_unit
        self.product_dropout_at_roots = bool(product_dropout_at_roots)
        self.rows = WeightRows(program)
        self.frozen = frozen = frozen_parameters(program, True if not learn_leaves else freeze_leaves)
        self.leaf_keys = trainable_tables(program, frozen)
        self.constraints = resolved_constraints(self.leaf_keys, {"min_std": min_std})
        xp = program.backend.xp
        self.theta = {}
        if not freeze_weights:
            self.theta["weights"] = self.rows.logits(program.weights)
        for i, key in enumerate(self.leaf_keys):
            for name, value in key[0].to_unconstrained(xp, program.leaf_tables[key]).items():
                if name not in frozen.get(key, ()):
                    self.theta[f"leaves/{i}/{name}"] = value.copy()     # updated in place, so never a view
        masks = {"weights": self.rows.allowed} if "weights" in self.theta and self.rows.masked else None
        options = {"betas": betas, "eps": adam_eps} if optimizer == "adam" else {"momentum": momentum}
        self.optimizer = make_optimizer(optimizer, self.theta, lr=self.lr, masks=masks, **options)
        self._default_rng = None

    # ---- the learner protocol -------------------------------------------------------------
    def start_epoch(self, epoch: int):
        """Set the learning rate of epoch ``epoch`` (from 0): ``lr * lr_decay ** epoch``."""
        self.optimizer.lr = self.lr * self.lr_decay ** epoch

    def statistics(self, x, labels=None, *, rng=None) -> dict:
        """A training batch's loss and gradients (with dropout), as the learner protocol's statistics.

        Returns
        -------
        dict
            ``"grads"`` (see :meth:`loss_and_gradients`), ``"loss"`` (mean loss), ``"loss_sum"``
            (``loss * count``), ``"count"`` (examples) and ``"correct"`` (or None).
        """
        loss, grads, correct, count = self._loss_and_gradients(x, labels, rng=rng, train=True)
        return {"grads": grads, "loss": loss, "loss_sum": loss * count, "count": int(count), "correct": correct}

    def combine(self, a: dict, b: dict) -> dict:
        """Two batches' gradients as the gradient of their joint mean loss (example-weighted)."""
        total = a["count"] + b["count"]
        wa, wb = a["count"] / total, b["count"] / total
        grads = {k: wa * a["grads"][k] + wb * b["grads"][k] for k in a["grads"]}
        correct = None if a["correct"] is None else a["correct"] + b["correct"]
        loss_sum = a["loss_sum"] + b["loss_sum"]
        return {"grads": grads, "loss": loss_sum / total, "loss_sum": loss_sum, "count": total, "correct": correct}

    def update(self, stats: dict):
        """One optimizer step from a batch's gradients."""
        self.apply_gradients(stats["grads"])

    def settings(self) -> dict:
        """The settings that decide the run (recorded in checkpoints)."""
        return {"optimizer": self.optimizer.name, "objective": self.objective, "lr": self.lr, "lr_decay": self.lr_decay,
                "min_std": self.min_std, "product_dropout": self.product_dropout, "input_dropout": self.input_dropout,
                "input_dropout_unit": self.input_dropout_unit, "product_dropout_at_roots": self.product_dropout_at_roots,
                "frozen": sorted([key[0].name, sorted(names)] for key, names in self.frozen.items()),
                "trained": sorted(self.theta)}

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
        loss, grads, correct, batch = self._loss_and_gradients(x, labels, rng=rng, train=train)
        return loss, grads, None if correct is None else correct / batch

    def _loss_and_gradients(self, x, labels, *, rng, train: bool):
        program = self.program
        be, xp = program.backend, program.backend.xp
        x = prepared(program, x)
        batch = x.shape[0]
        y = None
        if labels is not None:
            y = be.index(check_labels(labels, batch, program.num_outputs))
        elif self.objective == "cross-entropy":
            raise ValueError("GradientLearner: the cross-entropy objective needs labels")
        context = PassContext("sum")
        stochastic = any(key[0].stochastic for key in program.leaf_tables)
        if train and (self.input_dropout > 0 or self.product_dropout > 0 or stochastic):
            if rng is None:
                if self._default_rng is None:
                    self._default_rng = be.rng(None)
                rng = self._default_rng
            if self.input_dropout > 0 and self.input_dropout_unit == "variable":
                x = xp.where(rng.bernoulli_mask(x.shape, self.input_dropout), xp.nan, x)
            leaf_dropout = self.input_dropout if self.input_dropout_unit == "component" else 0.0
            # stochastic leaves (VAE) draw their reparameterization noise from the same source
            context = PassContext("sum", product_dropout=self.product_dropout, leaf_dropout=leaf_dropout,
                                  spare_root_inputs=not self.product_dropout_at_roots, rng=rng)
        out = program._forward(x, context, cache=True)
        value = (negative_log_likelihood if self.objective == "nll" else cross_entropy)(be, out, y)
        grads = program.backward(value.grad_root, leaves=bool(self.leaf_keys))
        result = {}
        if "weights" in self.theta:
            result["weights"] = self.rows.logit_gradient(grads.log_weights, program.weights)
        for i, key in enumerate(self.leaf_keys):
            for name, grad in grads.leaves.get(key, {}).items():
                if f"leaves/{i}/{name}" in self.theta:
                    result[f"leaves/{i}/{name}"] = grad
        return value.loss, result, value.correct, batch

    # ---- updates -------------------------------------------------------------------------
    def apply_gradients(self, grads: dict):
        """Update ``theta`` with the optimizer's rule and write it into the Program."""
        self.optimizer.step(grads)
        self.apply()

    def apply(self):
        """Write ``theta`` into the Program's weights and leaf tables (clamped into the constraints)."""
        program = self.program
        xp = program.backend.xp
        if "weights" in self.theta:
            program.set_weights(*self.rows.softmax(self.theta["weights"], return_log=True))
        for i, key in enumerate(self.leaf_keys):
            prefix = f"leaves/{i}/"
            free = {}
            for name, constraint in self.constraints[key].items():
                if prefix + name in self.theta:
                    clamped = constraint.clamp(xp, self.theta[prefix + name])
                    if clamped is not self.theta[prefix + name]:
                        self.theta[prefix + name][...] = clamped
                    free[name] = self.theta[prefix + name]
            table = program.leaf_tables[key]
            update = key[0].from_unconstrained(xp, table, free)
            program.leaf_tables[key] = {k: update[k].astype(v.dtype, copy=True) if k in update else v
                                        for k, v in table.items()}

    # ---- state for checkpoints ------------------------------------------------------------
    def state(self) -> dict:
        """Free parameters, the optimizer's moments and step counter as named arrays."""
        out = {f"theta/{k}": v.copy() for k, v in self.theta.items()}
        out.update({f"optimizer/{k}": v for k, v in self.optimizer.state().items()})
        return out

    def load_state(self, arrays: dict):
        """Restore what :meth:`state` returned and write the parameters into the Program."""
        missing = [k for k in self.theta if f"theta/{k}" not in arrays]
        if missing:
            raise ValueError(f"GradientLearner: the saved state lacks parameters {missing} (another circuit or "
                             f"other frozen parameters?)")
        for k, v in self.theta.items():
            v[...] = arrays[f"theta/{k}"]
        self.optimizer.load_state({k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")})
        self.apply()


class Adam(GradientLearner):
    """:class:`GradientLearner` with Adam (Kingma and Ba 2014); keyword arguments as there."""

    def __init__(self, program, **options):
        super().__init__(program, optimizer="adam", **options)


class SGD(GradientLearner):
    """:class:`GradientLearner` with (momentum) SGD; keyword arguments as there."""

    def __init__(self, program, **options):
        super().__init__(program, optimizer="sgd", **options)


def _gradient_learner(optimizer: str):
    def make(program, options: dict) -> GradientLearner:
        return GradientLearner(program, optimizer=optimizer, lr=options["lr"], lr_decay=options["lr_decay"],
                               betas=options["optimizer_betas"], momentum=options["momentum"],
                               objective=options["objective"], learn_leaves=options["learn_leaves"],
                               freeze_leaves=options["freeze_leaves"], freeze_weights=options["freeze_weights"],
                               min_std=options["min_std"], product_dropout=options["product_dropout"],
                               input_dropout=options["input_dropout"],
                               input_dropout_unit=options["input_dropout_unit"],
                               product_dropout_at_roots=options["product_dropout_at_roots"])
    return make


register_learner("adam", _gradient_learner("adam"), family="gradient", objectives=OBJECTIVES,
                 description="Adam on log-space weights and unconstrained leaf parameters")
register_learner("sgd", _gradient_learner("sgd"), family="gradient", objectives=OBJECTIVES,
                 description="(momentum) SGD on log-space weights and unconstrained leaf parameters")
