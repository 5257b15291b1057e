"""Deep generalized convolutional SPNs (DGC-SPN).

van de Wolfshaar and Pronobis, *Deep Generalized Convolutional Sum-Product Networks*, PGM 2020,
sections 4-5. A Gaussian leaf layer, then alternately a generalized convolutional log-product
(GCLP) layer and a spatial sum layer, then a top GCLP layer whose cells each cover the whole
image, and root sums over all its units.

Why the result is valid (checked by ``check()`` in the tests for every accepted configuration):

* A spatial sum connects to one cell, whose units share a scope (4.2): smooth.
* A GCLP with unit stride, full padding and dilation ``d`` equal to the product of the
  preceding (unit-stride) kernel sizes (footnote 2) multiplies cells whose receptive fields are
  disjoint: a cell of such a layer covers the ``R`` consecutive rows ending at its position
  (``R`` the product of all kernel sizes so far, clipped to the image), and its taps are ``d = R``
  apart, so their row ranges tile without overlap (4.5): decomposable. Non-overlapping
  (stride = kernel, valid padding) layers at the bottom, used in 5.2, start a coarser grid of
  disjoint blocks, where the count restarts at 1.
* The top GCLP ("final" padding, as libspn-keras calls it) keeps only the windows whose
  cells together cover the whole image, so all root children have the same scope.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..circuit import Circuit
from ..distributions.base import make_rng
from .conv import _pair, _positive_int, _schedule, leaf_layer, product_layer, root_sum, spatial_sum_layer
from .leaves import LeafSpec

__all__ = ["dgcspn", "gclp_plan", "GCLPLayer"]

_MODES = ("generative", "discriminative")


@dataclass(frozen=True)
class GCLPLayer:
    """Geometry of one GCLP layer of a DGC-SPN.

    Attributes
    ----------
    kernel, stride, dilation : (int, int)
    padding : {"valid", "full", "final"}
    """

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: str

    @property
    def overlapping(self) -> bool:
        """Unit-stride layers (full or final padding); their dilations follow footnote 2."""
        return self.padding != "valid"


def gclp_plan(height: int, width: int, *, kernel=(2, 2), num_non_overlapping: int = 0) -> list[GCLPLayer]:
    """The GCLP layers of a DGC-SPN over a ``height x width`` image, bottom-up.

    ``num_non_overlapping`` layers with stride = kernel and valid padding first (5.2), then
    unit-stride layers with full padding and dilations equal to the product of the preceding
    unit-stride kernel sizes (footnote 2) until a cell can see every row and column, then one
    top layer with "final" padding. Along an axis already covered, later layers use kernel 1.

    Parameters
    ----------
    kernel : (int, int) or sequence of (int, int)
        One kernel for every layer, or one per layer in order (the last repeats). Each size at
        least 2 (an axis that needs no more growth gets 1 automatically).
    num_non_overlapping : int
        Bottom layers with non-overlapping windows; the image must be divisible accordingly.

    Returns
    -------
    list of GCLPLayer
    """
    height = _positive_int(height, "gclp_plan: height")
    width = _positive_int(width, "gclp_plan: width")
    if height * width < 2:
        raise ValueError("gclp_plan: a DGC-SPN needs an image of at least two pixels, got 1x1")
    if isinstance(num_non_overlapping, bool) or not isinstance(num_non_overlapping, int) or num_non_overlapping < 0:
        raise ValueError(f"gclp_plan: num_non_overlapping must be a non-negative int, got {num_non_overlapping!r}")
    kernels = _kernel_schedule(kernel)
    layers: list[GCLPLayer] = []
    grid = [height, width]
    for index in range(num_non_overlapping):
        k = kernels(len(layers))
        if grid[0] % k[0] or grid[1] % k[1]:
            raise ValueError(f"gclp_plan: non-overlapping GCLP layer {index} has kernel {k} but the layer below has "
                             f"{grid[0]}x{grid[1]} cells, not a multiple; with {num_non_overlapping} non-overlapping "
                             f"layers the image size must be divisible by the product of their kernels")
        layers.append(GCLPLayer(k, k, (1, 1), "valid"))
        grid = [grid[0] // k[0], grid[1] // k[1]]
    reach = [1, 1]
    while reach[0] < grid[0] or reach[1] < grid[1]:
        k = kernels(len(layers))
        effective = tuple(k[a] if reach[a] < grid[a] else 1 for a in (0, 1))
        layers.append(GCLPLayer(effective, (1, 1), tuple(reach), "full"))
        reach = [reach[a] * effective[a] for a in (0, 1)]
    if grid != [1, 1]:
        k = kernels(len(layers))
        effective = tuple(k[a] if grid[a] > 1 else 1 for a in (0, 1))
        layers.append(GCLPLayer(effective, (1, 1), tuple(reach), "final"))
    return layers


def _kernel_schedule(kernel):
    def is_int(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if is_int(kernel) or (isinstance(kernel, Sequence) and len(kernel) == 2 and all(map(is_int, kernel))):
        kernels = [_pair(kernel, "dgcspn: kernel", minimum=2)]
    elif isinstance(kernel, Sequence) and len(kernel) > 0:
        kernels = [_pair(k, f"dgcspn: kernel[{i}]", minimum=2) for i, k in enumerate(kernel)]
    else:
        raise TypeError(f"dgcspn: kernel must be a pair of ints or a non-empty sequence of pairs, got {kernel!r}")
    return lambda index: kernels[min(index, len(kernels) - 1)]


def dgcspn(height: int, width: int, *, mode: str = "generative", channels: int | None = None,
           num_leaves: int | None = None, num_sums=None, kernel=(2, 2), num_classes: int | None = None,
           num_non_overlapping: int | None = None, dilations=None, first_combinations=None,
           shared_weights: bool = False, leaf: LeafSpec = "gaussian", leaf_params: dict | None = None,
           leaf_means=None, leaf_stds=None, root_log_weight_std: float | None = None,
           sum_log_weight_std: float | None = None, seed: int | None = 0) -> Circuit:
    """A DGC-SPN in the generative (5.1) or discriminative (5.2) configuration.

    Parameters
    ----------
    height, width : int
        Image size.
    mode : {"generative", "discriminative"}
        Generative (5.1): 4 leaves per pixel, all GCLPs overlapping (unit strides, full
        padding, growing dilations), the first with all one-hot combinations, spatial sums of
        16 channels, one root. Discriminative (5.2): 32 leaves per pixel, two non-overlapping
        GCLPs (2x2, stride 2, valid) first, then overlapping ones, all depthwise, spatial sums
        of 64 channels for the first three and 128 after, one root per class.
    channels : int, optional
        Channels per pixel (variables ``x[r,c,ch]``); a pixel is one cell.
    num_leaves : int, optional
        Leaf units per pixel (default 4 / 32 by mode).
    num_sums : int or sequence of int, optional
        Channels of each spatial sum layer, bottom-up, the last repeating (default 16 /
        ``(64, 64, 64, 128)`` by mode).
    kernel : (int, int) or sequence of (int, int)
        GCLP kernel(s); see :func:`gclp_plan`. Footnote 2 sets the dilations from them.
    num_classes : int, optional
        Number of roots, one per class (default 1 / 10 by mode).
    num_non_overlapping : int, optional
        Non-overlapping GCLPs at the bottom (default 0 / 2 by mode).
    dilations : sequence of (int, int), optional
        The dilations of the unit-stride GCLPs, top layer included, to state them explicitly.
        They must equal footnote 2's (``gclp_plan(...)``); anything else is refused, because
        the products would multiply overlapping cells. Build such layers with
        :func:`~pcircuits.builders.conv.product_layer` to see ``check()`` report them.
    first_combinations : "one-hot", "depthwise", int or table, optional
        Combinations of the first GCLP (default "one-hot" / "depthwise" by mode); later GCLPs
        are depthwise.
    shared_weights : bool
        Tie each spatial sum layer's weights across positions (default: one matrix per cell,
        libspn-keras' local sums).
    leaf, leaf_params, leaf_means, leaf_stds :
        As ``leaf``, ``leaf_params``, ``means`` and ``stds`` of
        :func:`~pcircuits.builders.conv.leaf_layer`. The default Gaussian means are
        equidistant in [-1.5, 1.5] (5.2); pass ``leaf_means=quantile_means(train, 4)`` for
        5.1's initialization.
    root_log_weight_std : float, optional
        Spread of the roots' initial log-weights, drawn from ``N(0, std^2)`` (see
        :func:`~pcircuits.builders.conv.root_sum`); default 3 with several roots, else the
        uniform [0.01, 1] draw of every other sum. Why: at initialization the top units are
        nearly equal (the spatial sums average their children with random weights), so with
        weights of similar size every class root is nearly the same average of them; the
        cross-entropy gradient reaching a top unit ``j``, ``sum_c (p_c - y_c) r_cj`` with
        ``r_cj`` unit ``j``'s share of root ``c``, then mostly cancels over the classes.
        Spread log-weights give each class root a few units of its own from the first step
        (``benchmarks/dgcspn_init.py`` measures both; training figures in
        ``docs/convolutional.md``).
    sum_log_weight_std : float, optional
        Draw the spatial sums' log-weights from ``N(0, std^2)`` (see
        :func:`~pcircuits.builders.conv.spatial_sum_layer`) instead of weights uniform in
        [0.01, 1] (the default).
    seed : int or None
        Seed of the random sum weights (and random leaf parameters, random combinations).

    Returns
    -------
    Circuit
        Smooth and decomposable, with ``num_classes`` roots over the whole image.
    """
    if mode not in _MODES:
        raise ValueError(f"dgcspn: mode must be one of {_MODES}, got {mode!r}")
    generative = mode == "generative"
    num_leaves = (4 if generative else 32) if num_leaves is None else num_leaves
    num_sums = (16 if generative else (64, 64, 64, 128)) if num_sums is None else num_sums
    num_classes = (1 if generative else 10) if num_classes is None else num_classes
    num_non_overlapping = (0 if generative else 2) if num_non_overlapping is None else num_non_overlapping
    first_combinations = ("one-hot" if generative else "depthwise") if first_combinations is None \
        else first_combinations
    sums = _schedule(num_sums, "dgcspn: num_sums")
    num_classes = _positive_int(num_classes, "dgcspn: num_classes")
    plan = gclp_plan(height, width, kernel=kernel, num_non_overlapping=num_non_overlapping)
    if dilations is not None:
        _check_dilations(plan, dilations)
    gen = make_rng(seed)
    shape = (height, width) if channels is None else (height, width, _positive_int(channels, "dgcspn: channels"))
    leaves = leaf_layer(shape, num_leaves=num_leaves, leaf=leaf, leaf_params=leaf_params, means=leaf_means,
                        stds=leaf_stds, rng=gen)
    layer = leaves
    for index, spec in enumerate(plan):
        layer = product_layer(layer, kernel=spec.kernel, stride=spec.stride, dilation=spec.dilation,
                              padding=spec.padding, combinations=first_combinations if index == 0 else "depthwise",
                              rng=gen, name=f"gclp{index}")
        if spec.padding != "final":
            layer = spatial_sum_layer(layer, sums(index), shared_weights=shared_weights, rng=gen,
                                      name=f"sum{index}", log_weight_std=sum_log_weight_std)
    if root_log_weight_std is None and num_classes > 1:
        root_log_weight_std = 3.0
    return Circuit(root_sum(layer, num_roots=num_classes, rng=gen, log_weight_std=root_log_weight_std),
                   variables=leaves.variables)


def _check_dilations(plan: list[GCLPLayer], dilations):
    expected = [spec.dilation for spec in plan if spec.overlapping]
    try:
        given = [_pair(d, f"dgcspn: dilations[{i}]") for i, d in enumerate(dilations)]
    except TypeError:
        raise TypeError(f"dgcspn: dilations must be a sequence of (int, int) pairs, got {dilations!r}") from None
    if len(given) != len(expected):
        raise ValueError(f"dgcspn: {len(given)} dilations given, but this image and kernel need {len(expected)} "
                         f"unit-stride GCLP layers (top layer included), with dilations {expected}")
    for index, (have, want) in enumerate(zip(given, expected)):
        kernels_below = [spec.kernel for spec in plan if spec.overlapping][:index]
        if have != want:
            raise ValueError(f"dgcspn: unit-stride GCLP layer {index} has dilation {have}, but DGC-SPN footnote 2 "
                             f"needs the product of the preceding kernel sizes {kernels_below or '(none)'}, "
                             f"{want}; otherwise its products multiply cells with overlapping receptive fields "
                             f"(not decomposable)")
