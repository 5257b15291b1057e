"""The Poon-Domingos (PD) architecture for images (Poon and Domingos, UAI 2011).

Every rectangle of the image is a *region*. A region is split in all ways into two
sub-rectangles along both axes, but only at the cut lines of a coarse resolution ``delta``;
rectangles inside one coarse cell are split at the next resolution, down to single pixels
(P&D 2011, section 5: coarse resolution 4, then unit resolution inside a 4x4 cell). A region is
one :class:`~pcircuits.SumNode` with ``num_sums`` units (the root: one unit); a split is one
:class:`~pcircuits.ProductNode` with the ``"cartesian"`` pattern over the two sub-regions'
nodes; a pixel is one :class:`~pcircuits.InputNode` with ``num_leaves`` components. Regions
reached by several splits are built once and shared, as in P&D.

``dense=True`` builds the dense SPN of Tan, Peharz and Adel ("Sum Product Network with VAE
leaves"): the image is a grid of ``delta`` x ``delta`` superpixels, every rectangle of that grid
(superpixels included) is a region with ``num_sums`` sum units, split at every grid line; a
superpixel's sums mix ``num_leaves`` factorized leaf components (an elementwise product of
its pixels' leaves). Its sizes are the poster's: ``K m(m+1)n(n+1)/4`` sum units and
``K^2 m(m+1)n(n+1)(m+n-2)/12`` product units for an ``m x n`` grid (the root has one unit, not K).
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from ..circuit import Circuit
from ..nodes import Node, ProductNode, SumNode
from ..scope import Variables
from .leaves import LeafSpec, check_leaf, pixel_factors, supports_multivariate

__all__ = ["poon_domingos", "poon_domingos_size", "parse_resolutions"]

Rect = tuple[int, int, int, int]  # (row_start, row_stop, col_start, col_stop), stops exclusive


def poon_domingos(height: int, width: int, *, channels: int | None = None, delta=4, num_sums: int = 4,
                  num_leaves: int = 4, leaf: LeafSpec = "gaussian", dense: bool = False,
                  max_splits: int | None = None, leaf_params: dict | None = None, seed: int | None = 0) -> Circuit:
    """Build a Poon-Domingos circuit over a ``height x width`` (x ``channels``) image.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    channels : int, optional
        Channels per pixel (variables ``x[r,c,ch]``, channels last). A pixel's leaf is one
        diagonal Gaussian over its channels for Gaussian leaves, else an elementwise product of
        one univariate leaf per channel.
    delta : int or list of levels (ints or ``(dy, dx)`` pairs)
        Coarse resolution(s) of the cut lines: cuts lie at multiples of ``delta`` (write
        ``[(dy, dx)]`` for one level with a resolution per axis). A list gives several levels,
        read as EinsumNetworks reads its ``delta=[[7, 7]]`` (see :func:`parse_resolutions`) and
        tried in order: a region is split at the cut lines of the first level that has a cut
        line inside it. ``dense=False`` always appends the unit resolution as the last level, so
        the coarse cells are decomposed down to pixels (P&D's choice). ``dense=True`` uses the
        union of all levels' cut lines as one grid and keeps the grid cells as factorized
        superpixel leaves.
    num_sums : int
        ``K``: sum units per region (the root region has one).
    num_leaves : int
        ``G``: leaf components per pixel.
    leaf : str, LeafFamily subclass or callable
        ``"gaussian"`` (default), ``"bernoulli"``, ``"categorical"``, ``"binomial"``,
        ``"indicator"``, or ``leaf(variables, num_units, rng) -> LeafFamily``.
    dense : bool
        Build the dense superpixel variant of the VAE-leaf poster (see the module docstring).
    max_splits : int, optional
        Keep at most this many splits per region, a random subset drawn with ``seed``; regions
        that no kept split reaches are not built.
    leaf_params : dict, optional
        Keyword arguments of the leaf family's ``random``: ``num_categories`` (categorical,
        indicator), ``n`` (binomial), ``mean_scale`` (Gaussian).
    seed : int or None
        Seeds both the random splits (``max_splits``) and the random parameters, from separate
        streams, so the structure does not depend on the leaf family.

    Returns
    -------
    Circuit
        One root with one unit; variables ``Variables.image(height, width[, channels])``.

    Notes
    -----
    The size grows fast: a region with ``s`` splits holds ``K * s * K^2`` weights. Use
    :func:`poon_domingos_size` to see the sizes before building, and ``max_splits`` or a coarser
    ``delta`` to shrink them.
    """
    where = "poon_domingos"
    height = _positive_int(height, "height", where)
    width = _positive_int(width, "width", where)
    num_channels = 1 if channels is None else _positive_int(channels, "channels", where)
    num_sums = _positive_int(num_sums, "num_sums", where)
    num_leaves = _positive_int(num_leaves, "num_leaves", where)
    if max_splits is not None:
        max_splits = _positive_int(max_splits, "max_splits", where)
    if not isinstance(dense, (bool, np.bool_)):
        raise TypeError(f"{where}: dense must be True or False, got {dense!r}")
    leaf_params = check_leaf(leaf, leaf_params, where)
    levels = parse_resolutions(delta, where=where)

    structure_seed, param_seed = np.random.SeedSequence(seed).spawn(2)
    structure_rng = np.random.default_rng(structure_seed)
    param_rng = np.random.default_rng(param_seed)

    variables = Variables.image(height, width, channels)
    splitter = _GridSplitter(height, width, levels, dense)
    regions = _region_graph((0, height, 0, width), splitter, max_splits, structure_rng)

    factors = {}
    for r in range(height):
        for c in range(width):
            first = (r * width + c) * num_channels
            factors[r, c] = pixel_factors(leaf, num_leaves, range(first, first + num_channels),
                                          rng=param_rng, leaf_params=leaf_params, where=where)

    root_rect = (0, height, 0, width)
    built: dict[Rect, Node] = {}
    for rect in sorted(regions, key=_area_key):
        units = 1 if rect == root_rect else num_sums
        label = _rect_label(rect)
        if splitter.is_atom(rect):
            cell_factors = [f for r in range(rect[0], rect[1]) for c in range(rect[2], rect[3])
                            for f in factors[r, c]]
            leaf_node = cell_factors[0] if len(cell_factors) == 1 else ProductNode(cell_factors, "elementwise")
            if dense or rect == root_rect:
                built[rect] = SumNode([leaf_node], num_units=units, rng=param_rng, label=label)
            else:
                built[rect] = leaf_node
            continue
        products = [ProductNode([built[first], built[second]], "cartesian") for first, second in regions[rect]]
        built[rect] = SumNode(products, num_units=units, rng=param_rng, label=label)
    return Circuit(built[root_rect], variables=variables)


def parse_resolutions(delta, *, where: str = "poon_domingos") -> list[tuple[int, int]]:
    """Normalize ``delta`` to a list of ``(dy, dx)`` levels of positive ints, as EinsumNetworks reads it.

    An int is one level for both axes; a list holds one entry per level, each an int (both
    axes) or a ``(dy, dx)`` pair: ``4`` -> ``[(4, 4)]``; ``[[7, 4]]`` -> ``[(7, 4)]``;
    ``[8, 4]`` -> ``[(8, 8), (4, 4)]``; ``[[7, 7], 2]`` -> ``[(7, 7), (2, 2)]``.
    """
    def level(value) -> tuple[int, int]:
        if _is_int(value):
            d = int(value)
            if d < 1:
                raise ValueError(f"{where}: delta must be >= 1, got {d}")
            return (d, d)
        if isinstance(value, (Sequence, np.ndarray)) and len(value) == 2 and all(_is_int(v) for v in value):
            dy, dx = int(value[0]), int(value[1])
            if dy < 1 or dx < 1:
                raise ValueError(f"{where}: delta must be >= 1 on both axes, got ({dy}, {dx})")
            return (dy, dx)
        raise ValueError(f"{where}: each level of delta must be a positive int or a (dy, dx) pair of positive "
                         f"ints, got {value!r}")

    if _is_int(delta):
        return [level(delta)]
    if not isinstance(delta, (Sequence, np.ndarray)) or isinstance(delta, str) or len(delta) == 0:
        raise ValueError(f"{where}: delta must be an int or a non-empty list of levels (ints or (dy, dx) pairs), "
                         f"got {delta!r}")
    return [level(v) for v in delta]


def poon_domingos_size(height: int, width: int, *, channels: int | None = None, delta=4, num_sums: int = 4,
                       num_leaves: int = 4, leaf: LeafSpec = "gaussian", dense: bool = False) -> dict:
    """Closed-form sizes of :func:`poon_domingos` without building it (no ``max_splits``).

    For ``dense=False`` the image must be a whole number of ``delta`` cells and ``delta`` one
    level; ``dense=True`` accepts any sizes and levels. With ``m x n`` atoms (cells, or pixels),
    ``A`` units per atom and ``K`` per region, a grid has ``m(m+1)n(n+1)/4 - mn`` regions larger
    than an atom and ``T = m(m+1)n(n+1)(m+n-2)/12`` splits (P&D; Tan et al.); a split has
    ``A^2``, ``A K`` or ``K^2`` product units when both, one or none of its halves are atoms:
    ``n(m-1) + m(n-1)`` splits cut a two-atom line into atoms and ``n(m-1)(m-2) + m(n-1)(n-2)``
    cut one atom off a longer line. ``dense=False`` adds up the coarse grid (atoms: cells, ``A =
    K``) and each cell's pixel grid (atoms: pixels, ``A = G``).

    Returns
    -------
    dict
        ``sum_nodes, product_nodes, input_nodes, nodes, sum_units, product_units, input_units,
        units, sum_edges, product_edges, edges`` (edges as ``Circuit.num_edges`` counts them),
        and ``cartesian_product_units`` (the split products alone).
    """
    where = "poon_domingos_size"
    height = _positive_int(height, "height", where)
    width = _positive_int(width, "width", where)
    num_channels = 1 if channels is None else _positive_int(channels, "channels", where)
    K = _positive_int(num_sums, "num_sums", where)
    G = _positive_int(num_leaves, "num_leaves", where)
    check_leaf(leaf, None, where)
    levels = parse_resolutions(delta, where=where)
    if height * width < 2:
        raise ValueError(f"{where}: the closed form needs at least two pixels, got {height}x{width}")
    factors_per_pixel = 1 if num_channels == 1 or supports_multivariate(leaf) else num_channels
    pixels = height * width
    counts = dict(input_nodes=pixels * factors_per_pixel, input_units=pixels * factors_per_pixel * G)
    leaf_product_nodes = leaf_product_units = leaf_product_edges = 0

    if not dense:
        if len(levels) != 1:
            raise ValueError(f"{where}: the closed form covers one resolution level, got {levels}")
        dy, dx = levels[0]
        dy, dx = min(dy, height), min(dx, width)
        if height % dy or width % dx:
            raise ValueError(f"{where}: the closed form needs whole cells: {height}x{width} is not a multiple of "
                             f"the resolution ({dy}, {dx})")
        if dy * dx == 1:
            grid = _grid_counts(height, width, G, K)
            regions, splits, cartesian_units = grid["regions"], grid["splits"], grid["units"]
            root_units = grid["root_units"]
        else:
            m, n = height // dy, width // dx
            coarse, cell = _grid_counts(m, n, K, K), _grid_counts(dy, dx, G, K)
            regions = coarse["regions"] + m * n * cell["regions"]
            splits = coarse["splits"] + m * n * cell["splits"]
            cartesian_units = coarse["units"] + m * n * cell["units"]
            root_units = coarse["root_units"] if m * n > 1 else cell["root_units"]
        if factors_per_pixel > 1:
            leaf_product_nodes, leaf_product_units = pixels, pixels * G
            leaf_product_edges = pixels * G * factors_per_pixel
        sum_nodes = regions
        sum_units = K * regions - (K - 1)
        sum_edges = K * cartesian_units - (K - 1) * root_units
    else:
        row_cells = np.diff(_grid_lines(height, [dy for dy, _ in levels]))
        col_cells = np.diff(_grid_lines(width, [dx for _, dx in levels]))
        m, n = len(row_cells), len(col_cells)
        grid = _grid_counts(m, n, K, K)
        cells = m * n
        sum_nodes = grid["regions"] + cells
        sum_units = K * sum_nodes - (K - 1)
        splits, cartesian_units = grid["splits"], grid["units"]
        cell_factors = np.outer(row_cells, col_cells).ravel() * factors_per_pixel
        leaf_product_nodes = int(np.count_nonzero(cell_factors > 1))
        leaf_product_units = leaf_product_nodes * G
        leaf_product_edges = int(cell_factors[cell_factors > 1].sum()) * G
        if cells == 1:
            sum_edges = G
        else:
            sum_edges = K * cartesian_units - (K - 1) * grid["root_units"] + cells * K * G
    counts.update(
        sum_nodes=int(sum_nodes), product_nodes=int(splits + leaf_product_nodes),
        sum_units=int(sum_units), product_units=int(cartesian_units + leaf_product_units),
        cartesian_product_units=int(cartesian_units),
        sum_edges=int(sum_edges), product_edges=int(2 * cartesian_units + leaf_product_edges))
    counts["nodes"] = counts["sum_nodes"] + counts["product_nodes"] + counts["input_nodes"]
    counts["units"] = counts["sum_units"] + counts["product_units"] + counts["input_units"]
    counts["edges"] = counts["sum_edges"] + counts["product_edges"]
    return counts


# ---- region graph ------------------------------------------------------------------------

class _GridSplitter:
    """Which cuts split a rectangle, for the hierarchical (P&D) or the dense grid rule."""

    def __init__(self, height: int, width: int, levels: list[tuple[int, int]], dense: bool):
        self.dense = dense
        if dense:
            self.row_lines = _grid_lines(height, [dy for dy, _ in levels])[1:-1].tolist()
            self.col_lines = _grid_lines(width, [dx for _, dx in levels])[1:-1].tolist()
        else:
            if levels[-1] != (1, 1):
                levels = levels + [(1, 1)]
            self.level_lines = [(list(range(dy, height, dy)), list(range(dx, width, dx))) for dy, dx in levels]

    def cuts(self, rect: Rect) -> tuple[list[int], list[int]]:
        """Row cut positions and column cut positions strictly inside ``rect``."""
        r0, r1, c0, c1 = rect
        if self.dense:
            return _inside(self.row_lines, r0, r1), _inside(self.col_lines, c0, c1)
        for row_lines, col_lines in self.level_lines:
            rows, cols = _inside(row_lines, r0, r1), _inside(col_lines, c0, c1)
            if rows or cols:
                return rows, cols
        return [], []

    def is_atom(self, rect: Rect) -> bool:
        """A pixel (hierarchical rule) or a grid cell (dense rule): a region that is not split."""
        if self.dense:
            rows, cols = self.cuts(rect)
            return not rows and not cols
        return rect[1] - rect[0] == 1 and rect[3] - rect[2] == 1


def _inside(lines: list[int], start: int, stop: int) -> list[int]:
    return lines[bisect.bisect_right(lines, start):bisect.bisect_left(lines, stop)]


def _grid_lines(size: int, resolutions: list[int]) -> np.ndarray:
    """Sorted cut lines of all resolutions on one axis, with 0 and ``size`` at the ends."""
    lines = {0, size}
    for d in resolutions:
        lines.update(range(d, size, d))
    return np.array(sorted(lines))


def _region_graph(root: Rect, splitter: _GridSplitter, max_splits: int | None,
                  rng: np.random.Generator) -> dict[Rect, list[tuple[Rect, Rect]]]:
    """Every reachable region with its splits ``(first half, second half)``, breadth first."""
    regions: dict[Rect, list[tuple[Rect, Rect]]] = {}
    queue = [root]
    position = 0
    regions[root] = []
    while position < len(queue):
        rect = queue[position]
        position += 1
        if splitter.is_atom(rect):
            continue
        r0, r1, c0, c1 = rect
        rows, cols = splitter.cuts(rect)
        splits = ([((r0, p, c0, c1), (p, r1, c0, c1)) for p in rows]
                  + [((r0, r1, c0, p), (r0, r1, p, c1)) for p in cols])
        if max_splits is not None and len(splits) > max_splits:
            keep = np.sort(rng.choice(len(splits), size=max_splits, replace=False))
            splits = [splits[i] for i in keep]
        regions[rect] = splits
        for pair in splits:
            for child in pair:
                if child not in regions:
                    regions[child] = []
                    queue.append(child)
    return regions


def _area_key(rect: Rect) -> tuple[int, Rect]:
    return ((rect[1] - rect[0]) * (rect[3] - rect[2]), rect)


def _rect_label(rect: Rect) -> str:
    r0, r1, c0, c1 = rect
    rows = str(r0) if r1 - r0 == 1 else f"{r0}..{r1 - 1}"
    cols = str(c0) if c1 - c0 == 1 else f"{c0}..{c1 - 1}"
    return f"x[{rows}, {cols}]"


def _grid_counts(m: int, n: int, atom_units: int, region_units: int) -> dict:
    """Regions above atom size, splits and split product units of the full PD on an m x n grid."""
    regions = m * (m + 1) * n * (n + 1) // 4 - m * n
    splits = m * (m + 1) * n * (n + 1) * (m + n - 2) // 12
    atom_atom = n * (m - 1) + m * (n - 1)
    atom_region = n * (m - 1) * (m - 2) + m * (n - 1) * (n - 2)
    region_region = splits - atom_atom - atom_region
    A, K = atom_units, region_units
    units = atom_atom * A * A + atom_region * A * K + region_region * K * K

    def size(rows: int, cols: int) -> int:
        return A if rows == 1 and cols == 1 else K

    root_units = (sum(size(r, n) * size(m - r, n) for r in range(1, m))
                  + sum(size(m, c) * size(m, n - c) for c in range(1, n)))
    return dict(regions=regions, splits=splits, units=units, root_units=root_units)


# ---- argument checks ------------------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(value, name: str, where: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)
