"""The compiled loops of :mod:`pcircuits.program.kernels` (imports Numba: imported on first use,
only when :func:`pcircuits.jit.available`). Each computes what its NumPy definition in
:mod:`~pcircuits.program.kernels` computes, expression for expression, with the batch axis
innermost so that the compiler vectorizes it."""
from __future__ import annotations

import numpy as np

from .. import jit

_scalar = jit._compiled()
exp_of, log_of = _scalar.exp_of, _scalar.log_of


@jit.kernel(inline="always")
def _gather_safe_max(values, rows, out, top):
    """``out[i] = values[rows[i]]`` and ``top[b]`` the largest ``out[i, b]`` over ``i`` (NaN if one
    is NaN, as ``np.max``), then 0 where that is not finite."""
    batch = out.shape[1]
    for i in range(rows.shape[0]):
        source, target = values[rows[i]], out[i]
        for b in range(batch):
            target[b] = source[b]
    top[:] = out[0]
    for i in range(1, rows.shape[0]):
        np.maximum(top, out[i], top)        # vectorized, where a compare-and-select loop is not
    for b in range(batch):
        top[b] = top[b] if abs(top[b]) < np.inf else 0


@jit.kernel
def max_shifted_exp(values, rows, out, top):
    h, inputs, batch = out.shape
    for g in range(h):
        _gather_safe_max(values, rows[g], out[g], top[g])
        for i in range(inputs):
            for b in range(batch):
                out[g, i, b] = exp_of(out[g, i, b] - top[g, b])


@jit.kernel
def gather_sum(values, rows, out):
    units, width = rows.shape
    batch = out.shape[1]
    for u in range(units):
        target, source = out[u], values[rows[u, 0]]
        for b in range(batch):
            target[b] = source[b]
        for j in range(1, width):
            source = values[rows[u, j]]
            for b in range(batch):
                target[b] += source[b]


@jit.kernel
def outer_factors(values, left_rows, right_rows, left, right, top):
    h, n, _, batch = left.shape
    ml = np.empty((n, batch), left.dtype)
    mr = np.empty((n, batch), left.dtype)
    shift = np.empty(batch, left.dtype)
    for g in range(h):
        for s in range(n):
            _gather_safe_max(values, left_rows[g, s], left[g, s], ml[s])
            _gather_safe_max(values, right_rows[g, s], right[g, s], mr[s])
        for b in range(batch):
            top[g, b] = ml[0, b] + mr[0, b]
        for s in range(1, n):
            for b in range(batch):
                ms = ml[s, b] + mr[s, b]
                top[g, b] = ms if ms > top[g, b] else top[g, b]
        for s in range(n):
            for b in range(batch):
                shift[b] = ml[s, b] - ((ml[s, b] + mr[s, b]) - top[g, b])
            block = left[g, s]
            for i in range(block.shape[0]):
                for b in range(batch):
                    block[i, b] = exp_of(block[i, b] - shift[b])
            block = right[g, s]
            for j in range(block.shape[0]):
                for b in range(batch):
                    block[j, b] = exp_of(block[j, b] - mr[s, b])


@jit.kernel
def outer_product(left, right, out):
    h, n, kl, batch = left.shape
    kr = right.shape[2]
    for g in range(h):
        for s in range(n):
            for i in range(kl):
                a = left[g, s, i]
                for j in range(kr):
                    c = right[g, s, j]
                    row = out[g, s, i, j]
                    for b in range(batch):
                        row[b] = a[b] * c[b]


@jit.kernel
def log_plus(S, shift, out):
    h, units, batch = S.shape
    tiny = np.finfo(S.dtype).tiny
    small = False
    for g in range(h):
        for k in range(units):
            row, top, target = S[g, k], shift[g], out[g, k]
            for b in range(batch):
                target[b] = log_of(row[b]) + top[b]
            # a separate loop: counting inside the log's loop keeps the compiler from vectorizing it
            count = 0
            for b in range(batch):
                count += 1 if row[b] < tiny else 0
            small = small or count > 0
    return small
