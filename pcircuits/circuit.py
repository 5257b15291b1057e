"""Circuit: the DAG of nodes under one or several roots, with traversal and statistics.

The circuit owns no arrays of its own: nodes hold parameters, ``layerize`` lowers the
circuit to a :class:`~pcircuits.program.Program`. Traversals are iterative, so circuits of any
depth work without touching Python's recursion limit.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from . import nodes as _nodes
from .nodes import InputNode, Node, ProductNode, SumNode, WeightedSum
from .scope import Scope, Variables

__all__ = ["Circuit"]


class Circuit:
    """A probabilistic circuit: the nodes reachable from ``roots``.

    Parameters
    ----------
    roots : Node or sequence of Node
        One root, or several (for example one per class); each root contributes one output
        column to every query.
    variables : Variables, optional
        Names (and image shape) of the variables; by default ``x0 .. x{n-1}`` with ``n`` one
        more than the largest variable id in the scope.
    """

    def __init__(self, roots: Union[Node, Sequence[Node]], variables: Variables | None = None):
        if isinstance(roots, (Node, WeightedSum)):
            roots = [roots]
        roots = [r.node if isinstance(r, WeightedSum) else r for r in roots]
        if not roots:
            raise ValueError("Circuit: needs at least one root")
        for r in roots:
            if not isinstance(r, Node):
                raise TypeError(f"Circuit: roots must be nodes, got {type(r).__name__}")
        self.roots = list(roots)
        self._order_epoch = -1
        self._nodes: list[Node] = []
        self._back_edges: list[tuple[Node, Node]] = []
        scope = self.scope
        if variables is None:
            variables = Variables(scope.max() + 1 if scope else 0)
        elif not isinstance(variables, Variables):
            raise TypeError(f"Circuit: variables must be a pcircuits.Variables, got {type(variables).__name__}")
        elif scope and scope.max() >= variables.num_variables:
            raise ValueError(f"Circuit: the circuit uses variable {scope.max()} but only "
                             f"{variables.num_variables} variables are declared")
        self.variables = variables

    # ---- traversal -------------------------------------------------------------------
    def _refresh(self):
        if self._order_epoch == _nodes.structure_epoch():
            return
        self._nodes, self._back_edges = _topological_order(self.roots)
        self._index = {id(n): i for i, n in enumerate(self._nodes)}
        self._order_epoch = _nodes.structure_epoch()

    @property
    def nodes(self) -> list[Node]:
        """All nodes, children before parents (nodes on a cycle, if any, in discovery order)."""
        self._refresh()
        return self._nodes

    @property
    def back_edges(self) -> list[tuple[Node, Node]]:
        """``(parent, child)`` edges that close a cycle; empty for a proper DAG."""
        self._refresh()
        return self._back_edges

    def index(self, node: Node) -> int:
        """The position of ``node`` in :attr:`nodes` (its id within this circuit)."""
        self._refresh()
        try:
            return self._index[id(node)]
        except KeyError:
            raise KeyError(f"{node.describe()} is not in this circuit") from None

    def __contains__(self, node) -> bool:
        self._refresh()
        return id(node) in self._index

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    # ---- statistics ------------------------------------------------------------------
    @property
    def scope(self) -> Scope:
        bits = 0
        for r in self.roots:
            bits |= r.scope.bits
        return Scope.from_bits(bits)

    @property
    def num_variables(self) -> int:
        return self.variables.num_variables

    @property
    def num_roots(self) -> int:
        return len(self.roots)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    @property
    def num_units(self) -> int:
        return sum(n.num_units for n in self.nodes)

    @property
    def num_edges(self) -> int:
        """Unit-level edges: inputs of every sum unit plus factors of every product unit."""
        return sum(n.num_edges for n in self.nodes)

    @property
    def num_params(self) -> int:
        """Free parameters, shared (tied) parameter objects counted once."""
        seen = {}
        for n in self.nodes:
            for p in n.parameter_objects():
                seen[id(p)] = p
        return sum(p.num_params for p in seen.values())

    @property
    def depth(self) -> int:
        """Edges on the longest path from a root to an input node."""
        height = {}
        for n in self.nodes:
            height[id(n)] = 1 + max((height.get(id(c), 0) for c in n.children), default=-1)
        return max(height[id(r)] for r in self.roots)

    def nodes_of_kind(self, kind: str) -> list[Node]:
        """Nodes whose ``kind`` is ``"input"``, ``"product"`` or ``"sum"``."""
        return [n for n in self.nodes if n.kind == kind]

    @property
    def input_nodes(self) -> list[InputNode]:
        return self.nodes_of_kind("input")

    @property
    def sum_nodes(self) -> list[SumNode]:
        return self.nodes_of_kind("sum")

    @property
    def product_nodes(self) -> list[ProductNode]:
        return self.nodes_of_kind("product")

    def statistics(self) -> dict:
        """Sizes in one dict: nodes, units, edges, params, depth, variables, roots."""
        return {"nodes": self.num_nodes, "units": self.num_units, "edges": self.num_edges,
                "params": self.num_params, "depth": self.depth, "variables": self.num_variables,
                "roots": self.num_roots}

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"Circuit({s['nodes']} nodes, {s['units']} units, {s['edges']} edges, {s['params']} params, "
                f"depth {s['depth']}, {s['variables']} variables, {s['roots']} root{'s' if s['roots'] > 1 else ''})")

    # ---- copying ---------------------------------------------------------------------
    def copy(self) -> "Circuit":
        """A deep copy: new nodes and new parameter arrays, with the same tying pattern."""
        if self.back_edges:
            raise ValueError("Circuit.copy: the circuit has a cycle; break it first (see check())")
        new_params: dict[int, object] = {}

        def clone_param(p):
            if id(p) not in new_params:
                new_params[id(p)] = p.copy()
            return new_params[id(p)]

        mapping: dict[int, Node] = {}
        for n in self.nodes:
            rule = _COPY_RULES.get(n.kind)
            if rule is None:
                raise TypeError(f"Circuit.copy: unknown node kind {n.kind!r}")
            mapping[id(n)] = rule(n, [mapping[id(c)] for c in n.children], clone_param)
        return Circuit([mapping[id(r)] for r in self.roots], variables=self.variables)

    # ---- validity, drawing, files, lowering (implemented in their own modules) ---------
    def check(self, **options):
        """Smoothness, decomposability, cycles, weights and shapes: a ValidityReport."""
        from .validity import check
        return check(self, **options)

    def to_networkx(self):
        """A ``networkx.DiGraph`` with edges parent -> child and readable node attributes."""
        from .serialization import to_networkx
        return to_networkx(self)

    @classmethod
    def from_networkx(cls, graph) -> "Circuit":
        """Rebuild a circuit from :meth:`to_networkx`'s graph."""
        from .serialization import from_networkx
        return from_networkx(graph)

    def save(self, path) -> None:
        """Write structure (JSON) and arrays (npz) into one ``.pcz`` file; no pickle."""
        from .serialization import save
        save(self, path)

    @classmethod
    def load(cls, path, *, validate: bool = True, **limits) -> "Circuit":
        """Read a file written by :meth:`save`; a damaged file raises ``CircuitFileError``.

        The circuit must pass :meth:`check` unless ``validate=False`` (for files that store
        invalid circuits on purpose). ``limits`` (``max_bytes``, ``max_units``, ``max_edges``)
        raise or lower the bounds that :func:`pcircuits.serialization.load` checks before
        allocating anything.
        """
        from .serialization import load
        return load(path, validate=validate, **limits)

    def to_dot(self, report=None, **options) -> str:
        """Graphviz source of the drawing (violations from ``report`` highlighted)."""
        from .viz import circuit_to_dot
        return circuit_to_dot(self, report=report, **options)

    def render(self, path, report=None, **options):
        """Draw to ``path`` (``.svg``, ``.png``, ``.pdf``) with the ``dot`` program."""
        from .viz import render_circuit
        return render_circuit(self, path, report=report, **options)

    def compile(self, backend: str = "numpy", dtype: str = "float32", check: bool = True, **options):
        """Lower to a tensor :class:`~pcircuits.program.Program` (see :func:`pcircuits.layerize`)."""
        from .layerize import layerize
        return layerize(self, backend=backend, dtype=dtype, check=check, **options)


def _topological_order(roots: Sequence[Node]) -> tuple[list[Node], list[tuple[Node, Node]]]:
    """Children-first order by an iterative depth-first search; also the cycle-closing edges."""
    order: list[Node] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: finished
    back_edges: list[tuple[Node, Node]] = []
    for root in roots:
        if id(root) in state:
            continue
        stack = [(root, iter(root.children))]
        state[id(root)] = 1
        while stack:
            node, children = stack[-1]
            advanced = False
            for child in children:
                s = state.get(id(child))
                if s is None:
                    state[id(child)] = 1
                    stack.append((child, iter(child.children)))
                    advanced = True
                    break
                if s == 1:
                    back_edges.append((node, child))
            if not advanced:
                stack.pop()
                state[id(node)] = 2
                order.append(node)
    return order, back_edges


#: How :meth:`Circuit.copy` rebuilds a node of each kind from its copied children and a
#: parameter cloner (which clones each parameter object once, keeping the tying pattern).
_COPY_RULES = {
    "input": lambda n, children, clone: InputNode(n._variable_scope, clone(n.family), label=n.label),
    "product": lambda n, children, clone: ProductNode(children, n.table.copy() if n.pattern == "table" else n.pattern,
                                                      label=n.label),
    "sum": lambda n, children, clone: SumNode(children, weights=clone(n.params), label=n.label),
}
