"""Random draws of a top-down pass taken per fixed block of examples, so that a sample does not
depend on how many examples are drawn with it.

A top-down pass draws its random numbers for the active entries (unit, example) of one layer
at a time. :class:`StreamRandomSource` gives every block of ``block_rows`` consecutive examples
its own generator: the entries are put in block order (:meth:`StreamRandomSource.group`, a
stable sort, which keeps within a block the order a pass over that block alone has) and every
draw takes each block's share from that block's generator. A pass over many blocks then draws
for every example exactly the numbers a pass over its block alone would, so
:func:`pcircuits.inference.sample` may size its chunks from the memory budget.
"""
from __future__ import annotations

import numpy as np

from ..backend import RandomSource, to_numpy

__all__ = ["StreamRandomSource"]


class StreamRandomSource:
    """Random draws split by blocks of examples, one generator per block.

    Parameters
    ----------
    backend : Backend
    generators : list of numpy.random.Generator
        One per block of ``block_rows`` examples of the pass, in order.
    block_rows : int
    """

    def __init__(self, backend, generators: list, block_rows: int):
        self.backend = backend
        self.sources = [RandomSource(backend, generator) for generator in generators]
        self.block_rows = int(block_rows)
        self.counts = None

    def group(self, examples):
        """The order that puts entries of ``examples`` (n,) in block order, stably (an index array,
        or ``slice(None)`` when the pass has one block: the entries are in order already); the
        next draws are of entries in that order (each block's share from its generator)."""
        if len(self.sources) == 1:
            self.counts = [int(examples.shape[0])]
            return slice(None)
        blocks = self.backend.xp.asarray(examples) // self.block_rows
        order = self.backend.xp.argsort(blocks, kind="stable")
        self.counts = [int(c) for c in np.bincount(to_numpy(blocks), minlength=len(self.sources))]
        return order

    def _draw(self, method: str, shape):
        """Float64 draws of every block from its generator (``uniform64`` or ``normal64``), in
        block order; the callers transform them in one pass (elementwise: the same numbers)."""
        if self.counts is None or sum(self.counts) != shape[0]:
            raise RuntimeError(f"StreamRandomSource: a draw of shape {tuple(shape)} for entries not grouped by "
                               f"block (group() first)")
        parts = [getattr(source, method)((count,) + tuple(shape[1:]))
                 for source, count in zip(self.sources, self.counts) if count]
        if len(parts) == 1:
            return parts[0]
        xp = self.backend.xp
        return xp.concatenate(parts, axis=0) if parts else xp.zeros(shape, dtype=np.float64)

    def uniform(self, shape):
        return self._draw("uniform64", shape).astype(self.backend.dtype, copy=False)

    def normal(self, shape):
        return self._draw("normal64", shape).astype(self.backend.dtype, copy=False)

    def gumbel(self, shape):
        return self.sources[0].gumbel_of(self._draw("uniform64", shape))

    def binomial(self, n, p):
        """Each block's binomial draws from its generator, as :meth:`RandomSource.binomial` draws
        them (``n`` as integers, ``p`` clipped to [0, 1] in float64: converted once for all blocks)."""
        xp = self.backend.xp
        n, p = xp.broadcast_arrays(xp.asarray(n), xp.asarray(p))
        if self.counts is None or sum(self.counts) != n.shape[0]:
            raise RuntimeError("StreamRandomSource: binomial draws for entries not grouped by block (group() first)")
        n = n.astype(np.int64)
        p = xp.clip(p.astype(np.float64), 0.0, 1.0)
        bounds = np.cumsum([0] + self.counts)
        parts = [source.binomial_counts(n[lo:hi], p[lo:hi])
                 for source, lo, hi in zip(self.sources, bounds[:-1], bounds[1:]) if hi > lo]
        if not parts:
            return xp.zeros(n.shape, dtype=self.backend.dtype)
        return (parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)).astype(self.backend.dtype)
