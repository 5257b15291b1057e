"""Layer planning: group the nodes of a circuit into layers of index tensors.

The invariant the grouping keeps: every unit's inputs live in layers computed *before* its own
layer. Units get contiguous global slots ``[0, num_units)`` in the value array, layer by layer,
followed by one constant slot that holds log 1 = 0 (used to pad ragged products and sums).
Nodes are grouped by height (longest path to an input node), then by kind, then by signature:
sum nodes over binary cartesian products that they alone use become *fused* layers (products
never stored; one batched matmul over outer products of the children), other sum nodes with
the same ``(num_units, num_inputs)`` and dense weights become one *dense block* layer (a batched
matrix product), every other sum goes to a padded-gather layer. *Scalar* nodes (one unit over
one-unit children, the nodes of structure-learned SPNs) of one height and kind become one
*segment* layer: a flat edge list in rounds (the ``r``-th input of every node with more than ``r``
inputs, nodes sorted by fan-in), reduced round by round over contiguous blocks, so that a layer
touches each edge once and pads nothing whatever its nodes' fan-ins are; the scalar sums over
discrete leaves of one variable (univariate mixtures) become a *table sum* layer of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


__all__ = ["InputLayerSpec", "ProductLayerSpec", "SumLayerSpec", "DenseSumLayerSpec", "FusedSumLayerSpec",
           "SegmentProductLayerSpec", "SegmentSumLayerSpec", "TableSumLayerSpec", "Plan", "plan_layers",
           "LAYER_RULES", "TABLE_SUM_MAX_VALUES"]

#: Largest domain (values per variable) of the univariate discrete mixtures planned as table sums.
TABLE_SUM_MAX_VALUES = 256


@dataclass
class InputLayerSpec:
    """All input units of one leaf family. ``variables[u]`` are unit ``u``'s variable ids."""

    family: type
    table_key: tuple               # (family class, variables per unit, shapes, settings): one table each
    start: int
    stop: int
    variables: np.ndarray          # (U, d) int64
    rows: np.ndarray               # (U,) row of each unit in the family's parameter table
    nodes: list = field(default_factory=list)
    table_only: bool = False       # only table sums read these units (see TableSumLayerSpec)


@dataclass
class ProductLayerSpec:
    """``value[u] = sum_j value[inputs[u, j]]`` (padded with the zero slot)."""

    start: int
    stop: int
    inputs: np.ndarray             # (U, A) int64 global slots
    zero_slot: int                 # the padding slot (log 1)


@dataclass
class SumLayerSpec:
    """``value[u] = logsumexp_j(log w[u, j] + value[inputs[u, j]])``; padding has weight slot -1."""

    start: int
    stop: int
    inputs: np.ndarray             # (U, A) int64 global slots
    weight_slots: np.ndarray       # (U, A) int64 positions in the flat weight vector, -1 = padding


@dataclass
class DenseSumLayerSpec:
    """``N`` sum nodes with ``K`` units over ``I`` inputs each: a batched log-matmul-exp."""

    start: int
    stop: int
    inputs: np.ndarray             # (N, I) int64 global slots
    weight_offsets: np.ndarray     # (N,) int64 flat-vector position of each node's (K, I) weight block
    num_nodes: int
    num_units: int
    num_inputs: int


@dataclass
class FusedSumLayerSpec:
    """``N`` sum nodes whose children are binary cartesian products owned by them alone.

    ``value[k] = log sum_{s,i,j} w[k, (s, i, j)] exp(left[s, i] + right[s, j])``: the products
    (``n`` splits of ``KL x KR`` units) are never stored; the sum is computed as one batched
    matmul over the outer products of the max-shifted children (the log-einsum-exp pattern).
    """

    start: int
    stop: int
    left: np.ndarray               # (N, n, KL) int64 global slots of the left children's units
    right: np.ndarray              # (N, n, KR) int64 global slots of the right children's units
    weight_offsets: np.ndarray     # (N,) int64 flat-vector position of each node's (K, n * KL * KR) weights
    num_nodes: int
    num_units: int
    num_splits: int
    left_units: int
    right_units: int


@dataclass
class SegmentLayerSpec:
    """Scalar nodes as a flat edge list in *rounds*: the units are ordered by decreasing fan-in,
    and round ``r`` holds the ``r``-th input of each of the first ``round_sizes[r]`` units (those
    with more than ``r`` inputs), so that every round is a contiguous block of edges whose unit
    rows are a prefix of the layer.
    """

    start: int
    stop: int
    inputs: np.ndarray             # (E,) int64 global slots, round by round
    round_sizes: np.ndarray        # (A,) int64 units per round, non-increasing; A the largest fan-in
    zero_slot: int                 # the padding slot of the padded form (top-down passes)


@dataclass
class SegmentProductLayerSpec(SegmentLayerSpec):
    """Scalar products: ``value[u] = sum_r value[inputs[round r, u]]``."""


@dataclass
class SegmentSumLayerSpec(SegmentLayerSpec):
    """Scalar sums: ``value[u] = logsumexp_r(log w[slot[round r, u]] + value[inputs[round r, u]])``."""

    weight_slots: np.ndarray = None  # (E,) int64 position of every edge's weight in the flat vector


@dataclass
class TableSumLayerSpec(SegmentSumLayerSpec):
    """Scalar sums whose inputs are discrete leaves of one variable each (univariate mixtures):
    a unit's value depends on that variable alone, through at most ``num_values`` values."""

    variables: np.ndarray = None     # (U,) int64 the variable of every unit
    num_values: int = 0              # the largest domain size among the units' leaves


@dataclass
class Plan:
    num_units: int                              # unit slots; slot ``num_units`` is the zero slot
    layers: list                                # in evaluation order
    node_offsets: dict                          # id(node) -> first global slot (fused products: none)
    roots: np.ndarray                           # (R,) global slot of each root's unit 0
    root_units: np.ndarray                      # (R,) number of units of each root
    sum_params: list                            # unique SumWeights objects
    weight_offsets: np.ndarray                  # (len(sum_params) + 1,) offsets into the flat vector
    families: dict                              # (family class, d) -> list of unique family objects
    family_offsets: dict                        # (family class, d) -> (len + 1,) row offsets
    heights: dict                               # id(node) -> height


def _table_key(family) -> tuple:
    """Families whose parameter arrays stack into one table: same class, trailing shapes and
    layer settings (``(family class, variables per unit, shapes, settings)``)."""
    shapes = tuple((name, np.shape(a)[1:]) for name, a in family.table_arrays().items())
    return (type(family), family.num_variables, shapes, tuple(family.layer_settings()))


def _heights(nodes) -> dict:
    heights = {}
    for n in nodes:
        heights[id(n)] = 1 + max((heights[id(c)] for c in n.children), default=-1)
    return heights


def _fusable_sums(circuit, nodes) -> dict:
    """Sum nodes whose children are all binary cartesian products that only this sum uses.

    Returns id(sum) -> (num_splits, left units, right units).
    """
    parents: dict[int, int] = {id(r): 1 for r in circuit.roots}
    for n in nodes:
        for c in n.children:
            parents[id(c)] = parents.get(id(c), 0) + 1
    fused = {}
    for n in nodes:
        if n.kind != "sum" or n.params.mask is not None:
            continue
        kids = n.children
        if not all(p.kind == "product" and p.pattern == "cartesian" and len(p.children) == 2
                   and parents[id(p)] == 1 for p in kids):
            continue
        if len({id(p) for p in kids}) != len(kids):
            continue
        shapes = {(p.children[0].num_units, p.children[1].num_units) for p in kids}
        if len(shapes) == 1:
            left, right = shapes.pop()
            fused[id(n)] = (len(kids), left, right)
    return fused


def plan_layers(circuit, *, dense_min_inputs: int = 2, fuse: bool = True) -> Plan:
    """Assign every unit a slot and group the nodes into layers (see the module docstring).

    The stages: heights and fusable sums; the unique parameter objects; the groups (one per
    layer); unit slots and weight offsets, layer by layer; one layer spec per group, made by the
    rule of its layer kind (:data:`LAYER_RULES`).

    With ``fuse=True`` a sum whose children are binary cartesian products used by it alone is
    planned as one fused layer (:class:`FusedSumLayerSpec`) and its products get no slots.
    """
    nodes = circuit.nodes
    heights = _heights(nodes)
    fused = _fusable_sums(circuit, nodes) if fuse else {}
    sum_params, families, family_index = _parameter_objects(nodes)
    groups = _group_nodes(nodes, heights, fused, dense_min_inputs, _table_only_leaves(circuit, nodes))
    ordered = sorted(groups, key=_order_key)
    _order_leaves_by_segment_sums(groups, ordered)
    node_offsets, num_units = _unit_slots(groups, ordered)
    weight_offsets_map, weight_offsets = _weight_offsets(groups, ordered, sum_params)
    family_offsets = {key: np.cumsum([0] + [o.num_units for o in objs]).astype(np.int64)
                      for key, objs in families.items()}
    layout = _Layout(node_offsets, num_units, weight_offsets_map, family_index, family_offsets)
    layers = [LAYER_RULES[key[1]](groups[key], key, layout) for key in ordered]
    roots = np.array([node_offsets[id(r)] for r in circuit.roots], dtype=np.int64)
    root_units = np.array([r.num_units for r in circuit.roots], dtype=np.int64)
    return Plan(num_units, layers, node_offsets, roots, root_units, sum_params, weight_offsets,
                families, family_offsets, heights)


def _parameter_objects(nodes):
    """The unique sum-weight objects and leaf-family objects, in first-seen order (tied objects
    once): ``(sum_params, families by table key, id(family) -> (table key, position))``."""
    sum_params, seen = [], set()
    families: dict[tuple, list] = {}
    family_index: dict[int, tuple] = {}
    for n in nodes:
        if n.kind == "sum" and id(n.params) not in seen:
            seen.add(id(n.params))
            sum_params.append(n.params)
        elif n.kind == "input" and id(n.family) not in family_index:
            table_key = _table_key(n.family)
            objs = families.setdefault(table_key, [])
            family_index[id(n.family)] = (table_key, len(objs))
            objs.append(n.family)
    return sum_params, families, family_index


def _is_scalar(node) -> bool:
    """One unit over one-unit children (and no mask): a node of a structure-learned SPN."""
    return (node.num_units == 1 and all(c.num_units == 1 for c in node.children)
            and (node.kind != "sum" or node.params.mask is None))


def _is_table_sum(node) -> bool:
    """A scalar sum over discrete, deterministic, unconditional leaves of one variable with at
    most :data:`TABLE_SUM_MAX_VALUES` values."""
    kids = node.children
    return (node.kind == "sum" and all(c.kind == "input" and len(c.variables) == 1 and _table_family(c.family)
                                       for c in kids)
            and len({c.variables for c in kids}) == 1)


def _table_family(family) -> bool:
    top = family.max_value()
    return (family.discrete and not family.stochastic and not family.conditional and top is not None
            and top < TABLE_SUM_MAX_VALUES)


def _table_only_leaves(circuit, nodes) -> set:
    """The input nodes that only table sums read (no root, no other node): a forward pass that
    looks the table sums up needs no value of theirs."""
    table_sums = [n for n in nodes if n.kind == "sum" and _is_scalar(n) and _is_table_sum(n)]
    if not table_sums:
        return set()
    leaves = {id(c) for n in table_sums for c in n.children} - {id(r) for r in circuit.roots}
    table_ids = {id(n) for n in table_sums}
    for n in nodes:
        if id(n) not in table_ids:
            leaves.difference_update(id(c) for c in n.children)
    return leaves


def _group_nodes(nodes, heights: dict, fused: dict, dense_min_inputs: int, table_only: set) -> dict:
    """Group the nodes into layers: ``(height, layer kind, signature) -> nodes``.

    Inputs group by family table and whether only table sums read them; scalar products and scalar sums (:func:`_is_scalar`) by
    height, whatever their fan-in (segment layers; the univariate discrete mixtures among the
    scalar sums, :func:`_is_table_sum`, in a layer of their own); other products by height; other sums by
    height and signature: fused, dense blocks of equal ``(num_units, num_inputs)``, or padded
    gathers for the rest.
    """
    absorbed = {id(p) for n in nodes if id(n) in fused for p in n.children}
    groups: dict[tuple, list] = {}
    for n in nodes:
        if id(n) in absorbed:
            continue
        if id(n) in fused:
            key = (heights[id(n)], "fused-sum", ("fused", n.num_units) + fused[id(n)])
        elif n.kind == "input":
            key = (0, "input", (type(n.family).__name__,) + _table_key(n.family)[1:] + (id(n) in table_only,))
        elif n.kind in ("product", "sum") and _is_scalar(n):
            key = (heights[id(n)], "table-sum" if _is_table_sum(n) else f"segment-{n.kind}", "scalar")
        elif n.kind == "product":
            key = (heights[id(n)], "product", 0)
        elif n.kind == "sum":
            dense = n.params.mask is None and n.num_inputs >= dense_min_inputs
            key = (heights[id(n)], "dense-sum", (n.num_units, n.num_inputs)) if dense else \
                (heights[id(n)], "gather-sum", "general")
        else:
            raise TypeError(f"layerize: unknown node kind {n.kind!r} ({type(n).__name__})")
        groups.setdefault(key, []).append(n)
    for key, members in groups.items():
        if key[1].startswith("segment-") or key[1] == "table-sum":
            members.sort(key=lambda m: -len(m.children))      # stable: decreasing fan-in
    return groups


def _order_leaves_by_segment_sums(groups: dict, ordered: list) -> None:
    """Put the input nodes that segment sums read in the order of those sums' edges (layer, round,
    unit), so that a round of leaves is a slice of the value array instead of a gather; the
    other input nodes follow in their own order."""
    rank: dict[int, tuple] = {}
    for position, key in enumerate(ordered):
        if key[1] == "segment-sum":
            for unit, m in enumerate(groups[key]):
                for r, c in enumerate(m.children):
                    if c.kind == "input":
                        rank.setdefault(id(c), (position, r, unit))
    if rank:
        last = (len(ordered), 0, 0)
        for key in ordered:
            if key[1] == "input":
                groups[key].sort(key=lambda n: rank.get(id(n), last))


def _order_key(key) -> tuple:
    """Layers in evaluation order: by height, inputs first, then products before sums."""
    height, layer_kind, signature = key
    kind = "sum" if layer_kind.endswith("-sum") else layer_kind
    return (height, kind != "input", kind, str(signature))


def _unit_slots(groups: dict, ordered: list) -> tuple[dict, int]:
    """Contiguous unit slots, layer by layer: ``(id(node) -> first slot, number of slots)``."""
    node_offsets: dict[int, int] = {}
    cursor = 0
    for key in ordered:
        for n in groups[key]:
            node_offsets[id(n)] = cursor
            cursor += n.num_units
    return node_offsets, cursor


def _weight_offsets(groups: dict, ordered: list, sum_params: list):
    """Offsets of every weight object in the flat weight vector, allocated in layer order so that
    an untied dense layer's weights are one contiguous block (a reshape, no gather).

    Sorts ``sum_params`` by offset; returns ``(id(params) -> offset, offsets array)``.
    """
    offsets: dict[int, int] = {}
    cursor = 0
    for key in ordered:
        if key[1].endswith("-sum"):
            for n in groups[key]:
                if id(n.params) not in offsets:
                    offsets[id(n.params)] = cursor
                    cursor += n.params.values.size
    sum_params.sort(key=lambda p: offsets[id(p)])
    return offsets, np.array([offsets[id(p)] for p in sum_params] + [cursor], dtype=np.int64)


@dataclass
class _Layout:
    """Where everything lives, as the layer rules need it."""

    node_offsets: dict
    num_units: int
    weight_offsets: dict
    family_index: dict
    family_offsets: dict

    @property
    def zero_slot(self) -> int:
        return self.num_units

    def span(self, members) -> tuple[int, int]:
        start = self.node_offsets[id(members[0])]
        return start, start + sum(m.num_units for m in members)

    def child_slots(self, n) -> np.ndarray:
        return np.concatenate([self.node_offsets[id(c)] + np.arange(c.num_units) for c in n.children])



def _input_layer(members, key, layout: _Layout) -> InputLayerSpec:
    start, stop = layout.span(members)
    table_key = layout.family_index[id(members[0].family)][0]
    variables = np.concatenate([np.tile(np.asarray(m.variables, dtype=np.int64), (m.num_units, 1)) for m in members])
    rows = np.concatenate([layout.family_offsets[table_key][layout.family_index[id(m.family)][1]]
                           + np.arange(m.num_units) for m in members])
    return InputLayerSpec(table_key[0], table_key, start, stop, variables, rows, members, table_only=key[2][-1])


def _product_layer(members, key, layout: _Layout) -> ProductLayerSpec:
    start, stop = layout.span(members)
    arity = max(len(m.children) for m in members)
    inputs = np.full((stop - start, arity), layout.zero_slot, dtype=np.int64)
    row = 0
    for m in members:
        offsets = np.array([layout.node_offsets[id(c)] for c in m.children], dtype=np.int64)
        inputs[row:row + m.num_units, :len(m.children)] = m.table + offsets[None, :]
        row += m.num_units
    return ProductLayerSpec(start, stop, inputs, layout.zero_slot)


def _fused_sum_layer(members, key, layout: _Layout) -> FusedSumLayerSpec:
    start, stop = layout.span(members)
    _, num_units_each, num_splits, left_units, right_units = key[2]
    left = np.stack([[layout.node_offsets[id(p.children[0])] + np.arange(left_units) for p in m.children]
                     for m in members])
    right = np.stack([[layout.node_offsets[id(p.children[1])] + np.arange(right_units) for p in m.children]
                      for m in members])
    offsets = np.array([layout.weight_offsets[id(m.params)] for m in members], dtype=np.int64)
    return FusedSumLayerSpec(start, stop, left, right, offsets, len(members), num_units_each, num_splits,
                             left_units, right_units)


def _gather_sum_layer(members, key, layout: _Layout) -> SumLayerSpec:
    start, stop = layout.span(members)
    arity = max((m.params.mask.sum(axis=1).max() if m.params.mask is not None else m.num_inputs) for m in members)
    inputs = np.full((stop - start, arity), layout.zero_slot, dtype=np.int64)
    slots = np.full((stop - start, arity), -1, dtype=np.int64)
    row = 0
    for m in members:
        cs = layout.child_slots(m)
        base = layout.weight_offsets[id(m.params)]
        mask = m.params.mask if m.params.mask is not None else np.ones(m.params.shape, dtype=bool)
        counts = mask.sum(axis=1)
        ragged = np.arange(arity)[None, :] < counts[:, None]
        unit_idx, input_idx = np.nonzero(mask)
        inputs[row:row + m.num_units][ragged] = cs[input_idx]
        slots[row:row + m.num_units][ragged] = base + unit_idx * m.num_inputs + input_idx
        row += m.num_units
    return SumLayerSpec(start, stop, inputs, slots)


def _dense_sum_layer(members, key, layout: _Layout) -> DenseSumLayerSpec:
    start, stop = layout.span(members)
    num_units_each, num_inputs = key[2]
    inputs = np.stack([layout.child_slots(m) for m in members])
    offsets = np.array([layout.weight_offsets[id(m.params)] for m in members], dtype=np.int64)
    return DenseSumLayerSpec(start, stop, inputs, offsets, len(members), num_units_each, num_inputs)


def _segment_edges(members, layout: _Layout, per_edge: np.ndarray | None = None):
    """The members' input slots in rounds (members sorted by decreasing fan-in), the round
    sizes, and ``per_edge`` (one value per edge, node by node) in the same order."""
    counts = np.array([len(m.children) for m in members], dtype=np.int64)
    inputs = np.array([layout.node_offsets[id(c)] for m in members for c in m.children], dtype=np.int64)
    unit = np.repeat(np.arange(len(members)), counts)
    rank = np.arange(len(inputs)) - np.repeat(np.cumsum(counts) - counts, counts)
    order = np.lexsort((unit, rank))
    round_sizes = np.bincount(rank).astype(np.int64)
    return inputs[order], round_sizes, None if per_edge is None else per_edge[order]


def _segment_product_layer(members, key, layout: _Layout) -> SegmentProductLayerSpec:
    start, stop = layout.span(members)
    inputs, round_sizes, _ = _segment_edges(members, layout)
    return SegmentProductLayerSpec(start, stop, inputs, round_sizes, layout.zero_slot)


def _segment_sum_layer(members, key, layout: _Layout) -> SegmentSumLayerSpec:
    start, stop = layout.span(members)
    slots = np.concatenate([layout.weight_offsets[id(m.params)] + np.arange(len(m.children)) for m in members])
    inputs, round_sizes, slots = _segment_edges(members, layout, slots.astype(np.int64))
    return SegmentSumLayerSpec(start, stop, inputs, round_sizes, layout.zero_slot, slots)


def _table_sum_layer(members, key, layout: _Layout) -> TableSumLayerSpec:
    segment = _segment_sum_layer(members, key, layout)
    variables = np.array([m.children[0].variables[0] for m in members], dtype=np.int64)
    num_values = max(c.family.max_value() + 1 for m in members for c in m.children)
    return TableSumLayerSpec(segment.start, segment.stop, segment.inputs, segment.round_sizes, segment.zero_slot,
                             segment.weight_slots, variables, int(num_values))


#: The rule that makes the spec of each layer kind: ``rule(members, group key, layout)``.
LAYER_RULES = {"input": _input_layer, "product": _product_layer, "fused-sum": _fused_sum_layer,
               "gather-sum": _gather_sum_layer, "dense-sum": _dense_sum_layer,
               "segment-product": _segment_product_layer, "segment-sum": _segment_sum_layer,
               "table-sum": _table_sum_layer}
