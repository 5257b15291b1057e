"""Random and tensorized SPNs (RAT-SPN; Peharz et al., UAI 2019).

A *region graph* of ``R`` random binary trees: each tree (a *repetition*) splits the set of all
variables into two random halves, and each half again, down to depth ``D``; its ``2^D`` leaf
regions partition the variables. The circuit then has, per repetition:

* leaf region: ``I`` factorized leaf components, i.e. one :class:`~pcircuits.InputNode` with
  ``I`` units per variable and an elementwise :class:`~pcircuits.ProductNode` over the region's
  variables (a region of one variable is its input node alone);
* partition (a split of a region into two): a ``"cartesian"`` ProductNode over the two halves'
  nodes (``I * I`` or ``S * S`` units);
* internal region below the root: a :class:`~pcircuits.SumNode` with ``S`` units over its one
  partition;
* root region (shared by all repetitions): one SumNode with one unit per root, over the ``R``
  top partitions; ``num_classes = C`` gives ``C`` such roots (a class-conditional circuit).

Each repetition has its own leaf parameters, as in the paper. The random splits and the random
parameters come from separate streams of one seed, so :func:`random_region_trees` with the same
seed returns the trees of :func:`rat_spn`.
"""
from __future__ import annotations

import numpy as np

from ..circuit import Circuit
from ..nodes import InputNode, Node, ProductNode, SumNode
from ..scope import Variables
from .leaves import LeafSpec, check_leaf, make_leaf_family

__all__ = ["rat_spn", "random_region_trees", "RegionTree"]


class RegionTree:
    """One repetition's random binary region tree.

    Attributes
    ----------
    variables : tuple of int
        The region's variables, sorted.
    children : tuple of RegionTree
        Empty for a leaf region, else the two halves.
    """

    __slots__ = ("variables", "children")

    def __init__(self, variables: tuple[int, ...], children: tuple["RegionTree", ...] = ()):
        self.variables = variables
        self.children = children

    @property
    def depth(self) -> int:
        """Splits on the longest path down to a leaf region."""
        return 0 if not self.children else 1 + max(c.depth for c in self.children)

    def leaves(self) -> list["RegionTree"]:
        """The leaf regions, left to right."""
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def __repr__(self) -> str:
        return f"RegionTree({len(self.variables)} variables, depth {self.depth})"


def random_region_trees(num_variables: int, *, depth: int = 2, num_repetitions: int = 10,
                        seed: int | None = 0) -> list[RegionTree]:
    """The random binary region trees of :func:`rat_spn` (one per repetition).

    Each region is split by a random permutation of its variables into a first half of
    ``len // 2`` and a second half of the rest; a region of one variable is not split, so
    trees are shallower than ``depth`` where ``2^depth`` exceeds the number of variables.
    """
    where = "random_region_trees"
    num_variables = _positive_int(num_variables, "num_variables", where)
    depth = _non_negative_int(depth, "depth", where)
    num_repetitions = _positive_int(num_repetitions, "num_repetitions", where)
    structure_rng, _ = _streams(seed)
    return _region_trees(num_variables, depth, num_repetitions, structure_rng)


def rat_spn(num_variables: int, *, depth: int = 2, num_repetitions: int = 10, num_sums: int = 10,
            num_leaves: int = 10, num_classes: int = 1, leaf: LeafSpec = "gaussian", leaf_params: dict | None = None,
            seed: int | None = 0, variables: Variables | None = None) -> Circuit:
    """Build a RAT-SPN over ``num_variables`` variables.

    Parameters
    ----------
    num_variables : int
        Number of variables (ids ``0 .. num_variables - 1``).
    depth : int
        ``D``: splits from the root region down to the leaf regions (``2^D`` leaf regions per
        repetition while every region has at least two variables to split).
    num_repetitions : int
        ``R``: random region trees mixed at the root.
    num_sums : int
        ``S``: sum units per internal region below the root.
    num_leaves : int
        ``I``: leaf components per leaf region (each a product of univariate leaves).
    num_classes : int
        ``C``: number of roots; ``C > 1`` gives the classification variant, one root per class
        over the same shared structure, each with its own weights.
    leaf : str, LeafFamily subclass or callable
        ``"gaussian"`` (default), ``"bernoulli"``, ``"categorical"``, ``"binomial"``,
        ``"indicator"``, or ``leaf(variables, num_units, rng) -> LeafFamily``.
    leaf_params : dict, optional
        Keyword arguments of the family's ``random`` (``num_categories``, ``n``, ``mean_scale``).
    seed : int or None
        Seeds the random splits and the random parameters (separate streams).
    variables : Variables, optional
        Names or image shape of the variables (for example ``Variables.image(28, 28)``); must
        hold ``num_variables`` variables.

    Returns
    -------
    Circuit
        ``num_classes`` roots of one unit each.
    """
    where = "rat_spn"
    num_variables = _positive_int(num_variables, "num_variables", where)
    depth = _non_negative_int(depth, "depth", where)
    num_repetitions = _positive_int(num_repetitions, "num_repetitions", where)
    num_sums = _positive_int(num_sums, "num_sums", where)
    num_leaves = _positive_int(num_leaves, "num_leaves", where)
    num_classes = _positive_int(num_classes, "num_classes", where)
    leaf_params = check_leaf(leaf, leaf_params, where)
    if variables is None:
        variables = Variables(num_variables)
    elif not isinstance(variables, Variables):
        raise TypeError(f"{where}: variables must be a pcircuits.Variables, got {type(variables).__name__}")
    elif variables.num_variables != num_variables:
        raise ValueError(f"{where}: variables holds {variables.num_variables} variables, "
                         f"but num_variables is {num_variables}")

    structure_rng, param_rng = _streams(seed)
    trees = _region_trees(num_variables, depth, num_repetitions, structure_rng)

    def build(region: RegionTree, repetition: int, level: int) -> Node:
        """The node of ``region``: a leaf product, or (below the root) a sum over its partition."""
        if not region.children:
            inputs = [InputNode(v, make_leaf_family(leaf, num_leaves, variables=(v,), rng=param_rng,
                                                    leaf_params=leaf_params, where=where))
                      for v in region.variables]
            return inputs[0] if len(inputs) == 1 else ProductNode(inputs, "elementwise")
        partition = ProductNode([build(child, repetition, level + 1) for child in region.children], "cartesian")
        if level == 0:
            return partition
        return SumNode([partition], num_units=num_sums, rng=param_rng, label=f"repetition {repetition} depth {level}")

    tops = [build(tree, r, 0) for r, tree in enumerate(trees)]
    roots = [SumNode(tops, num_units=1, rng=param_rng, label="root" if num_classes == 1 else f"class {c}")
             for c in range(num_classes)]
    return Circuit(roots, variables=variables)


def _region_trees(num_variables: int, depth: int, num_repetitions: int,
                  rng: np.random.Generator) -> list[RegionTree]:
    def split(region: np.ndarray, remaining: int) -> RegionTree:
        variables = tuple(sorted(region.tolist()))
        if remaining == 0 or len(region) < 2:
            return RegionTree(variables)
        shuffled = rng.permutation(region)
        half = len(region) // 2
        return RegionTree(variables, (split(shuffled[:half], remaining - 1), split(shuffled[half:], remaining - 1)))

    everything = np.arange(num_variables)
    return [split(everything, depth) for _ in range(num_repetitions)]


def _streams(seed) -> tuple[np.random.Generator, np.random.Generator]:
    structure_seed, param_seed = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(structure_seed), np.random.default_rng(param_seed)


def _positive_int(value, name: str, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
    return int(value)


def _non_negative_int(value, name: str, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{where}: {name} must be a non-negative int, got {value!r}")
    return int(value)
