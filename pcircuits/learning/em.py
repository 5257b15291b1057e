"""Expectation-maximization from the Program's flows: soft, hard and hard with unweighted sum inputs.

* ``kind="soft"``: expected edge counts are the log-weight gradient of the log-likelihood
  (one backward pass with ``grad_root = 1``); leaf statistics are weighted by the leaves'
  posterior flows.
* ``kind="hard"``: each example's induced tree is decoded top-down and only its edges are
  counted (one winner per active sum); the values the winner is chosen by come from marginal
  (``inference="sum"``, P&D's and DGC-SPN's choice) or max (``inference="max"``) inference.
* ``kind="usi"``: hard EM whose winner is the input with the largest *unweighted* value
  (Kalra et al. 2018; DGC-SPN 5.1).

Schedules: ``mode="full-batch"`` sums the statistics of all batches of an epoch, then does one
M-step (monotone for soft EM); ``mode="online"`` does an M-step after every batch, either from
accumulated counts (``step_size=None``: the DGC-SPN "path accumulators") or by stepwise blending
``theta <- (1 - step_size) theta + step_size * theta_batch``.
"""
from __future__ import annotations

import numpy as np

from .weights import WeightRows

__all__ = ["EM"]

KINDS = ("soft", "hard", "usi")
MODES = ("full-batch", "online")


class EM:
    """EM updates of a Program's sum weights and (unfrozen) leaf parameters.

    Parameters
    ----------
    program : Program
    kind : {"soft", "hard", "usi"}
    inference : {"sum", "max"}
        For hard EM: the semantics of the values the winning input is chosen by.
    mode : {"full-batch", "online"}
    step_size : float, optional
        Online only: blend factor of stepwise EM; None accumulates counts over all batches.
    eps : float, optional
        Additive smoothing of the weights (default ``1e-2 / |w|`` per row, DGC-SPN 5.1).
    leaf_eps : float
        Pseudo-count of the leaf updates.
    min_std : float
        Floor of Gaussian standard deviations.
    freeze_leaves : bool or iterable of str
        True freezes all leaves; a set of family names (e.g. ``{"gaussian"}``) freezes those.
    """

    def __init__(self, program, kind: str = "soft", *, inference: str = "sum", mode: str = "full-batch",
                 step_size: float | None = None, eps: float | None = None, leaf_eps: float = 1e-2,
                 min_std: float = 1e-2, freeze_leaves=False):
        if kind not in KINDS:
            raise ValueError(f"EM: kind must be one of {KINDS}, got {kind!r}")
        if inference not in ("sum", "max"):
            raise ValueError(f"EM: inference must be 'sum' or 'max', got {inference!r}")
        if mode not in MODES:
            raise ValueError(f"EM: mode must be one of {MODES}, got {mode!r}")
        if step_size is not None and not (0 < step_size <= 1):
            raise ValueError(f"EM: step_size must be in (0, 1], got {step_size!r}")
        if eps is not None and eps < 0:
            raise ValueError(f"EM: eps must be non-negative, got {eps!r}")
        self.program = program
        self.kind, self.inference, self.mode, self.step_size = kind, inference, mode, step_size
        self.eps, self.leaf_eps, self.min_std = eps, leaf_eps, min_std
        if freeze_leaves is True:
            frozen = {key for key in program.leaf_tables}
        elif freeze_leaves:
            names = set(freeze_leaves)
            frozen = {key for key in program.leaf_tables if key[0].name in names}
        else:
            frozen = set()
        self.frozen = frozen
        self.rows = WeightRows(program)
        self.totals = None

    # ---- E-step -----------------------------------------------------------------------
    def statistics(self, x) -> dict:
        """Sufficient statistics of one batch: edge counts, leaf statistics and the batch's log-likelihood."""
        program = self.program
        be, xp = program.backend, program.backend.xp
        x = program.prepare(x)
        ll = program._forward(x, "sum", cache=self.kind == "soft")
        if program.num_outputs != 1:
            raise ValueError("EM trains circuits with one root output; use a gradient objective for several roots")
        if self.kind == "soft":
            grads = program.backward(leaves=False)
            counts = grads.log_weights.copy()
            flows = grads.unit_flows
        else:
            forward_mode = self.inference if self.kind == "hard" else "sum"
            _, counts, active = program.top_down(x, "argmax", forward_mode=forward_mode,
                                                 weighted=self.kind == "hard", counts=True, return_active=True)
            flows = active.astype(be.dtype)
        leaves = {}
        for layer in program.input_layers:
            if layer.table_key in self.frozen:
                continue
            table = program.leaf_tables[layer.table_key]
            stats = layer.family.em_statistics(be, layer.params(table), layer.gather_inputs(x),
                                               flows[layer.start:layer.stop].T)
            acc = leaves.setdefault(layer.table_key, {k: xp.zeros((table_rows(table),) + v.shape[1:], dtype=v.dtype)
                                                      for k, v in stats.items()})
            for k, v in stats.items():
                layer.row_scatter.add(acc[k], v)
        return {"weights": counts, "leaves": leaves, "log_likelihood": float(ll.sum()), "count": int(x.shape[0])}

    # ---- M-step -----------------------------------------------------------------------
    def maximize(self, stats: dict):
        """Set the Program's parameters from (accumulated) statistics."""
        program = self.program
        xp = program.backend.xp
        new_weights = self.rows.smoothed(stats["weights"], self.eps)
        # a row that received no counts keeps its weights (only possible without smoothing)
        program.set_weights(xp.where(xp.isfinite(new_weights), new_weights, program.weights))
        for key, leaf_stats in stats["leaves"].items():
            family = key[0]
            table = program.leaf_tables[key]
            update = family.em_update(table, leaf_stats, eps=self.leaf_eps, min_std=self.min_std)
            program.leaf_tables[key] = {k: update.get(k, v).astype(v.dtype) for k, v in table.items()}

    def _blend(self, stats: dict):
        """Stepwise EM: parameters move a step towards the batch's M-step solution."""
        program = self.program
        eta = self.step_size
        old_weights = program.weights.copy()
        old_tables = {k: dict(v) for k, v in program.leaf_tables.items()}
        self.maximize(stats)
        program.set_weights((1 - eta) * old_weights + eta * program.weights)
        for key in stats["leaves"]:
            program.leaf_tables[key] = {k: _blend_array(old_tables[key][k], v, eta, k, key[0])
                                        for k, v in program.leaf_tables[key].items()}

    def step(self, x) -> float:
        """One batch: E-step, and an M-step in online mode. Returns the batch's summed log-likelihood."""
        stats = self.statistics(x)
        if self.mode == "full-batch":
            self.totals = stats if self.totals is None else _add(self.totals, stats)
        elif self.step_size is None:
            self.totals = stats if self.totals is None else _add(self.totals, stats)
            self.maximize(self.totals)
        else:
            self._blend(stats)
        return stats["log_likelihood"]

    def end_epoch(self):
        """Full-batch mode: the M-step from the epoch's statistics."""
        if self.mode == "full-batch" and self.totals is not None:
            self.maximize(self.totals)
            self.totals = None

    # ---- state for checkpoints --------------------------------------------------------
    def state(self) -> dict:
        if self.totals is None or self.mode == "full-batch":
            return {}
        out = {"weights": self.totals["weights"]}
        for i, key in enumerate(sorted(self.totals["leaves"], key=_key_order)):
            for name, value in self.totals["leaves"][key].items():
                out[f"leaves/{i}/{name}"] = value
        return out

    def load_state(self, arrays: dict):
        if "weights" not in arrays:
            self.totals = None
            return
        xp = self.program.backend.xp
        leaves = {}
        for i, key in enumerate(sorted((k for k in self.program.leaf_tables if k not in self.frozen), key=_key_order)):
            prefix = f"leaves/{i}/"
            found = {n[len(prefix):]: xp.asarray(v) for n, v in arrays.items() if n.startswith(prefix)}
            if found:
                leaves[key] = found
        self.totals = {"weights": xp.asarray(arrays["weights"]), "leaves": leaves, "log_likelihood": 0.0, "count": 0}


def _key_order(key):
    return (key[0].name, key[1], str(key[2]))


def table_rows(table: dict) -> int:
    return int(next(iter(table.values())).shape[0])


def _blend_array(old, new, eta, name, family):
    if name in family.param_names:
        return (1 - eta) * old + eta * new
    return new


def _add(a: dict, b: dict) -> dict:
    leaves = {key: {k: a["leaves"][key][k] + v for k, v in stats.items()} for key, stats in b["leaves"].items()}
    return {"weights": a["weights"] + b["weights"], "leaves": leaves,
            "log_likelihood": a["log_likelihood"] + b["log_likelihood"], "count": a["count"] + b["count"]}
