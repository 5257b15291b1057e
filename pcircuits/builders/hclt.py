"""Hidden Chow-Liu trees (HCLT; Liu & Van den Broeck, "Tractable regularization of probabilistic
circuits", NeurIPS 2021).

A Chow-Liu tree is the maximum spanning tree of the pairwise mutual information between the
variables: the best tree-shaped Bayesian network for the data (Chow & Liu, 1968). The HCLT
gives every variable ``X_v`` a latent ``Z_v`` with ``K`` states, puts the tree on the latents
(``Z_c`` depends on ``Z_parent(c)``) and lets each ``X_v`` depend on its own ``Z_v``. As a
circuit, the subtree under ``v`` is, for every state ``k`` of ``Z_v``,

    f_v(k) = P(x_v | Z_v = k) * prod over children c of  sum_j P(Z_c = j | Z_v = k) f_c(j),

which in vector-node form is an :class:`~pcircuits.InputNode` with ``K`` units (one leaf per
latent state), one ``K``-unit :class:`~pcircuits.SumNode` per child (the ``K x K`` transition)
and an elementwise :class:`~pcircuits.ProductNode` over the leaf and the children's sums; the
root is a one-unit SumNode over the root variable's ``K`` units (the prior of ``Z_root``).

A variable without children in the tree needs no latent of its own: ``sum_j P(Z_c = j | Z_v =
k) P(x_c | Z_c = j)`` is again one distribution over ``x_c`` per ``k``, so by default
(``collapse_leaves=True``) the leaf node of such a variable enters its parent's product
directly. This is the structure PyJuice builds (its ``HCLT``), with the same edge count for the
same tree; ``collapse_leaves=False`` gives every non-root variable its ``K x K`` transition.

Mutual information is estimated on binned data (:func:`mutual_information`): all pairwise
joint counts at once as one-hot matrix products, in blocks of variables so that memory stays
bounded for image-sized data.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csgraph

from ..circuit import Circuit
from ..distributions import FAMILIES, Bernoulli, Categorical, Gaussian, LeafFamily
from ..nodes import InputNode, Node, ProductNode, SumNode
from ..scope import Variables
from .leaves import LeafSpec, check_leaf, make_leaf_family

__all__ = ["hclt", "mutual_information", "chow_liu_tree", "learn_chow_liu_tree", "bin_codes",
           "DEFAULT_NUM_BINS"]

#: Bins per variable in the mutual-information estimate when ``num_bins`` is not given.
DEFAULT_NUM_BINS = 16

#: One-hot columns per block of the joint-count matrix products (bounds the memory in use).
_BLOCK_COLUMNS = 4096

#: Smallest standard deviation of a data-initialized Gaussian leaf.
_MIN_STD = 1e-3

_DATA_INIT_FAMILIES = (Categorical, Bernoulli, Gaussian)


# ---- data -------------------------------------------------------------------------------
def _as_data(data, where: str) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """A finite array of shape (rows, variables), and the image shape if it had one.

    Integer data keep their dtype (no copy of a large uint8 data set), booleans become uint8,
    floating-point data become float64.
    """
    try:
        array = np.asarray(data)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: data must be a numeric array, got {type(data).__name__}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{where}: data must be a numeric array (bool, int or float), got dtype {array.dtype}")
    if array.ndim < 2 or array.ndim > 4:
        raise ValueError(f"{where}: data must have shape (rows, variables), or (rows, height, width[, channels]) "
                         f"for images, got shape {array.shape}")
    image_shape = tuple(array.shape[1:]) if array.ndim > 2 else None
    array = array.reshape(array.shape[0], -1)
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    elif array.dtype.kind == "f":
        array = array.astype(np.float64, copy=False)
    num_rows, num_variables = array.shape
    if num_variables < 1:
        raise ValueError(f"{where}: data must have at least one variable (column), got shape {array.shape}")
    if num_rows < 2:
        raise ValueError(f"{where}: needs at least 2 rows of data to estimate mutual information, got {num_rows}")
    bad = ~np.isfinite(array) if array.dtype.kind == "f" else None
    if bad is not None and bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{where}: data must be finite (missing values are not supported when learning a "
                         f"structure); {int(bad.sum())} entries are NaN or infinite, the first at row {row}, "
                         f"variable {column}")
    return array, image_shape


def _is_categorical_data(array: np.ndarray) -> bool:
    """Whether every entry is a non-negative integer."""
    return bool(array.min() >= 0 and (array.dtype.kind != "f" or np.all(array == np.floor(array))))


def _check_categories(array: np.ndarray, where: str, what: str):
    if array.min() < 0:
        row, column = np.argwhere(array < 0)[0]
        raise ValueError(f"{where}: {what} need non-negative integer data, but row {row}, variable {column} "
                         f"holds {array[row, column]:g}")
    fractional = array != np.floor(array) if array.dtype.kind == "f" else None
    if fractional is not None and fractional.any():
        row, column = np.argwhere(fractional)[0]
        raise ValueError(f"{where}: {what} need integer data, but row {row}, variable {column} holds "
                         f"{array[row, column]:g}; use leaf='gaussian' for continuous data")


def _check_root(root, num_variables: int, where: str):
    if root is not None and (isinstance(root, (bool, np.bool_)) or not isinstance(root, (int, np.integer))
                             or not 0 <= root < num_variables):
        raise ValueError(f"{where}: root must be a variable id in 0..{num_variables - 1}, got {root!r}")


def _positive_int(value, name: str, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)


# ---- mutual information -----------------------------------------------------------------
def bin_codes(data, *, num_bins: int = DEFAULT_NUM_BINS,
              num_categories: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Discretize every variable for the mutual-information estimate.

    Non-negative integer data are categories: they are kept as they are when there are at
    most ``num_bins`` of them, else grouped into ``num_bins`` runs of consecutive categories of
    equal width (category ``c`` of ``C`` goes to bin ``c * num_bins // C``). Other data are cut
    at ``num_bins - 1`` per-variable quantiles that are data values (a value equal to a cut
    goes to the lower bin), so the bins do not change under strictly increasing transforms.
    Empty bins are then dropped, so each variable's codes are ``0 .. sizes[v] - 1``.

    Parameters
    ----------
    data : array_like, shape (rows, num_variables)
    num_bins : int
    num_categories : int, optional
        Domain size of categorical data (default: the largest value plus one).

    Returns
    -------
    codes : ndarray of int64, shape (rows, num_variables)
    sizes : ndarray of int64, shape (num_variables,)
        Bins in use per variable.
    """
    where = "bin_codes"
    array, _ = _as_data(data, where)
    num_bins = _positive_int(num_bins, "num_bins", where)
    if _is_categorical_data(array):
        top = int(array.max()) + 1
        domain = top if num_categories is None else int(num_categories)
        if domain < top:
            raise ValueError(f"{where}: num_categories={domain} but the data hold the value {top - 1}")
        codes = array.astype(np.int64)
        if domain > num_bins:
            codes = codes * num_bins // domain
    else:
        quantiles = np.linspace(0.0, 1.0, num_bins + 1)[1:-1]
        cuts = np.quantile(array, quantiles, axis=0, method="lower")  # (num_bins - 1, num_variables)
        codes = np.empty(array.shape, dtype=np.int64)
        for v in range(array.shape[1]):  # the number of cuts below each value
            codes[:, v] = np.searchsorted(cuts[:, v], array[:, v], side="left")
    num_variables = array.shape[1]
    width = int(codes.max()) + 1
    present = np.zeros((num_variables, width), dtype=bool)
    present[np.broadcast_to(np.arange(num_variables), codes.shape), codes] = True
    remap = np.cumsum(present, axis=1) - 1
    codes = remap[np.arange(num_variables)[None, :], codes]
    return codes, present.sum(axis=1).astype(np.int64)


def mutual_information(data, *, num_bins: int = DEFAULT_NUM_BINS, num_categories: int | None = None) -> np.ndarray:
    """Empirical mutual information (nats) of every pair of variables of binned data.

    The data are binned by :func:`bin_codes`. With ``O`` the one-hot matrix of the codes
    (one column per variable and bin), all joint counts are ``O^T O``; it is computed in blocks
    of about 4096 columns, one block pair at a time (upper triangle only), and each block is
    reduced at once to the joint entropies ``H(X_i, X_j) = log N - sum_ab c_ab log c_ab / N``.
    No Python loop runs over pairs of variables.

    Parameters
    ----------
    data : array_like, shape (rows, num_variables)
    num_bins : int
        Bins per variable (see :func:`bin_codes`).
    num_categories : int, optional
        Domain size of categorical data (default: the largest value plus one).

    Returns
    -------
    ndarray, shape (num_variables, num_variables)
        Symmetric and non-negative; the diagonal holds each variable's entropy ``I(X; X) =
        H(X)`` of its binned values.
    """
    codes, sizes = bin_codes(data, num_bins=num_bins, num_categories=num_categories)
    return _mutual_information_of_codes(codes, sizes)


def _mutual_information_of_codes(codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    num_rows, num_variables = codes.shape
    starts = np.concatenate([[0], np.cumsum(sizes)])
    # float32 counts are exact below 2^24 rows
    one_hot = np.zeros((num_rows, int(starts[-1])), dtype=np.float32 if num_rows < 2**24 else np.float64)
    one_hot[np.arange(num_rows)[:, None], starts[None, :-1] + codes] = 1.0
    log_rows = math.log(num_rows)
    counts_range = np.arange(num_rows + 1, dtype=np.float64)
    x_log_x = counts_range * np.log(np.maximum(counts_range, 1.0))  # c log c of every possible count, exact
    marginal = one_hot.sum(axis=0, dtype=np.float64).astype(np.int64)
    entropy = log_rows - np.add.reduceat(x_log_x[marginal], starts[:-1]) / num_rows

    # Blocks of whole variables, about _BLOCK_COLUMNS one-hot columns each.
    bounds = [0]
    for v in range(1, num_variables):
        if starts[v] - starts[bounds[-1]] >= _BLOCK_COLUMNS:
            bounds.append(v)
    bounds.append(num_variables)
    joint_sum = np.zeros((num_variables, num_variables))
    for a in range(len(bounds) - 1):
        rows = slice(bounds[a], bounds[a + 1])
        row_columns = one_hot[:, starts[bounds[a]]:starts[bounds[a + 1]]]
        row_offsets = starts[rows] - starts[bounds[a]]
        for b in range(a, len(bounds) - 1):
            columns = slice(bounds[b], bounds[b + 1])
            counts = row_columns.T @ one_hot[:, starts[bounds[b]]:starts[bounds[b + 1]]]
            block = np.add.reduceat(x_log_x[counts.astype(np.int32)], row_offsets, axis=0)
            joint_sum[rows, columns] = np.add.reduceat(block, starts[columns] - starts[bounds[b]], axis=1)
    joint_sum = np.triu(joint_sum) + np.triu(joint_sum, 1).T
    joint_entropy = log_rows - joint_sum / num_rows
    information = entropy[:, None] + entropy[None, :] - joint_entropy
    np.fill_diagonal(information, entropy)
    return np.maximum(information, 0.0)


# ---- Chow-Liu tree ----------------------------------------------------------------------
def chow_liu_tree(information, *, root: int | None = None) -> np.ndarray:
    """The maximum spanning tree of a mutual-information matrix, rooted.

    Parameters
    ----------
    information : array_like, shape (num_variables, num_variables)
        Symmetric pairwise weights (the diagonal is ignored).
    root : int, optional
        The root variable. By default a center of the tree: the middle vertex of a longest
        path, which has the smallest height (so the circuit is as shallow as the tree allows);
        PyJuice also roots its HCLT at a center.

    Returns
    -------
    ndarray of int64, shape (num_variables,)
        ``parents[v]``: the parent of ``v``, ``-1`` at the root.
    """
    where = "chow_liu_tree"
    weights = np.array(information, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] < 1:
        raise ValueError(f"{where}: needs a square matrix of mutual information, got shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{where}: the mutual information must be finite")
    if not np.allclose(weights, weights.T, rtol=1e-9, atol=1e-12):
        raise ValueError(f"{where}: the mutual-information matrix must be symmetric")
    num_variables = weights.shape[0]
    _check_root(root, num_variables, where)
    if num_variables == 1:
        return np.array([-1], dtype=np.int64)
    # Minimum spanning tree of (largest + 1 - information): every weight positive (csgraph reads
    # zeros as missing edges) and the same argmin, since every spanning tree has n - 1 edges.
    off_diagonal = ~np.eye(num_variables, dtype=bool)
    cost = np.where(off_diagonal, weights[off_diagonal].max() + 1.0 - weights, 0.0)
    tree = csgraph.minimum_spanning_tree(cost)
    tree = tree + tree.T
    if root is None:
        root = _tree_center(tree)
    _, predecessors = csgraph.breadth_first_order(tree, int(root), directed=False, return_predecessors=True)
    return np.where(predecessors < 0, -1, predecessors).astype(np.int64)


def _tree_center(tree) -> int:
    """The middle vertex of a longest path (two breadth-first searches)."""
    distances = csgraph.shortest_path(tree, unweighted=True, directed=False, indices=0)
    end = int(np.argmax(distances))
    distances, predecessors = csgraph.shortest_path(tree, unweighted=True, directed=False, indices=end,
                                                    return_predecessors=True)
    vertex = int(np.argmax(distances))
    path = [vertex]
    while vertex != end:
        vertex = int(predecessors[vertex])
        path.append(vertex)
    return path[len(path) // 2]


def learn_chow_liu_tree(data, *, num_bins: int | None = None, num_categories: int | None = None,
                        chow_liu_samples: int | None = 2000, root: int | None = None,
                        seed: int | None = 0) -> np.ndarray:
    """The Chow-Liu tree of the data, as :func:`hclt` learns it (same arguments, same tree).

    Parameters
    ----------
    data : array_like, shape (rows, num_variables)
        Finite values; images ``(rows, height, width[, channels])`` are flattened row-major.
    num_bins : int, optional
        Bins per variable in the mutual information (default :data:`DEFAULT_NUM_BINS`).
    num_categories : int, optional
        Domain size of categorical data (default: the largest value plus one).
    chow_liu_samples : int or None
        Rows drawn at random (without replacement, by ``seed``) to estimate the mutual
        information when there are more; None uses every row.
    root : int, optional
        Root variable (default: a center of the tree, see :func:`chow_liu_tree`).
    seed : int or None

    Returns
    -------
    ndarray of int64, shape (num_variables,)
        ``parents[v]``, ``-1`` at the root.
    """
    where = "learn_chow_liu_tree"
    array, _ = _as_data(data, where)
    structure_rng, _ = _streams(seed)
    return _learn_tree(array, num_bins, num_categories, chow_liu_samples, root, structure_rng, where)


def _learn_tree(array, num_bins, num_categories, chow_liu_samples, root, rng, where) -> np.ndarray:
    num_bins = DEFAULT_NUM_BINS if num_bins is None else _positive_int(num_bins, "num_bins", where)
    num_rows, num_variables = array.shape
    _check_root(root, num_variables, where)
    if chow_liu_samples is not None:
        chow_liu_samples = _positive_int(chow_liu_samples, "chow_liu_samples", where)
        if chow_liu_samples < 2:
            raise ValueError(f"{where}: chow_liu_samples must be at least 2, got {chow_liu_samples}")
        if num_rows > chow_liu_samples:
            array = array[np.sort(rng.choice(num_rows, size=chow_liu_samples, replace=False))]
    information = mutual_information(array, num_bins=num_bins, num_categories=num_categories)
    return chow_liu_tree(information, root=root)


# ---- the circuit ------------------------------------------------------------------------
def hclt(data, *, num_latents: int = 16, leaf: LeafSpec = "categorical", num_categories: int | None = None,
         num_bins: int | None = None, chow_liu_samples: int | None = 2000, root: int | None = None,
         seed: int | None = 0, variables: Variables | None = None, leaf_params: dict | None = None,
         leaf_init: str = "data", collapse_leaves: bool = True) -> Circuit:
    """Build a hidden Chow-Liu tree circuit from data.

    Parameters
    ----------
    data : array_like, shape (rows, num_variables)
        Finite training data (at least 2 rows); images ``(rows, height, width[, channels])``
        are flattened row-major and named as pixels.
    num_latents : int
        ``K``: states of every latent variable, i.e. units per leaf, product and sum node.
    leaf : str, LeafFamily subclass or callable
        ``"categorical"`` (default; non-negative integer data), ``"bernoulli"`` (0/1 data),
        ``"gaussian"`` (any real data), another registered family such as ``"binomial"``, or
        ``leaf(variables, num_units, rng) -> LeafFamily``.
    num_categories : int, optional
        Categories of categorical leaves (default: the largest value in the data plus one).
    num_bins : int, optional
        Bins per variable in the mutual-information estimate (default
        :data:`DEFAULT_NUM_BINS` = 16; see :func:`bin_codes`).
    chow_liu_samples : int or None
        Rows drawn at random to estimate the mutual information (default 2000); None uses
        every row. The leaves are initialized from every row.
    root : int, optional
        Root variable of the tree (default: a center of the tree, the shallowest rooting).
    seed : int or None
        Seeds the row subsample and the random parameters (separate streams).
    variables : Variables, optional
        Names or image shape of the variables (default: an image of the data's shape for
        image data, else ``x0 .. x{n-1}``).
    leaf_params : dict, optional
        Keyword arguments of the family's ``random`` constructor (``n`` for binomial leaves,
        ``mean_scale`` for Gaussian ones) for randomly initialized leaves.
    leaf_init : "data" or "random"
        ``"data"`` (default): categorical, Bernoulli and Gaussian leaves start from the
        variable's empirical distribution, each of the ``K`` units perturbed at random
        (categorical: ``(counts + 1) * U(0.5, 1.5)`` normalized; Bernoulli: ``(ones + 1) / (rows
        + 2) * U(0.5, 1.5)`` clipped to [0.01, 0.99]; Gaussian: mean ``m + s * N(0, 0.5^2)``,
        std ``s``, with ``m, s`` the variable's mean and standard deviation, ``s`` at least
        1e-3). ``"random"``, and every other family: the family's ``random`` constructor.
    collapse_leaves : bool
        True (default): a variable with no children in the tree enters its parent's product
        through its leaf node directly (PyJuice's structure). False: every non-root variable
        gets its own latent and ``K x K`` transition.

    Returns
    -------
    Circuit
        One root of one unit. With ``n`` variables of which ``I`` have children in the tree
        (``n >= 2``) and ``collapse_leaves=True``: ``n`` input nodes of ``K`` units, ``I``
        product nodes of ``K`` units (``K (n - 1 + I)`` edges), ``I - 1`` sum nodes of ``K``
        units over ``K`` (``(I - 1) K^2`` edges) and the root (``K`` edges).
    """
    where = "hclt"
    array, image_shape = _as_data(data, where)
    num_rows, num_variables = array.shape
    num_latents = _positive_int(num_latents, "num_latents", where)
    leaf_params = check_leaf(leaf, leaf_params, where)
    if leaf_init not in ("data", "random"):
        raise ValueError(f"{where}: leaf_init must be 'data' or 'random', got {leaf_init!r}")
    if variables is None:
        variables = Variables.image(*image_shape) if image_shape is not None else Variables(num_variables)
    elif not isinstance(variables, Variables):
        raise TypeError(f"{where}: variables must be a pcircuits.Variables, got {type(variables).__name__}")
    elif variables.num_variables != num_variables:
        raise ValueError(f"{where}: variables holds {variables.num_variables} variables, but the data have "
                         f"{num_variables}")

    family_class = FAMILIES[leaf] if isinstance(leaf, str) else leaf
    if num_categories is not None:
        if family_class is not Categorical:
            raise ValueError(f"{where}: num_categories applies to categorical leaves, not to leaf={leaf!r}")
        num_categories = _positive_int(num_categories, "num_categories", where)
    if family_class is Categorical:
        _check_categories(array, where, "categorical leaves")
        top = int(array.max()) + 1
        if num_categories is None:
            num_categories = top
        elif num_categories < top:
            raise ValueError(f"{where}: num_categories={num_categories} but the data hold the value {top - 1}")
        if leaf_params.setdefault("num_categories", num_categories) != num_categories:
            raise ValueError(f"{where}: leaf_params num_categories={leaf_params['num_categories']} disagrees "
                             f"with num_categories={num_categories}")
    elif family_class is Bernoulli:
        _check_categories(array, where, "Bernoulli leaves")
        if array.max() > 1:
            row, column = np.argwhere(array > 1)[0]
            raise ValueError(f"{where}: Bernoulli leaves need 0/1 data, but row {row}, variable {column} holds "
                             f"{array[row, column]:g}")

    structure_rng, param_rng = _streams(seed)
    parents = _learn_tree(array, num_bins, num_categories, chow_liu_samples, root, structure_rng, where)
    data_init = leaf_init == "data" and family_class in _DATA_INIT_FAMILIES
    families = (_data_families(array, family_class, num_latents, num_categories, param_rng) if data_init
                else [make_leaf_family(leaf, num_latents, variables=(v,), rng=param_rng, leaf_params=leaf_params,
                                       where=where) for v in range(num_variables)])
    _check_data_fits(array, families, where)
    return Circuit(_hidden_tree(parents, families, num_latents, collapse_leaves, param_rng), variables=variables)


def _data_families(array: np.ndarray, family_class: type, num_latents: int, num_categories: int | None,
                   rng: np.random.Generator) -> list[LeafFamily]:
    """One family of ``num_latents`` units per variable, from the variable's empirical distribution."""
    num_rows, num_variables = array.shape
    if family_class is Categorical:
        families = []
        for v in range(num_variables):
            counts = np.bincount(array[:, v].astype(np.int64), minlength=num_categories)
            probs = (counts + 1.0)[None, :] * rng.uniform(0.5, 1.5, size=(num_latents, num_categories))
            families.append(Categorical(probs / probs.sum(axis=1, keepdims=True)))
        return families
    if family_class is Bernoulli:
        marginal = (array.sum(axis=0) + 1.0) / (num_rows + 2.0)
        noise = rng.uniform(0.5, 1.5, size=(num_variables, num_latents))
        p = np.clip(marginal[:, None] * noise, 0.01, 0.99)
        return [Bernoulli(p[v]) for v in range(num_variables)]
    mean = array.mean(axis=0)
    std = np.maximum(array.std(axis=0), _MIN_STD)
    means = mean[:, None] + std[:, None] * rng.normal(0.0, 0.5, size=(num_variables, num_latents))
    return [Gaussian(means[v], np.full(num_latents, std[v])) for v in range(num_variables)]


def _check_data_fits(array: np.ndarray, families: list[LeafFamily], where: str):
    """Discrete families need integer data within their domain."""
    family = families[0]
    if not family.discrete:
        return
    _check_categories(array, where, f"{type(family).__name__} leaves")
    top = family.max_value()
    if top is not None and array.max() > top:
        row, column = np.argwhere(array > top)[0]
        raise ValueError(f"{where}: {type(family).__name__} leaves take values 0..{top}, but row {row}, "
                         f"variable {column} holds {array[row, column]:g}")


def _hidden_tree(parents: np.ndarray, families: list[LeafFamily], num_latents: int, collapse_leaves: bool,
                 rng: np.random.Generator) -> Node:
    """The HCLT circuit of a rooted tree, built children first."""
    num_variables = len(parents)
    root = int(np.flatnonzero(parents < 0)[0])
    children: list[list[int]] = [[] for _ in range(num_variables)]
    for v in range(num_variables):
        if parents[v] >= 0:
            children[parents[v]].append(v)
    order = [root]
    for v in order:
        order.extend(children[v])
    factor: dict[int, Node] = {}
    for v in reversed(order):
        leaf = InputNode(v, families[v], label=f"P(x{v} | Z{v})")
        if not children[v]:
            node = leaf
        else:
            node = ProductNode([leaf] + [factor[c] for c in children[v]], "elementwise", label=f"Z{v}")
        if v != root and (children[v] or not collapse_leaves):
            node = SumNode([node], num_units=num_latents, rng=rng, label=f"P(Z{v} | Z{int(parents[v])})")
        factor[v] = node
    return SumNode([factor[root]], num_units=1, rng=rng, label=f"root: P(Z{root})")


def _streams(seed) -> tuple[np.random.Generator, np.random.Generator]:
    structure_seed, param_seed = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(structure_seed), np.random.default_rng(param_seed)
