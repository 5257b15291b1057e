"""Validity checks: which node breaks which property, and why.

A circuit computes a normalized distribution by one bottom-up pass when it is *smooth*
(complete: every sum's children share one scope), *decomposable* (every product's children
have pairwise disjoint scopes), acyclic, and its sums' weights are normalized. ``check``
collects every violation into a :class:`ValidityReport` instead of raising, so invalid circuits
can be built, inspected and drawn on purpose.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from functools import reduce

import numpy as np

from .errors import InvalidCircuitError
from .nodes import InputNode, Node, ProductNode, SumNode
from .scope import Scope

__all__ = ["Violation", "ValidityReport", "InvalidCircuitError", "check", "KINDS"]

#: The properties a violation can be about.
KINDS = ("smoothness", "decomposability", "cycle", "weights", "shape")
#: How many offending children a smoothness or decomposability message names.
_DETAILS = 3


@dataclass(frozen=True)
class Violation:
    """One broken property at one node.

    Attributes
    ----------
    kind : str
        One of ``"smoothness"``, ``"decomposability"``, ``"cycle"``, ``"weights"``, ``"shape"``.
    node : Node
        The offending node.
    message : str
        One sentence that says what is wrong and why it matters.
    scopes : tuple of Scope
        The scopes involved (children's scopes for smoothness/decomposability).
    node_index : int
        The node's position in ``circuit.nodes``.
    """

    kind: str
    node: Node
    message: str
    scopes: tuple = field(default=())
    node_index: int = -1

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


class ValidityReport:
    """All violations found in a circuit; ``ok`` when there are none."""

    def __init__(self, circuit, violations: list[Violation]):
        self.circuit = circuit
        self.violations = list(violations)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __bool__(self) -> bool:
        return self.ok

    def __len__(self) -> int:
        return len(self.violations)

    def __iter__(self):
        return iter(self.violations)

    def by_kind(self, kind: str) -> list[Violation]:
        if kind not in KINDS:
            raise ValueError(f"unknown violation kind {kind!r}; kinds are {KINDS}")
        return [v for v in self.violations if v.kind == kind]

    @property
    def kinds(self) -> set[str]:
        return {v.kind for v in self.violations}

    @property
    def nodes(self) -> list[Node]:
        """The offending nodes, each once, in circuit order."""
        seen, out = set(), []
        for v in self.violations:
            if id(v.node) not in seen:
                seen.add(id(v.node))
                out.append(v.node)
        return out

    def raise_if_invalid(self) -> "ValidityReport":
        if not self.ok:
            raise InvalidCircuitError(self)
        return self

    def __str__(self) -> str:
        c = self.circuit
        if self.ok:
            return (f"Valid circuit: smooth, decomposable, acyclic, normalized weights "
                    f"({c.num_nodes} nodes, {c.num_units} units checked).")
        counts = {k: len(self.by_kind(k)) for k in KINDS if self.by_kind(k)}
        head = (f"Invalid circuit: {len(self.violations)} violation{'s' if len(self.violations) > 1 else ''} ("
                + ", ".join(f"{n} {k}" for k, n in counts.items()) + ")")
        lines = [head] + [f"  {v}" for v in self.violations[:50]]
        if len(self.violations) > 50:
            lines.append(f"  ... and {len(self.violations) - 50} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ValidityReport(ok={self.ok}, violations={len(self.violations)})"


def node_name(circuit, node: Node) -> str:
    """``SumNode n12 'label' (4 units) over x[0..3, 0..3]`` for messages."""
    idx = circuit.index(node)
    label = f" {node.label!r}" if node.label else ""
    kind = type(node).__name__ + (f"[{node.family.name}]" if node.kind == "input" else "")
    units = f"{node.num_units} unit{'s' if node.num_units != 1 else ''}"
    return f"{kind} n{idx}{label} ({units}) over {circuit.variables.format_scope(node.scope)}"


def check(circuit, *, atol: float = 1e-6) -> ValidityReport:
    """Check every node of ``circuit``; return a :class:`ValidityReport`.

    Parameters
    ----------
    atol : float
        Tolerance on ``|sum of a weight row - 1|``.
    """
    found: list[Violation] = []
    for parent, child in circuit.back_edges:
        found.append(Violation(
            "cycle", parent,
            f"{node_name(circuit, parent)} has child {node_name(circuit, child)}, which is also its ancestor: "
            f"a circuit must be acyclic, or no bottom-up order exists.",
            (parent.scope, child.scope), circuit.index(parent)))
    nodes = circuit.nodes
    normalized = _normalized_sums(nodes, atol)
    shape_rules, node_rules = _SHAPE_RULES, _NODE_RULES
    for index, node in enumerate(nodes):
        kind = node.kind
        shape_rule = shape_rules.get(kind)
        shape_problems = shape_rule(node) if shape_rule is not None else []
        for problem in shape_problems:
            found.append(Violation("shape", node, f"{node_name(circuit, node)}: {problem}.", (node.scope,), index))
        rule = node_rules.get(kind)
        if rule is not None:
            violations = rule(circuit, node, index, shape_problems, atol, normalized)
            if violations:
                found.extend(violations)
    return ValidityReport(circuit, found)


#: A node's scope bitset (the scope property is cached per structural edit).
_scope_bits = operator.attrgetter("scope.bits")
_num_units = operator.attrgetter("num_units")


def _sum_violations(circuit, node: SumNode, index: int, shape_problems: list, atol: float,
                    normalized: set) -> list[Violation]:
    """Weights (when shaped right and not already shown normalized) and smoothness: all children
    over one scope."""
    found = [] if shape_problems or id(node.params) in normalized else \
        _weight_violations(circuit, node, index, atol)
    bits = list(map(_scope_bits, node.children))
    if bits and bits.count(bits[0]) != len(bits):
        scopes = [c.scope for c in node.children]
        fmt = circuit.variables.format_scope
        distinct = list(dict.fromkeys(scopes))
        differing = [i for i, s in enumerate(scopes) if s.bits != scopes[0].bits]
        detail = "; ".join(f"child {i} ({type(node.children[i]).__name__} n{circuit.index(node.children[i])}) over "
                           f"{fmt(scopes[i])}" for i in [0] + differing[:_DETAILS])
        if len(differing) > _DETAILS:
            detail += f"; and {len(differing) - _DETAILS} more children over other scopes"
        found.append(Violation(
            "smoothness", node,
            f"{node_name(circuit, node)} mixes children over different scopes ({detail}): a sum must be "
            f"smooth (complete), or it mixes distributions over different variables.",
            tuple(distinct), index))
    return found


def _product_violations(circuit, node: ProductNode, index: int, shape_problems: list, atol: float,
                        normalized: set) -> list[Violation]:
    """Decomposability: the children's scopes are pairwise disjoint.

    Linear in the children and the variables: one pass of bitset unions finds the children that
    overlap an earlier one; only then a map from each variable to the first child over it names
    the earlier child (so a product listing one child a million times is checked in one pass).
    The children are pairwise disjoint exactly when their scope sizes add up to their union's
    size, which two C-level reductions decide before any of that.
    """
    bits = list(map(_scope_bits, node.children))
    if sum(map(int.bit_count, bits)) == reduce(operator.or_, bits, 0).bit_count():
        return []
    seen_bits = 0
    overlaps = []
    count = 0
    for i, child in enumerate(node.children):
        shared = seen_bits & child.scope.bits
        if shared:
            count += 1
            if len(overlaps) < _DETAILS:
                overlaps.append((i, Scope.from_bits(shared)))
        seen_bits |= child.scope.bits
    if not count:
        return []
    first_child: dict[int, int] = {}
    covered = 0
    for i, child in enumerate(node.children[:overlaps[-1][0]]):
        new_bits = child.scope.bits & ~covered
        if new_bits:
            first_child.update((variable, i) for variable in Scope.from_bits(new_bits))
            covered |= new_bits
    fmt = circuit.variables.format_scope
    detail = "; ".join(f"children {min(first_child[v] for v in shared)} and {i} share {fmt(shared)}"
                       for i, shared in overlaps)
    if count > len(overlaps):
        detail += f"; and {count - len(overlaps)} more children overlap earlier ones"
    return [Violation(
        "decomposability", node,
        f"{node_name(circuit, node)} multiplies children with overlapping scopes ({detail}): a product "
        f"must be decomposable, or it multiplies dependent factors and over-counts shared variables.",
        tuple(c.scope for c in node.children), index)]


def _input_violations(circuit, node: InputNode, index: int, shape_problems: list, atol: float,
                      normalized: set) -> list[Violation]:
    """Leaf parameters inside their family's constraints (when shaped right)."""
    if shape_problems:
        return []
    return [Violation("weights", node, f"{node_name(circuit, node)}: leaf parameters invalid: {problem}.",
                      (node.scope,), index) for problem in node.family.value_problems()]


#: The property checks of each node kind: ``rule(circuit, node, index, shape_problems, atol,
#: normalized)``, ``normalized`` the ids of the weight objects :func:`_normalized_sums` cleared.
_NODE_RULES = {"sum": _sum_violations, "product": _product_violations, "input": _input_violations}


def _sum_shape_problems(node: SumNode) -> list[str]:
    values, mask = node.params.values, node.params.mask
    expected = (node.num_units, node.num_inputs)
    problems = []
    if not isinstance(values, np.ndarray) or values.shape != expected:
        problems.append(f"weights have shape {np.shape(values)} but the node needs {expected} "
                        f"({node.num_units} units x {node.num_inputs} child units)")
    if mask is not None and np.shape(mask) != expected:
        problems.append(f"mask has shape {np.shape(mask)} but the node needs {expected}")
    return problems


def _product_shape_problems(node: ProductNode) -> list[str]:
    sizes = list(map(_num_units, node.children))
    if node.pattern == "elementwise":
        # the implied table pairs unit u of every child: it fits when every child has num_units units
        return [] if min(sizes) >= node.num_units else ["pattern table refers to child units that do not exist"]
    if node.pattern == "cartesian" and math.prod(sizes) == node.num_units:
        return []  # the implied table enumerates exactly the children's units
    table = node.table
    sizes = np.array(sizes)
    if table.ndim != 2 or table.shape != (node.num_units, len(node.children)):
        return [f"pattern table has shape {table.shape} but the node needs ({node.num_units}, {len(sizes)})"]
    if np.any(table < 0) or np.any(table >= sizes[None, :]):
        return ["pattern table refers to child units that do not exist"]
    return []


def _input_shape_problems(node: InputNode) -> list[str]:
    problems = list(node.family.shape_problems())
    if not problems and node.family.num_units != node.num_units:
        problems.append(f"the family has {node.family.num_units} units but the node has {node.num_units}")
    if not problems and node.family.num_variables != len(node.variables):
        problems.append(f"the family is over {node.family.num_variables} variables per unit but the node has "
                        f"{len(node.variables)} variables")
    return problems


#: Whether a node's arrays fit it, per kind.
_SHAPE_RULES = {"sum": _sum_shape_problems, "product": _product_shape_problems, "input": _input_shape_problems}


def _shape_problems(node: Node) -> list[str]:
    """Why the node's parameter arrays do not fit its children and units (empty when they do)."""
    rule = _SHAPE_RULES.get(node.kind)
    return [] if rule is None else rule(node)


def _normalized_sums(nodes: list, atol: float) -> set[int]:
    """The ids of the sums' weight objects that one vectorized pass over all of them shows to be
    valid weights: unmasked float64 matrices, finite, non-negative, every row summing to 1 within
    ``atol`` less a margin for summing in another order than ``_weight_violations`` (which would
    find nothing at them). Whether they fit their nodes is the shape check's business; the other
    sums' weights are checked, and reported, one by one."""
    arrays = {}
    for node in nodes:
        if node.kind == "sum" and node.params.mask is None and id(node.params) not in arrays:
            w = node.params.values
            if isinstance(w, np.ndarray) and w.dtype == np.float64 and w.ndim == 2 and w.size:
                arrays[id(node.params)] = w
    if not arrays:
        return set()
    units = np.array([w.shape[0] for w in arrays.values()])
    widths = np.array([w.shape[1] for w in arrays.values()])
    array_of_row = np.repeat(np.arange(len(arrays)), units)
    first_row = np.cumsum(units) - units
    row_starts = (np.cumsum(units * widths) - units * widths)[array_of_row] \
        + (np.arange(len(array_of_row)) - first_row[array_of_row]) * widths[array_of_row]
    flat = np.concatenate([w.ravel() for w in arrays.values()])
    values_ok = np.logical_and.reduceat((flat >= 0) & (flat < np.inf), row_starts)
    row_sums = np.add.reduceat(flat, row_starts)
    # two summation orders of n non-negative terms differ by at most about n eps times their sum
    margin = 2 * np.finfo(np.float64).eps * widths[array_of_row] * row_sums
    rows_ok = values_ok & (np.abs(row_sums - 1.0) + margin <= atol)
    return {key for key, ok in zip(arrays, np.logical_and.reduceat(rows_ok, first_row).tolist()) if ok}


def _weight_violations(circuit, node: SumNode, index: int, atol: float) -> list[Violation]:
    w = node.params.values
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        return [Violation("weights", node, f"{node_name(circuit, node)}: weights must be finite and non-negative.",
                          (node.scope,), index)]
    if node.params.mask is not None and np.any(w[~node.params.mask] != 0):
        return [Violation("weights", node, f"{node_name(circuit, node)}: weights outside the mask are not 0.",
                          (node.scope,), index)]
    sums = w.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if len(bad):
        rows = ", ".join(f"unit {u} sums to {sums[u]:.6g}" for u in bad[:3])
        return [Violation("weights", node, f"{node_name(circuit, node)}: weight rows must sum to 1 ({rows}"
                          f"{', ...' if len(bad) > 3 else ''}); otherwise the circuit is not normalized.",
                          (node.scope,), index)]
    return []
