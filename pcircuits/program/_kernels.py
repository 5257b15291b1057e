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
def split_factors(left_exps, left_tops, left_child, right_exps, right_tops, right_child, left, right, top):
    h, n, _, batch = left.shape
    shifts = np.empty((n, batch), left.dtype)
    for g in range(h):
        for s in range(n):
            np.add(left_tops[left_child[g, s]], right_tops[right_child[g, s]], shifts[s])
        top[g] = shifts[0]
        for s in range(1, n):
            np.maximum(top[g], shifts[s], top[g])
        for s in range(n):
            scale, peak = shifts[s], top[g]
            for b in range(batch):
                scale[b] = exp_of(scale[b] - peak[b])
            source, target = left_exps[left_child[g, s]], left[g, s]
            for i in range(target.shape[0]):
                for b in range(batch):
                    target[i, b] = source[i, b] * scale[b]
            source, target = right_exps[right_child[g, s]], right[g, s]
            for j in range(target.shape[0]):
                for b in range(batch):
                    target[j, b] = source[j, b]


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


@jit.kernel(inline="always")
def _reached_rounds(round_sizes, a):
    """How many rounds reach unit ``a`` (round 0 reaches every unit; sizes never grow)."""
    rounds = 0
    while rounds < round_sizes.shape[0] and round_sizes[rounds] > a:
        rounds += 1
    return rounds


@jit.kernel
def segment_gather_sum(values, inputs, round_starts, round_sizes, a, b, out):
    batch = values.shape[1]
    first = round_starts[0] + a
    for i in range(b - a):
        source, target = values[inputs[first + i]], out[i]
        for k in range(batch):
            target[k] = source[k]
    for r in range(1, _reached_rounds(round_sizes, a)):
        first = round_starts[r] + a
        for i in range(min(b, round_sizes[r]) - a):
            source, target = values[inputs[first + i]], out[i]
            for k in range(batch):
                target[k] += source[k]


@jit.kernel
def segment_logsumexp(values, inputs, log_weights, round_starts, round_sizes, a, b, scores, top, total, out,
                      maximum, big):
    batch = values.shape[1]
    rounds = _reached_rounds(round_sizes, a)
    for r in range(rounds):
        first = round_starts[r] + a
        for i in range(min(b, round_sizes[r]) - a):
            source, target, weight = values[inputs[first + i]], scores[first + i], log_weights[first + i]
            for k in range(batch):
                target[k] = source[k] + weight
    first = round_starts[0] + a
    for i in range(b - a):
        top[i] = scores[first + i]
    for r in range(1, rounds):
        first = round_starts[r] + a
        for i in range(min(b, round_sizes[r]) - a):
            np.maximum(top[i], scores[first + i], top[i])
    if maximum:
        return
    for i in range(b - a):
        row = top[i]
        for k in range(batch):
            value = row[k]
            value = big if value > big else value
            row[k] = -big if value < -big else value
    for r in range(rounds):
        first = round_starts[r] + a
        for i in range(min(b, round_sizes[r]) - a):
            row, peak = scores[first + i], top[i]
            for k in range(batch):
                row[k] = exp_of(row[k] - peak[k])
    first = round_starts[0] + a
    for i in range(b - a):
        total[i] = scores[first + i]
    for r in range(1, rounds):
        first = round_starts[r] + a
        for i in range(min(b, round_sizes[r]) - a):
            row, sums = scores[first + i], total[i]
            for k in range(batch):
                sums[k] += row[k]
    for i in range(b - a):
        sums, peak, target = total[i], top[i], out[i]
        for k in range(batch):
            target[k] = log_of(sums[k]) + peak[k]
