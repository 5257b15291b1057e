"""Leaf factories shared by the structure builders: a family name (or class, or callable) to nodes.

Every builder takes ``leaf=`` and ``leaf_params=`` and turns them into input nodes through
:func:`make_leaf_family` and :func:`pixel_factors`, so that every builder accepts every leaf
family the same way.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import numpy as np

from ..distributions import FAMILIES, Indicator, LeafFamily
from ..nodes import InputNode

__all__ = ["LeafSpec", "make_leaf_family", "check_leaf", "pixel_factors", "family_names", "supports_multivariate"]

#: A family name (``"gaussian"``), a LeafFamily subclass, or a callable
#: ``leaf(variables, num_units, rng) -> LeafFamily`` for data-driven initialization.
LeafSpec = Union[str, type, Callable]


def family_names() -> list[str]:
    """The registered leaf family names, e.g. ``['bernoulli', 'binomial', ...]``."""
    return sorted(FAMILIES)


def check_leaf(leaf: LeafSpec, leaf_params: dict | None, where: str) -> dict:
    """Validate ``leaf`` and ``leaf_params`` once, before a builder makes any node.

    Returns
    -------
    dict
        The leaf parameters (a new dict; empty when ``leaf_params`` is None).
    """
    if leaf_params is None:
        leaf_params = {}
    if not isinstance(leaf_params, dict):
        raise TypeError(f"{where}: leaf_params must be a dict of keyword arguments for the leaf family, "
                        f"got {type(leaf_params).__name__}")
    if isinstance(leaf, str):
        if leaf not in FAMILIES:
            raise ValueError(f"{where}: unknown leaf family {leaf!r}; known families: {family_names()}")
    elif isinstance(leaf, type):
        if not issubclass(leaf, LeafFamily):
            raise TypeError(f"{where}: leaf must be a family name, a LeafFamily subclass or a callable, "
                            f"got the class {leaf.__name__}")
    elif not callable(leaf):
        raise TypeError(f"{where}: leaf must be a family name such as 'gaussian', a LeafFamily subclass or a "
                        f"callable (variables, num_units, rng) -> LeafFamily, got {type(leaf).__name__}")
    return dict(leaf_params)


def _family_class(leaf: LeafSpec) -> type | None:
    if isinstance(leaf, str):
        return FAMILIES[leaf]
    if isinstance(leaf, type):
        return leaf
    return None


def supports_multivariate(leaf: LeafSpec) -> bool:
    """Whether one unit of the family can be a (diagonal) distribution over several variables."""
    cls = _family_class(leaf)
    return cls is not None and cls.multivariate


def make_leaf_family(leaf: LeafSpec, num_units: int, *, variables: Sequence[int], rng: np.random.Generator,
                     leaf_params: dict | None = None, where: str = "builder") -> LeafFamily:
    """Random parameters for ``num_units`` leaves of one family over ``variables``.

    Parameters
    ----------
    leaf : str, LeafFamily subclass or callable
        ``"gaussian"``, ``"bernoulli"``, ``"categorical"``, ``"binomial"``, ``"indicator"`` (or any
        registered name), a family class, or ``leaf(variables, num_units, rng)`` returning a family.
    num_units : int
        Leaf components in the node.
    variables : sequence of int
        The variable ids of the node; more than one only for multivariate (Gaussian) leaves.
    rng : numpy.random.Generator
    leaf_params : dict, optional
        Keyword arguments of the family's ``random`` constructor: ``num_categories`` for
        categorical and indicator leaves, ``n`` for binomial leaves, ``mean_scale`` for
        Gaussian leaves. Indicator nodes get the values ``0, 1, ..., num_units - 1`` modulo
        ``num_categories`` (default 2) instead of random ones, so every value has its indicator.
    """
    params = {} if leaf_params is None else leaf_params
    variables = tuple(int(v) for v in variables)
    cls = _family_class(leaf)
    if cls is None:
        family = leaf(variables, num_units, rng)
        if not isinstance(family, LeafFamily):
            raise TypeError(f"{where}: the leaf callable returned {type(family).__name__}, not a LeafFamily")
        return family
    try:
        if issubclass(cls, Indicator):
            extra = set(params) - {"num_categories"}
            if extra:
                raise TypeError(f"unexpected keyword argument(s) {sorted(extra)}")
            num_categories = int(params.get("num_categories", 2))
            return cls(np.arange(num_units) % num_categories, num_categories=num_categories)
        if cls.multivariate and len(variables) > 1:
            return cls.random(num_units, num_variables=len(variables), rng=rng, **params)
        return cls.random(num_units, rng=rng, **params)
    except TypeError as error:
        raise TypeError(f"{where}: leaf_params {params} do not fit the {cls.__name__} family "
                        f"({error})") from None


def pixel_factors(leaf: LeafSpec, num_units: int, variables: Sequence[int], *, rng: np.random.Generator,
                  leaf_params: dict | None = None, where: str = "builder") -> list[InputNode]:
    """Input nodes covering the channel variables of one pixel, ``num_units`` units each.

    One multivariate node over all channels when the family allows it (Gaussian, diagonal),
    else one univariate node per channel; the caller multiplies them elementwise.
    """
    variables = list(variables)
    if len(variables) == 1 or supports_multivariate(leaf):
        family = make_leaf_family(leaf, num_units, variables=variables, rng=rng, leaf_params=leaf_params,
                                  where=where)
        return [InputNode(variables, family)]
    return [InputNode(v, make_leaf_family(leaf, num_units, variables=(v,), rng=rng, leaf_params=leaf_params,
                                          where=where))
            for v in variables]
