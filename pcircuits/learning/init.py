"""Leaf initialization: per-variable quantile means, equidistant means, 1-D k-means.

Tables have shape ``(num_variables, k)``: row ``v`` holds the ``k`` means of the Gaussian
components of variable ``v``, computed for all variables at once. They are used in three ways:

* :func:`set_gaussian_leaves` / :func:`init_gaussian_leaves` write them into the Gaussian
  input nodes of an existing circuit (or of a circuit and its compiled Program);
* :func:`quantile_gaussian_leaves` / :func:`equidistant_gaussian_leaves` return a ``leaf=``
  callable for the builders, so circuits are built with these leaves from the start.

The papers' choices: Poon and Domingos (and DGC-SPN 5.1, generative) split each pixel's sorted
training values into ``k`` equal-count groups and use the group means, with unit variance;
DGC-SPN 5.2 (discriminative) spaces the means evenly in ``[-1.5, 1.5]``.
"""
from __future__ import annotations

import numpy as np

from ..builders.conv import quantile_means, quantile_stds
from ..distributions import Gaussian

__all__ = ["quantile_means", "quantile_stds", "equidistant_means", "kmeans_means", "set_gaussian_leaves",
           "init_gaussian_leaves", "quantile_gaussian_leaves", "equidistant_gaussian_leaves"]

# elements of the (chunk, num_variables, k) distance array of one k-means assignment step
_KMEANS_CHUNK_ELEMENTS = 1 << 24


def equidistant_means(num_variables: int, k: int, *, low: float = -1.5, high: float = 1.5) -> np.ndarray:
    """``k`` means evenly spaced from ``low`` to ``high`` (both included) for every variable.

    Returns
    -------
    ndarray, shape (num_variables, k)
    """
    for name, value in (("num_variables", num_variables), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"equidistant_means: {name} must be a positive int, got {value!r}")
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"equidistant_means: need finite low <= high, got low={low}, high={high}")
    return np.tile(np.linspace(low, high, k), (num_variables, 1))


def kmeans_means(data, k: int, *, iterations: int = 20, return_std: bool = False, min_std: float = 1e-2):
    """Per-variable 1-D k-means centers, vectorized over variables.

    Starts from the quantile means (:func:`quantile_means`) and runs Lloyd's iterations on all
    variables at once (the assignment step in chunks of examples, so memory stays bounded). A
    center that loses all its points keeps its place.

    Parameters
    ----------
    data : array_like, shape (n, num_variables) or (n, height, width)
        Complete training data.
    k : int
        Centers per variable (at most ``n``).
    iterations : int
        Lloyd iterations.
    return_std : bool
        Also return each cluster's standard deviation (at least ``min_std``).

    Returns
    -------
    means : ndarray, shape (num_variables, k)
        Sorted along the last axis.
    stds : ndarray, shape (num_variables, k) (only with ``return_std``)
    """
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"kmeans_means: iterations must be a non-negative int, got {iterations!r}")
    centers = quantile_means(data, k)
    x = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    for _ in range(iterations):
        counts, sums, _ = _cluster_moments(x, centers)
        centers = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
    centers = np.sort(centers, axis=1)
    if not return_std:
        return centers
    counts, sums, squares = _cluster_moments(x, centers)
    mean = sums / np.maximum(counts, 1)
    variance = np.where(counts > 0, squares / np.maximum(counts, 1) - mean * mean, 0)
    return centers, np.maximum(np.sqrt(np.maximum(variance, 0)), min_std)


def _cluster_moments(x: np.ndarray, centers: np.ndarray):
    """Per variable and center: number, sum and sum of squares of the values nearest to it."""
    n, num_variables = x.shape
    k = centers.shape[1]
    counts = np.zeros((num_variables, k))
    sums = np.zeros((num_variables, k))
    squares = np.zeros((num_variables, k))
    chunk = max(1, _KMEANS_CHUNK_ELEMENTS // max(1, num_variables * k))
    columns = np.arange(num_variables)[None, :]
    for start in range(0, n, chunk):
        part = x[start:start + chunk]
        nearest = np.argmin(np.abs(part[:, :, None] - centers[None]), axis=2)          # (chunk, V)
        flat = (columns * k + nearest).ravel()
        counts += np.bincount(flat, minlength=num_variables * k).reshape(num_variables, k)
        sums += np.bincount(flat, weights=part.ravel(), minlength=num_variables * k).reshape(num_variables, k)
        squares += np.bincount(flat, weights=(part * part).ravel(),
                               minlength=num_variables * k).reshape(num_variables, k)
    return counts, sums, squares


def _gaussian_nodes(circuit) -> list:
    return [node for node in circuit.input_nodes if isinstance(node.family, Gaussian)]


def set_gaussian_leaves(target, means, std=1.0) -> int:
    """Write a means table into the Gaussian input nodes that have ``k`` units.

    A univariate node over variable ``v`` gets ``means[v]``; a diagonal node over variables
    ``(v_1 .. v_d)`` gets ``means[[v_1 .. v_d]].T``. Nodes with another number of units are left
    alone (see :func:`init_gaussian_leaves` for circuits with several sizes). A leaf family
    shared by several nodes takes the values of the last node that uses it.

    Parameters
    ----------
    target : Circuit or Program
        With a Program, its parameters are first written back into its circuit, and its Gaussian
        tables are refreshed afterwards.
    means : array, shape (num_variables, k)
    std : float or array of shape (num_variables, k)

    Returns
    -------
    int
        How many input nodes were set.
    """
    program, circuit = _split_target(target)
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] < circuit.num_variables:
        raise ValueError(f"set_gaussian_leaves: means must have shape ({circuit.num_variables}, k), got {means.shape}")
    if not np.all(np.isfinite(means)):
        raise ValueError("set_gaussian_leaves: means must be finite")
    try:
        stds = np.broadcast_to(np.asarray(std, dtype=np.float64), means.shape)
    except ValueError:
        raise ValueError(f"set_gaussian_leaves: std of shape {np.shape(std)} does not fit means of shape "
                         f"{means.shape}") from None
    if not np.all(np.isfinite(stds) & (stds > 0)):
        raise ValueError("set_gaussian_leaves: std must be positive and finite")
    if program is not None:
        program.sync_to_circuit()
    k = means.shape[1]
    done = 0
    for node in _gaussian_nodes(circuit):
        family = node.family
        if family.num_units != k:
            continue
        variables = list(node.variables)
        if family.multivariate:
            family.mean = means[variables].T.copy()
            family.std = stds[variables].T.copy()
        else:
            family.mean = means[variables[0]].copy()
            family.std = stds[variables[0]].copy()
        done += 1
    if program is not None:
        _refresh_gaussian_tables(program)
    return done


def init_gaussian_leaves(target, data=None, *, method: str = "quantile", std=1.0, low: float = -1.5,
                         high: float = 1.5, iterations: int = 20) -> int:
    """Initialize every Gaussian input node of a circuit (or Program) from data or a range.

    One means table is computed per distinct number of units ``k`` among the Gaussian nodes.

    Parameters
    ----------
    target : Circuit or Program
    data : array, shape (n, num_variables)
        Training data (``method="quantile"`` or ``"kmeans"``).
    method : {"quantile", "equidistant", "kmeans"}
    std : float or "groups"
        Standard deviation of every component, or ``"groups"`` for each quantile group's /
        cluster's own standard deviation.
    low, high : float
        The range of ``method="equidistant"``.

    Returns
    -------
    int
        How many input nodes were set.
    """
    if method not in ("quantile", "equidistant", "kmeans"):
        raise ValueError(f"init_gaussian_leaves: method must be 'quantile', 'equidistant' or 'kmeans', got {method!r}")
    if method != "equidistant" and data is None:
        raise ValueError(f"init_gaussian_leaves: method {method!r} needs data")
    if isinstance(std, str) and (std != "groups" or method == "equidistant"):
        allowed = "a positive number" if method == "equidistant" else "a positive number or 'groups'"
        raise ValueError(f"init_gaussian_leaves: std must be {allowed}, got {std!r}")
    program, circuit = _split_target(target)
    if program is not None:
        program.sync_to_circuit()
    sizes = sorted({node.family.num_units for node in _gaussian_nodes(circuit)})
    done = 0
    for k in sizes:
        if method == "equidistant":
            means, stds = equidistant_means(circuit.num_variables, k, low=low, high=high), std
        elif method == "quantile":
            means = quantile_means(data, k)
            stds = quantile_stds(data, k) if std == "groups" else std
        else:
            means, groups = kmeans_means(data, k, iterations=iterations, return_std=True)
            stds = groups if std == "groups" else std
        done += set_gaussian_leaves(circuit, means, stds)
    if program is not None:
        _refresh_gaussian_tables(program)
    return done


class _TableLeaves:
    """A builder ``leaf=`` callable: Gaussians whose means come from a per-variable table."""

    def __init__(self, make_table, std, what: str):
        self.make_table = make_table
        self.std = std
        self.what = what
        self.tables = {}

    def __call__(self, variables, num_units, rng=None) -> Gaussian:
        if num_units not in self.tables:
            self.tables[num_units] = self.make_table(num_units)
        means = self.tables[num_units]
        variables = list(variables)
        if max(variables) >= means.shape[0]:
            raise ValueError(f"{self.what}: variable {max(variables)} is outside the data's {means.shape[0]} variables")
        if len(variables) == 1:
            mean = means[variables[0]]
        else:
            mean = means[variables].T
        return Gaussian(mean.copy(), np.full(mean.shape, float(self.std)))

    def __repr__(self) -> str:
        return f"<{self.what} leaves, std {self.std}>"


def quantile_gaussian_leaves(data, *, std: float = 1.0) -> _TableLeaves:
    """A ``leaf=`` argument for the builders: Gaussians at the per-variable quantile means.

    The ``k``-th of the ``G`` components of variable ``v`` has the mean of the ``k``-th of ``G``
    equal-count groups of ``v``'s sorted training values and standard deviation ``std``
    (Poon and Domingos; DGC-SPN 5.1).

    Examples
    --------
    >>> leaf = quantile_gaussian_leaves(x_train)                          # doctest: +SKIP
    >>> circuit = pc.builders.poon_domingos(8, 8, num_leaves=4, leaf=leaf)  # doctest: +SKIP
    """
    try:
        x = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"quantile_gaussian_leaves: data must be numeric, got {type(data).__name__}") from None
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"quantile_gaussian_leaves: data must have shape (n, num_variables), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("quantile_gaussian_leaves: data must be finite (no NaN / missing values)")
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"quantile_gaussian_leaves: std must be positive, got {std!r}")
    ordered = np.sort(x.reshape(len(x), -1), axis=0)

    def table(k: int) -> np.ndarray:
        if k > len(ordered):
            raise ValueError(f"quantile_gaussian_leaves: {k} quantile groups need at least {k} examples, "
                             f"got {len(ordered)}")
        return np.stack([group.mean(axis=0) for group in np.array_split(ordered, k, axis=0)], axis=1)

    return _TableLeaves(table, std, "quantile_gaussian_leaves")


def equidistant_gaussian_leaves(num_variables: int, *, low: float = -1.5, high: float = 1.5,
                                std: float = 1.0) -> _TableLeaves:
    """A ``leaf=`` argument for the builders: Gaussians with means evenly spaced in ``[low, high]``
    (DGC-SPN 5.2's discriminative setup) and standard deviation ``std``."""
    equidistant_means(num_variables, 1, low=low, high=high)
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"equidistant_gaussian_leaves: std must be positive, got {std!r}")
    return _TableLeaves(lambda k: equidistant_means(num_variables, k, low=low, high=high), std,
                        "equidistant_gaussian_leaves")


def _split_target(target):
    """(program or None, circuit) of a Circuit or Program argument."""
    if hasattr(target, "leaf_tables") and hasattr(target, "circuit"):
        return target, target.circuit
    if hasattr(target, "input_nodes"):
        return None, target
    raise TypeError(f"expected a Circuit or a Program, got {type(target).__name__}")


def _refresh_gaussian_tables(program):
    """Reload the Program's Gaussian parameter tables from the circuit's family objects."""
    be = program.backend
    for key, objects in program.plan.families.items():
        if issubclass(key[0], Gaussian):
            arrays = [o.table_arrays() for o in objects]
            program.leaf_tables[key] = {name: be.asarray(np.concatenate([a[name] for a in arrays]))
                                        for name in arrays[0]}
