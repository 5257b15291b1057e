"""The bridge from a cGMM layer to circuits: at one position a cGMM layer is a shallow circuit.

``p(x) = sum_k pi_k prod_c N(x_c; mu_kc, 1 / D_kc^2)`` is a sum node over ``K`` product units,
each the product of one univariate Gaussian leaf per channel: smooth and decomposable. A layer
with shared parameters is the same circuit at every position; exported over all positions, the
leaf families and the sum weights are single objects held by every position's nodes (tied
parameters), one root per position. What no circuit expresses is the *stack*: a folding layer
copies each input entry into several overlapping patches, so a product over a higher layer's
channels would multiply factors over the same variables (not decomposable), and max-pooling is
not a sum or a product at all.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_numpy
from ..circuit import Circuit
from ..distributions import Gaussian
from ..nodes import InputNode, ProductNode, SumNode, SumWeights
from .layers import CGMM

__all__ = ["cgmm_circuit"]


def cgmm_circuit(layer: CGMM, position: tuple[int, int] | None = None, *, variables=None) -> Circuit:
    """Export a built cGMM layer as a :class:`~pcircuits.Circuit`.

    Parameters
    ----------
    layer : CGMM
        A layer of a :class:`~pcircuits.dcgmm.Stack` (built, so its shapes are known).
    position : (row, column), optional
        One position: a single root over variables ``0..C'-1`` (the channel vector there).
        Default: every position, one root each, over the layer's flattened input
        ``(row * W' + column) * C' + channel``; with shared parameters the roots hold the same
        leaf families and sum weights.
    variables : array of int, shape (H', W', C'), optional
        The variable of each input entry of the layer (default: the flat index above). For a
        cGMM layer right above a folding layer on the images, ``fold.forward`` of the pixel
        indices names the pixels each position sees, so overlapping patches share variables.

    Returns
    -------
    Circuit
        Its Program's ``log_likelihood`` equals ``layer.log_likelihood(x, kind="exact")`` at the
        position(s).
    """
    if not isinstance(layer, CGMM):
        raise TypeError(f"cgmm_circuit: needs a CGMM layer, got {type(layer).__name__}")
    if not hasattr(layer, "means"):
        raise ValueError("cgmm_circuit: the layer is not built yet; put it in a Stack first")
    h, w, d = layer.input_shape
    means = to_numpy(layer.means).astype(np.float64)
    stds = 1.0 / to_numpy(layer.precisions).astype(np.float64)
    weights = to_numpy(layer.weights()).astype(np.float64)
    if variables is None:
        variables = np.arange(h * w * d).reshape(h, w, d)
    variables = np.asarray(to_numpy(variables))
    if variables.shape != (h, w, d) or variables.dtype.kind not in "iuf" or np.any(variables != np.round(variables)):
        raise ValueError(f"cgmm_circuit: variables must be integers of shape {(h, w, d)}, got {variables.dtype} "
                         f"{variables.shape}")
    variables = variables.astype(np.int64)
    if position is not None:
        row, col = (int(v) for v in position)
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f"cgmm_circuit: position {position} lies outside the layer's {h}x{w} positions")
        p = 0 if layer.shared else row * w + col
        return Circuit(_mixture(means[p], stds[p], SumWeights(weights[p][None]), list(range(d)),
                                f"{layer.name}[{row},{col}]"))
    variables = variables.reshape(h * w, d)
    roots = []
    shared = None
    if layer.shared:
        shared = ([Gaussian(means[0][:, c], stds[0][:, c]) for c in range(d)], SumWeights(weights[0][None]))
    for p in range(h * w):
        label = f"{layer.name}[{p // w},{p % w}]"
        if shared is None:
            roots.append(_mixture(means[p], stds[p], SumWeights(weights[p][None]), variables[p].tolist(), label))
        else:
            leaves = [InputNode(int(v), family) for v, family in zip(variables[p], shared[0])]
            roots.append(SumNode([ProductNode(leaves, "elementwise")], weights=shared[1], label=label))
    return Circuit(roots)


def _mixture(means, stds, weights: SumWeights, variables: list[int], label: str) -> SumNode:
    leaves = [InputNode(int(v), Gaussian(means[:, c], stds[:, c])) for c, v in enumerate(variables)]
    return SumNode([ProductNode(leaves, "elementwise")], weights=weights, label=label)
