"""Nodes of a probabilistic circuit. Each node is a *vector* of units that share one scope.

* :class:`InputNode` holds ``num_units`` leaf distributions of one family over its variables.
* :class:`ProductNode` unit ``u`` multiplies one unit of each child (elementwise, cartesian or
  an explicit table).
* :class:`SumNode` unit ``u`` is a weighted mixture of the units of its children.

Construction checks arity, sizes and parameter values and raises ``TypeError``/``ValueError``
at once. It does not demand validity: smoothness, decomposability and normalization are the
business of :func:`pcircuits.validity.check`, so invalid circuits can be built on purpose.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Union

import numpy as np

from .distributions.base import LeafFamily, make_rng
from .scope import Scope

__all__ = ["Node", "InputNode", "ProductNode", "SumNode", "SumWeights", "WeightedSum",
           "product", "mixture"]

# Bumped by every structural edit (Node.rewire); cached scopes and circuit orders compare
# against it, so that they are computed once and recomputed only after an edit.
_structure_epoch = 0


#: ``arr.min()`` / ``arr.max()`` over all axes without the Python-level wrappers (small arrays).
_min, _max = np.minimum.reduce, np.maximum.reduce
#: The scope of a node before its scope is first computed (scopes are immutable, so one serves all).
_NO_SCOPE = Scope.from_bits(0)


def structure_epoch() -> int:
    return _structure_epoch


class Node:
    """Base class: a vector of ``num_units`` units over one scope.

    Attributes
    ----------
    children : tuple of Node
    num_units : int
    label : str or None
        A name for drawings and reports.
    """

    kind = "node"

    def __init__(self, children: Sequence["Node"], num_units: int, label: str | None = None):
        self.children = tuple(children)
        self.num_units = int(num_units)
        self.label = None if label is None else str(label)
        self._scope = _NO_SCOPE
        self._scope_epoch = -1

    # ---- scope ---------------------------------------------------------------------
    @property
    def scope(self) -> Scope:
        """The union of the scopes of the input nodes below this node (cached)."""
        if self._scope_epoch != _structure_epoch:
            _refresh_scopes(self)
        return self._scope

    def _own_scope_bits(self) -> int:
        bits = 0
        for child in self.children:
            bits |= child._scope.bits
        return bits

    @property
    def num_inputs(self) -> int:
        """Total number of units over all children."""
        return sum(c.num_units for c in self.children)

    @property
    def num_edges(self) -> int:
        """Unit-level edges from this node's units to its children's units."""
        return 0

    def parameter_objects(self) -> list:
        """The parameter holders this node uses (shared ones are the same objects)."""
        return []

    def rewire(self, children: Sequence["Node"]):
        """Replace the children (an explicit structural edit; it may even make a cycle).

        The new children must fit the node's parameters exactly as at construction.
        """
        children = _as_node_list(children, type(self).__name__)
        self._check_children(children)
        _set_children(self, children)

    def _check_children(self, children):
        raise TypeError(f"{type(self).__name__} has no children")

    def describe(self) -> str:
        name = f"{type(self).__name__}"
        if self.label:
            name += f" {self.label!r}"
        return f"{name} ({self.num_units} unit{'s' if self.num_units != 1 else ''})"

    def __repr__(self) -> str:
        return f"<{self.describe()} scope={self.scope!r}>"

    # ---- operators for hand-built circuits --------------------------------------------
    def __mul__(self, other):
        if isinstance(other, (Node, WeightedSum)):
            return ProductNode([self, other])
        if isinstance(other, (int, float, np.floating, np.integer)):
            return WeightedSum([(float(other), self)])
        return NotImplemented

    def __rmul__(self, other):
        if isinstance(other, (int, float, np.floating, np.integer)):
            return WeightedSum([(float(other), self)])
        return NotImplemented

    __hash__ = object.__hash__


def _set_children(node: Node, children: list[Node]):
    global _structure_epoch
    node.children = tuple(children)
    _structure_epoch += 1


def _refresh_scopes(start: Node):
    """Recompute stale cached scopes below ``start`` without recursion (cycles are cut)."""
    epoch = _structure_epoch
    stack = [(start, False)]
    on_path = set()
    while stack:
        node, expanded = stack.pop()
        if node._scope_epoch == epoch:
            continue
        if expanded:
            on_path.discard(id(node))
            node._scope = Scope.from_bits(node._own_scope_bits())
            node._scope_epoch = epoch
            continue
        if id(node) in on_path:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        for child in node.children:
            if child._scope_epoch != epoch and id(child) not in on_path:
                stack.append((child, False))


def _as_node(obj, where: str) -> Node:
    if isinstance(obj, WeightedSum):
        return obj.node
    if not isinstance(obj, Node):
        raise TypeError(f"{where}: children must be nodes, got {type(obj).__name__}")
    return obj


def _as_node_list(children, where: str) -> list[Node]:
    if type(children) in (list, tuple) and all(map(isinstance, children, repeat(Node))):
        children = list(children)  # nodes already: the common case, checked in C
    else:
        if isinstance(children, (Node, WeightedSum)):
            children = [children]
        if not isinstance(children, Iterable):
            raise TypeError(f"{where}: children must be a sequence of nodes, got {type(children).__name__}")
        children = [_as_node(c, where) for c in children]
    if not children:
        raise ValueError(f"{where}: needs at least one child")
    return children


class InputNode(Node):
    """``family.num_units`` leaf distributions over ``variables``.

    Parameters
    ----------
    variables : int, iterable of int, or Scope
        The variable(s) of the leaves; as many as the family's ``num_variables``.
    family : LeafFamily
        The parameter holder (shared between nodes to tie leaf parameters).
    """

    kind = "input"

    def __init__(self, variables: Union[int, Iterable[int], Scope], family: LeafFamily, *,
                 label: str | None = None):
        if not isinstance(family, LeafFamily):
            raise TypeError(f"InputNode: family must be a leaf family such as pc.Gaussian(...), "
                            f"got {type(family).__name__}")
        scope = variables if isinstance(variables, Scope) else Scope(variables)
        if len(scope) == 0:
            raise ValueError("InputNode: needs at least one variable")
        if len(scope) != family.num_variables:
            raise ValueError(f"InputNode: the {type(family).__name__} family is over {family.num_variables} "
                             f"variable(s) per unit, but {len(scope)} variables were given")
        super().__init__((), family.num_units, label)
        self.family = family
        self.variables = tuple(scope)
        self._variable_scope = scope
        self._scope = scope
        self._scope_epoch = _structure_epoch

    def _own_scope_bits(self) -> int:
        return self._variable_scope.bits

    def parameter_objects(self):
        return [self.family]

    def describe(self) -> str:
        return super().describe().replace("InputNode", f"InputNode[{self.family.name}]", 1)


class ProductNode(Node):
    """Products of one unit from each child.

    Parameters
    ----------
    children : sequence of Node
    pattern : "elementwise", "cartesian", or int array of shape (num_units, num_children)
        ``"elementwise"``: all children have ``k`` units, unit ``u`` multiplies unit ``u`` of
        each. ``"cartesian"``: one unit per combination (first child varies slowest). A table
        gives, for each unit, which unit of each child it multiplies.
    """

    kind = "product"

    def __init__(self, children: Sequence[Node], pattern="elementwise", *, label: str | None = None):
        children = _as_node_list(children, "ProductNode")
        if isinstance(pattern, str):
            if pattern not in ("elementwise", "cartesian"):
                raise ValueError(f"ProductNode: pattern must be 'elementwise', 'cartesian' or an int table, "
                                 f"got {pattern!r}")
            self.pattern = pattern
            self._table = None
        else:
            table = np.asarray(pattern)
            if table.dtype.kind not in "iu":
                raise TypeError(f"ProductNode: a pattern table must hold ints, got dtype {table.dtype}")
            self.pattern = "table"
            self._table = table.astype(np.int64)
        num_units = self._check_children(children)
        super().__init__(children, num_units, label)
        self._scope = Scope.from_bits(self._own_scope_bits())
        self._scope_epoch = _structure_epoch

    def _check_children(self, children) -> int:
        sizes = [c.num_units for c in children]
        if self.pattern == "elementwise":
            if len(set(sizes)) != 1:
                raise ValueError(f"ProductNode: elementwise products need children of equal size, got sizes {sizes}")
            return sizes[0]
        if self.pattern == "cartesian":
            return math.prod(sizes)
        table = self._table
        if table.ndim != 2 or table.shape[1] != len(children) or table.shape[0] < 1:
            raise ValueError(f"ProductNode: pattern table must have shape (num_units, {len(children)}), "
                             f"got {table.shape}")
        if np.any(table < 0) or np.any(table >= np.array(sizes)[None, :]):
            col = int(np.argmax(np.any((table < 0) | (table >= np.array(sizes)[None, :]), axis=0)))
            raise ValueError(f"ProductNode: pattern table column {col} refers to units outside 0..{sizes[col] - 1} "
                             f"of child {col}")
        return int(table.shape[0])

    def rewire(self, children: Sequence[Node]):
        """Replace the children; they must give the same number of product units."""
        children = _as_node_list(children, "ProductNode")
        n = self._check_children(children)
        if n != self.num_units:
            raise ValueError(f"ProductNode.rewire: the new children give {n} units, the node has {self.num_units}")
        _set_children(self, children)

    @property
    def table(self) -> np.ndarray:
        """Which unit of each child every unit multiplies, shape (num_units, num_children)."""
        if self._table is not None:
            return self._table
        sizes = [c.num_units for c in self.children]
        if self.pattern == "elementwise":
            return np.repeat(np.arange(self.num_units)[:, None], len(sizes), axis=1)
        return np.indices(sizes).reshape(len(sizes), -1).T.copy()

    @property
    def num_edges(self) -> int:
        return self.num_units * len(self.children)


class SumWeights:
    """Sum-node weights, shape (num_units, num_inputs); shared between nodes to tie them.

    Parameters
    ----------
    values : array_like, shape (num_units, num_inputs)
        Non-negative, finite. Rows should sum to 1 (``check()`` reports rows that do not).
    mask : array_like of bool, optional
        Which inputs each unit is connected to; weights outside the mask must be 0.
    """

    def __init__(self, values, mask=None):
        try:
            arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"SumWeights: weights must be numeric, got {type(values).__name__}") from None
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"SumWeights: weights must have shape (num_units, num_inputs), got {arr.shape}")
        if not (_min(arr, None) >= 0 and _max(arr, None) < np.inf):  # false for NaN too
            if not np.all(np.isfinite(arr)):
                raise ValueError("SumWeights: weights must be finite")
            raise ValueError(f"SumWeights: weights must be non-negative, got minimum {arr.min()}")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool:
                raise TypeError(f"SumWeights: mask must be boolean, got dtype {mask.dtype}")
            if mask.shape != arr.shape:
                raise ValueError(f"SumWeights: mask has shape {mask.shape} but weights have shape {arr.shape}")
            if not np.all(mask.any(axis=1)):
                raise ValueError(f"SumWeights: mask row {int(np.argmin(mask.any(axis=1)))} connects the unit to no input")
            if np.any(arr[~mask] != 0):
                raise ValueError("SumWeights: weights outside the mask must be 0")
            if mask.all():
                mask = None
        self.values = arr
        self.mask = mask

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    @property
    def num_params(self) -> int:
        return int(self.values.size if self.mask is None else self.mask.sum())

    @classmethod
    def random(cls, num_units: int, num_inputs: int, rng=None, mask=None) -> "SumWeights":
        """Normalized random weights (uniform in [0.01, 1) before normalization)."""
        w = make_rng(rng).uniform(0.01, 1.0, size=(num_units, num_inputs))
        if mask is not None:
            w = w * np.asarray(mask)
        return cls(w / w.sum(axis=1, keepdims=True), mask=mask)

    def copy(self) -> "SumWeights":
        return SumWeights(self.values.copy(), None if self.mask is None else self.mask.copy())

    def normalized(self) -> np.ndarray:
        return self.values / self.values.sum(axis=1, keepdims=True)

    def __repr__(self) -> str:
        return f"SumWeights(shape={self.shape}{', masked' if self.mask is not None else ''})"


class SumNode(Node):
    """Weighted mixtures of the units of the children.

    Parameters
    ----------
    children : sequence of Node
        Their units, concatenated in order, are the inputs of every unit.
    num_units : int, optional
        Number of mixtures (default 1, or inferred from ``weights``).
    weights : array_like of shape (num_units, num_inputs), or SumWeights
        Pass a :class:`SumWeights` object to share (tie) weights between nodes.
    mask : array_like of bool, shape (num_units, num_inputs), optional
        Sparse connectivity; random weights are drawn on the mask when ``weights`` is None.
    rng : int or Generator, optional
        Seed for the random normalized weights.
    """

    kind = "sum"

    def __init__(self, children: Sequence[Node], num_units: int | None = None, weights=None, mask=None,
                 rng=None, *, label: str | None = None):
        children = _as_node_list(children, "SumNode")
        num_inputs = sum(c.num_units for c in children)
        if num_units is not None and (isinstance(num_units, bool) or not isinstance(num_units, (int, np.integer))
                                      or num_units < 1):
            raise ValueError(f"SumNode: num_units must be a positive int, got {num_units!r}")
        if weights is None:
            if mask is not None:
                mask = np.asarray(mask)
                num_units = mask.shape[0] if num_units is None else num_units
                if mask.shape != (num_units, num_inputs):
                    raise ValueError(f"SumNode: mask has shape {mask.shape} but the node has {num_units} units "
                                     f"and its children {num_inputs} units in total")
            params = SumWeights.random(1 if num_units is None else num_units, num_inputs, rng, mask)
        elif isinstance(weights, SumWeights):
            if mask is not None:
                raise ValueError("SumNode: give the mask inside SumWeights when sharing weights")
            params = weights
        else:
            params = SumWeights(weights, mask)
        if num_units is not None and params.shape[0] != num_units:
            raise ValueError(f"SumNode: num_units={num_units} but the weights have {params.shape[0]} rows")
        self.params = params
        super().__init__(children, params.shape[0], label)
        self._check_children(children)
        self._scope = Scope.from_bits(self._own_scope_bits())
        self._scope_epoch = _structure_epoch

    def _check_children(self, children):
        num_inputs = sum(c.num_units for c in children)
        if self.params.shape[1] != num_inputs:
            raise ValueError(f"SumNode: weights have shape {self.params.shape} but the children have "
                             f"{num_inputs} units in total")

    @property
    def weights(self) -> np.ndarray:
        """The weight array, shape (num_units, num_inputs)."""
        return self.params.values

    @weights.setter
    def weights(self, values):
        self.params.values = np.asarray(values, dtype=np.float64)

    @property
    def mask(self) -> np.ndarray | None:
        return self.params.mask

    @property
    def num_edges(self) -> int:
        return self.params.num_params

    def parameter_objects(self):
        return [self.params]


class WeightedSum:
    """``0.3 * a + 0.7 * b``: a mixture written with operators, turned into a SumNode on use.

    The SumNode is made once (``.node``), so using the same expression twice shares one node.
    """

    def __init__(self, terms):
        self.terms = list(terms)
        self._node = None

    def __add__(self, other):
        if isinstance(other, WeightedSum):
            return WeightedSum(self.terms + other.terms)
        if isinstance(other, Node):
            raise TypeError("a node in a weighted sum needs a weight: write 0.5 * node")
        return NotImplemented

    def __mul__(self, other):
        if isinstance(other, (Node, WeightedSum)):
            return ProductNode([self.node, other])
        return NotImplemented

    @property
    def node(self) -> SumNode:
        if self._node is None:
            self._node = mixture([n for _, n in self.terms], [w for w, _ in self.terms])
        return self._node


def product(*children: Node, pattern="elementwise", label: str | None = None) -> ProductNode:
    """A product of the given nodes: ``product(a, b, c)``."""
    if len(children) == 1 and not isinstance(children[0], (Node, WeightedSum)):
        children = tuple(children[0])
    return ProductNode(children, pattern, label=label)


def mixture(children: Sequence[Node], weights, *, label: str | None = None) -> SumNode:
    """A one-unit sum over the units of ``children`` with the given weights (one per input unit)."""
    children = _as_node_list(children, "mixture")
    w = np.asarray(weights, dtype=np.float64)
    sizes = [c.num_units for c in children]
    if w.ndim != 1 or w.size != sum(sizes):
        raise ValueError(f"mixture: give one weight per input unit: the children have sizes {sizes} "
                         f"({sum(sizes)} units) but the weights have shape {w.shape}")
    return SumNode(children, weights=w[None, :], label=label)
