"""Duplicate-safe scatter-add along the first axis: ``dst[targets[e]] += src[e]``.

Made per layer at compile time and planned on its first add. When the targets are unique a
plain fancy-index add is exact. Otherwise, on NumPy, the sources are split into *rounds*: round
``r`` holds the ``r``-th source of every target, so the targets of one round are unique and each
round is one fancy-index add (a loop over the largest multiplicity, never over targets). A target hit by
very many sources makes rounds wasteful; then the sources are permuted so equal targets are
adjacent and summed with one segmented reduction (``add.reduceat``). On a device the add is the
backend's atomic ``scatter_add``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Scatter", "add_at"]

# above this multiplicity a segmented reduction beats one fancy-index add per round
_MAX_ROUNDS = 64


class Scatter:
    """Scatter-add of rows ``src[e]`` into rows ``dst[targets[e]]``.

    Parameters
    ----------
    backend : Backend
    targets : ndarray of int, shape (E,)
    """

    def __init__(self, backend, targets: np.ndarray):
        self.backend = backend
        self._all_targets = np.asarray(targets, dtype=np.int64).ravel()
        self.num_sources = len(self._all_targets)
        self._unique = None

    @property
    def unique(self) -> bool:
        """Whether no target repeats (one fancy-index add)."""
        if self._unique is None:
            self._plan()
        return self._unique

    @property
    def rounds(self):
        """The rounds ``(targets, sources)`` of repeated targets, or None."""
        if self._unique is None:
            self._plan()
        return self._rounds

    def _plan(self):
        """Choose the method from the targets' multiplicities (on first use: a program that runs
        no backward pass never pays for it)."""
        targets = self._all_targets
        order = np.argsort(targets, kind="stable")
        sorted_targets = targets[order]
        starts = np.flatnonzero(np.r_[True, sorted_targets[1:] != sorted_targets[:-1]]) if len(targets) else \
            np.zeros(0, dtype=np.int64)
        unique = len(starts) == len(targets)
        rounds = None
        if unique or not self.backend.on_host:
            self.targets = self.backend.index(targets)
        else:
            rank = np.arange(len(targets)) - np.repeat(starts, np.diff(np.r_[starts, len(targets)]))
            if rank.max() < _MAX_ROUNDS:
                by_round = np.argsort(rank, kind="stable")
                bounds = np.cumsum(np.bincount(rank))[:-1]
                rounds = list(zip(np.split(sorted_targets[by_round], bounds), np.split(order[by_round], bounds)))
            else:
                self.order = order
                self.starts = starts
                self.targets = sorted_targets[starts]
        # set last, the plan complete: a concurrent first add plans again, to the same result
        self._rounds = rounds
        self._unique = unique

    def add(self, dst, src):
        """``dst[targets] += src`` with duplicates accumulated; ``src`` has shape (E, ...)."""
        if self.num_sources == 0:
            return
        if self._unique is None:
            self._plan()
        if self._unique:
            dst[self.targets] += src
        elif self._rounds is not None:
            for targets, sources in self._rounds:
                dst[targets] += np.take(src, sources, axis=0)
        elif self.backend.on_host:
            dst[self.targets] += np.add.reduceat(src[self.order], self.starts, axis=0)
        else:
            self.backend.scatter_add(dst, self.targets, src)


def add_at(backend, dst, index, values):
    """Unbuffered ``dst[index] += values`` (repeated indices accumulate) for rare, small updates."""
    backend.scatter_add(dst, index, values)
