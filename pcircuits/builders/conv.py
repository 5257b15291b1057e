"""Convolutional vocabulary: spatial layers of cells built from ordinary nodes.

A :class:`CellLayer` is a grid of *cells*. A cell is one node (a vector of units that share
one scope, the cell's receptive field), or, after a channel augmentation, a small group of
nodes over the same scope whose units are read as one concatenated channel axis. The layer
helpers below build plain :class:`~pcircuits.InputNode`, :class:`~pcircuits.ProductNode` and
:class:`~pcircuits.SumNode` objects, so ``check()``, drawing, compiling and learning treat the
result like any other circuit.

The operations follow the two convolutional SPN papers:

* DCSPN (Butz et al., 2019): representational (leaf) layers, convolutional layers with 1x1
  (shared) or height-by-width (per-position) filters, which are per-cell mixtures here
  (:func:`spatial_sum_layer`), sum-pooling layers (:func:`product_layer` with
  ``combinations="depthwise"``), and channel / width / height augmentation (Definition 2).
* DGC-SPN (van de Wolfshaar and Pronobis, 2020): spatial sums (4.2), convolutional
  log-products with one-hot kernels (4.4) and generalized ones with full padding, unit strides
  and dilations (4.5). Padding cells hold probability 1 (log 0): a product simply leaves them
  out, so a window that hangs over the border multiplies fewer children.

Every helper takes keyword-only options and raises ``ValueError`` / ``TypeError`` naming the
problem before building anything. Validity is *not* demanded here (invalid layers can be
built on purpose and inspected with ``check()``), except where a builder-level option asks
for it (``channel_augmentation(..., require_same_scopes=True)``, the default).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

from ..distributions import Gaussian
from ..distributions.base import make_rng
from ..nodes import InputNode, Node, ProductNode, SumNode, SumWeights
from ..scope import Scope, Variables
from .leaves import LeafSpec, check_leaf, pixel_factors

__all__ = ["CellLayer", "leaf_layer", "spatial_sum_layer", "product_layer", "channel_augmentation",
           "width_augmentation", "height_augmentation", "root_sum", "quantile_means", "quantile_stds",
           "output_size", "MAX_COMBINATIONS"]

#: Largest number of one-hot combinations (units per cell) a product layer builds.
MAX_COMBINATIONS = 1 << 16

_PADDINGS = ("valid", "full", "final")


class CellLayer:
    """A spatial layer: a ``[height, width]`` grid of cells over an image's variables.

    Parameters
    ----------
    parts : sequence of ndarray of object, each of shape (height, width)
        One array per channel group. Entry ``[r, c]`` is a :class:`~pcircuits.Node` or
        ``None`` (a *hole*: a cell made only of padding, probability 1). All nodes of a part
        have the same number of units; a layer made by a channel augmentation has several
        parts, whose nodes at one position share a scope.
    variables : Variables
        The image variables (``Variables.image(h, w)``) the cells' scopes refer to.
    name : str, optional
        Used in node labels and messages.

    Attributes
    ----------
    parts : list of ndarray of object
    variables : Variables
    name : str
    """

    def __init__(self, parts: Sequence[np.ndarray], *, variables: Variables, name: str = "layer"):
        if not isinstance(variables, Variables):
            raise TypeError(f"CellLayer: variables must be a pcircuits.Variables, got {type(variables).__name__}")
        if isinstance(parts, np.ndarray):
            parts = [parts]
        parts = [np.asarray(p, dtype=object) for p in parts]
        if not parts:
            raise ValueError("CellLayer: needs at least one part")
        shape = parts[0].shape
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"CellLayer: a part must be a 2-D array of nodes, got shape {shape}")
        holes = _hole_mask(parts[0])
        if holes.all():
            raise ValueError(f"CellLayer {name!r}: every cell is a hole")
        self._part_channels = []
        for index, part in enumerate(parts):
            if part.shape != shape:
                raise ValueError(f"CellLayer {name!r}: part {index} has shape {part.shape}, part 0 has {shape}")
            if not np.array_equal(_hole_mask(part), holes):
                raise ValueError(f"CellLayer {name!r}: part {index} has holes (padding cells) at other positions "
                                 f"than part 0")
            sizes = set()
            for node in part[~holes].tolist():
                if not isinstance(node, Node):
                    raise TypeError(f"CellLayer {name!r}: cells must be nodes or None, got {type(node).__name__}")
                sizes.add(node.num_units)
            if len(sizes) != 1:
                raise ValueError(f"CellLayer {name!r}: the nodes of part {index} have different sizes "
                                 f"{sorted(sizes)}; every cell of a part needs the same number of channels")
            self._part_channels.append(sizes.pop())
        self.parts = parts
        self.variables = variables
        self.name = str(name)
        self._holes = holes

    # ---- geometry ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the grid of cells."""
        return tuple(self.parts[0].shape)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def num_channels(self) -> int:
        """Units per cell (summed over the parts of an augmented layer)."""
        return sum(self._part_channels)

    @property
    def part_channels(self) -> tuple[int, ...]:
        """Units per cell of each part."""
        return tuple(self._part_channels)

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    @property
    def holes(self) -> np.ndarray:
        """Boolean ``(height, width)`` mask of the cells that are padding only."""
        return self._holes.copy()

    @property
    def cells(self) -> np.ndarray:
        """The ``(height, width)`` object array of nodes (``None`` at holes).

        Only for a single-part layer; an augmented layer has :attr:`parts` and :meth:`cell`.
        """
        if len(self.parts) != 1:
            raise ValueError(f"CellLayer {self.name!r} is a channel augmentation of {len(self.parts)} parts, so a "
                             f"cell is several nodes; use .parts or .cell(row, col)")
        return self.parts[0]

    def cell(self, row: int, col: int) -> tuple[Node, ...]:
        """The nodes of the cell at ``(row, col)`` (empty for a hole)."""
        if self._holes[row, col]:
            return ()
        return tuple(part[row, col] for part in self.parts)

    def scope(self, row: int, col: int) -> Scope:
        """The receptive field of the cell at ``(row, col)`` (empty for a hole)."""
        if self._holes[row, col]:
            return Scope()
        return self.parts[0][row, col].scope

    @property
    def full_scope(self) -> Scope:
        """The union of all cells' scopes."""
        bits = 0
        for node in self.parts[0][~self._holes].tolist():
            bits |= node.scope.bits
        return Scope.from_bits(bits)

    def nodes(self) -> list[Node]:
        """All nodes of the layer, part by part, row-major."""
        out = []
        for part in self.parts:
            out.extend(part[~self._holes].tolist())
        return out

    @property
    def num_nodes(self) -> int:
        return int((~self._holes).sum()) * len(self.parts)

    def __repr__(self) -> str:
        channels = "+".join(map(str, self._part_channels))
        holes = int(self._holes.sum())
        return (f"CellLayer({self.name!r}, {self.height}x{self.width} cells, {channels} channels"
                f"{f', {holes} holes' if holes else ''})")


def _hole_mask(part: np.ndarray) -> np.ndarray:
    return np.frompyfunc(lambda n: n is None, 1, 1)(part).astype(bool)


def _pair(value, what: str, *, minimum: int = 1) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; checks a pair of ints at least ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f"{what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{what} must be at least {minimum} in each direction, got {pair}")
    return int(pair[0]), int(pair[1])


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


def _schedule(value, what: str) -> Callable[[int], int]:
    """An int, or a sequence of ints whose last entry repeats: ``schedule(i)`` for layer ``i``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    try:
        values = [_positive_int(v, what) for v in value]
    except TypeError:
        raise TypeError(f"{what} must be a positive int or a sequence of them, got {value!r}") from None
    if not values:
        raise ValueError(f"{what} must not be empty")
    return lambda index: values[min(index, len(values) - 1)]


def _check_layer(layer, where: str) -> CellLayer:
    if not isinstance(layer, CellLayer):
        raise TypeError(f"{where}: expected a CellLayer, got {type(layer).__name__}")
    return layer


# ---- representational (leaf) layer ---------------------------------------------------------
def leaf_layer(variables: Union[Variables, Sequence[int]], *, num_leaves: int = 4, leaf: LeafSpec = "gaussian",
               leaf_params: dict | None = None, means=None, stds=None, rng=None, name: str = "leaf") -> CellLayer:
    """A representational layer: one input node with ``num_leaves`` units per pixel.

    Parameters
    ----------
    variables : Variables or (height, width) or (height, width, channels)
        The image: ``Variables.image(h, w[, ch])`` or its shape. Pixel ``(r, c)`` is variable
        ``r * width + c`` (channels last: ``(r * width + c) * channels + k``).
    num_leaves : int
        Units (leaf components, representation functions) per pixel.
    leaf : str, LeafFamily subclass or callable
        As for every builder (:mod:`pcircuits.builders.leaves`): ``"gaussian"``,
        ``"bernoulli"``, ``"categorical"``, ``"binomial"``, ``"indicator"``, or
        ``leaf(variables, num_units, rng) -> LeafFamily``. A pixel with several channels is one
        diagonal Gaussian over them, or an elementwise product of one leaf per channel.
    leaf_params : dict, optional
        Keyword arguments of the family's ``random`` constructor (``num_categories``, ``n``,
        ``mean_scale``).
    means, stds : array_like, optional
        Gaussian leaves only. ``means`` has shape ``(height, width, num_leaves[, channels])``,
        ``(height * width, num_leaves[, channels])``, or anything that broadcasts to it;
        ``stds`` broadcasts to the same shape (default 1). Without ``means`` and
        ``leaf_params``, Gaussian means are ``num_leaves`` equidistant values in
        ``[-1.5, 1.5]`` with unit deviations (DGC-SPN 5.2); :func:`quantile_means` gives the
        quantile initialization of Poon and Domingos used by both papers' generative experiments.
    rng : int or Generator, optional
        Seed for random leaf parameters.
    name : str
        Label prefix of the nodes.

    Returns
    -------
    CellLayer
        ``height x width`` cells, each over the variables of one pixel.
    """
    variables = _image_variables(variables, "leaf_layer")
    height, width = variables.shape[:2]
    channels = variables.shape[2] if len(variables.shape) == 3 else 1
    num_leaves = _positive_int(num_leaves, "leaf_layer: num_leaves")
    leaf_params = check_leaf(leaf, leaf_params, "leaf_layer")
    gen = make_rng(rng)
    gaussian = leaf == "gaussian" or leaf is Gaussian
    explicit = means is not None or stds is not None
    if explicit and not gaussian:
        raise ValueError(f"leaf_layer: means and stds are for Gaussian leaves, not for leaf={leaf!r}")
    if explicit and leaf_params:
        raise ValueError("leaf_layer: give either means/stds or leaf_params for the Gaussian leaves, not both")
    if gaussian and not leaf_params:
        mean_grid = _gaussian_grid(means, height, width, num_leaves, channels)
        std_grid = _gaussian_stds(stds, mean_grid.shape)
    cells = np.empty((height, width), dtype=object)
    for r in range(height):
        for c in range(width):
            label = f"{name}[{r},{c}]"
            first = (r * width + c) * channels
            if gaussian and not leaf_params:
                pixel = list(range(first, first + channels))
                mean, std = mean_grid[r, c], std_grid[r, c]
                if channels == 1:
                    mean, std = mean[:, 0], std[:, 0]
                cells[r, c] = InputNode(pixel, Gaussian(mean, std), label=label)
                continue
            factors = pixel_factors(leaf, num_leaves, range(first, first + channels), rng=gen,
                                    leaf_params=leaf_params, where="leaf_layer")
            if len(factors) == 1:
                factors[0].label = label
                cells[r, c] = factors[0]
            else:
                cells[r, c] = ProductNode(factors, "elementwise", label=label)
    return CellLayer([cells], variables=variables, name=name)


def _image_variables(variables, where: str) -> Variables:
    if isinstance(variables, Variables):
        if variables.shape is None or len(variables.shape) not in (2, 3):
            raise ValueError(f"{where}: needs image variables (Variables.image(height, width[, channels])), got "
                             f"{variables!r}")
        return variables
    try:
        shape = tuple(variables)
    except TypeError:
        raise TypeError(f"{where}: give Variables.image(...) or an image shape (height, width[, channels]), "
                        f"got {variables!r}") from None
    if len(shape) not in (2, 3):
        raise ValueError(f"{where}: an image shape is (height, width) or (height, width, channels), got {shape}")
    sizes = [_positive_int(v, f"{where}: image shape entry") for v in shape]
    return Variables.image(*sizes)


def _gaussian_grid(means, height: int, width: int, num_leaves: int, channels: int) -> np.ndarray:
    """Means as an array of shape (height, width, num_leaves, channels)."""
    shape = (height, width, num_leaves, channels)
    if means is None:
        return np.broadcast_to(np.linspace(-1.5, 1.5, num_leaves)[:, None], shape)
    try:
        arr = np.asarray(means, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"leaf_layer: means must be numeric, got {type(means).__name__}") from None
    if arr.ndim >= 2 and arr.shape[0] == height * width and arr.shape[:2] != (height, width):
        arr = arr.reshape((height, width) + arr.shape[1:])
    if channels == 1 and arr.ndim >= 1 and arr.shape[-1] == num_leaves:
        arr = arr[..., None]
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        expected = f"({height}, {width}, {num_leaves})" if channels == 1 else str(shape)
        raise ValueError(f"leaf_layer: means must have shape {expected} (or ({height * width}, {num_leaves}"
                         f"{'' if channels == 1 else f', {channels}'}), or broadcast to it), got {arr.shape}") from None


def _gaussian_stds(stds, shape) -> np.ndarray:
    if stds is None:
        return np.ones(shape)
    arr = np.asarray(stds, dtype=np.float64)
    if arr.ndim >= 2 and arr.shape[0] == shape[0] * shape[1] and arr.shape[:2] != shape[:2]:
        arr = arr.reshape(shape[:2] + arr.shape[1:])
    if shape[3] == 1 and arr.ndim >= 1 and arr.shape[-1] == shape[2]:
        arr = arr[..., None]
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"leaf_layer: stds of shape {np.shape(stds)} do not fit means of shape {shape[:3]}") from None


def quantile_means(data, num_quantiles: int) -> np.ndarray:
    """Per-variable means of equal quantile groups (Poon and Domingos' leaf initialization).

    For each variable the training values are sorted and cut into ``num_quantiles`` groups of
    (nearly) equal size; the mean of group ``i`` becomes the mean of leaf ``i``. Both papers'
    generative experiments initialize their Gaussian leaves this way.

    Parameters
    ----------
    data : array_like, shape (num_samples, num_variables) or (num_samples, height, width)
        Complete training data (no NaN).
    num_quantiles : int
        Number of groups (leaves per variable); at most ``num_samples``.

    Returns
    -------
    ndarray, shape (num_variables, num_quantiles)
        Increasing along the last axis; reshape to ``(height, width, num_quantiles)`` for an
        image, or pass it directly to :func:`leaf_layer` (``means=``).
    """
    groups = _quantile_groups(data, num_quantiles, "quantile_means")
    return np.stack([g.mean(axis=0) for g in groups], axis=1)


def quantile_stds(data, num_quantiles: int, *, min_std: float = 1e-2) -> np.ndarray:
    """Per-variable standard deviations of the groups of :func:`quantile_means`.

    The DCSPN experiments take both mean and variance of each Gaussian leaf from equal quantiles.
    Groups with (almost) constant values get ``min_std``.

    Returns
    -------
    ndarray, shape (num_variables, num_quantiles)
    """
    if not np.isfinite(min_std) or min_std <= 0:
        raise ValueError(f"quantile_stds: min_std must be positive, got {min_std}")
    groups = _quantile_groups(data, num_quantiles, "quantile_stds")
    return np.maximum(np.stack([g.std(axis=0) for g in groups], axis=1), min_std)


def _quantile_groups(data, num_quantiles: int, where: str) -> list[np.ndarray]:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: data must be numeric, got {type(data).__name__}") from None
    if arr.ndim < 2:
        raise ValueError(f"{where}: data must have shape (num_samples, num_variables) or (num_samples, height, "
                         f"width), got {arr.shape}")
    arr = arr.reshape(arr.shape[0], -1)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: data must be finite (no NaN / missing values)")
    num_quantiles = _positive_int(num_quantiles, f"{where}: num_quantiles")
    if arr.shape[0] < num_quantiles:
        raise ValueError(f"{where}: {num_quantiles} quantile groups need at least {num_quantiles} samples, "
                         f"got {arr.shape[0]}")
    return np.array_split(np.sort(arr, axis=0), num_quantiles, axis=0)


# ---- spatial sums ------------------------------------------------------------------------
def _check_log_weight_std(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: log_weight_std must be a non-negative number, got {value!r}")
    return float(value)


def _random_weights(gen: np.random.Generator, shape: tuple, log_weight_std: float | None) -> np.ndarray:
    """Weights normalized over the last axis: uniform in [0.01, 1], or ``exp`` of ``N(0, std^2)`` draws."""
    if log_weight_std is None:
        raw = gen.uniform(0.01, 1.0, size=shape)
    else:
        z = gen.normal(0.0, log_weight_std, size=shape)
        raw = np.exp(z - z.max(axis=-1, keepdims=True))
    return raw / raw.sum(axis=-1, keepdims=True)


def spatial_sum_layer(layer: CellLayer, num_channels: int, *, shared_weights: bool = False, rng=None,
                      name: str = "sum", log_weight_std: float | None = None) -> CellLayer:
    """Per-cell mixtures: at each cell, ``num_channels`` sum units over all the cell's units.

    DGC-SPN 4.2 (a sum connects to a single input cell, so it is smooth) and the DCSPN
    convolutional layer: ``shared_weights=False`` is the height-by-width filter (one weight
    matrix per position), ``shared_weights=True`` the 1x1 filter (one
    :class:`~pcircuits.SumWeights` object tied across all positions).

    Parameters
    ----------
    layer : CellLayer
        Input cells; the nodes of an augmented cell are all children of the cell's sum.
    num_channels : int
        Sum units per cell.
    shared_weights : bool
        Tie the weights across positions.
    rng : int or Generator, optional
        Seed for the random normalized weights.
    log_weight_std : float, optional
        Draw the log-weights from ``N(0, log_weight_std^2)`` (then normalize) instead of
        weights uniform in [0.01, 1].

    Returns
    -------
    CellLayer
        Same grid and holes, ``num_channels`` channels, one :class:`~pcircuits.SumNode` per cell.
    """
    layer = _check_layer(layer, "spatial_sum_layer")
    num_channels = _positive_int(num_channels, "spatial_sum_layer: num_channels")
    log_weight_std = _check_log_weight_std(log_weight_std, "spatial_sum_layer")
    gen = make_rng(rng)
    height, width = layer.shape
    num_inputs = layer.num_channels
    shared = SumWeights(_random_weights(gen, (num_channels, num_inputs), log_weight_std)) if shared_weights else None
    cells = np.empty((height, width), dtype=object)
    for r in range(height):
        if shared is None:
            raw = _random_weights(gen, (width, num_channels, num_inputs), log_weight_std)
        for c in range(width):
            children = layer.cell(r, c)
            if not children:
                continue
            weights = shared if shared is not None else SumWeights(raw[c])
            cells[r, c] = SumNode(children, weights=weights, label=f"{name}[{r},{c}]")
    return CellLayer([cells], variables=layer.variables, name=name)


# ---- products: sum-pooling and (generalized) convolutional log-products --------------------
def output_size(size: int, *, kernel: int, stride: int = 1, dilation: int = 1, padding: str = "valid") -> int:
    """Number of output positions along one axis (before ``"final"`` keeps its covering windows).

    ``"valid"``: ``(size - (kernel-1)*dilation - 1) // stride + 1``. ``"full"`` and ``"final"``
    pad ``(kernel-1)*dilation`` cells on both sides (Dumoulin and Visin's full padding), which
    gives ``size + (kernel-1)*dilation`` positions for a unit stride.
    """
    span = (kernel - 1) * dilation
    padded = size + (2 * span if padding in ("full", "final") else 0)
    if padded < span + 1:
        return 0
    return (padded - span - 1) // stride + 1


def _axis_taps(size: int, kernel: int, stride: int, dilation: int, padding: str) -> np.ndarray:
    """Input indices of each window's taps, shape (num_windows, kernel); out-of-range = -1."""
    count = output_size(size, kernel=kernel, stride=stride, dilation=dilation, padding=padding)
    pad = (kernel - 1) * dilation if padding in ("full", "final") else 0
    taps = (np.arange(count)[:, None] * stride - pad) + np.arange(kernel)[None, :] * dilation
    taps[(taps < 0) | (taps >= size)] = -1
    return taps


def product_layer(layer: CellLayer, *, kernel=(2, 2), stride=None, dilation=(1, 1), padding: str = "valid",
                  combinations="depthwise", rng=None, name: str = "product") -> CellLayer:
    """Local products over (dilated) windows of cells: sum-pooling or a convolutional log-product.

    For each output position a :class:`~pcircuits.ProductNode` multiplies the cells under its
    window, one unit of each. Taps that fall on padding or on a hole are left out (a padding
    cell has probability 1), so a window over the border has fewer children; a window with no
    cell at all becomes a hole of the output.

    Parameters
    ----------
    layer : CellLayer
    kernel : int or (int, int)
        Window size ``(kh, kw)`` in cells.
    stride : int or (int, int), optional
        Step between windows. Default: the kernel (non-overlapping windows, DCSPN sum-pooling)
        for ``padding="valid"``, 1 for ``"full"`` and ``"final"`` (DGC-SPN GCLPs).
    dilation : int or (int, int)
        Distance between the taps of a window (DGC-SPN 4.5: a 2x2 kernel with dilation 2 covers
        a 3x3 patch). Decomposable stacks need the dilation of a unit-stride layer to equal the
        product of the preceding kernel sizes (DGC-SPN footnote 2).
    padding : {"valid", "full", "final"}
        ``"valid"``: windows inside the layer. ``"full"``: ``(k-1)*d`` padding cells on both
        sides, every window that touches the layer (``H + (kh-1)*dh`` rows for a unit stride).
        ``"final"``: full padding, keeping only the windows whose cells together cover the
        layer's whole scope, each distinct set of children once (the top GCLP of a DGC-SPN).
    combinations : "depthwise", "one-hot", "cartesian", int, or int array (num_units, kh*kw)
        ``"depthwise"``: unit ``u`` multiplies channel ``u`` of every cell (sum-pooling, as
        many units as input channels). ``"one-hot"`` (same as ``"cartesian"``): every choice
        of one channel per tap, ``C ** (kh*kw)`` units. An int: that many distinct
        combinations drawn at random (``rng``). A table: row ``u`` gives the channel of each
        tap, taps in row-major order.
    rng : int or Generator, optional
        Seed for a random subset of combinations.
    name : str
        Label prefix of the nodes.

    Returns
    -------
    CellLayer
        A depthwise layer keeps the parts of an augmented input (depthwise products commute
        with channel augmentation); other patterns need a single-part input.
    """
    layer = _check_layer(layer, "product_layer")
    if padding not in _PADDINGS:
        raise ValueError(f"product_layer: padding must be one of {_PADDINGS}, got {padding!r}")
    kernel = _pair(kernel, "product_layer: kernel")
    dilation = _pair(dilation, "product_layer: dilation")
    if stride is None:
        stride = kernel if padding == "valid" else (1, 1)
    stride = _pair(stride, "product_layer: stride")
    height, width = layer.shape
    row_taps = _axis_taps(height, kernel[0], stride[0], dilation[0], padding)
    col_taps = _axis_taps(width, kernel[1], stride[1], dilation[1], padding)
    if len(row_taps) == 0 or len(col_taps) == 0:
        span = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
        raise ValueError(f"product_layer: a {kernel[0]}x{kernel[1]} kernel with dilation {dilation} spans "
                         f"{span[0]}x{span[1]} cells, more than the {height}x{width} layer {layer.name!r} with "
                         f"padding 'valid'")
    patterns = _combination_patterns(layer, kernel, combinations, rng)
    holes = layer._holes.tolist()
    windows = {}
    for oy, rows in enumerate(row_taps.tolist()):
        for ox, cols in enumerate(col_taps.tolist()):
            positions, present = [], []
            for j, (r, c) in enumerate((r, c) for r in rows for c in cols):
                if r >= 0 and c >= 0 and not holes[r][c]:
                    positions.append((r, c))
                    present.append(j)
            if positions:
                windows[oy, ox] = positions, present
    if padding == "final":
        windows, (num_rows, num_cols) = _covering_windows(layer, windows)
    else:
        num_rows, num_cols = len(row_taps), len(col_taps)
    taps_per_window = kernel[0] * kernel[1]
    out_parts = []
    for part_index, (pattern, full_table) in enumerate(patterns):
        part = layer.parts[part_index]
        cells = np.empty((num_rows, num_cols), dtype=object)
        for (oy, ox), (positions, present) in windows.items():
            children = [part[r, c] for r, c in positions]
            if isinstance(pattern, str) and pattern == "elementwise" or len(present) == taps_per_window:
                node_pattern = pattern
            else:
                node_pattern = full_table[:, present]
            cells[oy, ox] = ProductNode(children, node_pattern, label=f"{name}[{oy},{ox}]")
        out_parts.append(cells)
    return CellLayer(out_parts, variables=layer.variables, name=name)


def _combination_patterns(layer: CellLayer, kernel: tuple[int, int], combinations, rng):
    """``[(pattern for full windows, full table or None)]`` per output part."""
    taps = kernel[0] * kernel[1]
    if isinstance(combinations, str):
        if combinations == "depthwise":
            return [("elementwise", None)] * layer.num_parts
        if combinations not in ("one-hot", "cartesian"):
            raise ValueError(f"product_layer: combinations must be 'depthwise', 'one-hot', 'cartesian', an int or "
                             f"an int table, got {combinations!r}")
    if layer.num_parts != 1:
        raise ValueError(f"product_layer: one-hot combinations over the channel-augmented layer {layer.name!r} "
                         f"({layer.num_parts} parts) are not supported; put a spatial sum layer in between or "
                         f"use combinations='depthwise'")
    channels = layer.num_channels
    total = channels ** taps
    if isinstance(combinations, str):
        if total > MAX_COMBINATIONS:
            raise ValueError(f"product_layer: all one-hot combinations of {channels} channels over {taps} taps are "
                             f"{total} units per cell (limit {MAX_COMBINATIONS}); choose a subset (an int or a "
                             f"table) or combinations='depthwise'")
        table = np.indices([channels] * taps).reshape(taps, -1).T.copy()
        return [("cartesian", table)]
    if isinstance(combinations, (int, np.integer)) and not isinstance(combinations, bool):
        count = _positive_int(combinations, "product_layer: combinations")
        if count > total:
            raise ValueError(f"product_layer: asked for {count} combinations but {channels} channels over {taps} "
                             f"taps give only {total}")
        chosen = np.sort(make_rng(rng).choice(total, size=count, replace=False))
        table = np.stack(np.unravel_index(chosen, [channels] * taps), axis=1).astype(np.int64)
        return [(table, table)]
    table = np.asarray(combinations)
    if table.dtype.kind not in "iu":
        raise TypeError(f"product_layer: a combinations table must hold ints, got dtype {table.dtype}")
    if table.ndim != 2 or table.shape[1] != taps or table.shape[0] < 1:
        raise ValueError(f"product_layer: a combinations table must have shape (num_units, {taps}) for a "
                         f"{kernel[0]}x{kernel[1]} kernel, got {table.shape}")
    if table.min() < 0 or table.max() >= channels:
        raise ValueError(f"product_layer: the combinations table refers to channels outside 0..{channels - 1} "
                         f"of layer {layer.name!r}")
    table = table.astype(np.int64)
    return [(table, table)]


def _covering_windows(layer: CellLayer, windows: dict):
    """Keep the windows whose children cover the layer's scope, each child set once.

    Returns the kept windows re-indexed onto the grid of the rows and columns that keep at
    least one window (other positions of that grid become holes), and the grid's shape.
    """
    total = layer.full_scope.bits
    part = layer.parts[0]
    seen = set()
    kept = {}
    for key in sorted(windows):
        positions, present = windows[key]
        bits = 0
        for r, c in positions:
            bits |= part[r, c].scope.bits
        children = tuple(positions)
        if bits != total or children in seen:
            continue
        seen.add(children)
        kept[key] = (positions, present)
    rows = sorted({oy for oy, _ in kept})
    cols = sorted({ox for _, ox in kept})
    row_index = {oy: i for i, oy in enumerate(rows)}
    col_index = {ox: i for i, ox in enumerate(cols)}
    return {(row_index[oy], col_index[ox]): value for (oy, ox), value in kept.items()}, (len(rows), len(cols))


# ---- augmentation (DCSPN Definition 2) ---------------------------------------------------
def channel_augmentation(*layers: CellLayer, require_same_scopes: bool = True,
                         name: str | None = None) -> CellLayer:
    """Concatenate the channels of layers with the same grid (DCSPN Definition 2).

    A sum over an augmented cell mixes the units of all its parts, so it is smooth only when
    the parts' cells have the same scope (DCSPN Lemma 1).

    Parameters
    ----------
    *layers : CellLayer
        Two or more layers of equal shape and holes.
    require_same_scopes : bool
        Refuse (``ValueError``) layers whose cells at some position have different scopes.
        ``False`` builds the augmentation anyway; ``check()`` then reports the sums above it
        as not smooth.

    Returns
    -------
    CellLayer
        The parts of all inputs, in order; ``num_channels`` is the sum of theirs.
    """
    layers = _check_layers(layers, "channel_augmentation")
    first = layers[0]
    for index, other in enumerate(layers[1:], start=1):
        if other.shape != first.shape:
            raise ValueError(f"channel_augmentation: layer {index} ({other.name!r}) has {other.height}x{other.width} "
                             f"cells, layer 0 ({first.name!r}) has {first.height}x{first.width}")
        if not np.array_equal(other._holes, first._holes):
            raise ValueError(f"channel_augmentation: layer {index} ({other.name!r}) has holes at other positions "
                             f"than layer 0 ({first.name!r})")
        if require_same_scopes:
            for r, c in zip(*np.nonzero(~first._holes)):
                if first.scope(r, c) != other.scope(r, c):
                    fmt = first.variables.format_scope
                    raise ValueError(
                        f"channel_augmentation: cell ({r}, {c}) of layer {index} ({other.name!r}) covers "
                        f"{fmt(other.scope(r, c))} but layer 0 ({first.name!r}) covers {fmt(first.scope(r, c))}; "
                        f"a sum over both would not be smooth (DCSPN Lemma 1 needs the same scope per cell)")
    parts = [part for layer in layers for part in layer.parts]
    label = name if name is not None else "+".join(layer.name for layer in layers)
    return CellLayer(parts, variables=first.variables, name=label)


def width_augmentation(*layers: CellLayer, name: str | None = None) -> CellLayer:
    """Place layers side by side along the width axis (DCSPN Definition 2).

    The layers need the same height and the same channel structure. A product window that
    spans the seam multiplies cells of different layers; it is decomposable only when their
    scopes are disjoint (DCSPN Lemma 2), which ``check()`` verifies.
    """
    return _spatial_augmentation(layers, axis=1, where="width_augmentation", name=name)


def height_augmentation(*layers: CellLayer, name: str | None = None) -> CellLayer:
    """Stack layers along the height axis (DCSPN Definition 2); see :func:`width_augmentation`."""
    return _spatial_augmentation(layers, axis=0, where="height_augmentation", name=name)


def _spatial_augmentation(layers, *, axis: int, where: str, name: str | None) -> CellLayer:
    layers = _check_layers(layers, where)
    first = layers[0]
    other_axis = 1 - axis
    for index, other in enumerate(layers[1:], start=1):
        if other.shape[other_axis] != first.shape[other_axis]:
            what = "height" if other_axis == 0 else "width"
            raise ValueError(f"{where}: layer {index} ({other.name!r}) has {what} {other.shape[other_axis]}, layer 0 "
                             f"({first.name!r}) has {first.shape[other_axis]}")
        if other.part_channels != first.part_channels:
            raise ValueError(f"{where}: layer {index} ({other.name!r}) has channels {other.part_channels}, layer 0 "
                             f"({first.name!r}) has {first.part_channels}")
        if other.variables != first.variables:
            raise ValueError(f"{where}: layer {index} ({other.name!r}) is over {other.variables!r}, layer 0 over "
                             f"{first.variables!r}")
    parts = [np.concatenate([layer.parts[p] for layer in layers], axis=axis) for p in range(first.num_parts)]
    label = name if name is not None else "|".join(layer.name for layer in layers)
    return CellLayer(parts, variables=first.variables, name=label)


def _check_layers(layers, where: str) -> list[CellLayer]:
    if len(layers) == 1 and not isinstance(layers[0], CellLayer):
        layers = tuple(layers[0])
    layers = [_check_layer(layer, where) for layer in layers]
    if len(layers) < 2:
        raise ValueError(f"{where}: needs at least two layers, got {len(layers)}")
    return layers


# ---- roots -------------------------------------------------------------------------------
def root_sum(layer: CellLayer, *, num_roots: int = 1, rng=None, name: str = "root",
             log_weight_std: float | None = None) -> list[SumNode]:
    """Sums over every unit of a final layer whose cells all cover the same (whole) scope.

    Parameters
    ----------
    layer : CellLayer
        Its cells must all have the same scope (the whole image, for a top layer).
    num_roots : int
        How many roots (one per class for a discriminative model), each a one-unit
        :class:`~pcircuits.SumNode` with its own random normalized weights.
    log_weight_std : float, optional
        Draw each root's log-weights from ``N(0, log_weight_std^2)`` (then normalize) instead
        of weights uniform in [0.01, 1]. Class roots over shared units need a wide spread:
        see :func:`~pcircuits.builders.dgcspn`.

    Returns
    -------
    list of SumNode
        Pass to :class:`~pcircuits.Circuit`, e.g. ``Circuit(root_sum(layer), variables=layer.variables)``.
    """
    layer = _check_layer(layer, "root_sum")
    num_roots = _positive_int(num_roots, "root_sum: num_roots")
    scopes = {}
    for r, c in zip(*np.nonzero(~layer._holes)):
        scopes.setdefault(layer.scope(r, c), (int(r), int(c)))
    if len(scopes) != 1:
        fmt = layer.variables.format_scope
        examples = "; ".join(f"cell {pos} covers {fmt(scope)}" for scope, pos in list(scopes.items())[:3])
        raise ValueError(f"root_sum: the cells of layer {layer.name!r} cover {len(scopes)} different scopes ({examples}"
                         f"{'; ...' if len(scopes) > 3 else ''}); a root sum needs a final layer whose cells all "
                         f"cover the same variables")
    log_weight_std = _check_log_weight_std(log_weight_std, "root_sum")
    children = layer.nodes()
    gen = make_rng(rng)
    label = (lambda k: name) if num_roots == 1 else (lambda k: f"{name}[{k}]")
    num_inputs = sum(child.num_units for child in children)
    return [SumNode(children, weights=_random_weights(gen, (1, num_inputs), log_weight_std), label=label(k))
            for k in range(num_roots)]
