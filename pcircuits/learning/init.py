"""Leaf initialization: per-variable quantile means (P&D, DGC-SPN 5.1), equidistant means, 1-D k-means."""
from __future__ import annotations

import numpy as np

from ..builders.conv import quantile_means
from ..distributions import Gaussian

__all__ = ["quantile_means", "equidistant_means", "kmeans_means", "set_gaussian_leaves"]


def equidistant_means(num_variables: int, k: int, *, low: float = -1.5, high: float = 1.5) -> np.ndarray:
    """``k`` means evenly spaced in ``[low, high]`` for every variable (DGC-SPN 5.2), shape (num_variables, k)."""
    if k < 1 or num_variables < 1:
        raise ValueError(f"equidistant_means: need positive sizes, got num_variables={num_variables}, k={k}")
    return np.tile(np.linspace(low, high, k), (num_variables, 1))


def kmeans_means(data, k: int, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Per-variable 1-D k-means centers (sorted), vectorized over variables; shape (num_variables, k).

    Starts from the quantile means and runs Lloyd's iterations on every variable at once.
    Missing values (NaN) are ignored.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"kmeans_means: data must have shape (n, num_variables), got {x.shape}")
    centers = quantile_means(x, k)
    observed = ~np.isnan(x)
    x0 = np.where(observed, x, 0)
    for _ in range(iterations):
        assign = np.argmin(np.abs(x0[:, :, None] - centers[None]), axis=2)           # (n, V)
        onehot = (assign[:, :, None] == np.arange(k)[None, None, :]) & observed[:, :, None]
        counts = onehot.sum(axis=0)
        sums = (onehot * x0[:, :, None]).sum(axis=0)
        centers = np.where(counts > 0, sums / np.maximum(counts, 1), centers)
    return np.sort(centers, axis=1)


def set_gaussian_leaves(circuit, means, std=1.0) -> int:
    """Set every univariate Gaussian input node over variable ``v`` with ``k`` units to ``means[v]``.

    Parameters
    ----------
    means : array, shape (num_variables, k)
    std : float or array of shape (num_variables, k)

    Returns
    -------
    int
        How many input nodes were set.
    """
    means = np.asarray(means, dtype=np.float64)
    stds = np.broadcast_to(np.asarray(std, dtype=np.float64), means.shape)
    if means.ndim != 2 or means.shape[0] < circuit.num_variables:
        raise ValueError(f"set_gaussian_leaves: means must have shape ({circuit.num_variables}, k), got {means.shape}")
    done = 0
    for node in circuit.input_nodes:
        family = node.family
        if isinstance(family, Gaussian) and family.num_variables == 1 and family.num_units == means.shape[1]:
            v = node.variables[0]
            family.mean = means[v].copy()
            family.std = stds[v].copy()
            done += 1
    return done
