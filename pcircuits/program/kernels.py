"""Fused elementwise steps of the sum layers: one compiled loop each on the host (optional Numba,
:mod:`pcircuits.jit`), with the NumPy definition beside it that every other case runs.

A layer's chain of small NumPy operations (a maximum, a shift, an ``exp``) reads and writes its
arrays once per operation and pays a Python call for each; on the node-sized arrays of a PD
circuit's fused sum layers (a few thousand values per node at batch 512, a few dozen at batch 1)
the calls and passes cost more than the arithmetic. Each function here is one such chain, one
definition: :func:`split_factors_numpy` is what it computes, and the compiled loop computes the
same expressions in the same order (within the 1.5 ulps of :func:`pcircuits.jit.exp`).
"""
from __future__ import annotations

import numpy as np

from .. import jit

__all__ = ["gather_sum", "gather_sum_numpy", "max_shifted_exp", "max_shifted_exp_numpy", "split_factors",
           "split_factors_numpy", "outer_product", "outer_product_numpy", "log_plus", "log_plus_numpy", "safe_max",
           "segment_gather_sum", "segment_logsumexp"]


_LOOPS = {}


def _loop(name: str):
    """The compiled loop ``name`` of :mod:`._kernels` (Numba's dispatcher, looked up once)."""
    loop = _LOOPS.get(name)
    if loop is None:
        from . import _kernels
        loop = _LOOPS[name] = getattr(_kernels, name).dispatcher
    return loop


def safe_max(xp, a, axis):
    """The largest entry along ``axis``, 0 where it is not finite (a shift that keeps ``a - max``
    finite wherever ``a`` is)."""
    m = a.max(axis=axis)
    return xp.where(xp.isfinite(m), m, 0)


def max_shifted_exp_numpy(backend, values, rows, out, top) -> None:
    """NumPy definition of :func:`max_shifted_exp`."""
    xp = backend.xp
    backend.take_rows(values, rows, out)
    top[...] = safe_max(xp, out, axis=1)
    out -= top[:, None, :]
    xp.exp(out, out=out)


def max_shifted_exp(backend, values, rows, out, top) -> None:
    """The max-shifted exponentials of a dense sum layer's inputs.

    Parameters
    ----------
    backend : Backend
    values : array, shape (units, B)
    rows : int64 array, shape (h, I)
        The input rows of ``h`` nodes (in range).
    out : array, shape (h, I, B)
        Receives ``exp(values[rows] - top[:, None, :])``.
    top : array, shape (h, B)
        Receives every node's largest input value (0 where it is not finite).
    """
    if jit.takes(backend, values, out, top) and rows.flags.c_contiguous:
        _loop("max_shifted_exp")(values, rows, out, top)
    else:
        max_shifted_exp_numpy(backend, values, rows, out, top)


def gather_sum_numpy(backend, values, rows, out) -> None:
    """NumPy definition of :func:`gather_sum`."""
    backend.take_rows(values, rows[:, 0], out)
    for j in range(1, rows.shape[1]):
        out += values.take(rows[:, j], axis=0)


def gather_sum(backend, values, rows, out) -> None:
    """A product layer's log-values: ``out[u] = values[rows[u, 0]] + values[rows[u, 1]] + ...``,
    added in that order.

    Parameters
    ----------
    backend : Backend
    values : array, shape (units, B)
    rows : int64 array, shape (U, J)
        The input rows of ``U`` products (in range; padding points at a row of zeros).
    out : array, shape (U, B)
    """
    if jit.takes(backend, values, out) and rows.flags.c_contiguous:
        _loop("gather_sum")(values, rows, out)
    else:
        gather_sum_numpy(backend, values, rows, out)


def split_factors_numpy(backend, left_exps, left_tops, left_child, right_exps, right_tops, right_child,
                        left, right, top) -> None:
    """NumPy definition of :func:`split_factors`."""
    xp = backend.xp
    shifts = left_tops[left_child] + right_tops[right_child]          # (h, n, B)
    shifts.max(axis=1, out=top)
    scale = xp.exp(shifts - top[:, None, :])
    xp.multiply(left_exps[left_child], scale[:, :, None, :], out=left)
    backend.take_rows(right_exps, right_child, right)


def split_factors(backend, left_exps, left_tops, left_child, right_exps, right_tops, right_child,
                  left, right, top) -> None:
    """The factors of a fused sum layer's products, from its children's max-shifted exponentials.

    A child (a node of ``K`` units) appears in several splits; its exponentials shifted by its
    own largest unit, ``exps = exp(values - tops)`` (:func:`max_shifted_exp`), are computed
    once, and each split only rescales them.

    Parameters
    ----------
    backend : Backend
    left_exps, right_exps : arrays, shape (CL, KL, B) and (CR, KR, B)
        The children's exponentials (the same array when both sides share one table).
    left_tops, right_tops : arrays, shape (CL, B) and (CR, B)
        Every child's shift (its largest value, 0 where not finite).
    left_child, right_child : int64 arrays, shape (h, n)
        The left and right child of ``h`` nodes' ``n`` splits.
    left : array, shape (h, n, KL, B)
        Receives ``left_exps[left_child] * exp(ms - top)``, with ``ms`` (h, n, B) the sum of the
        split's two shifts.
    right : array, shape (h, n, KR, B)
        Receives ``right_exps[right_child]``.
    top : array, shape (h, B)
        Receives ``max over splits of ms``: the outer product ``left[:, s, i] * right[:, s, j]``
        is then ``exp(left_i + right_j - top)``, and every split's largest product is at most 1.
    """
    arrays = (left_exps, left_tops, right_exps, right_tops, left, right, top)
    if jit.takes(backend, *arrays) and left_child.flags.c_contiguous and right_child.flags.c_contiguous:
        _loop("split_factors")(left_exps, left_tops, left_child, right_exps, right_tops, right_child, left, right, top)
    else:
        split_factors_numpy(backend, left_exps, left_tops, left_child, right_exps, right_tops, right_child,
                            left, right, top)


def outer_product_numpy(xp, left, right, out) -> None:
    """NumPy definition of :func:`outer_product`."""
    xp.multiply(left[:, :, :, None, :], right[:, :, None, :, :], out=out)


def outer_product(backend, left, right, out) -> None:
    """The products of a fused sum layer's nodes: ``out[g, s, i, j] = left[g, s, i] * right[g, s, j]``.

    Parameters
    ----------
    backend : Backend
    left, right : arrays, shape (h, n, KL, B) and (h, n, KR, B)
        The children's factors of ``h`` nodes' ``n`` splits (:func:`split_factors`).
    out : array, shape (h, n, KL, KR, B)
        Receives the products (a broadcast multiplication in NumPy writes it at a third of the
        speed of the compiled loop, whose inner loop runs over the batch).
    """
    if jit.takes(backend, left, right, out):
        _loop("outer_product")(left, right, out)
    else:
        outer_product_numpy(backend.xp, left, right, out)


def log_plus_numpy(xp, S, shift, out) -> bool:
    """NumPy definition of :func:`log_plus`."""
    xp.log(S, out=out)
    out += shift[:, None, :]
    return S.size > 0 and bool(S.min() < np.finfo(S.dtype).tiny)


def log_plus(backend, S, shift, out) -> bool:
    """``out = log(S) + shift[:, None, :]`` for ``S`` and ``out`` (h, K, B), ``shift`` (h, B): a
    max-shifted sum's log-value (``log(0) = -inf``, no warning). Returns whether some entry of
    ``S`` is below the smallest normal float (whose value the caller may recompute exactly)."""
    if jit.takes(backend, S, shift, out):
        return _loop("log_plus")(S, shift, out)
    with np.errstate(divide="ignore"):
        return log_plus_numpy(backend.xp, S, shift, out)


def segment_logsumexp(backend, values, inputs, log_weights, round_starts, round_sizes, a: int, b: int, scores, top,
                      total, out, maximum: bool) -> bool:
    """A scalar sum layer's block of units ``a:b`` in one compiled loop, when it applies (host
    arrays of one float dtype, C-contiguous); returns False, computing nothing, otherwise.

    It computes what :meth:`pcircuits.program.layers.SegmentSumLayer._reduce_block` (the NumPy
    definition) computes, operation for operation: every edge's score ``values[inputs[e]] +
    log_weights[e]`` into ``scores`` (E, B), each unit's largest score into ``top`` (b - a, B) (the
    block's units; with ``maximum`` into ``out`` and nothing else), the shift clipped to the
    largest finite values, the shifted exponentials in place, their sums into ``total`` and
    ``log(total) + top`` into ``out`` (b - a, B). ``round_starts`` and ``round_sizes`` (int64,
    (R,)) are the layer's rounds: edge ``round_starts[r] + u`` is the ``r``-th input of unit ``u``.
    """
    if not (jit.takes(backend, values, log_weights, scores, top, total, out) and inputs.flags.c_contiguous):
        return False
    big = np.finfo(values.dtype).max
    _loop("segment_logsumexp")(values, inputs, log_weights, round_starts, round_sizes, a, b, scores, top, total,
                               out, maximum, values.dtype.type(big))
    return True


def segment_gather_sum(backend, values, inputs, round_starts, round_sizes, a: int, b: int, out) -> bool:
    """A scalar product layer's block of units ``a:b`` in one compiled loop, when it applies (as
    :func:`segment_logsumexp`); returns False, computing nothing, otherwise.

    ``out`` (b - a, B) receives every unit's inputs' rows of ``values`` added round by round,
    as :meth:`pcircuits.program.layers.SegmentProductLayer._add_block` (the NumPy definition) adds them.
    """
    if not (jit.takes(backend, values, out) and inputs.flags.c_contiguous):
        return False
    _loop("segment_gather_sum")(values, inputs, round_starts, round_sizes, a, b, out)
    return True
