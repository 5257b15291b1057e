"""The compiled step of the cGMM forward pass: ``exp``, row sums and scaling in one call.

:meth:`pcircuits.dcgmm.CGMM._bounded_softmax` holds the NumPy steps this replaces (``exp``, the
row sums as a matrix-vector product, a broadcast division) and decides which of the two runs;
the compiled one needs :func:`pcircuits.jit.available`.
"""
from __future__ import annotations

import numpy as np

from .. import jit

__all__ = ["bounded_softmax", "compiled"]


def compiled(dtype) -> bool:
    """True when :func:`bounded_softmax` has a compiled kernel for arrays of ``dtype``."""
    return np.dtype(dtype) in _KERNELS


def bounded_softmax(scores: np.ndarray, shift, out: np.ndarray, sums: np.ndarray, min_sum: float) -> int:
    """``out = exp(scores - shift)`` scaled to rows that sum to one, except rows whose sum is below
    ``min_sum``, which keep their unscaled terms; returns the number of such rows.

    Parameters
    ----------
    scores : ndarray, shape (R, K)
        Log-scores, C-contiguous, float32 or float64 (:func:`compiled`); not ``out``.
    shift : float
        Subtracted from every score before ``exp`` (the layer's bound; 0 when already subtracted).
    out : ndarray, shape (R, K)
        The result, C-contiguous, of ``scores``' dtype.
    sums : ndarray, shape (R,)
        Receives each row's sum of ``exp(scores - shift)``.
    min_sum : float
    """
    dtype = scores.dtype
    return int(_KERNELS[dtype](scores, dtype.type(shift), out, sums, float(min_sum)))


def _make(exp, dtype):
    """The kernel for one float type: per block of rows, ``exp`` of the block (one vectorized
    loop, called rather than inlined so that it stays one), then each row's sum in eight partial
    sums (an order fixed here, so the compiler vectorizes it without reassociating) and the row
    scaled by the reciprocal."""
    zero, one = dtype(0.0), dtype(1.0)
    block_rows = 256

    @jit.kernel
    def exp_shifted(source, shift, target):
        for i in range(source.size):
            target[i] = exp(source[i] - shift)

    @jit.kernel(inline="always")
    def row_sum(row):
        t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = zero
        n = row.size
        for u in range(n // 8):
            j = np.uint64(8 * u)
            t0 += row[j]
            t1 += row[j + 1]
            t2 += row[j + 2]
            t3 += row[j + 3]
            t4 += row[j + 4]
            t5 += row[j + 5]
            t6 += row[j + 6]
            t7 += row[j + 7]
        total = ((t0 + t4) + (t2 + t6)) + ((t1 + t5) + (t3 + t7))
        for j in range(n - n % 8, n):
            total += row[np.uint64(j)]
        return total

    @jit.kernel
    def softmax(scores, shift, out, sums, min_sum):
        low = 0
        rows, k = scores.shape
        for start in range(0, rows, block_rows):
            stop = min(start + block_rows, rows)
            exp_shifted(scores[start:stop].reshape(-1), shift, out[start:stop].reshape(-1))
            for i in range(start, stop):
                row = out[i]
                total = row_sum(row)
                sums[i] = total
                if total < min_sum:
                    low += 1
                else:
                    scale = one / total
                    for j in range(k):
                        row[j] *= scale
        return low

    return softmax


_KERNELS = ({np.dtype(np.float32): _make(jit.exp32, np.float32), np.dtype(np.float64): _make(jit.exp64, np.float64)}
            if jit.available() else {})
