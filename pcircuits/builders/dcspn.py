"""Convolutional SPNs (CSPN, DCSPN Definition 1) and deep convolutional SPNs (Definition 2).

Butz, Oliveira, dos Santos and Teixeira, *Deep Convolutional Sum-Product Networks*, AAAI 2019.
Layers map onto nodes as follows (see :mod:`pcircuits.builders.conv`): a representational
layer is one input node per pixel; a convolutional layer is a per-cell mixture (a
height-by-width filter is one weight matrix per position, a 1x1 filter one matrix tied across
positions); a sum-pooling layer is a depthwise product layer with non-overlapping windows.

Validity follows from the papers' conditions, which the builders enforce by construction:

* every sum mixes one cell, or a channel augmentation of cells with one scope (Theorem 1,
  Lemma 1): smooth;
* every sum-pooling window has a stride at least its size, so the cells it multiplies have
  disjoint receptive fields (Definition 1 (ii), Lemma 2): decomposable.
"""
from __future__ import annotations

import heapq

import numpy as np

from ..circuit import Circuit
from ..distributions.base import make_rng
from .conv import (CellLayer, _pair, _positive_int, _schedule, channel_augmentation, leaf_layer, product_layer,
                   root_sum, spatial_sum_layer)
from .leaves import LeafSpec

__all__ = ["cspn", "dcspn"]


def cspn(height: int, width: int, *, channels: int | None = None, num_leaves: int = 4, num_sums=12, windows=None,
         strides=None, shared_weights: bool = False, leaf: LeafSpec = "gaussian", leaf_params: dict | None = None,
         leaf_means=None, leaf_stds=None, num_roots: int = 1, seed: int | None = 0) -> Circuit:
    """A convolutional SPN (DCSPN Definition 1): a chain of convolutional and sum-pooling layers.

    Representational layer, then alternately a convolutional layer (per-cell mixtures) and a
    sum-pooling layer, until one cell covers the image; a root sum on top.

    Parameters
    ----------
    height, width : int
        Image size.
    channels : int, optional
        Channels per pixel (variables ``x[r,c,ch]``); a pixel is one cell.
    num_leaves : int
        Representation functions (leaf units) per pixel.
    num_sums : int or sequence of int
        Channels of each convolutional layer (a sequence gives them layer by layer, its last
        entry repeating).
    windows : sequence of (int, int), optional
        Sum-pooling windows, bottom-up. Default, and after the given ones run out: halve each
        even dimension (2x2, 1x2 or 2x1 windows); when no dimension above 1 is even, pool the
        rest of the layer in one window.
    strides : sequence of (int, int), optional
        One stride per given window; default the window itself. Definition 1 (ii) requires a
        stride at least the window size; smaller strides are refused.
    shared_weights : bool
        1x1 filters (weights tied across positions) instead of height-by-width filters.
    leaf, leaf_params, leaf_means, leaf_stds :
        Leaf family and parameters, as ``leaf``, ``leaf_params``, ``means`` and ``stds`` of
        :func:`~pcircuits.builders.conv.leaf_layer` (``leaf_means=quantile_means(train,
        num_leaves)`` for the quantile initialization).
    num_roots : int
        Root sums over the top layer (one per class for a classifier).
    seed : int or None
        Seed of the random sum weights (and random leaf parameters).

    Returns
    -------
    Circuit
        Smooth and decomposable; ``variables`` is ``Variables.image(height, width)``.

    Raises
    ------
    ValueError
        A window larger than the layer, a stride smaller than its window (overlapping
        sum-pooling breaks decomposability), or windows that leave cells uncovered.
    """
    gen = make_rng(seed)
    sums = _schedule(num_sums, "cspn: num_sums")
    windows = [] if windows is None else [_pair(w, f"cspn: windows[{i}]") for i, w in enumerate(windows)]
    if strides is None:
        strides = list(windows)
    else:
        strides = [_pair(s, f"cspn: strides[{i}]") for i, s in enumerate(strides)]
        if len(strides) != len(windows):
            raise ValueError(f"cspn: give one stride per window: {len(windows)} windows, {len(strides)} strides")
    for index, (window, stride) in enumerate(zip(windows, strides)):
        if stride[0] < window[0] or stride[1] < window[1]:
            raise ValueError(f"cspn: sum-pooling layer {index} has window {window} but stride {stride}; DCSPN "
                             f"Definition 1 (ii) needs a stride at least the window in each direction, or "
                             f"overlapping windows multiply cells with shared pixels (not decomposable)")
    leaves = _leaves(height, width, channels, num_leaves, leaf, leaf_params, leaf_means, leaf_stds, gen, "cspn")
    layer = leaves
    index = 0
    while layer.shape != (1, 1):
        conv = spatial_sum_layer(layer, sums(index), shared_weights=shared_weights, rng=gen,
                                 name=f"conv{index}")
        if index < len(windows):
            window, stride = windows[index], strides[index]
        else:
            window = _halving_window(conv.shape)
            stride = window
        _check_tiling(conv.shape, window, stride, index)
        layer = product_layer(conv, kernel=window, stride=stride, padding="valid", combinations="depthwise",
                              name=f"pool{index}")
        index += 1
    if index < len(windows):
        raise ValueError(f"cspn: one cell covers the image after {index} sum-pooling layers, but {len(windows)} "
                         f"windows were given")
    roots = root_sum(layer, num_roots=num_roots, rng=gen)
    return Circuit(roots, variables=leaves.variables)


def dcspn(height: int, width: int, *, channels: int | None = None, num_leaves: int = 4, num_sums=12,
          pool_every: int | None = None, shared_weights: bool = False, leaf: LeafSpec = "gaussian",
          leaf_params: dict | None = None, leaf_means=None, leaf_stds=None, num_roots: int = 1,
          seed: int | None = 0) -> Circuit:
    """The DCSPN of the paper's experiments: a DAG of convolutional and sum-pooling layers.

    A convolutional layer (per-cell mixtures, height-by-width filters) follows the
    representational layer and every sum-pooling layer; two sum-pooling layers, with 1x2 and
    2x1 windows, follow every convolutional layer. Sum-pooling layers whose cells have the same
    scopes (for example 1x2 then 2x1 and 2x1 then 1x2) feed one convolutional layer through a
    channel augmentation (Definition 2, Lemma 1), so the DAG is a lattice over block sizes
    rather than a tree. The full-image sum-pooling layers are augmented into the root's input.

    Parameters
    ----------
    height, width : int
        Image size (any; a dimension that cannot be halved any more is pooled in one window).
    channels : int, optional
        Channels per pixel (variables ``x[r,c,ch]``); a pixel is one cell.
    num_leaves : int
        Gaussian representation functions per pixel (4 in the paper).
    num_sums : int or sequence of int
        Channels of each convolutional layer, by depth (a sequence's last entry repeats).
        12 follows the authors' published command line.
    pool_every : int, optional
        Alternate every ``pool_every`` layers between the 1x2 / 2x1 pair and a 2x2 window:
        convolutional layers at depths ``n .. 2n-1``, ``3n .. 4n-1``, ... pool 2x2 (depth is
        counted in sum-pooling steps from the leaves). The paper's two 2x2 branches from one
        layer would be identical products, so one is built. ``None``: never. The paper tuned
        ``n`` between 70 and 100 in a tree-shaped implementation that counts every layer it
        creates; on the lattice a 64x64 image is 12 pooling steps deep.
    shared_weights : bool
        1x1 filters (weights tied across positions) instead of height-by-width filters (the
        paper found height-by-width better).
    leaf, leaf_params, leaf_means, leaf_stds :
        As ``leaf``, ``leaf_params``, ``means`` and ``stds`` of
        :func:`~pcircuits.builders.conv.leaf_layer`; the paper takes the Gaussians from equal
        quantiles of each pixel (``quantile_means`` / ``quantile_stds``).
    num_roots : int
        Root sums over the full-image layer.
    seed : int or None
        Seed of the random sum weights (and random leaf parameters).

    Returns
    -------
    Circuit
        Smooth and decomposable; ``variables`` is ``Variables.image(height, width)``.
    """
    gen = make_rng(seed)
    sums = _schedule(num_sums, "dcspn: num_sums")
    if pool_every is not None:
        pool_every = _positive_int(pool_every, "dcspn: pool_every")
    leaves = _leaves(height, width, channels, num_leaves, leaf, leaf_params, leaf_means, leaf_stds, gen, "dcspn")
    if leaves.shape == (1, 1):
        return Circuit(root_sum(leaves, num_roots=num_roots, rng=gen), variables=leaves.variables)
    # grid shape -> [(sum-pooling layer, depth of the convolutional layer it pools)]
    pending: dict[tuple[int, int], list[tuple[CellLayer, int]]] = {leaves.shape: [(leaves, -1)]}
    queue = [(-height * width, leaves.shape)]
    while queue:
        _, grid = heapq.heappop(queue)
        producers = pending.pop(grid)
        inputs = [layer for layer, _ in producers]
        merged = inputs[0] if len(inputs) == 1 else channel_augmentation(*inputs)
        if grid == (1, 1):
            return Circuit(root_sum(merged, num_roots=num_roots, rng=gen), variables=leaves.variables)
        depth = 1 + max(d for _, d in producers)
        block = f"{height // grid[0]}x{width // grid[1]}"
        conv = spatial_sum_layer(merged, sums(depth), shared_weights=shared_weights, rng=gen,
                                 name=f"conv{block}")
        two_by_two = pool_every is not None and (depth // pool_every) % 2 == 1
        for window in _lattice_windows(grid, two_by_two):
            pooled = product_layer(conv, kernel=window, stride=window, padding="valid", combinations="depthwise",
                                   name=f"pool{window[0]}x{window[1]}@{block}")
            if pooled.shape not in pending:
                pending[pooled.shape] = []
                heapq.heappush(queue, (-pooled.shape[0] * pooled.shape[1], pooled.shape))
            pending[pooled.shape].append((pooled, depth))
    raise AssertionError("dcspn: the lattice ended without a full-image layer")


def _leaves(height, width, channels, num_leaves, leaf, leaf_params, means, stds, gen, where: str) -> CellLayer:
    shape = (_positive_int(height, f"{where}: height"), _positive_int(width, f"{where}: width"))
    if channels is not None:
        shape += (_positive_int(channels, f"{where}: channels"),)
    return leaf_layer(shape, num_leaves=num_leaves, leaf=leaf, leaf_params=leaf_params, means=means, stds=stds,
                      rng=gen)


def _halving_window(grid: tuple[int, int]) -> tuple[int, int]:
    """2 along each even dimension; the whole layer when no dimension above 1 is even."""
    window = tuple(2 if size % 2 == 0 else 1 for size in grid)
    return window if window != (1, 1) else tuple(grid)


def _lattice_windows(grid: tuple[int, int], two_by_two: bool) -> list[tuple[int, int]]:
    gh, gw = grid
    if two_by_two and gh % 2 == 0 and gw % 2 == 0:
        return [(2, 2)]
    standard = [w for w, ok in (((1, 2), gw % 2 == 0), ((2, 1), gh % 2 == 0)) if ok]
    return standard or [(gh, gw)]


def _check_tiling(grid, window, stride, index: int):
    for axis, what in ((0, "rows"), (1, "columns")):
        size, k, s = grid[axis], window[axis], stride[axis]
        if k > size:
            raise ValueError(f"cspn: sum-pooling layer {index} has window {window} but the layer below has only "
                             f"{grid[0]}x{grid[1]} cells")
        count = (size - k) // s + 1
        covered = np.zeros(size, dtype=bool)
        for o in range(count):
            covered[o * s:o * s + k] = True
        if not covered.all():
            missing = np.flatnonzero(~covered).tolist()
            shown = f"{missing[:5]}{'...' if len(missing) > 5 else ''}"
            raise ValueError(f"cspn: sum-pooling layer {index} (window {window}, stride {stride}) on a "
                             f"{grid[0]}x{grid[1]} layer leaves {what} {shown} uncovered; the root would not "
                             f"cover every pixel")
