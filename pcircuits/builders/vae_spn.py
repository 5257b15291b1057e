"""The SPN with VAE leaves of Tan, Peharz and Adel: a dense Poon-Domingos SPN over a superpixel grid.

The image is cut into ``superpixel`` cells. Every rectangle of cells is a region, split at every
grid line (the dense rule of :func:`~pcircuits.builders.poon_domingos` with ``dense=True``); a
region larger than a cell is one :class:`~pcircuits.SumNode` with ``num_sums`` units (the root
one unit) over the cartesian products of its splits. With ``leaf="vae"`` a cell is one
:class:`~pcircuits.InputNode` of ``leaves_per_superpixel`` :class:`~pcircuits.VAE` units over
its pixels (no sum on top: the VAEs are the cell's components). With a univariate family
(``leaf="bernoulli"``, the poster's vanilla SPN) a cell is itself a dense SPN: a Poon-Domingos
SPN over the cell's pixels with ``leaves_per_superpixel`` leaves per pixel and ``num_sums`` sums
per rectangle, the cell included.

Sizes, counted in units as the poster counts them (its "nodes" are scalar units, the root region
counted with ``K`` units; pcircuits' root is one unit, so a circuit has ``K - 1`` fewer sum
units), for an ``m x n`` cell grid, ``K`` sums and cells of ``p`` pixels in an ``a x b`` block:

* VAE leaves: ``G m n`` VAE units, ``K (R - m n)`` sum units and, for ``G = K``, ``K^2 T`` product
  units, with ``R = m(m+1)n(n+1)/4`` rectangles and ``T = m(m+1)n(n+1)(m+n-2)/12`` splits
  (a split of two cells has ``G^2`` units, of a cell and a larger region ``G K``);
* vanilla: ``G m n p`` leaf units, ``K R + m n K (R_c - p - 1)`` sum units and, for ``G = K``,
  ``K^2 (T + m n T_c)`` product units, ``R_c, T_c`` the same numbers for the ``a x b`` pixel grid.
"""
from __future__ import annotations

import numpy as np

from ..circuit import Circuit
from ..distributions import VAE
from ..nodes import InputNode, Node, ProductNode, SumNode
from ..scope import Variables
from .leaves import LeafSpec, check_leaf
from .poon_domingos import (_grid_counts, _GridSplitter, _area_key, _positive_int, _rect_label, _region_graph,
                            poon_domingos)

__all__ = ["vae_spn", "vae_spn_size"]


def vae_spn(height: int, width: int, *, superpixel=(4, 4), num_sums: int = 2, leaves_per_superpixel: int = 2,
            leaf: LeafSpec = "vae", latent_dim: int = 2, hidden: int = 16, pixel: str = "bernoulli",
            trials: int = 1, num_samples: int = 1, activation: str = "relu", leaf_params: dict | None = None,
            seed: int | None = 0) -> Circuit:
    """Build the dense superpixel SPN of the VAE-leaves poster.

    Parameters
    ----------
    height, width : int
        Image size in pixels; multiples of the superpixel size.
    superpixel : int or (int, int)
        Superpixel height and width (4x4 in the poster).
    num_sums : int
        ``K``: sum units per region (the root has one).
    leaves_per_superpixel : int
        VAE units per superpixel (``leaf="vae"``), or leaf units per pixel for a univariate family.
    leaf : "vae" or a univariate family
        ``"vae"``: one VAE per superpixel component. Anything else (``"bernoulli"``,
        ``"binomial"``, ``"gaussian"``, ...) makes every superpixel a dense PD SPN over its pixels
        with that family's leaves: the poster's vanilla SPN.
    latent_dim, hidden, pixel, trials, num_samples, activation
        The VAE leaves' settings (see :class:`~pcircuits.VAE`); ignored for other leaves.
    leaf_params : dict, optional
        Keyword arguments of a univariate family's ``random`` (``n`` for binomial leaves).
    seed : int or None
        Seeds the parameters.

    Returns
    -------
    Circuit
        One root with one unit; variables ``Variables.image(height, width)``.
    """
    where = "vae_spn"
    height = _positive_int(height, "height", where)
    width = _positive_int(width, "width", where)
    cell_h, cell_w = _superpixel(superpixel, height, width, where)
    num_sums = _positive_int(num_sums, "num_sums", where)
    leaves_per_superpixel = _positive_int(leaves_per_superpixel, "leaves_per_superpixel", where)
    if leaf != "vae":
        check_leaf(leaf, leaf_params, where)
        return poon_domingos(height, width, delta=[(cell_h, cell_w)], num_sums=num_sums,
                             num_leaves=leaves_per_superpixel, leaf=leaf, dense=False, leaf_params=leaf_params,
                             seed=seed)
    if leaf_params:
        raise TypeError(f"{where}: VAE leaves take their settings as keyword arguments (latent_dim=, hidden=, "
                        f"...), not leaf_params={leaf_params!r}")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    splitter = _GridSplitter(height, width, [(cell_h, cell_w)], dense=True)
    root_rect = (0, height, 0, width)
    regions = _region_graph(root_rect, splitter, None, np.random.default_rng(0))
    built: dict[tuple, Node] = {}
    for rect in sorted(regions, key=_area_key):
        if splitter.is_atom(rect):
            r0, r1, c0, c1 = rect
            variables = [r * width + c for r in range(r0, r1) for c in range(c0, c1)]
            family = VAE.random(leaves_per_superpixel, len(variables), rng, latent_dim=latent_dim, hidden=hidden,
                                pixel=pixel, trials=trials, num_samples=num_samples, activation=activation)
            node = InputNode(variables, family, label=_rect_label(rect))
            built[rect] = node if rect != root_rect else SumNode([node], num_units=1, rng=rng)
            continue
        units = 1 if rect == root_rect else num_sums
        products = [ProductNode([built[first], built[second]], "cartesian") for first, second in regions[rect]]
        built[rect] = SumNode(products, num_units=units, rng=rng, label=_rect_label(rect))
    return Circuit(built[root_rect], variables=Variables.image(height, width))


def vae_spn_size(height: int, width: int, *, superpixel=(4, 4), num_sums: int = 2, leaves_per_superpixel: int = 2,
                 leaf: str = "vae") -> dict:
    """The poster's unit counts of :func:`vae_spn` in closed form (root region counted with ``K`` units).

    Returns
    -------
    dict
        ``leaf_units``, ``sum_units``, ``product_units`` as the poster counts them; the circuit
        that :func:`vae_spn` builds has ``sum_units - (num_sums - 1)`` sum units (one root unit).
    """
    where = "vae_spn_size"
    cell_h, cell_w = _superpixel(superpixel, _positive_int(height, "height", where),
                                 _positive_int(width, "width", where), where)
    K = _positive_int(num_sums, "num_sums", where)
    G = _positive_int(leaves_per_superpixel, "leaves_per_superpixel", where)
    m, n = height // cell_h, width // cell_w
    if leaf == "vae":
        grid = _grid_counts(m, n, G, K)
        return {"leaf_units": G * m * n, "sum_units": K * grid["regions"], "product_units": grid["units"]}
    coarse, cell = _grid_counts(m, n, K, K), _grid_counts(cell_h, cell_w, G, K)
    pixels = cell_h * cell_w
    inner_regions = cell["regions"] - 1 if pixels > 1 else 0
    return {"leaf_units": G * m * n * pixels,
            "sum_units": K * (coarse["regions"] + m * n) + m * n * K * inner_regions,
            "product_units": coarse["units"] + m * n * cell["units"]}


def _superpixel(superpixel, height: int, width: int, where: str) -> tuple[int, int]:
    size = (superpixel, superpixel) if isinstance(superpixel, (int, np.integer)) else tuple(superpixel)
    if len(size) != 2:
        raise ValueError(f"{where}: superpixel must be an int or a (height, width) pair, got {superpixel!r}")
    cell_h, cell_w = (_positive_int(s, "superpixel", where) for s in size)
    if height % cell_h or width % cell_w:
        raise ValueError(f"{where}: a {height}x{width} image is not a whole number of {cell_h}x{cell_w} superpixels")
    return cell_h, cell_w
