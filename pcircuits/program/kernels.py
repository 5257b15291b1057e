"""Fused elementwise steps of the sum layers: one compiled loop each on the host (optional Numba,
:mod:`pcircuits.jit`), with the NumPy definition beside it that every other case runs.

A layer's chain of small NumPy operations (a maximum, a shift, an ``exp``) reads and writes its
arrays once per operation and pays a Python call for each; on the node-sized arrays of a PD
circuit's fused sum layers (a few thousand values per node at batch 512, a few dozen at batch 1)
the calls and passes cost more than the arithmetic. Each function here is one such chain, one
definition: :func:`outer_factors_numpy` is what it computes, and the compiled loop computes the
same expressions in the same order (within the 1.5 ulps of :func:`pcircuits.jit.exp`).
"""
from __future__ import annotations

import numpy as np

from .. import jit

__all__ = ["gather_sum", "gather_sum_numpy", "max_shifted_exp", "max_shifted_exp_numpy", "outer_factors", "outer_factors_numpy",
           "outer_product", "outer_product_numpy", "log_plus",
           "log_plus_numpy", "safe_max"]


_LOOPS = {}


def _loop(name: str):
    """The compiled loop ``name`` of :mod:`._kernels` (Numba's dispatcher, looked up once)."""
    loop = _LOOPS.get(name)
    if loop is None:
        from . import _kernels
        loop = _LOOPS[name] = getattr(_kernels, name).dispatcher
    return loop


def _host_contiguous(backend, *arrays) -> bool:
    """Whether the compiled loops take these arrays: host NumPy arrays, C-contiguous, float32 or float64."""
    if not (backend.on_host and jit.available()):
        return False
    dtype = arrays[0].dtype
    if dtype != np.float32 and dtype != np.float64:
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


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
    if _host_contiguous(backend, values, out, top) and rows.flags.c_contiguous:
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
    if _host_contiguous(backend, values, out) and rows.flags.c_contiguous:
        _loop("gather_sum")(values, rows, out)
    else:
        gather_sum_numpy(backend, values, rows, out)


def outer_factors_numpy(backend, values, left_rows, right_rows, left, right, top) -> None:
    """NumPy definition of :func:`outer_factors`."""
    xp = backend.xp
    backend.take_rows(values, left_rows, left)
    backend.take_rows(values, right_rows, right)
    ml = safe_max(xp, left, axis=2)                             # (h, n, B)
    mr = safe_max(xp, right, axis=2)
    ms = ml + mr
    ms.max(axis=1, out=top)
    left -= (ml - (ms - top[:, None, :]))[:, :, None, :]        # folds exp(ms - top) into the left factor
    xp.exp(left, out=left)
    right -= mr[:, :, None, :]
    xp.exp(right, out=right)


def outer_factors(backend, values, left_rows, right_rows, left, right, top) -> None:
    """The max-shifted exponentials of a fused sum layer's children.

    Parameters
    ----------
    backend : Backend
    values : array, shape (units, B)
        Log-values of the circuit's units.
    left_rows, right_rows : int64 arrays, shape (h, n, KL) and (h, n, KR)
        The rows of the left and right children of ``h`` nodes' ``n`` splits (in range).
    left : array, shape (h, n, KL, B)
        Receives ``exp(values[left_rows] - ml + ms - top)``, with ``ml`` (h, n, B) the largest
        left value of each split (0 where it is not finite) and ``ms = ml + mr``.
    right : array, shape (h, n, KR, B)
        Receives ``exp(values[right_rows] - mr)``.
    top : array, shape (h, B)
        Receives ``max over splits of ms``: the outer product ``left[:, s, i] * right[:, s, j]``
        is then ``exp(left_i + right_j - top)``.
    """
    if _host_contiguous(backend, values, left, right, top) and left_rows.flags.c_contiguous \
            and right_rows.flags.c_contiguous:
        _loop("outer_factors")(values, left_rows, right_rows, left, right, top)
    else:
        outer_factors_numpy(backend, values, left_rows, right_rows, left, right, top)


def outer_product_numpy(xp, left, right, out) -> None:
    """NumPy definition of :func:`outer_product`."""
    xp.multiply(left[:, :, :, None, :], right[:, :, None, :, :], out=out)


def outer_product(backend, left, right, out) -> None:
    """The products of a fused sum layer's nodes: ``out[g, s, i, j] = left[g, s, i] * right[g, s, j]``.

    Parameters
    ----------
    backend : Backend
    left, right : arrays, shape (h, n, KL, B) and (h, n, KR, B)
        The children's factors of ``h`` nodes' ``n`` splits (:func:`outer_factors`).
    out : array, shape (h, n, KL, KR, B)
        Receives the products (a broadcast multiplication in NumPy writes it at a third of the
        speed of the compiled loop, whose inner loop runs over the batch).
    """
    if _host_contiguous(backend, left, right, out):
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
    if _host_contiguous(backend, S, shift, out):
        return _loop("log_plus")(S, shift, out)
    with np.errstate(divide="ignore"):
        return log_plus_numpy(backend.xp, S, shift, out)
