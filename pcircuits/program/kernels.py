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

__all__ = ["outer_factors", "outer_factors_numpy", "log_plus", "log_plus_numpy", "safe_max"]


def _compiled():
    from . import _kernels
    return _kernels


def _host_contiguous(backend, *arrays) -> bool:
    """Whether the compiled loops take these arrays: host NumPy arrays, C-contiguous, float32 or float64."""
    if not (backend.on_host and jit.available()):
        return False
    dtype = arrays[0].dtype
    return dtype in (np.float32, np.float64) and all(
        type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous for a in arrays)


def safe_max(xp, a, axis):
    """The largest entry along ``axis``, 0 where it is not finite (a shift that keeps ``a - max``
    finite wherever ``a`` is)."""
    m = a.max(axis=axis)
    return xp.where(xp.isfinite(m), m, 0)


def outer_factors_numpy(xp, left, right, top) -> None:
    """NumPy definition of :func:`outer_factors`."""
    ml = safe_max(xp, left, axis=2)                            # (h, n, B)
    mr = safe_max(xp, right, axis=2)
    ms = ml + mr
    ms.max(axis=1, out=top)
    left -= (ml - (ms - top[:, None, :]))[:, :, None, :]        # folds exp(ms - top) into the left factor
    xp.exp(left, out=left)
    right -= mr[:, :, None, :]
    xp.exp(right, out=right)


def outer_factors(backend, left, right, top) -> None:
    """The max-shifted exponentials of a fused sum layer's children, in place.

    Parameters
    ----------
    backend : Backend
    left : array, shape (h, n, KL, B)
        Log-values of the left children of ``h`` nodes' ``n`` splits; replaced by
        ``exp(left - ml + ms - top)``, with ``ml`` (h, n, B) the largest left value of each split
        (0 where it is not finite) and ``ms = ml + mr``.
    right : array, shape (h, n, KR, B)
        Likewise; replaced by ``exp(right - mr)``.
    top : array, shape (h, B)
        Receives ``max over splits of ms``: the outer product ``left[:, s, i] * right[:, s, j]``
        is then ``exp(left_i + right_j - top)``.
    """
    if _host_contiguous(backend, left, right, top):
        _compiled().outer_factors(left, right, top)
    else:
        outer_factors_numpy(backend.xp, left, right, top)


def log_plus_numpy(xp, S, shift, out) -> None:
    """NumPy definition of :func:`log_plus`."""
    xp.log(S, out=out)
    out += shift[:, None, :]


def log_plus(backend, S, shift, out) -> None:
    """``out = log(S) + shift[:, None, :]`` for ``S`` and ``out`` (h, K, B), ``shift`` (h, B): a
    max-shifted sum's log-value (``log(0) = -inf``, no warning)."""
    if _host_contiguous(backend, S, shift, out):
        _compiled().log_plus(S, shift, out)
    else:
        with np.errstate(divide="ignore"):
            log_plus_numpy(backend.xp, S, shift, out)
