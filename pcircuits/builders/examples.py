"""Small hand-built circuits for teaching and tests."""
from __future__ import annotations

from ..circuit import Circuit
from ..distributions import Indicator
from ..nodes import InputNode, mixture, product
from ..scope import Variables

__all__ = ["figure1_spn"]


def figure1_spn() -> Circuit:
    """An SPN over four binary variables in the spirit of Figure 1 of the DGC-SPN paper.

    Indicator leaves ``[X_i = 1]`` and ``[X_i = 0]`` for each variable; one mixture of the two
    indicators per variable and component; products that join (X1, X2) and (X3, X4); a root
    that mixes two such factorizations. Every node is a scalar (one unit), as in the paper.
    """
    names = ["X1", "X2", "X3", "X4"]
    variables = Variables(4, names=names)
    indicators = [(InputNode(v, Indicator([1], 2), label=f"{names[v]}"),
                   InputNode(v, Indicator([0], 2), label=f"not {names[v]}")) for v in range(4)]

    def leaf_mixture(v, p_true):
        on, off = indicators[v]
        return mixture([on, off], [p_true, 1 - p_true])

    left = [product(leaf_mixture(0, 0.9), leaf_mixture(1, 0.3)),
            product(leaf_mixture(0, 0.2), leaf_mixture(1, 0.6))]
    right = [product(leaf_mixture(2, 0.7), leaf_mixture(3, 0.1)),
             product(leaf_mixture(2, 0.4), leaf_mixture(3, 0.8))]
    left_sum = mixture(left, [0.4, 0.6], label="S12")
    right_sum = mixture(right, [0.5, 0.5], label="S34")
    components = [product(left_sum, right_sum), product(left[0], right[1])]
    root = mixture(components, [0.7, 0.3], label="root")
    return Circuit(root, variables=variables)
