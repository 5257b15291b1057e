"""Expectation-maximization from the Program's passes: soft, hard, and hard with unweighted sum inputs.

E-step (statistics of a batch)
------------------------------
* ``kind="soft"``: the expected edge counts are the gradient of the summed log-likelihood with
  respect to the log-weights (one backward pass with ``grad_root = 1``); leaf statistics are
  weighted by the leaves' posterior flows.
* ``kind="hard"``: each example's induced tree is decoded top-down; at every sum on it the
  *winning* input (largest ``log w + value``) gets a count of 1, its siblings 0 (DGC-SPN 2.1);
  leaf statistics count the leaves on the tree. The values come from marginal inference
  (``inference="sum"``: Poon and Domingos' suggestion, used by DGC-SPN 5.1) or from max
  inference (``inference="max"``: the MPE path proper).
* ``kind="usi"``: hard EM whose winner is the input with the largest *unweighted* value
  (unweighted sum inputs, Kalra et al. 2018; DGC-SPN 5.1).

M-step
------
Sum weights by DGC-SPN's additive smoothing ``w_i = (c_i + e) / (sum_j c_j + |w| e)``,
``e = 1e-2 / |w|`` (see :func:`~pcircuits.learning.weights.additive_smoothing` for why the
denominator is written with ``|w| e``); leaves by their family's ``em_update`` (weighted
means, variances with a floor ``min_std``, probabilities) with a pseudo-count ``leaf_eps``
towards the current values. Smoothing makes this MAP-EM under a Dirichlet prior: with
``eps=0`` and ``leaf_eps=0`` it is plain EM, which never lowers the training likelihood.

Schedules
---------
``mode="full-batch"`` sums the statistics of all batches of an epoch and does one M-step per
epoch. ``mode="online"`` does an M-step after every batch from *running statistics* ``s``:

* ``step_size=None`` (DGC-SPN's accumulators): ``s <- s + s_batch``, the counts of every batch
  seen so far, never forgotten;
* ``step_size=eta`` (stepwise EM, Liang and Klein 2009): ``s <- (1 - eta) s + eta s_batch``
  (``s = s_batch`` on the first batch), an exponential moving average of the batch statistics.

Blending the *statistics* rather than the parameters keeps each M-step an exact maximization
(weights stay normalized with masked entries 0, Gaussian variances are those of the blended
moments) and makes ``eta = 1`` plain mini-batch EM.
"""
from __future__ import annotations

import numpy as np

from ..arguments import Argument, Integer, Number, Options, check_arguments
from .learner import PARAMETER_OPTIONS, Learner, register_learner
from .objectives import check_labels
from .weights import WeightRows

__all__ = ["EM", "KINDS", "MODES", "EM_OPTIONS", "frozen_parameters", "prepared"]

KINDS = ("soft", "hard", "usi")
MODES = ("full-batch", "online")

#: The options of the EM methods (``fit(method="em" | "hard-em" | "usi", ...)``).
EM_OPTIONS = {
    "mode": Argument(Options(*MODES), "The schedule: one M-step per epoch, or one per batch. Default full-batch for\n"
                     "soft EM without ``step_size``, else online.", optional=True),
    "step_size": Argument(Number(0, 1, "right"), "Online EM: the stepwise blend factor of the running statistics;\n"
                          "None accumulates the counts of all batches (DGC-SPN's accumulators).", optional=True),
    "inference": Argument(Options("sum", "max"), "Hard EM and USI: marginal (DGC-SPN) or max values for picking\n"
                          "the winning inputs."),
    "ties": Argument(Options("random", "first"), "Hard EM and USI: a tie between winners is broken at random (as\n"
                     "libspn-keras does) or by taking the first."),
    "counts": Argument(Options("sum", "mean"), "What a batch adds to the statistics: the sum of its examples' or\n"
                       "their mean (libspn-keras' units, in which DGC-SPN's smoothing is stated)."),
    "eps": Argument(Number(0), "Additive smoothing pseudo-count per weight (default ``1e-2 / |w|`` per row).",
                    optional=True),
    "leaf_eps": Argument(Number(0), "Pseudo-count of the leaf updates towards the current leaf parameters."),
}


def prepared(program, x):
    """``program.prepare(x)``, except for arrays already on a GPU backend in its dtype and shape.

    :func:`fit` checks the whole data set once and then hands device batches to the learners;
    preparing each batch again would copy it to the host and back.
    """
    be = program.backend
    if (not be.on_host and isinstance(x, be.xp.ndarray) and x.dtype == be.dtype and x.ndim == 2
            and x.shape[1] == program.num_variables):
        return x
    return program.prepare(x)


def frozen_parameters(program, freeze_leaves) -> dict:
    """Which parameters of which leaf tables of ``program`` ``freeze_leaves`` keeps fixed.

    Parameters
    ----------
    freeze_leaves : bool, str, LeafFamily class, or iterable of str / classes
        True: every table; False or None: none; a family name (``"gaussian"``) or class: all
        parameters of that family; ``"family.parameter"`` (``"gaussian.std"``): that parameter
        only (the DGC-SPN authors' library learns its classifier's Gaussian means and keeps the
        variances at 1).

    Returns
    -------
    dict
        Leaf-table key -> frozenset of the parameter names kept fixed; tables not in it are
        learned whole.
    """
    if freeze_leaves is True:
        return {key: frozenset(key[0].param_names) for key in program.leaf_tables}
    if freeze_leaves is False or freeze_leaves is None:
        return {}
    from ..distributions import FAMILIES
    items = [freeze_leaves] if isinstance(freeze_leaves, (str, type)) else list(freeze_leaves)
    names: dict[str, set] = {}
    for item in items:
        if isinstance(item, type):
            item = item.name
        if not isinstance(item, str):
            raise TypeError(f"freeze_leaves: entries must be family names, 'family.parameter' strings or leaf "
                            f"family classes, got {item!r}")
        family, _, parameter = item.partition(".")
        if family not in FAMILIES:
            raise ValueError(f"freeze_leaves: unknown leaf family {family!r} in {item!r}; known: {sorted(FAMILIES)}")
        known = FAMILIES[family].param_names
        if parameter and parameter not in known:
            raise ValueError(f"freeze_leaves: {family!r} leaves have no parameter {parameter!r}; they have {known}")
        names.setdefault(family, set()).update([parameter] if parameter else known)
    return {key: frozenset(names[key[0].name]) for key in program.leaf_tables if key[0].name in names}


def trainable_tables(program, frozen: dict) -> list:
    """Keys of the leaf tables with a learnable parameter that is not frozen, in a fixed order."""
    keys = [key for key in program.leaf_tables if set(key[0].constraints) - frozen.get(key, frozenset())]
    return sorted(keys, key=table_order)


def resolved_constraints(keys, settings: dict) -> dict:
    """Per leaf table, the declared constraints with setting-named floors (``min_std``) resolved."""
    return {key: {name: c.resolve(settings) for name, c in key[0].constraints.items()} for key in keys}


def table_order(key) -> tuple:
    """A deterministic order of leaf-table keys (family name, variables per unit, shapes)."""
    return (key[0].name, key[1], str(key[2]))


class EM(Learner):
    """EM updates of a Program's sum weights and (unfrozen) leaf parameters.

    Parameters
    ----------
    program : Program
    kind : {"soft", "hard", "usi"}
    inference : {"sum", "max"}
        Hard EM and USI: the semantics of the values the winning input is chosen by.
    mode : {"full-batch", "online"}
    step_size : float in (0, 1], optional
        Online mode: the stepwise-EM blend factor; None accumulates the counts of all batches.
    eps : float, optional
        Additive smoothing pseudo-count per weight (default ``1e-2 / |w|`` per row).
    leaf_eps : float
        Pseudo-count of the leaf updates towards the current leaf parameters.
    min_std : float
        Floor of Gaussian standard deviations.
    freeze_leaves : bool or iterable of str
        True keeps all leaves fixed; a set of family names (``{"gaussian"}``) keeps those fixed
        (DGC-SPN's generative setup keeps its Gaussian leaves at the quantile means);
        ``"family.parameter"`` keeps one parameter fixed (``{"gaussian.std"}``).
    freeze_weights : bool
        Keep the sum weights fixed (learn the leaves only).
    ties : {"random", "first"}
        Hard EM and USI: among inputs with the same best score the winner is drawn at random
        (libspn-keras' rule; it lets identical sum units, such as the uniform rows that no
        example has reached yet, specialize on different examples) or the first is taken.
    counts : {"sum", "mean"}
        What a batch adds to the statistics: the sum over its examples (each example counts 1)
        or their mean (each counts ``1 / batch``), which is what libspn-keras accumulates (the
        gradient of a batch-mean loss). The smoothing ``eps`` and ``leaf_eps`` are pseudo-counts
        in these units, so with ``"mean"`` DGC-SPN's ``1e-2 / |w|`` weighs as ``batch`` times
        more examples.
    seed : int
        Seeds the random tie-breaking; batch ``t`` uses ``default_rng([seed, t])``, so a
        resumed run draws the same ties.
    """

    def __init__(self, program, kind: str = "soft", *, inference: str = "sum", mode: str = "full-batch",
                 step_size: float | None = None, eps: float | None = None, leaf_eps: float = 1e-2,
                 min_std: float = 1e-2, freeze_leaves=False, freeze_weights: bool = False, ties: str = "random",
                 counts: str = "sum", seed: int = 0):
        check_arguments("EM", {"kind": Argument(Options(*KINDS), ""), **EM_OPTIONS, **PARAMETER_OPTIONS,
                               "seed": Argument(Integer(0), "")},
                        dict(kind=kind, inference=inference, mode=mode, step_size=step_size, eps=eps,
                             leaf_eps=leaf_eps, min_std=min_std, freeze_weights=freeze_weights, ties=ties,
                             counts=counts, seed=seed))
        if mode is None:
            raise ValueError(f"EM: mode must be one of {MODES}, got None")
        if step_size is not None and mode != "online":
            raise ValueError("EM: step_size applies to mode='online' only (full-batch EM replaces the statistics)")
        self.program = program
        self.kind, self.inference, self.mode, self.step_size = kind, inference, mode, step_size
        self.eps, self.leaf_eps, self.min_std = eps, leaf_eps, min_std
        self.freeze_weights = bool(freeze_weights)
        self.ties, self.counts, self.seed = ties, counts, int(seed)
        self.frozen = frozen_parameters(program, freeze_leaves)
        self.leaf_keys = trainable_tables(program, self.frozen)
        no_em = sorted({key[0].name for key in self.leaf_keys if not key[0].supports_em})
        if no_em:
            raise ValueError(f"EM: the {', '.join(no_em)} leaves have no EM update; train them with a gradient "
                             f"method (method='adam') or keep them fixed (freeze_leaves={no_em!r})")
        self.constraints = resolved_constraints(self.leaf_keys, {"min_std": min_std})
        self.rows = WeightRows(program)
        self._output_slots = program.backend.index(program.output_slots)
        self.totals = None
        self.steps = 0

    @property
    def updates_per_batch(self) -> bool:
        """Online mode updates after every batch; full-batch mode adds up until :meth:`end_epoch`."""
        return self.mode == "online"

    # ---- E-step -----------------------------------------------------------------------
    def statistics(self, x, labels=None, *, rng=None) -> dict:
        """Sufficient statistics of one batch (``rng`` is not used: ties are drawn from ``seed``).

        Parameters
        ----------
        x : array, shape (batch, num_variables)
            NaN marks missing values (marginalized; they add nothing to the leaf statistics).
        labels : array of int, shape (batch,), optional
            The root that models each example; needed when the circuit has several roots
            (class-conditional EM).

        Returns
        -------
        dict
            ``"weights"``: edge counts, shape (num_weights,); ``"leaves"``: table key -> name ->
            array of summed leaf statistics (one row per table row); ``"log_likelihood"``: the
            batch's summed log-likelihood before the update (``"loss_sum"`` is its negative);
            ``"count"``: the batch size; ``"correct"``: None. With ``counts="mean"`` the weight
            and leaf statistics are divided by the batch size.
        """
        return self._statistics(prepared(self.program, x), labels)

    def _statistics(self, x, labels) -> dict:
        """:meth:`statistics` of rows ``x`` that :meth:`Program.prepare` has checked already."""
        program = self.program
        be, xp = program.backend, program.backend.xp
        batch = x.shape[0]
        roots = self._roots(labels, batch)
        if self.kind == "soft":
            out = program._forward(x, "sum", cache=True)
            grad_root = None
            if roots is not None:
                grad_root = xp.zeros((batch, program.num_outputs), dtype=be.dtype)
                grad_root[xp.arange(batch), be.index(roots)] = 1
            grads = program.backward(grad_root, leaves=False)
            counts, flows = grads.log_weights, grads.unit_flows
        else:
            _, counts, active = program._top_down(
                x, "argmax", forward_mode=self.inference, root=0 if roots is None else roots,
                weighted=self.kind == "hard", ties=self.ties, seed=np.random.default_rng([self.seed, self.steps]),
                counts=True, return_active=True)
            flows = active
            if self.inference == "sum":
                out = program.values[self._output_slots].T
            else:
                out = program._forward(x, "sum", cache=False)
        chosen = out[:, 0] if roots is None else out[xp.arange(batch), be.index(roots)]
        leaves = {}
        for layer in program.input_layers:
            if layer.table_key not in self.leaf_keys:
                continue
            table = program.leaf_tables[layer.table_key]
            layer_flows = flows[layer.start:layer.stop].T.astype(be.dtype, copy=False)
            stats = layer.family.em_statistics(be, layer.params(table), layer.gather_inputs(x), layer_flows)
            rows = int(next(iter(table.values())).shape[0])
            acc = leaves.setdefault(layer.table_key,
                                    {k: xp.zeros((rows,) + v.shape[1:], dtype=v.dtype) for k, v in stats.items()})
            for k, v in stats.items():
                layer.row_scatter.add(acc[k], v)
        if self.counts == "mean":
            counts = counts / batch
            leaves = {key: {k: v / batch for k, v in stats.items()} for key, stats in leaves.items()}
        log_likelihood = float(chosen.sum())
        return {"weights": counts, "leaves": leaves, "log_likelihood": log_likelihood, "loss_sum": -log_likelihood,
                "count": int(batch), "correct": None}

    def _roots(self, labels, batch: int):
        program = self.program
        if labels is None:
            if program.num_outputs != 1:
                raise ValueError(f"EM: the circuit has {program.num_outputs} root outputs; pass labels "
                                 f"(which root models each example)")
            return None
        return check_labels(labels, batch, program.num_outputs)

    # ---- M-step -----------------------------------------------------------------------
    def maximize(self, stats: dict):
        """Set the Program's parameters from (accumulated) statistics.

        Parameters that the statistics leave undefined (a row without counts under ``eps=0``,
        a leaf that no example reached under ``leaf_eps=0``) keep their current values.
        """
        program = self.program
        xp = program.backend.xp
        if not self.freeze_weights:
            program.set_weights(self.rows.smoothed(stats["weights"], self.eps, previous=program.weights))
        for key, leaf_stats in stats["leaves"].items():
            table = program.leaf_tables[key]
            with np.errstate(divide="ignore", invalid="ignore"):
                update = key[0].em_update(table, leaf_stats, eps=self.leaf_eps)
            new_table = {}
            fixed = self.frozen.get(key, frozenset())
            constraints = self.constraints[key]
            for name, old in table.items():
                value = old if name in fixed else update.get(name, old)
                if name in constraints and name not in fixed:
                    value = constraints[name].clip(xp, value)
                value = value.astype(old.dtype, copy=False)
                new_table[name] = xp.where(xp.isfinite(value), value, old)
            program.leaf_tables[key] = new_table

    def combine(self, a: dict, b: dict) -> dict:
        """The statistics of two batches as those of one (sums; example-weighted means under
        ``counts="mean"``)."""
        if self.counts == "mean":
            total = a["count"] + b["count"]
            return _combine(a, b, a["count"] / total, b["count"] / total)
        return _combine(a, b, 1.0, 1.0)

    def update(self, stats: dict):
        """Add a batch's statistics to the running ones; in online mode, an M-step from them.

        In full-batch mode the statistics are summed until :meth:`end_epoch`.
        """
        if self.totals is None:
            self.totals = stats
        elif self.mode == "full-batch" or self.step_size is None:
            self.totals = _combine(self.totals, stats, 1.0, 1.0)
        else:
            self.totals = _combine(self.totals, stats, 1.0 - self.step_size, self.step_size)
        self.steps += 1
        if self.mode == "online":
            self.maximize(self.totals)

    def end_epoch(self):
        """Full-batch mode: the M-step from the epoch's statistics (online mode: nothing to do)."""
        if self.mode == "full-batch" and self.totals is not None:
            self.maximize(self.totals)
            self.totals = None

    def fit_epoch(self, x, labels=None, *, batch_size: int | None = None) -> float:
        """One pass over ``x`` in order (batches of ``batch_size``), ending with :meth:`end_epoch`.

        Returns the mean log-likelihood of the examples as seen during the pass (before the
        updates they led to).
        """
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise ValueError(f"EM.fit_epoch: batch_size must be a positive int, got {batch_size!r}")
        x = prepared(self.program, x)
        n = x.shape[0]
        size = max(n, 1) if batch_size is None else int(batch_size)
        total = 0.0
        for start in range(0, n, size):
            part = None if labels is None else np.asarray(labels)[start:start + size]
            stats = self._statistics(x[start:start + size], part)     # the rows were checked above, once
            self.update(stats)
            total += stats["log_likelihood"]
        self.end_epoch()
        return total / max(n, 1)

    # ---- state for checkpoints --------------------------------------------------------
    def settings(self) -> dict:
        """The settings that decide the run (recorded in checkpoints)."""
        return {"kind": self.kind, "inference": self.inference, "mode": self.mode, "step_size": self.step_size,
                "eps": self.eps, "leaf_eps": self.leaf_eps, "min_std": self.min_std, "ties": self.ties,
                "counts": self.counts, "freeze_weights": self.freeze_weights,
                "frozen": sorted([key[0].name, sorted(names)] for key, names in self.frozen.items())}

    def state(self) -> dict:
        """The online running statistics as named arrays (empty between full-batch epochs)."""
        out = {"steps": np.array(self.steps)}
        if self.totals is None:
            return out
        out["weights"] = self.totals["weights"]
        for i, key in enumerate(self.leaf_keys):
            for name, value in self.totals["leaves"].get(key, {}).items():
                out[f"leaves/{i}/{name}"] = value
        return out

    def load_state(self, arrays: dict):
        """Restore what :meth:`state` returned."""
        xp = self.program.backend.xp
        self.steps = int(arrays.get("steps", 0))
        if "weights" not in arrays:
            self.totals = None
            return
        leaves = {}
        for i, key in enumerate(self.leaf_keys):
            prefix = f"leaves/{i}/"
            found = {n[len(prefix):]: xp.asarray(v) for n, v in arrays.items() if n.startswith(prefix)}
            if found:
                leaves[key] = found
        self.totals = {"weights": xp.asarray(arrays["weights"]), "leaves": leaves, "log_likelihood": 0.0,
                       "loss_sum": 0.0, "count": 0, "correct": None}


def _combine(a: dict, b: dict, weight_a: float, weight_b: float) -> dict:
    """``weight_a * a + weight_b * b`` for every statistic (sums when both weights are 1)."""
    def mix(u, v):
        return u + v if weight_a == 1.0 and weight_b == 1.0 else weight_a * u + weight_b * v

    leaves = {key: {k: mix(a["leaves"][key][k], v) for k, v in stats.items()} for key, stats in b["leaves"].items()}
    log_likelihood = a["log_likelihood"] + b["log_likelihood"]
    return {"weights": mix(a["weights"], b["weights"]), "leaves": leaves, "log_likelihood": log_likelihood,
            "loss_sum": -log_likelihood, "count": a["count"] + b["count"], "correct": None}


def _em_learner(kind: str):
    def make(program, options: dict) -> EM:
        mode = options["mode"]
        if mode is None:
            mode = "full-batch" if kind == "soft" and options["step_size"] is None else "online"
        return EM(program, kind, inference=options["inference"], mode=mode, step_size=options["step_size"],
                  eps=options["eps"], leaf_eps=options["leaf_eps"], min_std=options["min_std"],
                  freeze_leaves=True if not options["learn_leaves"] else options["freeze_leaves"],
                  freeze_weights=options["freeze_weights"], ties=options["ties"], counts=options["counts"],
                  seed=options["seed"])
    return make


register_learner("em", _em_learner("soft"), family="em", description="soft EM (expected counts from the backward pass)")
register_learner("hard-em", _em_learner("hard"), family="em", description="hard EM (counts of each example's winning inputs)")
register_learner("usi", _em_learner("usi"), family="em", description="hard EM with unweighted sum inputs (DGC-SPN)")
