"""Duplicate-safe scatter-add along the first axis: ``dst[targets[e]] += src[e]``.

Built once per layer at compile time. When the targets are unique a plain fancy-index add is
exact; otherwise the sources are permuted so equal targets are adjacent and summed with one
segmented reduction (NumPy's ``add.reduceat``), or with CuPy's atomic ``scatter_add``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Scatter"]


class Scatter:
    """Scatter-add of rows ``src[e]`` into rows ``dst[targets[e]]``.

    Parameters
    ----------
    backend : Backend
    targets : ndarray of int, shape (E,)
    """

    def __init__(self, backend, targets: np.ndarray):
        targets = np.asarray(targets, dtype=np.int64).ravel()
        self.backend = backend
        self.num_sources = len(targets)
        order = np.argsort(targets, kind="stable")
        sorted_targets = targets[order]
        starts = np.flatnonzero(np.r_[True, sorted_targets[1:] != sorted_targets[:-1]]) if len(targets) else \
            np.zeros(0, dtype=np.int64)
        self.unique = len(starts) == len(targets)
        if self.unique:
            self.targets = backend.index(targets)
        elif backend.name == "numpy":
            self.order = order
            self.starts = starts
            self.targets = sorted_targets[starts]
        else:
            self.targets = backend.index(targets)

    def add(self, dst, src):
        """``dst[targets] += src`` with duplicates accumulated; ``src`` has shape (E, ...)."""
        if self.num_sources == 0:
            return
        if self.unique:
            dst[self.targets] += src
        elif self.backend.name == "numpy":
            dst[self.targets] += np.add.reduceat(src[self.order], self.starts, axis=0)
        else:
            import cupyx
            cupyx.scatter_add(dst, self.targets, src)
