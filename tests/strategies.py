"""Reusable hypothesis strategies and brute-force oracles for pcircuits tests.

Strategies
----------
* :func:`valid_circuits`: random smooth, decomposable, normalized circuits with every node kind
  and pattern (elementwise, cartesian and table products; dense and masked sums; multi-unit
  nodes; tied sum weights and tied leaf families; shared sub-circuits; optionally several
  roots), small enough to enumerate every assignment.
* :func:`selective_circuits`: deterministic circuits (the children of every sum have disjoint
  supports), for MPE tests.
* :func:`invalid_circuits`: ``(circuit, offending_node)`` with exactly one planted violation of
  a given kind.

Oracles
-------
* :func:`enumerate_assignments`: every joint assignment of a discrete circuit's variables.
* :func:`brute_force_log_likelihood`: node-by-node evaluation in float64 straight from the
  node objects (NaN marginalizes a variable).
* :func:`assert_circuits_equal`: same structure, same parameters (bit for bit), same tying.

Circuits are built recursively over a random partition of the scope, like a region graph:
a region of variables becomes a leaf, a product over a partition of the region, or a sum of
several nodes over the same region; nodes are created bottom-up. Variable ``v`` always has one
leaf family kind and one domain, so enumeration over the domains is exact.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

import pcircuits as pc
from leaf_contracts import CONTRACTS, VariableKind
from pcircuits.distributions import FAMILIES
from pcircuits.nodes import InputNode, Node, ProductNode, SumNode, SumWeights

__all__ = ["DISCRETE_FAMILIES", "ALL_FAMILIES", "CONTINUOUS_FAMILIES", "LEARNABLE_FAMILIES", "INVALID_KINDS", "valid_circuits", "selective_circuits",
           "invalid_circuits", "enumerate_assignments", "brute_force_log_likelihood", "leaf_log_values",
           "replace_node", "assert_circuits_equal"]

#: Every registered family whose log-density is exact and that has a test contract
#: (``leaf_contracts.py``): the families the property tests draw from.
ALL_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.exact and name in CONTRACTS)
#: Those over a discrete domain, where enumerating every assignment is exact.
DISCRETE_FAMILIES = tuple(name for name in ALL_FAMILIES if FAMILIES[name].discrete)
#: Those over continuous variables (input gradients exist).
CONTINUOUS_FAMILIES = tuple(name for name in ALL_FAMILIES if not FAMILIES[name].discrete)
#: Those with learnable parameters (gradients and EM updates exist).
LEARNABLE_FAMILIES = tuple(name for name in ALL_FAMILIES if FAMILIES[name].constraints)
INVALID_KINDS = ("smoothness", "decomposability", "cycle", "weights", "shape")


class _Builder:
    """Draws a random valid circuit region by region; one builder per generated example."""

    def __init__(self, draw, kinds: list[VariableKind], *, tied: bool, max_units: int, max_depth: int,
                 max_nodes: int):
        self.draw = draw
        self.kinds = kinds
        self.tied = tied
        self.max_units = max_units
        self.max_depth = max_depth
        self.budget = max_nodes
        self.reuse_nodes = True
        self.rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="parameter seed"))
        self.weight_pool: dict[tuple, list[SumWeights]] = {}
        self.family_pool: dict[tuple, list] = {}
        self.node_pool: dict[tuple, list[Node]] = {}

    # ---- small draws -------------------------------------------------------------------
    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def chance(self, one_in: int) -> bool:
        return self.draw(st.integers(0, one_in - 1)) == 0

    def units(self, units: int | None) -> int:
        return units if units is not None else self.integer(1, self.max_units)

    # ---- regions -----------------------------------------------------------------------
    def build(self, region: tuple[int, ...], depth: int, units: int | None = None, *, reuse: bool = True) -> Node:
        """A valid node over exactly ``region`` (with ``units`` units when given)."""
        if reuse and self.reuse_nodes:
            shared = self._reusable(region, units)
            if shared is not None:
                return shared
        self.budget -= 1
        choices = []
        family = self.kinds[region[0]].family
        multivariate = CONTRACTS[family].multivariate and all(self.kinds[v].family == family for v in region)
        if len(region) == 1 or multivariate:
            choices.append("leaf")
        if depth > 0 and self.budget > 0:
            choices += ["product", "sum"]
        if not choices:
            choices = ["factorized"]
        choice = self.draw(st.sampled_from(choices))
        if choice == "leaf":
            node = self.leaf(region, units)
        elif choice == "factorized":
            k = self.units(units)
            node = ProductNode([self.leaf((v,), k) for v in region])
        elif choice == "product":
            node = self.product(region, depth, units)
        else:
            node = self.sum(region, depth, units)
        self.node_pool.setdefault((region, node.num_units), []).append(node)
        return node

    def _reusable(self, region, units):
        if units is not None:
            candidates = self.node_pool.get((region, units), [])
        else:
            candidates = [n for (r, _), nodes in self.node_pool.items() if r == region for n in nodes]
        if candidates and self.chance(4):
            return candidates[self.integer(0, len(candidates) - 1)]
        return None

    def partition(self, region: tuple[int, ...]) -> list[tuple[int, ...]]:
        """A random split of ``region`` into 2 or 3 non-empty parts (one part for one variable)."""
        if len(region) == 1:
            return [region]
        order = self.draw(st.permutations(region))
        parts = self.integer(2, min(3, len(region)))
        cuts = sorted(self.draw(st.lists(st.integers(1, len(region) - 1), min_size=parts - 1,
                                         max_size=parts - 1, unique=True)))
        bounds = [0] + cuts + [len(region)]
        return [tuple(sorted(order[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]

    # ---- node kinds --------------------------------------------------------------------
    def leaf(self, region: tuple[int, ...], units: int | None, *, tie: bool = True) -> InputNode:
        k = self.units(units)
        kind = self.kinds[region[0]]
        key = (kind, k, len(region))
        pool = self.family_pool.setdefault(key, [])
        if tie and self.tied and pool and self.chance(3):
            family = pool[self.integer(0, len(pool) - 1)]
        else:
            family = self.new_family(kind, k, len(region))
            pool.append(family)
        return InputNode(region, family)

    def new_family(self, kind: VariableKind, k: int, num_variables: int):
        return CONTRACTS[kind.family].make(kind, k, num_variables, self.rng)

    def product(self, region, depth, units) -> ProductNode:
        parts = self.partition(region)
        patterns = ["elementwise", "table"] + (["cartesian"] if units in (None, 1) else [])
        pattern = self.draw(st.sampled_from(patterns))
        if pattern == "elementwise":
            k = self.units(units)
            return ProductNode([self.build(p, depth - 1, k) for p in parts], "elementwise")
        if pattern == "cartesian":
            sizes = [1 if units == 1 else self.integer(1, 2) for _ in parts]
            return ProductNode([self.build(p, depth - 1, s) for p, s in zip(parts, sizes)], "cartesian")
        children = [self.build(p, depth - 1, None) for p in parts]
        rows = self.units(units) if units is not None else self.integer(1, self.max_units + 1)
        table = np.stack([self.rng.integers(0, c.num_units, size=rows) for c in children], axis=1)
        return ProductNode(children, table)

    def sum(self, region, depth, units) -> SumNode:
        children = [self.build(region, depth - 1, None) for _ in range(self.integer(1, 3))]
        k = self.units(units)
        num_inputs = sum(c.num_units for c in children)
        pool = self.weight_pool.setdefault((k, num_inputs), [])
        if self.tied and pool and self.chance(3):
            return SumNode(children, weights=pool[self.integer(0, len(pool) - 1)])
        mask = None
        if num_inputs > 1 and self.chance(3):
            mask = self.rng.random((k, num_inputs)) < 0.5
            mask[np.arange(k), self.rng.integers(0, num_inputs, size=k)] = True
        node = SumNode(children, num_units=k, mask=mask, rng=self.rng)
        pool.append(node.params)
        return node


def _variable_kinds(draw, num_variables: int, families) -> list[VariableKind]:
    return [CONTRACTS[draw(st.sampled_from(families))].variable_kind(draw) for _ in range(num_variables)]


def _check_families(families):
    families = tuple(families)
    unknown = set(families) - set(ALL_FAMILIES)
    if not families or unknown:
        raise ValueError(f"families must be a non-empty subset of {ALL_FAMILIES}, got {families}")
    return families


def _draw_builder(draw, *, min_variables, max_variables, families, max_depth, max_units, max_nodes, tied):
    num_variables = draw(st.integers(min_variables, max_variables), label="num_variables")
    kinds = _variable_kinds(draw, num_variables, _check_families(families))
    return _Builder(draw, kinds, tied=tied, max_units=max_units, max_depth=max_depth, max_nodes=max_nodes)


def _draw_roots(draw, builder: _Builder, multiple_roots: bool) -> list[Node]:
    full = tuple(range(len(builder.kinds)))
    count = draw(st.integers(2, 3), label="num_roots") if multiple_roots else 1
    return [builder.build(full, builder.max_depth, 1, reuse=False) for _ in range(count)]


@st.composite
def valid_circuits(draw, max_variables: int = 4, families=ALL_FAMILIES, max_depth: int = 3,
                   multiple_roots: bool = False, tied: bool = True, *, min_variables: int = 1,
                   max_units: int = 3, max_nodes: int = 30) -> pc.Circuit:
    """Random valid circuits over variables ``0 .. n-1`` (``min_variables <= n <= max_variables``).

    Every root has one unit and the full scope. Variables of a discrete family have at most 4
    values (categorical/indicator: 2-3 categories, binomial: n <= 3), so brute-force
    enumeration works whenever ``"gaussian"`` is not among ``families``.

    Parameters
    ----------
    families : sequence of str
        Leaf families to draw from (one per variable): "bernoulli", "categorical",
        "indicator", "binomial", "gaussian" (regions made only of Gaussian variables may get
        one multivariate Gaussian leaf).
    max_depth : int
        Levels of sums and products above the leaves (deeper regions are fully factorized).
    multiple_roots : bool
        Draw 2 or 3 roots instead of one.
    tied : bool
        Let sums share SumWeights objects and input nodes share leaf families.
    max_units : int
        Largest number of units of a node (cartesian and table products may have a few more).
    max_nodes : int
        Soft bound on the number of node constructions.
    """
    builder = _draw_builder(draw, min_variables=min_variables, max_variables=max_variables, families=families,
                            max_depth=max_depth, max_units=max_units, max_nodes=max_nodes, tied=tied)
    return pc.Circuit(_draw_roots(draw, builder, multiple_roots), variables=pc.Variables(len(builder.kinds)))


# ---- selective circuits -------------------------------------------------------------------------
class _SelectiveBuilder:
    """Builds deterministic one-unit nodes: sums only ever mix children with disjoint supports."""

    def __init__(self, draw, domains: list[int], max_depth: int):
        self.draw = draw
        self.domains = domains
        self.max_depth = max_depth
        self.rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="parameter seed"))

    def weights(self, count: int) -> np.ndarray:
        w = self.rng.uniform(0.05, 1.0, size=count)
        return (w / w.sum())[None, :]

    def univariate(self, v: int) -> Node:
        """A distribution over one variable: a categorical leaf, or a sum over all its indicators."""
        k = self.domains[v]
        if self.draw(st.booleans()):
            return InputNode(v, pc.Categorical(self.rng.dirichlet(np.ones(k))[None, :]))
        return SumNode([InputNode(v, pc.Indicator.all_values(k))], weights=self.weights(k))

    def support_leaf(self, v: int, values: list[int]) -> InputNode:
        """A leaf over ``v`` whose support is exactly ``values``."""
        k = self.domains[v]
        if len(values) == 1:
            return InputNode(v, pc.Indicator([values[0]], num_categories=k))
        probs = np.zeros(k)
        probs[values] = self.rng.dirichlet(np.ones(len(values)))
        probs[values[-1]] = 1.0 - probs[values[:-1]].sum()
        return InputNode(v, pc.Categorical(probs[None, :]))

    def build(self, region: tuple[int, ...], depth: int) -> Node:
        if len(region) == 1:
            return self.univariate(region[0])
        choice = self.draw(st.sampled_from(["condition", "decompose"] if depth > 0 else ["decompose"]))
        if choice == "decompose":
            order = self.draw(st.permutations(region))
            cut = self.draw(st.integers(1, len(region) - 1))
            parts = [tuple(sorted(order[:cut])), tuple(sorted(order[cut:]))]
            return ProductNode([self.build(p, depth - 1) for p in parts])
        v = self.draw(st.sampled_from(region))
        k = self.domains[v]
        groups_of = self.draw(st.lists(st.integers(0, k - 1), min_size=k, max_size=k))
        groups = [[value for value in range(k) if groups_of[value] == g] for g in sorted(set(groups_of))]
        if len(groups) == 1:
            groups = [[value] for value in range(k)]
        rest = tuple(u for u in region if u != v)
        shared = self.build(rest, depth - 1) if self.draw(st.booleans()) else None
        products = [ProductNode([self.support_leaf(v, g), shared if shared is not None else self.build(rest, depth - 1)])
                    for g in groups]
        return SumNode(products, weights=self.weights(len(products)))


@st.composite
def selective_circuits(draw, max_variables: int = 4, max_depth: int = 3, multiple_roots: bool = False, *,
                       min_variables: int = 1) -> pc.Circuit:
    """Random smooth, decomposable and *selective* (deterministic) circuits.

    Every sum either mixes indicator units of one variable, or conditions on a variable: each
    child multiplies a leaf supported on one group of that variable's values (the groups are
    disjoint) with a selective circuit over the other variables. So at most one child of any
    sum is non-zero for a complete assignment, and max-product evaluation gives the exact MPE.
    Variables have 2 or 3 values.
    """
    num_variables = draw(st.integers(min_variables, max_variables), label="num_variables")
    domains = [draw(st.integers(2, 3)) for _ in range(num_variables)]
    builder = _SelectiveBuilder(draw, domains, max_depth)
    count = draw(st.integers(2, 3)) if multiple_roots else 1
    roots = [builder.build(tuple(range(num_variables)), max_depth) for _ in range(count)]
    return pc.Circuit(roots, variables=pc.Variables(num_variables))


# ---- invalid circuits ---------------------------------------------------------------------------
def replace_node(circuit: pc.Circuit, old: Node, new: Node, parents: list[Node] | None = None) -> pc.Circuit:
    """Make every parent of ``old`` (and the roots) use ``new`` instead; ``new`` must fit in its place."""
    if parents is None:
        parents = [n for n in circuit.nodes if any(c is old for c in n.children)]
    for parent in parents:
        parent.rewire([new if c is old else c for c in parent.children])
    roots = [new if r is old else r for r in circuit.roots]
    return pc.Circuit(roots, variables=circuit.variables)


def _fresh_factorized(builder: _Builder, region: tuple[int, ...], k: int) -> tuple[Node, InputNode]:
    """A new node over ``region`` with ``k`` units whose leaves are all new; also one of the leaves."""
    leaves = [builder.leaf((v,), k, tie=False) for v in region]
    node = leaves[0] if len(leaves) == 1 else ProductNode(leaves)
    return node, leaves[builder.integer(0, len(leaves) - 1)]


def _break_leaf_values(family) -> bool:
    """Make a family's values invalid in place (p > 1, rows not summing to 1, std < 0); False
    when the family has no values to break."""
    breaker = CONTRACTS[family.name].break_values
    if breaker is None:
        return False
    breaker(family)
    return True


def _break_leaf_shape(family):
    """Give a family's first parameter array one unit too many."""
    name = family.param_names[0]
    array = getattr(family, name)
    setattr(family, name, np.concatenate([array, array[:1]], axis=0))


@st.composite
def invalid_circuits(draw, kind: str, max_variables: int = 4, families=DISCRETE_FAMILIES, max_depth: int = 2,
                     multiple_roots: bool = False, tied: bool = True) -> tuple[pc.Circuit, Node]:
    """A circuit with exactly one planted violation of ``kind``, and the node that carries it.

    The violation is planted at a random node ``N`` of a valid circuit by putting a new node
    with the same scope and number of units in ``N``'s place, so nothing else changes:

    * ``"smoothness"``: a sum over ``N`` and a node over a proper subset of ``N``'s scope;
    * ``"decomposability"``: an elementwise product of ``N`` and a node over part of its scope;
    * ``"cycle"``: sums ``S2 -> S1 -> (N, S2)`` (built acyclic, then ``S1.rewire`` closes the
      cycle; the report names ``S1``, whose edge to ``S2`` closes it);
    * ``"weights"``: a sum over ``N`` whose weights are then set to unnormalized values, or a
      new leaf whose parameter values are then made invalid (p > 1, rows not summing to 1,
      negative std);
    * ``"shape"``: a sum over ``N`` whose weight array is then replaced by one of the wrong
      shape, or a new leaf whose parameter array then gets one unit too many.
    """
    if kind not in INVALID_KINDS:
        raise ValueError(f"kind must be one of {INVALID_KINDS}, got {kind!r}")
    builder = _draw_builder(draw, min_variables=2 if kind == "smoothness" else 1, max_variables=max(2, max_variables),
                            families=families, max_depth=max_depth, max_units=3, max_nodes=20, tied=tied)
    circuit = pc.Circuit(_draw_roots(draw, builder, multiple_roots), variables=pc.Variables(len(builder.kinds)))
    candidates = [n for n in circuit.nodes if kind != "smoothness" or len(n.scope) >= 2]
    target = draw(st.sampled_from(candidates), label="planted at")
    region, k = tuple(target.scope), target.num_units
    parents = [n for n in circuit.nodes if any(c is target for c in n.children)]
    builder.reuse_nodes = False
    rng = builder.rng
    if kind == "smoothness":
        size = draw(st.integers(1, len(region) - 1))
        subset = tuple(sorted(draw(st.permutations(region))[:size]))
        bad = SumNode([target, builder.build(subset, 1)], num_units=k, rng=rng)
        offending = bad
    elif kind == "decomposability":
        size = draw(st.integers(1, len(region)))
        subset = tuple(sorted(draw(st.permutations(region))[:size]))
        bad = ProductNode([target, builder.build(subset, 1, k)], "elementwise")
        offending = bad
    elif kind == "cycle":
        inner = SumNode([target, target], num_units=k, rng=rng)
        bad = SumNode([inner], num_units=k, rng=rng)
        offending = inner
    else:
        variant = draw(st.sampled_from(["sum", "leaf"]), label="variant")
        fresh, leaf = _fresh_factorized(builder, region, k)
        if variant == "leaf" and (kind == "shape" or leaf.family.name != "indicator"):
            bad = SumNode([target, fresh], num_units=k, rng=rng)
            offending = leaf
            if kind == "shape":
                _break_leaf_shape(leaf.family)
            else:
                _break_leaf_values(leaf.family)
        else:
            bad = SumNode([target], num_units=k, rng=rng)
            offending = bad
            if kind == "shape":
                wrong = rng.uniform(0.1, 1.0, size=(k, k + 1))
                bad.weights = wrong / wrong.sum(axis=1, keepdims=True)
            else:
                bad.weights = bad.weights * draw(st.sampled_from([0.5, 2.0, 3.0]))
    broken = replace_node(circuit, target, bad, parents)
    if kind == "cycle":
        offending.rewire([target, bad])
    return broken, offending


# ---- oracles ------------------------------------------------------------------------------------
def enumerate_assignments(circuit: pc.Circuit, *, max_assignments: int = 1_000_000) -> np.ndarray:
    """Every joint assignment of the circuit's discrete variables.

    The domain of variable ``v`` is ``0 .. m`` with ``m`` the largest ``max_value()`` of the
    leaf families over ``v``.

    Returns
    -------
    ndarray, shape (num_assignments, num_variables), float64
        Rows in lexicographic order (the last variable varies fastest).
    """
    top = [None] * circuit.num_variables
    for node in circuit.input_nodes:
        m = node.family.max_value()
        if m is None:
            raise ValueError(f"enumerate_assignments: {node.describe()} is continuous; only discrete circuits "
                             f"can be enumerated")
        for v in node.variables:
            top[v] = m if top[v] is None else max(top[v], m)
    missing = [v for v, m in enumerate(top) if m is None]
    if missing:
        raise ValueError(f"enumerate_assignments: variables {missing} have no leaf")
    count = math.prod(m + 1 for m in top)
    if count > max_assignments:
        raise ValueError(f"enumerate_assignments: {count} assignments is more than max_assignments={max_assignments}")
    grid = list(itertools.product(*(range(m + 1) for m in top)))
    return np.array(grid, dtype=np.float64).reshape(count, circuit.num_variables)


def leaf_log_values(node: InputNode, x: np.ndarray) -> np.ndarray:
    """Log-densities of every unit of an input node, shape (batch, num_units); NaN gives log 1.

    The oracle of the node's family contract (``leaf_contracts.py``), in float64.
    """
    family = node.family
    if family.name not in CONTRACTS:
        raise ValueError(f"leaf_log_values: no oracle for the {family.name} family")
    values = x[:, list(node.variables)]
    observed = ~np.isnan(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return CONTRACTS[family.name].oracle(family, np.where(observed, values, 0.0), observed)


def _log_sum_exp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    finite = np.isfinite(top)
    shifted = np.exp(a - np.where(finite, top, 0.0))
    with np.errstate(divide="ignore"):
        out = np.log(shifted.sum(axis=axis, keepdims=True)) + np.where(finite, top, 0.0)
    return np.squeeze(np.where(finite, out, top), axis=axis)


def numeric_gradient(f, x, eps=1e-6):
    """Central differences of the scalar ``f(x)`` with respect to every entry of the array ``x``
    (``x`` itself is not changed): the oracle of every gradient test."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (f(up) - f(down)) / (2 * eps)
    return grad


def brute_force_log_likelihood(circuit: pc.Circuit, x) -> np.ndarray:
    """Evaluate the circuit node by node in float64 (a slow, obviously-correct oracle).

    Parameters
    ----------
    x : array_like, shape (batch, num_variables)
        NaN marks a missing variable: its leaves contribute log 1 (for a multivariate Gaussian,
        only the missing dimensions are left out).

    Returns
    -------
    ndarray, shape (batch, total root units)
        ``log p`` of every root unit, roots in order: ``(batch, num_roots)`` for one-unit roots.
    """
    if circuit.back_edges:
        raise ValueError("brute_force_log_likelihood: the circuit has a cycle")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != circuit.num_variables:
        raise ValueError(f"brute_force_log_likelihood: x must have shape (batch, {circuit.num_variables}), "
                         f"got {x.shape}")
    values: dict[int, np.ndarray] = {}
    for node in circuit.nodes:
        if isinstance(node, InputNode):
            out = leaf_log_values(node, x)
        elif isinstance(node, ProductNode):
            table = node.table
            out = np.zeros((x.shape[0], node.num_units))
            for j, child in enumerate(node.children):
                out = out + values[id(child)][:, table[:, j]]
        elif isinstance(node, SumNode):
            inputs = np.concatenate([values[id(c)] for c in node.children], axis=1)
            with np.errstate(divide="ignore"):
                log_w = np.log(node.weights)
            out = _log_sum_exp(inputs[:, None, :] + log_w[None, :, :], axis=2)
        else:
            raise TypeError(f"brute_force_log_likelihood: unknown node type {type(node).__name__}")
        values[id(node)] = out
    return np.concatenate([values[id(r)] for r in circuit.roots], axis=1)


def assert_circuits_equal(a: pc.Circuit, b: pc.Circuit):
    """Assert that two circuits have the same structure, identical parameters and the same tying.

    Nodes are compared position by position in ``circuit.nodes`` order: kind, label, units,
    children positions, scope, pattern and table, leaf family, config and arrays (dtype and
    every bit), weights and masks; parameter objects must be shared in the same pattern.
    """
    assert a.variables == b.variables, (a.variables, b.variables)
    assert len(a.nodes) == len(b.nodes), (len(a.nodes), len(b.nodes))
    index_a = {id(n): i for i, n in enumerate(a.nodes)}
    index_b = {id(n): i for i, n in enumerate(b.nodes)}
    assert [index_a[id(r)] for r in a.roots] == [index_b[id(r)] for r in b.roots]
    tying_a, tying_b = {}, {}
    for i, (x, y) in enumerate(zip(a.nodes, b.nodes)):
        where = f"node {i}"
        assert type(x) is type(y), where
        assert (x.label, x.num_units, x.scope) == (y.label, y.num_units, y.scope), where
        assert [index_a[id(c)] for c in x.children] == [index_b[id(c)] for c in y.children], where
        if isinstance(x, InputNode):
            assert x.variables == y.variables and x.family.name == y.family.name, where
            assert x.family.config() == y.family.config(), where
            px, py = x.family.parameters(), y.family.parameters()
            assert px.keys() == py.keys(), where
            for key in px:
                assert px[key].dtype == py[key].dtype and px[key].shape == py[key].shape, (where, key)
                assert px[key].tobytes() == py[key].tobytes(), (where, key)
        elif isinstance(x, ProductNode):
            assert x.pattern == y.pattern and np.array_equal(x.table, y.table), where
        else:
            assert x.weights.dtype == y.weights.dtype and x.weights.tobytes() == y.weights.tobytes(), where
            assert (x.mask is None) == (y.mask is None), where
            if x.mask is not None:
                assert np.array_equal(x.mask, y.mask), where
        for p, q in zip(x.parameter_objects(), y.parameter_objects()):
            assert tying_a.setdefault(id(p), len(tying_a)) == tying_b.setdefault(id(q), len(tying_b)), where
