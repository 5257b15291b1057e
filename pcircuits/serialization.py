"""Circuits as networkx graphs and as files.

Both forms go through one intermediate description, a *spec*: a JSON-ready ``structure`` dict
(nodes children-first, roots, variables, parameter objects) plus a dict of named arrays. A
spec coming from outside (a file or a user's graph) is validated completely before any node is
built, so a damaged or hostile input gives one clear error instead of a crash deep inside NumPy.

File format (``.pcz``, format version 1): a zip archive written by ``numpy.savez_compressed``
holding

* ``format_version``: an int64 scalar,
* ``structure``: the UTF-8 bytes of the JSON structure, as a uint8 array,
* ``data.{dtype}`` (for example ``data.float64``): every array of that dtype, flattened in C
  order and concatenated; the structure's ``"arrays"`` table maps each array name
  (``p{i}.{name}`` for parameter objects, ``n{i}.table`` for explicit product tables) to
  ``{"data": dtype, "offset": ..., "shape": [...]}``.

Packing the arrays into one entry per dtype keeps files of 100k-node circuits small and quick to
read. Every entry is read with pickling disabled after its ``.npy`` header has been checked.
"""
from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from .archive import ARCHIVE_ERRORS, ArchiveProblem, entry_infos, read_entry
from .atomic import atomic_write
from .circuit import Circuit
from .distributions import FAMILIES, family_from_parameters
from .errors import CircuitFileError, InvalidCircuitFileError
from .nodes import InputNode, ProductNode, SumNode, SumWeights
from .scope import Scope, Variables
from .validity import _shape_problems

if TYPE_CHECKING:
    import networkx as nx  # imported where used: 0.1 s that save and load do not need

__all__ = ["CircuitFileError", "InvalidCircuitFileError", "FORMAT_VERSION", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_UNITS", "DEFAULT_MAX_EDGES", "to_networkx", "from_networkx", "save", "load"]

#: The version of the ``.pcz`` layout written by :func:`save` (and the only one :func:`load` reads).
FORMAT_VERSION = 1
_FORMAT_NAME = "pcircuits-circuit"
#: Largest number of variables a file may declare (bounds the size of every scope bitset).
_MAX_VARIABLES = 1 << 24
#: Largest number of units a single node may have.
_MAX_UNITS = (1 << 31) - 1
#: Default limits of :func:`load`; a caller raises them per call (see ``docs/safety.md``).
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_MAX_UNITS = 1 << 26
DEFAULT_MAX_EDGES = 1 << 27
#: The structure's JSON may take at most ``max_bytes // _STRUCTURE_SHARE`` bytes (parsed JSON is larger).
_STRUCTURE_SHARE = 16
#: Most dimensions of an array in the array table, and most values it may describe.
_MAX_ARRAY_DIMS = 8
_MAX_ARRAY_VALUES = 1 << 40
_NUMERIC_KINDS = "biuf"
_JUST_INT = {int}

PathLike = Union[str, os.PathLike]

class _SpecError(Exception):
    """Internal: a problem found while validating a spec; callers add where it came from."""


# ---- circuit -> spec --------------------------------------------------------------------------
def _variables_record(variables: Variables) -> dict:
    names = getattr(variables, "_names", None)
    return {"num": variables.num_variables,
            "names": None if names is None else list(names),
            "shape": None if variables.shape is None else list(variables.shape)}


def _circuit_to_spec(circuit: Circuit, where: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The structure (JSON-ready) and the arrays of an acyclic circuit.

    Nodes are listed in ``circuit.nodes`` order (children first), so node ``i`` of the spec is
    ``circuit.nodes[i]``; parameter objects are listed once each, in order of first use.
    """
    if circuit.back_edges:
        parent, child = circuit.back_edges[0]
        raise ValueError(f"{where}: the circuit has a cycle (node n{circuit.index(parent)} has its ancestor "
                         f"n{circuit.index(child)} as a child); break it before saving (see circuit.check())")
    arrays: dict[str, np.ndarray] = {}
    params: list[dict] = []
    param_index: dict[int, int] = {}

    def param_id(obj) -> int:
        key = id(obj)
        if key in param_index:
            return param_index[key]
        pid = len(params)
        param_index[key] = pid
        if isinstance(obj, SumWeights):
            arrays[f"p{pid}.values"] = np.asarray(obj.values)
            record = {"type": "weights", "values": f"p{pid}.values", "mask": None}
            if obj.mask is not None:
                arrays[f"p{pid}.mask"] = np.asarray(obj.mask)
                record["mask"] = f"p{pid}.mask"
        else:
            names = {}
            for name, value in obj.parameters().items():
                arrays[f"p{pid}.{name}"] = np.asarray(value)
                names[name] = f"p{pid}.{name}"
            record = {"type": "family", "family": obj.name, "config": dict(obj.config()), "arrays": names}
        params.append(record)
        return pid

    index = {id(n): i for i, n in enumerate(circuit.nodes)}
    nodes = []
    for i, node in enumerate(circuit.nodes):
        codec = _codec(node.kind, where)
        record = {"kind": node.kind, "label": node.label, "num_units": node.num_units,
                  "children": [index[id(c)] for c in node.children]}
        problems = codec.savable_problems(node)
        if problems:
            raise ValueError(f"{where}: {node.kind} node n{i} cannot be stored: {'; '.join(problems)} "
                             f"(see circuit.check())")
        record.update(codec.fields(node, i, arrays, param_id))
        nodes.append(record)
    structure = {"format": _FORMAT_NAME, "format_version": FORMAT_VERSION,
                 "variables": _variables_record(circuit.variables),
                 "roots": [index[id(r)] for r in circuit.roots], "params": params, "nodes": nodes}
    return structure, arrays


# ---- one codec per node kind ------------------------------------------------------------------
class _BuildContext:
    """What building a node from its spec record may look up."""

    def __init__(self, variables: Variables, arrays: dict, num_params: int, get_param):
        self.variables, self.arrays, self.num_params, self.get_param = variables, arrays, num_params, get_param


class _NodeCodec:
    """How one node kind is written to and read from a spec and a networkx graph.

    ``fields`` and ``graph_attributes`` describe a node; ``graph_fields`` turns a graph's node
    attributes into spec fields; ``build`` validates a spec record and makes the node.
    """

    kind = ""

    def fields(self, node, i: int, arrays: dict, param_id) -> dict:
        raise NotImplementedError

    def savable_problems(self, node) -> list[str]:
        return _shape_problems(node)

    def graph_attributes(self, node, param_id, copied) -> dict:
        raise NotImplementedError

    def graph_fields(self, node_id, attrs: dict, i: int, where: str, store, param_slot) -> dict:
        raise NotImplementedError

    def build(self, record: dict, children: list, num_units: int, label, where: str, context: _BuildContext):
        raise NotImplementedError


class _InputCodec(_NodeCodec):
    kind = "input"

    def fields(self, node, i, arrays, param_id):
        return {"variables": list(node.variables), "param": param_id(node.family)}

    def savable_problems(self, node):
        return _shape_problems(node) or list(node.family.value_problems())

    def graph_attributes(self, node, param_id, copied):
        family = node.family
        return {"family": family.name, "variables": tuple(node.variables), "config": dict(family.config()),
                "param_id": param_id(family),
                "parameters": copied(family, lambda: {k: np.array(v, copy=True) for k, v in family.parameters().items()})}

    def graph_fields(self, node_id, attrs, i, where, store, param_slot):
        def make_record(pid):
            family_arrays = _field(attrs, "parameters", where)
            if not isinstance(family_arrays, dict):
                raise _SpecError(f"{where}: 'parameters' must be a dict of arrays")
            return {"type": "family", "family": _field(attrs, "family", where), "config": attrs.get("config", {}),
                    "arrays": {str(k): store(f"p{pid}.{k}", v, f"{where} parameter {k!r}")
                               for k, v in family_arrays.items()}}
        return {"param": param_slot(node_id, attrs, self.kind, where, make_record),
                "variables": _field(attrs, "variables", where)}

    def build(self, record, children, num_units, label, where, context):
        if children:
            raise _SpecError(f"{where}: an input node has no children, got {len(children)}")
        var_ids = _int_list(_field(record, "variables", where), where, 0,
                            context.variables.num_variables - 1, ".variables")
        if not var_ids or len(set(var_ids)) != len(var_ids) or var_ids != sorted(var_ids):
            raise _SpecError(f"{where}.variables must be distinct increasing ids, got {var_ids[:8]}")
        pid = _int(_field(record, "param", where), where, 0, context.num_params - 1, ".param")
        family = context.get_param(pid, "family", where)
        if family.num_units != num_units or family.num_variables != len(var_ids) or family.shape_problems():
            raise _SpecError(f"{where}: its {family.name} parameters describe {family.num_units} units over "
                             f"{family.num_variables} variable(s), but the node has {num_units} units over "
                             f"{len(var_ids)}")
        return InputNode(Scope(var_ids), family, label=label)


class _ProductCodec(_NodeCodec):
    kind = "product"

    def fields(self, node, i, arrays, param_id):
        if node.pattern != "table":
            return {"pattern": node.pattern}
        arrays[f"n{i}.table"] = np.asarray(node.table)
        return {"pattern": "table", "table": f"n{i}.table"}

    def savable_problems(self, node):
        return _shape_problems(node) if node.pattern == "table" else []

    def graph_attributes(self, node, param_id, copied):
        return {"pattern": node.pattern, **({"table": node.table.copy()} if node.pattern == "table" else {})}

    def graph_fields(self, node_id, attrs, i, where, store, param_slot):
        pattern = attrs.get("pattern", "elementwise")
        if pattern != "table":
            return {"pattern": pattern}
        return {"pattern": "table", "table": store(f"n{i}.table", _field(attrs, "table", where), f"{where} table")}

    def build(self, record, children, num_units, label, where, context):
        if not children:
            raise _SpecError(f"{where}: a product node needs children")
        sizes = [c.num_units for c in children]
        pattern = _field(record, "pattern", where)
        if pattern == "elementwise":
            if len(set(sizes)) != 1 or sizes[0] != num_units:
                raise _SpecError(f"{where}: an elementwise product of {num_units} units needs children of "
                                 f"{num_units} units each, got sizes {sizes[:8]}")
        elif pattern == "cartesian":
            if math.prod(sizes) != num_units:
                raise _SpecError(f"{where}: a cartesian product of children of sizes {sizes[:8]} has "
                                 f"{math.prod(sizes)} units, not {num_units}")
        elif pattern == "table":
            table = _array(context.arrays, _field(record, "table", where), where, "iu", ".table")
            if table.shape != (num_units, len(children)):
                raise _SpecError(f"{where}: the pattern table has shape {table.shape}, expected "
                                 f"({num_units}, {len(children)})")
            if table.size and (table.min() < 0 or np.any(table >= np.array(sizes)[None, :])):
                raise _SpecError(f"{where}: the pattern table refers to child units that do not exist")
            pattern = table.astype(np.int64)
        else:
            raise _SpecError(f"{where}.pattern must be 'elementwise', 'cartesian' or 'table', got {pattern!r}")
        return ProductNode(children, pattern, label=label)


class _SumCodec(_NodeCodec):
    kind = "sum"

    def fields(self, node, i, arrays, param_id):
        return {"param": param_id(node.params)}

    def savable_problems(self, node):
        problems = _shape_problems(node)
        values = node.params.values
        if not problems and (values.dtype.kind != "f" or not np.all(np.isfinite(values)) or np.any(values < 0)):
            problems = ["weights must be finite, non-negative floats"]
        return problems

    def graph_attributes(self, node, param_id, copied):
        p = node.params
        weights, mask = copied(p, lambda: (np.array(p.values, copy=True),
                                           None if p.mask is None else np.array(p.mask, copy=True)))
        return {"weights": weights, "mask": mask, "param_id": param_id(p)}

    def graph_fields(self, node_id, attrs, i, where, store, param_slot):
        def make_record(pid):
            mask = attrs.get("mask")
            return {"type": "weights",
                    "values": store(f"p{pid}.values", _field(attrs, "weights", where), f"{where} weights"),
                    "mask": None if mask is None else store(f"p{pid}.mask", mask, f"{where} mask")}
        return {"param": param_slot(node_id, attrs, self.kind, where, make_record)}

    def build(self, record, children, num_units, label, where, context):
        if not children:
            raise _SpecError(f"{where}: a sum node needs children")
        pid = _int(_field(record, "param", where), where, 0, context.num_params - 1, ".param")
        weights = context.get_param(pid, "weights", where)
        expected = (num_units, sum(c.num_units for c in children))
        if weights.shape != expected:
            raise _SpecError(f"{where}: weights have shape {weights.shape} but the node needs {expected}")
        return SumNode(children, weights=weights, label=label)


#: The codec of every node kind.
_CODECS: dict[str, _NodeCodec] = {codec.kind: codec for codec in (_InputCodec(), _ProductCodec(), _SumCodec())}


def _codec(kind, where: str, *, spec: bool = False) -> _NodeCodec:
    """The codec of ``kind``; an unknown kind is a spec error (from outside) or a TypeError."""
    codec = _CODECS.get(kind) if isinstance(kind, str) else None
    if codec is None:
        if spec:
            raise _SpecError(f"{where}.kind must be 'input', 'product' or 'sum', got {kind!r}")
        raise TypeError(f"{where}: cannot store node kind {kind!r}")
    return codec


# ---- spec validation and building -------------------------------------------------------------
# ``what`` names the value in messages; ``field`` is appended to it there, so that a caller in a
# loop passes the node's name and a constant suffix instead of formatting a name per call.
def _int(value, what: str, low: int = 0, high: int | None = None, field: str = "") -> int:
    if type(value) is int and low <= value and (high is None or value <= high):
        return value
    what += field
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _SpecError(f"{what} must be an int, got {type(value).__name__} {value!r}"[:200])
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise _SpecError(f"{what} must be in {bound}, got {value}")
    return value


def _int_list(value, what: str, low: int = 0, high: int | None = None, field: str = "") -> list[int]:
    if type(value) is list and (not value or (set(map(type, value)) == _JUST_INT and low <= min(value)
                                              and (high is None or max(value) <= high))):
        return list(value)  # a JSON list of plain ints in range, checked in C
    what += field
    if not isinstance(value, (list, tuple)):
        raise _SpecError(f"{what} must be a list of ints, got {type(value).__name__}")
    # plain ints in range pass without building each element's name for the message
    return [v if type(v) is int and low <= v and (high is None or v <= high) else _int(v, f"{what}[{k}]", low, high)
            for k, v in enumerate(value)]


def _field(record: dict, key: str, what: str):
    if not isinstance(record, dict):
        raise _SpecError(f"{what} must be a JSON object, got {type(record).__name__}")
    if key not in record:
        raise _SpecError(f"{what} has no {key!r} entry")
    return record[key]


def _array(arrays: dict, key, what: str, kinds: str = _NUMERIC_KINDS, field: str = "") -> np.ndarray:
    arr = arrays.get(key) if type(key) is str else None
    if type(arr) is np.ndarray and not arr.dtype.hasobject and arr.dtype.kind in kinds:
        return arr
    what += field
    if not isinstance(key, str):
        raise _SpecError(f"{what} must name an array entry, got {type(key).__name__}")
    if key not in arrays:
        raise _SpecError(f"{what} refers to the array {key!r}, which is missing")
    arr = arrays[key]
    if not isinstance(arr, np.ndarray):
        raise _SpecError(f"{what} ({key!r}) is a {type(arr).__name__}, not an array")
    if arr.dtype.hasobject or arr.dtype.kind not in kinds:
        raise _SpecError(f"{what} ({key!r}) has dtype {arr.dtype}, expected one of kinds {kinds!r} "
                         f"(b: bool, i/u: int, f: float)")
    return arr


def _variables_from_record(record) -> Variables:
    num = _int(_field(record, "num", "variables"), "variables.num", 0, _MAX_VARIABLES)
    names = record.get("names")
    if names is not None:
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise _SpecError("variables.names must be a list of strings or null")
        if len(names) != num:
            raise _SpecError(f"variables.names has {len(names)} names for {num} variables")
    shape = record.get("shape")
    if shape is not None:
        shape = _int_list(shape, "variables.shape", 1, _MAX_VARIABLES)
        if len(shape) not in (2, 3) or math.prod(shape) != num:
            raise _SpecError(f"variables.shape {shape} does not describe {num} image variables")
    return Variables(num, names=names, shape=shape)


def _build_param(record, pid: int, arrays: dict):
    where = f"params[{pid}]"
    kind = _field(record, "type", where)
    if kind == "weights":
        values = _array(arrays, _field(record, "values", where), where, "f", ".values")
        mask_key = record.get("mask")
        mask = None if mask_key is None else _array(arrays, mask_key, where, "b", ".mask")
        if values.ndim != 2:
            raise _SpecError(f"{where}: weights must be 2-D, got shape {values.shape}")
        return SumWeights(values, mask)
    if kind == "family":
        name = _field(record, "family", where)
        if not isinstance(name, str) or name not in FAMILIES:
            raise _SpecError(f"{where}: unknown leaf family {name!r}; known: {sorted(FAMILIES)}")
        config = record.get("config", {})
        if not isinstance(config, dict) or not all(isinstance(v, (int, float, str, bool, type(None)))
                                                    for v in config.values()):
            raise _SpecError(f"{where}: config must be a JSON object of plain values")
        names = _field(record, "arrays", where)
        if not isinstance(names, dict):
            raise _SpecError(f"{where}.arrays must be a JSON object")
        expected = set(FAMILIES[name].param_names)
        if set(names) != expected:
            raise _SpecError(f"{where}: the {name} family needs the arrays {sorted(expected)}, got {sorted(names)}")
        family_arrays = {n: _array(arrays, names[n], where, field=f".{n}") for n in sorted(expected)}
        for n, arr in family_arrays.items():
            if arr.ndim == 0:
                raise _SpecError(f"{where}.{n} must have a unit axis, got a scalar")
        try:
            return family_from_parameters(name, family_arrays, config)
        except KeyError as err:
            raise _SpecError(f"{where}: the {name} family needs the setting {err.args[0]!r} in its config") from None
        except (ValueError, TypeError) as err:
            raise _SpecError(f"{where}: cannot rebuild the {name} family: {err}") from None
    raise _SpecError(f"{where}: unknown parameter type {kind!r} (expected 'weights' or 'family')")


def _spec_to_circuit(structure, arrays: dict, limits: dict | None = None) -> Circuit:
    """Validate a spec completely and build its circuit; problems raise :class:`_SpecError`.

    ``limits`` (``max_units``, ``max_edges``; none when omitted) bound the totals over all nodes,
    each node's share charged before the node is built.
    """
    if not isinstance(structure, dict):
        raise _SpecError(f"the structure must be a JSON object, got {type(structure).__name__}")
    variables = _variables_from_record(_field(structure, "variables", "structure"))
    records = _field(structure, "nodes", "structure")
    if not isinstance(records, list) or not records:
        raise _SpecError("structure.nodes must be a non-empty list")
    param_records = structure.get("params", [])
    if not isinstance(param_records, list):
        raise _SpecError("structure.params must be a list")
    roots = _int_list(_field(structure, "roots", "structure"), "structure.roots", 0, len(records) - 1)
    if not roots:
        raise _SpecError("structure.roots is empty; a circuit needs at least one root")

    params: list = [None] * len(param_records)
    param_kind: list = [None] * len(param_records)

    def get_param(pid: int, want: str, where: str):
        if params[pid] is None:
            try:
                params[pid] = _build_param(param_records[pid], pid, arrays)
            except (ValueError, TypeError) as err:
                raise _SpecError(f"params[{pid}]: {err}") from None
            param_kind[pid] = "weights" if isinstance(params[pid], SumWeights) else "family"
        if param_kind[pid] != want:
            raise _SpecError(f"{where} uses params[{pid}], which holds {param_kind[pid]}, not {want}")
        return params[pid]

    context = _BuildContext(variables, arrays, len(param_records), get_param)
    budget = _Budget(limits or {})
    nodes = []
    for i, record in enumerate(records):
        where = f"nodes[{i}]"
        kind = _field(record, "kind", where)
        label = record.get("label")
        if label is not None and not isinstance(label, str):
            raise _SpecError(f"{where}.label must be a string or null")
        num_units = _int(_field(record, "num_units", where), where, 1, _MAX_UNITS, ".num_units")
        children_ids = _int_list(record.get("children", []), where, 0, None, ".children")
        if children_ids and max(children_ids) >= i:
            c = next(c for c in children_ids if c >= i)
            raise _SpecError(f"{where}.children refers to node {c}, but children must come before their "
                             f"parents (node indices below {i})")
        children = [nodes[c] for c in children_ids]
        budget.charge(kind, num_units, children, where)
        codec = _CODECS.get(kind) if type(kind) is str else None
        node = (codec or _codec(kind, where, spec=True)).build(record, children, num_units, label, where, context)
        nodes.append(node)

    _check_reachable(records, roots)
    try:
        return Circuit([nodes[r] for r in roots], variables=variables)
    except (ValueError, TypeError) as err:
        raise _SpecError(str(err)) from None


class _Budget:
    """Running totals of units and unit-level edges, refused once past ``max_units`` / ``max_edges``."""

    def __init__(self, limits: dict):
        self.max_units = limits.get("max_units", math.inf)
        self.max_edges = limits.get("max_edges", math.inf)
        self.units = self.edges = 0

    def charge(self, kind, num_units: int, children: list, where: str):
        if kind == "sum":
            width = sum(c.num_units for c in children)
        elif kind == "product":
            width = len(children)
        else:
            width = 0
        self.units += num_units
        self.edges += len(children) + num_units * width
        if self.units > self.max_units:
            raise _SpecError(f"the nodes up to {where} declare {self.units} units, more than max_units="
                             f"{self.max_units} (raise max_units to load it)")
        if self.edges > self.max_edges:
            raise _SpecError(f"the nodes up to {where} declare {self.edges} unit-level edges, more than max_edges="
                             f"{self.max_edges} (raise max_edges to load it)")


def _check_reachable(records: list, roots: list[int]):
    seen = [False] * len(records)
    stack = list(roots)
    while stack:
        i = stack.pop()
        if not seen[i]:
            seen[i] = True
            stack.extend(records[i].get("children", []))
    if not all(seen):
        missing = [i for i, s in enumerate(seen) if not s]
        raise _SpecError(f"{len(missing)} node(s) are not under any root (first: node {missing[0]})")


# ---- networkx ---------------------------------------------------------------------------------
def to_networkx(circuit: Circuit) -> nx.DiGraph:
    """The circuit as a ``networkx.DiGraph`` with edges parent -> child.

    Node ids are ``"n{i}"`` with ``i`` the position in ``circuit.nodes`` (children first).

    Node attributes: ``kind`` (``"input"``, ``"product"`` or ``"sum"``), ``scope`` (tuple of
    variable ids), ``num_units``, ``label``; input nodes add ``family`` (its name),
    ``variables``, ``parameters`` (dict of arrays), ``config`` and ``param_id``; products add
    ``pattern`` and, for an explicit table, ``table``; sums add ``weights``, ``mask`` (None when
    dense) and ``param_id``. Nodes that share (tie) a parameter object have the same
    ``param_id``. Edge attributes: ``order`` (the child's first position among the parent's
    children) and ``positions`` (all its positions, for a child used more than once).
    Graph attributes: ``roots`` (list of node ids) and ``variables``
    (``{"num", "names", "shape"}``). Arrays are copies; :func:`from_networkx` rebuilds the
    circuit exactly.

    A circuit with a cycle is converted too (its graph then has the cycle), but it cannot be
    rebuilt.
    """
    import networkx as nx

    nodes = circuit.nodes
    index = {id(n): i for i, n in enumerate(nodes)}
    copies: dict[int, object] = {}
    param_ids: dict[int, int] = {}

    def pid(obj) -> int:
        return param_ids.setdefault(id(obj), len(param_ids))

    def copied(obj, arrays_of):
        if id(obj) not in copies:
            copies[id(obj)] = arrays_of()
        return copies[id(obj)]

    graph = nx.DiGraph(roots=[f"n{index[id(r)]}" for r in circuit.roots],
                       variables=_variables_record(circuit.variables))
    for i, node in enumerate(nodes):
        attrs = {"kind": node.kind, "scope": tuple(node.scope), "num_units": node.num_units, "label": node.label}
        attrs.update(_codec(node.kind, "to_networkx").graph_attributes(node, pid, copied))
        graph.add_node(f"n{i}", **attrs)
    for i, node in enumerate(nodes):
        positions: dict[int, list[int]] = {}
        for position, child in enumerate(node.children):
            positions.setdefault(index[id(child)], []).append(position)
        for c, where in positions.items():
            graph.add_edge(f"n{i}", f"n{c}", order=where[0], positions=tuple(where))
    return graph


def from_networkx(graph: nx.DiGraph) -> Circuit:
    """Rebuild a circuit from a graph in the form :func:`to_networkx` makes.

    Node ids may be any hashable values. Without a ``roots`` graph attribute the nodes without
    parents are the roots (in graph order); without ``variables`` the variables are
    ``x0 .. x{n-1}``. Children are ordered by the edges' ``positions`` (or ``order``).

    Raises
    ------
    ValueError
        The graph has a cycle, misses an attribute, or its arrays do not fit together.
    """
    import networkx as nx

    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise TypeError(f"from_networkx: expected a networkx.DiGraph, got {type(graph).__name__}")
    try:
        structure, arrays = _graph_to_spec(graph)
        return _spec_to_circuit(structure, arrays)
    except _SpecError as err:
        raise ValueError(f"from_networkx: {err}") from None


def _graph_to_spec(graph: nx.DiGraph) -> tuple[dict, dict]:
    import networkx as nx

    if graph.number_of_nodes() == 0:
        raise _SpecError("the graph has no nodes")
    try:
        order = list(reversed(list(nx.topological_sort(graph))))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        raise _SpecError(f"the graph has a cycle through {[u for u, _ in cycle][:6]}; a circuit must be acyclic") \
            from None
    index = {node_id: i for i, node_id in enumerate(order)}
    arrays: dict[str, np.ndarray] = {}
    params: list[dict] = []
    param_slots: dict[object, int] = {}
    param_owner: dict[object, object] = {}
    records = []

    def store(key: str, value, what: str) -> str:
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            try:
                arrays[key] = np.asarray(value)
            except (TypeError, ValueError):
                raise _SpecError(f"{what} is not an array") from None
        return key

    def param_slot(node_id, attrs: dict, kind: str, where: str, make_record) -> int:
        """The params index of a node's parameter object: nodes with one ``param_id`` share it."""
        slot_key = attrs.get("param_id", ("node", node_id))
        try:
            known = slot_key in param_slots
        except TypeError:
            raise _SpecError(f"{where}: param_id must be hashable") from None
        if known:
            first = param_owner[slot_key]
            if not _same_parameters(graph.nodes[first], attrs, kind):
                raise _SpecError(f"{where} and node {first!r} share param_id {slot_key!r} but hold different "
                                 f"parameters; give them different param_ids or the same arrays")
        else:
            pid = len(params)
            param_slots[slot_key] = pid
            param_owner[slot_key] = node_id
            params.append(make_record(pid))
        return param_slots[slot_key]

    for node_id in order:
        i = index[node_id]
        attrs = graph.nodes[node_id]
        where = f"node {node_id!r}"
        kind = _field(attrs, "kind", where)
        children = _children_of(graph, node_id, index, where)
        units = _field(attrs, "num_units", where)
        record = {"kind": kind, "label": attrs.get("label"), "num_units": units, "children": children}
        record.update(_codec(kind, where, spec=True).graph_fields(node_id, attrs, i, where, store, param_slot))
        records.append(record)

    roots = graph.graph.get("roots")
    if roots is None:
        roots = [n for n in graph.nodes if graph.in_degree(n) == 0]
    if not isinstance(roots, (list, tuple)):
        raise _SpecError("the graph attribute 'roots' must be a list of node ids")
    missing = [r for r in roots if not _hashable(r) or r not in index]
    if missing:
        raise _SpecError(f"the roots {missing[:4]} are not nodes of the graph")
    variables = graph.graph.get("variables")
    if variables is None:
        ids = [v for r in records if r["kind"] == "input" and isinstance(r["variables"], (list, tuple))
               for v in r["variables"] if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
        variables = {"num": int(max(ids, default=-1)) + 1, "names": None, "shape": None}
    structure = {"variables": variables, "roots": [index[r] for r in roots], "params": params, "nodes": records}
    return structure, arrays


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _same_arrays(a, b) -> bool:
    if a is b:
        return True
    if a is None or b is None:
        return False
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except (TypeError, ValueError):
        return False


def _same_parameters(first: dict, other: dict, kind: str) -> bool:
    """Whether two nodes that claim one param_id hold the same parameters."""
    if kind == "sum":
        return _same_arrays(first.get("weights"), other.get("weights")) and \
            _same_arrays(first.get("mask"), other.get("mask"))
    a, b = first.get("parameters"), other.get("parameters")
    if not isinstance(a, dict) or not isinstance(b, dict) or a.keys() != b.keys():
        return False
    return first.get("family") == other.get("family") and all(_same_arrays(a[k], b[k]) for k in a)


def _children_of(graph: nx.DiGraph, node_id, index: dict, where: str) -> list[int]:
    slots: dict[int, int] = {}
    for child, data in graph.adj[node_id].items():
        positions = data.get("positions", (data.get("order"),))
        if not isinstance(positions, (list, tuple)) or not positions:
            raise _SpecError(f"{where}: the edge to {child!r} has no 'order'/'positions'")
        for p in positions:
            p = _int(p, f"{where}: the position of the edge to {child!r}", 0)
            if p in slots:
                raise _SpecError(f"{where}: two edges claim child position {p}")
            slots[p] = index[child]
    if sorted(slots) != list(range(len(slots))):
        raise _SpecError(f"{where}: the child positions {sorted(slots)[:8]} are not 0..{len(slots) - 1}")
    return [slots[p] for p in range(len(slots))]


# ---- files ------------------------------------------------------------------------------------
def save(circuit: Circuit, path: PathLike) -> Path:
    """Write ``circuit`` to one ``.pcz`` file (JSON structure and arrays in a compressed npz).

    The file is written to a unique temporary name beside ``path``, fsynced and moved into place
    (see :mod:`pcircuits.atomic`), so a failed or interrupted save leaves either the old file or
    the new one, never a partial file. Nothing is pickled.

    Raises
    ------
    ValueError
        The circuit has a cycle or parameters that no longer fit their node (see ``check()``).

    Returns
    -------
    pathlib.Path
        The path written (exactly ``path``; no extension is added).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"save: expected a Circuit, got {type(circuit).__name__}")
    path = Path(path)
    structure, arrays = _circuit_to_spec(circuit, "save")
    structure["arrays"], blobs = _pack_arrays(arrays)
    text = json.dumps(structure, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    entries = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
               "structure": np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    entries.update({f"data.{name}": blob for name, blob in blobs.items()})
    atomic_write(path, lambda handle: np.savez_compressed(handle, **entries))
    return path


def load(path: PathLike, *, validate: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
         max_units: int = DEFAULT_MAX_UNITS, max_edges: int = DEFAULT_MAX_EDGES) -> Circuit:
    """Read a circuit written by :func:`save`, bounding the memory it may take.

    Every size a file declares is checked against the limits *before* anything of that size is
    allocated, so a hostile or damaged file cannot exhaust the machine (see ``docs/safety.md``).
    The circuit read must then pass :meth:`Circuit.check` (smooth, decomposable, acyclic,
    normalized weights, leaf parameters in their domains), unless ``validate=False``.

    Parameters
    ----------
    path : str or path-like
    validate : bool
        Refuse a circuit that fails ``check()`` (the default). ``False`` reads files that store
        invalid circuits on purpose (examples of violations, drawings); such a circuit is still
        well formed (its arrays fit its nodes) but may break any property ``check()`` reports.
    max_bytes : int
        The largest number of bytes the file's entries may unpack to, all entries together
        (1 GiB by default); the JSON structure may take at most ``max_bytes // 16`` of them,
        since its parsed form is larger than its text. Guards against decompression bombs.
    max_units : int
        The largest total number of units over all nodes (``2**26`` by default).
    max_edges : int
        The largest total number of unit-level edges: a sum's weights (units x child units)
        and a product's pattern table (units x children), over all nodes (``2**27`` by default).
        Loading takes about ``2 * max_bytes + 8 * max_edges`` bytes at most.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CircuitFileError
        ``path`` is not a circuit file, or it is truncated, corrupted, of an unknown format
        version, exceeds a limit, or describes an impossible circuit. The message says which
        (and which argument raises a limit).
    InvalidCircuitFileError
        (A ``CircuitFileError`` and an ``InvalidCircuitError``.) ``validate`` is true and the
        circuit fails ``check()``: the message names the first violation (its property and
        node), the error's ``report`` holds them all.
    """
    if not isinstance(validate, bool):
        raise TypeError(f"load: validate must be True or False, got {validate!r}")
    limits = {name: _positive_limit(value, name) for name, value in
              (("max_bytes", max_bytes), ("max_units", max_units), ("max_edges", max_edges))}
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load: no such file: {path}")
    if not path.is_file():
        raise CircuitFileError(f"{path}: not a file")
    try:
        archive = zipfile.ZipFile(path)
    except ARCHIVE_ERRORS as err:
        raise CircuitFileError(f"{path}: not a pcircuits circuit file (not a readable zip archive: {err})") from None
    try:
        with archive:
            structure, arrays = _read_archive(archive, limits["max_bytes"])
        circuit = _spec_to_circuit(structure, arrays, limits)
    except (_FileProblem, ArchiveProblem) as err:
        raise CircuitFileError(f"{path}: {err}") from None
    except _SpecError as err:
        raise CircuitFileError(f"{path}: invalid circuit file: {err}") from None
    except RecursionError:
        raise CircuitFileError(f"{path}: invalid circuit file: nested too deeply") from None
    if validate:
        report = circuit.check()
        if not report.ok:
            count = len(report.violations)
            raise InvalidCircuitFileError(
                f"{path}: the circuit is invalid: {report.violations[0]} ({count} violation"
                f"{'s' if count > 1 else ''}; load(..., validate=False) reads it anyway, check() lists them all)",
                report)
    return circuit


def _positive_limit(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"load: {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"load: {name} must be positive, got {value}")
    return int(value)


class _FileProblem(_SpecError):
    """Internal: a problem with the file's entries (as opposed to the circuit it describes)."""


def _read_archive(archive: zipfile.ZipFile, max_bytes: int) -> tuple[dict, dict[str, np.ndarray]]:
    """The structure and the named arrays of an open circuit file, every size checked first.

    The format version and the structure are read first; the structure's array table then says
    how many values each data entry must hold, so an entry is refused on its header alone when it
    holds more (unused data, a decompression bomb) or fewer values than the table uses.
    """
    infos = entry_infos(archive, max_bytes, "a circuit file")
    for required in ("format_version", "structure"):
        if required not in infos:
            raise _FileProblem(f"not a pcircuits circuit file (the entry {required!r} is missing)")
    version = read_entry(archive, infos.pop("format_version"), "format_version")
    if version.shape != () or version.dtype.kind not in "iu":
        raise _FileProblem(f"format_version must be an integer scalar, got {version.dtype} of shape {version.shape}")
    if int(version) != FORMAT_VERSION:
        raise _FileProblem(f"unknown format version {int(version)}; this pcircuits reads version {FORMAT_VERSION} "
                           f"(a newer pcircuits may read it)")
    structure_info = infos.pop("structure")
    if structure_info.file_size > max_bytes // _STRUCTURE_SHARE:
        raise _FileProblem(f"the structure entry unpacks to {structure_info.file_size} bytes, more than "
                           f"max_bytes // {_STRUCTURE_SHARE} = {max_bytes // _STRUCTURE_SHARE} (raise max_bytes "
                           f"to load it)")
    raw = read_entry(archive, structure_info, "structure")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _FileProblem(f"the structure entry must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    try:
        structure = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _FileProblem(f"the structure is not valid JSON ({str(err)[:120]})") from None
    del raw
    if not isinstance(structure, dict) or structure.get("format") != _FORMAT_NAME:
        raise _FileProblem("the structure does not describe a pcircuits circuit")
    if structure.get("format_version") != FORMAT_VERSION:
        raise _FileProblem(f"the structure's format_version {structure.get('format_version')!r} does not match "
                           f"the file's version {FORMAT_VERSION}")
    places, extents = _array_places(structure.get("arrays"))
    missing = {key for key in extents if f"data.{key}" not in infos}
    for name, (key, _, _) in places.items() if missing else ():
        if key in missing:
            raise _FileProblem(f"structure.arrays[{name!r}] refers to the data entry {key!r}, which is missing")
    blobs = {}
    for name, info in infos.items():
        key = name[len("data."):] if name.startswith("data.") else None
        if key is None or key not in extents:
            raise _FileProblem(f"unexpected entry {name!r}" + ("" if key is None else
                               " (the array table uses no array of that data entry)"))
        blobs[key] = read_entry(archive, info, name, check=_data_entry_check(name, extents[key]))
    arrays = {}
    for name, (key, offset, shape) in places.items():
        arrays[name] = blobs[key][offset:offset + math.prod(shape)].reshape(shape).copy()
    return structure, arrays


def _array_places(table) -> tuple[dict[str, tuple[str, int, list[int]]], dict[str, int]]:
    """Where each named array lies (data entry, offset, shape), and how many values each entry needs."""
    if not isinstance(table, dict):
        raise _SpecError("structure.arrays must be a JSON object that maps array names to their places")
    places, extents = {}, {}
    for name, ref in table.items():
        key, offset, shape = (ref.get("data"), ref.get("offset"), ref.get("shape")) if type(ref) is dict else (0, 0, 0)
        size = math.prod(shape) if type(shape) is list and set(map(type, shape)) <= _JUST_INT else 0
        if not (0 < size <= _MAX_ARRAY_VALUES and min(shape, default=1) > 0 and len(shape) <= _MAX_ARRAY_DIMS
                and type(key) is str and type(offset) is int and offset >= 0):
            key, offset, shape = _array_place(name, ref)  # names the first problem, if any
            size = math.prod(shape)
        places[name] = (key, offset, shape)
        extents[key] = max(extents.get(key, 0), offset + size)
    return places, extents


def _array_place(name: str, ref) -> tuple[str, int, list[int]]:
    """One entry of the array table, every field checked in turn (the fast path of
    :func:`_array_places` takes the entries of plain ints in range without this)."""
    where = f"structure.arrays[{name!r}]"
    key = _field(ref, "data", where)
    if not isinstance(key, str):
        raise _SpecError(f"{where}.data must name a data entry, got {type(key).__name__}")
    offset = _int(_field(ref, "offset", where), where, 0, None, ".offset")
    shape = _int_list(_field(ref, "shape", where), where, 0, None, ".shape")
    if len(shape) > _MAX_ARRAY_DIMS:
        raise _SpecError(f"{where}.shape has {len(shape)} dimensions; arrays of a circuit file have at most "
                         f"{_MAX_ARRAY_DIMS}")
    if math.prod(max(d, 1) for d in shape) > _MAX_ARRAY_VALUES:
        raise _SpecError(f"{where}.shape {shape} describes more than {_MAX_ARRAY_VALUES} values (counting an "
                         f"empty dimension as 1)")
    return key, offset, shape


def _data_entry_check(name: str, count: int):
    """The check of a data entry's header: named after its dtype, exactly ``count`` values."""
    def check(shape: tuple, dtype: np.dtype):
        size = math.prod(shape)
        if dtype.name != name[len("data."):]:
            raise ArchiveProblem(f"the entry {name!r} holds {dtype.name} values; a data entry is named after its dtype")
        if size < count:
            raise ArchiveProblem(f"the entry {name!r} holds only {size} values but the array table places arrays up "
                                 f"to {count}")
        if size > count:
            raise ArchiveProblem(f"the entry {name!r} holds {size} values but the array table uses only {count}; a "
                                 f"circuit file holds no unused data")
    return check


def _pack_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """One flat array per dtype, and the table that says where each named array lies in it."""
    pieces: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    table = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        array = array.astype(array.dtype.newbyteorder("="), copy=False)
        key = array.dtype.name
        table[name] = {"data": key, "offset": sizes.get(key, 0), "shape": list(array.shape)}
        pieces.setdefault(key, []).append(array.ravel())
        sizes[key] = sizes.get(key, 0) + array.size
    return table, {key: np.concatenate(parts) for key, parts in pieces.items()}


