"""Row structure of a Program's flat weight vector: segmented sums, normalization, smoothing.

Every sum unit's weights form one *row* of the flat vector ``program.weights``. The layerizer
stores each :class:`~pcircuits.SumWeights` block row-major at ``plan.weight_offsets[i]``, so
every row is a contiguous segment. Consecutive blocks whose rows have the same length form a
*run*, a ``(rows, length)`` matrix view of the flat vector; when a circuit has few runs (the
architectures' layers: one or a few per layer) every row reduction is a reduction along the
last axis of these views. Otherwise all rows are reduced at once with one segmented reduction
(``ufunc.reduceat`` on NumPy, a scatter on CuPy). Neither loops over nodes or units. Entries
outside a sum's mask are not weights: they stay exactly 0 (``-inf`` in log space).
"""
from __future__ import annotations

import numpy as np

__all__ = ["WeightRows", "additive_smoothing"]

# above this many runs of equal row length the segmented reduction is used instead of views
_MAX_RUNS = 64


def additive_smoothing(counts, *, eps: float | None = None, axis: int = -1) -> np.ndarray:
    """DGC-SPN's smoothed normalization of edge counts, one row along ``axis``.

    ``w_i = (c_i + e) / (sum_j c_j + |w| e)`` with ``e = 1e-2 / |w|`` by default (``|w|`` the
    number of weights of the row), so that the smoothing adds a total pseudo-count of ``1e-2``
    to every row. DGC-SPN 5.1 prints the denominator as ``sum_j c_j + e``; taken literally its
    rows sum to ``(C + |w| e) / (C + e) != 1`` (a sum that received no counts would get every
    weight equal to 1). The numerators, hence the ratios between the weights of a row, are the
    paper's; the denominator is the one that normalizes them.

    Parameters
    ----------
    counts : array_like
        Non-negative (expected or hard) edge counts.
    eps : float, optional
        Pseudo-count per weight; default ``1e-2 / |w|``.
    axis : int
        The axis along which a row's weights lie.
    """
    c = np.asarray(counts, dtype=np.float64)
    if np.any(c < 0):
        raise ValueError(f"additive_smoothing: counts must be non-negative, got minimum {c.min()}")
    size = c.shape[axis]
    e = 1e-2 / size if eps is None else float(eps)
    return (c + e) / (c.sum(axis=axis, keepdims=True) + size * e)


class WeightRows:
    """Which row every flat weight belongs to, and which weights exist (masks).

    Parameters
    ----------
    program : Program

    Attributes
    ----------
    num_rows : int
        Number of sum units with their own weights (tied weights counted once).
    rows : backend int array, shape (num_weights,)
        Row of every flat weight.
    row_sizes : backend array, shape (num_weights,)
        ``|w|``: the number of existing (unmasked) weights of each weight's row.
    allowed : backend bool array, shape (num_weights,)
        False where a mask removes the edge.
    """

    def __init__(self, program):
        be = program.backend
        plan = program.plan
        shapes = np.array([p.values.shape for p in plan.sum_params], dtype=np.int64).reshape(-1, 2)
        units, inputs = shapes[:, 0], shapes[:, 1]
        offsets = np.asarray(plan.weight_offsets, dtype=np.int64)
        if not np.array_equal(np.diff(offsets), units * inputs):
            raise ValueError("WeightRows: the plan's weight blocks are not contiguous")
        self.backend = be
        self.num_rows = int(units.sum())
        row_length = np.repeat(inputs, units)                                         # (R,)
        local_row = np.arange(self.num_rows) - np.repeat(np.cumsum(units) - units, units)
        self.starts_np = np.repeat(offsets[:-1], units) + local_row * row_length       # (R,)
        rows = np.repeat(np.arange(self.num_rows), row_length)
        allowed = np.ones(int(offsets[-1]), dtype=bool)
        for p, lo in zip(plan.sum_params, offsets[:-1]):
            if p.mask is not None:
                allowed[lo:lo + p.mask.size] = p.mask.ravel()
        sizes = np.add.reduceat(allowed.astype(np.int64), self.starts_np) if self.num_rows else np.zeros(0, np.int64)
        self.rows_np = rows
        self.allowed_np = allowed
        self.masked = not bool(allowed.all())
        self.rows = be.index(rows)
        self.starts = be.index(self.starts_np)
        self.row_sizes = be.asarray(sizes[rows])
        self.allowed = be.xp.asarray(allowed)
        self.runs = _runs(offsets, inputs)

    # ---- row views ----------------------------------------------------------------------
    def _views(self, *arrays):
        """Per run, the ``(rows, length)`` views of each flat array."""
        for lo, hi, length in self.runs:
            yield tuple(a[lo:hi].reshape(-1, length) for a in arrays)

    def _rowwise(self, values, op):
        """``op(view) -> view-shaped result`` applied run by run into a new flat array."""
        out = self.backend.xp.empty_like(values)
        for v, o in self._views(values, out):
            o[...] = op(v)
        return out

    @property
    def num_weights(self) -> int:
        return int(self.allowed_np.shape[0])

    # ---- segmented reductions -------------------------------------------------------------
    def row_totals(self, values):
        """Sum of every row, shape (num_rows,)."""
        xp = self.backend.xp
        if self.num_rows == 0:
            return xp.zeros(0, dtype=values.dtype)
        if self.runs is not None:
            return xp.concatenate([v.sum(axis=1) for (v,) in self._views(values)])
        if self.backend.on_host:
            return np.add.reduceat(values, self.starts_np)
        return xp.bincount(self.rows, weights=values, minlength=self.num_rows).astype(values.dtype)

    def row_sum(self, values):
        """Sum of each row, broadcast back to the flat layout (num_weights,)."""
        if self.runs is not None and self.num_rows:
            return self._rowwise(values, lambda v: v.sum(axis=1, keepdims=True))
        return self.row_totals(values)[self.rows]

    def row_max(self, values):
        """Maximum of each row over its existing weights, broadcast back to the flat layout."""
        xp = self.backend.xp
        if self.num_rows == 0:
            return values
        masked = xp.where(self.allowed, values, -xp.inf) if self.masked else values
        if self.runs is not None:
            return self._rowwise(masked, lambda v: v.max(axis=1, keepdims=True))
        if self.backend.on_host:
            return np.maximum.reduceat(masked, self.starts_np)[self.rows]
        top = xp.full(self.num_rows, -xp.inf, dtype=values.dtype)
        self.backend.scatter_max(top, self.rows, masked)
        return top[self.rows]

    # ---- normalizations ---------------------------------------------------------------------
    def normalize(self, values):
        """Rows scaled to sum to 1; weights outside a mask are 0."""
        xp = self.backend.xp
        values = xp.where(self.allowed, values, 0)
        return values / self.row_sum(values)

    def smoothed(self, counts, eps: float | None = None, previous=None):
        """Weights from edge counts with DGC-SPN's additive smoothing (see :func:`additive_smoothing`).

        ``w_i = (c_i + e) / (sum_j c_j + |w| e)`` per row, ``e = eps`` or by default
        ``1e-2 / |w|``; masked entries stay 0. A row with no counts and ``eps = 0`` has no
        defined weights: it keeps ``previous`` (or becomes uniform without it).
        """
        xp = self.backend.xp
        e = 1e-2 / self.row_sizes if eps is None else eps
        numerators = xp.where(self.allowed, counts + e, 0)
        totals = self.row_sum(numerators)
        empty = totals <= 0
        if bool(empty.any()):
            fallback = previous if previous is not None else self.normalize(xp.ones_like(numerators))
            return xp.where(empty, fallback, numerators / xp.where(empty, 1, totals))
        return numerators / totals

    def softmax(self, logits, *, return_log: bool = False):
        """Per-row softmax of log-space parameters; masked entries are exactly 0.

        With ``return_log`` also the log-softmax (``-inf`` where masked), computed as
        ``logits - max - log(sum exp)`` rather than as the log of the weights.
        """
        xp = self.backend.xp
        if self.runs is not None and not self.masked and self.num_rows:
            weights, log_weights = xp.empty_like(logits), xp.empty_like(logits)
            for v, w, lw in self._views(logits, weights, log_weights):
                xp.subtract(v, v.max(axis=1, keepdims=True), out=lw)
                xp.exp(lw, out=w)
                total = w.sum(axis=1, keepdims=True)
                w /= total
                lw -= xp.log(total)
            return (weights, log_weights) if return_log else weights
        shifted = xp.where(self.allowed, logits - self.row_max(logits), -xp.inf)
        e = xp.exp(shifted)
        total = self.row_sum(e)
        weights = e / total
        if not return_log:
            return weights
        with np.errstate(divide="ignore"):
            return weights, xp.where(self.allowed, shifted - xp.log(total), -xp.inf)

    def logits(self, weights, floor: float = 1e-30):
        """Log-space parameters of normalized weights: ``log w`` (``-inf`` where masked).

        Existing weights below ``floor`` are raised to it, so that no edge is shut for good
        (a logit of ``-inf`` would never move under a gradient step).
        """
        xp = self.backend.xp
        return xp.where(self.allowed, xp.log(xp.maximum(weights, floor)), -xp.inf)

    def logit_gradient(self, grad_log_weights, weights):
        """Gradient w.r.t. the logits of ``w = softmax(logits)`` from the gradient w.r.t. ``log w``.

        ``dL/dtheta_j = g_j - w_j * sum_{k in row(j)} g_k`` (0 for masked entries).
        """
        xp = self.backend.xp
        if not self.masked:
            out = self.row_sum(grad_log_weights)
            out *= weights
            return xp.subtract(grad_log_weights, out, out=out)
        g = xp.where(self.allowed, grad_log_weights, 0)
        return xp.where(self.allowed, g - weights * self.row_sum(g), 0)


def _runs(offsets: np.ndarray, row_lengths: np.ndarray):
    """``(lo, hi, length)`` of each run of consecutive weight blocks with equal row length, or
    None when there are more than ``_MAX_RUNS`` runs (or none)."""
    if len(row_lengths) == 0:
        return None
    change = np.flatnonzero(np.diff(row_lengths)) + 1
    if len(change) + 1 > _MAX_RUNS:
        return None
    first = np.r_[0, change]
    last = np.r_[change, len(row_lengths)]
    return [(int(offsets[a]), int(offsets[b]), int(row_lengths[a])) for a, b in zip(first, last)]
