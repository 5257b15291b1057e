"""Row structure of a Program's flat weight vector: segmented sums and normalizations.

Every sum unit's weights form one *row* of the flat vector; these helpers normalize all rows
at once with segmented reductions (no Python loop over nodes or units).
"""
from __future__ import annotations

import numpy as np

__all__ = ["WeightRows"]


class WeightRows:
    """Which row every flat weight belongs to, and which weights exist (masks).

    Parameters
    ----------
    program : Program
    """

    def __init__(self, program):
        be = program.backend
        rows, sizes, allowed = [], [], []
        first_row = 0
        for params in program.plan.sum_params:
            num_units, num_inputs = params.values.shape
            mask = np.ones((num_units, num_inputs), dtype=bool) if params.mask is None else params.mask
            rows.append(np.repeat(np.arange(first_row, first_row + num_units), num_inputs))
            sizes.append(np.repeat(mask.sum(axis=1), num_inputs))
            allowed.append(mask.ravel())
            first_row += num_units
        self.backend = be
        self.num_rows = first_row
        self.rows = be.index(np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64))
        self.row_sizes = be.asarray(np.concatenate(sizes) if sizes else np.zeros(0))
        self.allowed = be.xp.asarray(np.concatenate(allowed) if allowed else np.zeros(0, dtype=bool))

    def row_sum(self, values):
        """Sum of each row, broadcast back to the flat layout."""
        xp = self.backend.xp
        totals = xp.bincount(self.rows, weights=values, minlength=self.num_rows)
        return totals[self.rows].astype(values.dtype)

    def row_max(self, values):
        """Maximum of each row (over existing weights), broadcast back to the flat layout."""
        xp = self.backend.xp
        order_max = xp.full(self.num_rows, -xp.inf, dtype=values.dtype)
        if self.backend.name == "numpy":
            np.maximum.at(order_max, self.rows, np.where(self.allowed, values, -np.inf))
        else:
            import cupyx
            cupyx.scatter_max(order_max, self.rows, xp.where(self.allowed, values, -xp.inf))
        return order_max[self.rows]

    def normalize(self, values):
        """Rows scaled to sum to 1; weights outside a mask stay 0."""
        xp = self.backend.xp
        values = xp.where(self.allowed, values, 0)
        return values / self.row_sum(values)

    def smoothed(self, counts, eps=None):
        """DGC-SPN's additive smoothing, ``w_i = (c_i + e) / (sum_j c_j + e)``, then renormalized.

        ``e = eps`` or, by default, ``1e-2 / |w|`` with ``|w|`` the number of weights in the row
        (DGC-SPN 5.1). Taken literally the formula's rows sum to ``(C + |w| e) / (C + e)``, not 1;
        the rows are divided by that sum, which keeps the formula's ratios between the weights of
        a row (the relative effect of the smoothing) and makes the circuit normalized.
        """
        e = 1e-2 / self.row_sizes if eps is None else eps
        counts = self.backend.xp.where(self.allowed, counts, 0)
        raw = (counts + e) / (self.row_sum(counts) + e)
        return self.normalize(raw)

    def softmax(self, logits):
        """Per-row softmax of log-space parameters (masked entries are 0)."""
        xp = self.backend.xp
        shifted = xp.where(self.allowed, logits - self.row_max(logits), -xp.inf)
        e = xp.exp(shifted)
        return e / self.row_sum(e)
