"""Drawings of circuits with Graphviz, with the violations of a validity report highlighted.

:func:`circuit_to_dot` builds the Graphviz source (no external program needed);
:func:`render_circuit` runs Graphviz's ``dot`` program to write an SVG, PNG or PDF file, and
falls back to writing the ``.dot`` source with a warning when ``dot`` is not installed.

Input nodes are green rounded boxes (with their family), products blue circles with ``×``,
sums orange circles with ``+``; every node shows its label, scope and number of units.
Circuits larger than ``max_nodes`` are drawn summarized: one box per height and kind.
"""
from __future__ import annotations

import html
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Union

import graphviz
import numpy as np

from .nodes import InputNode, Node, ProductNode, SumNode

__all__ = ["circuit_to_dot", "render_circuit", "GraphvizMissingWarning", "RENDER_FORMATS"]

#: File extensions :func:`render_circuit` can draw to with ``dot`` (``.dot``/``.gv`` write the source).
RENDER_FORMATS = ("svg", "png", "pdf")

_STYLE = {
    "input": {"shape": "box", "style": "rounded,filled", "fillcolor": "#e8f5e9", "color": "#2e7d32"},
    "product": {"shape": "circle", "style": "filled", "fillcolor": "#e3f2fd", "color": "#1565c0"},
    "sum": {"shape": "circle", "style": "filled", "fillcolor": "#fff3e0", "color": "#e65100"},
}
_SYMBOL = {"product": "×", "sum": "+"}
_VIOLATION_STYLE = {"fillcolor": "#ffcdd2", "color": "#c62828", "penwidth": "3"}
_VIOLATION_COLOR = "#c62828"


class GraphvizMissingWarning(UserWarning):
    """Graphviz's ``dot`` program is missing, so a drawing was written as ``.dot`` source."""


def circuit_to_dot(circuit, report=None, *, max_nodes: int = 300, show_scopes: bool = True,
                   show_units: bool = True, show_weights: bool = True, max_scope_items: int = 6,
                   rankdir: str = "TB", title: str | None = None) -> str:
    """Graphviz (DOT) source of a drawing of ``circuit``.

    Parameters
    ----------
    circuit : Circuit
    report : ValidityReport or True, optional
        Violations to highlight (red fill and border, the violated property written on the
        node, the explanation as tooltip); ``True`` runs ``circuit.check()``.
    max_nodes : int
        Circuits with more nodes are drawn summarized: one box per (height, kind) with counts,
        heights binned when there are many; the graph label says so.
    show_scopes, show_units : bool
        Write each node's scope (abbreviated for large scopes) and, when more than one, its
        number of units.
    show_weights : bool
        Write the weight on the edges of one-unit sums over one-unit children.
    max_scope_items : int
        Longest scope written out in full; longer ones are abbreviated.
    rankdir : {"TB", "BT", "LR", "RL"}
        Direction of the layout (roots at the top by default).
    title : str, optional
        First line of the graph label (the circuit's summary by default).

    Returns
    -------
    str
        The DOT source.
    """
    if report is True:
        report = circuit.check()
    if not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"circuit_to_dot: max_nodes must be a positive int, got {max_nodes!r}")
    if rankdir not in ("TB", "BT", "LR", "RL"):
        raise ValueError(f"circuit_to_dot: rankdir must be 'TB', 'BT', 'LR' or 'RL', got {rankdir!r}")
    violations: dict[int, list] = {}
    if report is not None:
        for v in report.violations:
            violations.setdefault(id(v.node), []).append(v)
    graph = graphviz.Digraph("circuit")
    graph.attr(rankdir=rankdir, fontname="Helvetica", labelloc="t", nodesep="0.3", ranksep="0.45")
    graph.attr("node", fontname="Helvetica", fontsize="10", penwidth="1.5")
    graph.attr("edge", color="#555555", arrowsize="0.6", fontname="Helvetica", fontsize="9")
    heading = [title if title is not None else repr(circuit)]
    if report is not None:
        heading.append(_report_line(report))
    options = {"show_scopes": show_scopes, "show_units": show_units, "max_scope_items": max_scope_items}
    if circuit.num_nodes > max_nodes:
        heading.append(f"summarized view: {circuit.num_nodes} nodes (more than max_nodes={max_nodes}) "
                       f"grouped by height above the inputs and by kind")
        _draw_summary(graph, circuit, violations, max_nodes, options)
    else:
        _draw_nodes(graph, circuit, violations, show_weights, options)
    graph.attr(label=_html_lines(heading, size=12))
    return graph.source


def _report_line(report) -> str:
    if report.ok:
        return "validity: ok"
    counts = {}
    for v in report.violations:
        counts[v.kind] = counts.get(v.kind, 0) + 1
    return "validity: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + " (red)"


def _html_lines(lines, size: int | None = None) -> str:
    body = "<BR/>".join(html.escape(str(line)) for line in lines)
    if size is not None:
        body = f'<FONT POINT-SIZE="{size}">{body}</FONT>'
    return f"<{body}>"


def _tooltip(lines) -> str:
    """Lines joined with DOT's ``\\n`` escape (a literal newline would split the statement)."""
    return "\\n".join(str(line).replace("\\", "\\\\").replace("\n", " ") for line in lines)


def _family_text(family) -> str:
    """The family's class name with its most telling parameter."""
    text = type(family).__name__
    params = family.parameters()
    if family.name == "indicator" and family.num_units == 1:
        return f"{text} = {int(params['value'][0])}"
    if family.name == "bernoulli" and family.num_units == 1:
        return f"{text} p={float(params['p'][0]):.3g}"
    if family.name == "categorical":
        return f"{text} K={family.num_categories}"
    if family.name == "binomial":
        return f"{text} n={family.n}"
    if family.name == "gaussian" and family.num_variables > 1:
        return f"{text} d={family.num_variables}"
    if family.name == "vae":
        return f"{text} d={family.num_variables}, latent {family.latent_dim}, {family.pixel}"
    return text


def _node_label(circuit, node: Node, problems: list, options: dict) -> str:
    small = []
    if isinstance(node, InputNode):
        head = []
        if node.label:
            head.append(f"<B>{html.escape(node.label)}</B>")
        head.append(html.escape(_family_text(node.family)))
    else:
        head = [f'<FONT POINT-SIZE="18"><B>{_SYMBOL[node.kind]}</B></FONT>']
        if node.label:
            head.append(f"<B>{html.escape(node.label)}</B>")
    if options["show_scopes"]:
        small.append(circuit.variables.format_scope(node.scope, max_items=options["max_scope_items"]))
    if options["show_units"] and node.num_units > 1:
        small.append(f"{node.num_units} unit{'s' if node.num_units != 1 else ''}")
    if isinstance(node, ProductNode) and node.pattern != "elementwise" and len(node.children) > 1:
        small.append(node.pattern)
    lines = head + [f'<FONT POINT-SIZE="8">{html.escape(s)}</FONT>' for s in small]
    for kind in dict.fromkeys(v.kind for v in problems):
        lines.append(f'<FONT POINT-SIZE="9" COLOR="{_VIOLATION_COLOR}"><B>! {kind}</B></FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def _draw_nodes(graph, circuit, violations: dict, show_weights: bool, options: dict):
    nodes = circuit.nodes
    index = {id(n): i for i, n in enumerate(nodes)}
    back = {(id(p), id(c)) for p, c in circuit.back_edges}
    for i, node in enumerate(nodes):
        problems = violations.get(id(node), [])
        attrs = dict(_STYLE[node.kind])
        if node.kind != "input":
            attrs["margin"] = "0.02"
        tooltip = [f"n{i}: {node.describe()}"] + [str(v) for v in problems]
        if problems:
            attrs.update(_VIOLATION_STYLE)
        graph.node(f"n{i}", label=_node_label(circuit, node, problems, options), tooltip=_tooltip(tooltip), **attrs)
    for i, node in enumerate(nodes):
        scalar_weights = (isinstance(node, SumNode) and node.num_units == 1 and show_weights
                          and all(c.num_units == 1 for c in node.children))
        for position, child in enumerate(node.children):
            attrs = {}
            if scalar_weights:
                attrs["label"] = f"{node.weights[0, position]:.3g}"
            if (id(node), id(child)) in back:
                attrs.update(color=_VIOLATION_COLOR, style="dashed", constraint="false", penwidth="2",
                             label=(attrs.get("label", "") + " cycle").strip(), fontcolor=_VIOLATION_COLOR)
            graph.edge(f"n{i}", f"n{index[id(child)]}", **attrs)


def _heights(circuit) -> list[int]:
    """Longest path down to an input node, per node (edges closing a cycle are ignored)."""
    nodes = circuit.nodes
    height: dict[int, int] = {}
    for node in nodes:
        height[id(node)] = 1 + max((height[id(c)] for c in node.children if id(c) in height), default=-1)
    return [height[id(n)] for n in nodes]


def _draw_summary(graph, circuit, violations: dict, max_nodes: int, options: dict):
    nodes = circuit.nodes
    heights = _heights(circuit)
    top = max(heights)
    width = max(1, math.ceil((top + 1) / max(1, max_nodes // 3)))
    group_of = []
    groups: dict[tuple, dict] = {}
    for node, height in zip(nodes, heights):
        family = node.family.name if isinstance(node, InputNode) else ""
        key = (height // width, node.kind, family)
        group = groups.setdefault(key, {"count": 0, "units": 0, "min_scope": None, "max_scope": 0,
                                        "violations": [], "family": node.family if family else None})
        group["count"] += 1
        group["units"] += node.num_units
        size = len(node.scope)
        group["min_scope"] = size if group["min_scope"] is None else min(group["min_scope"], size)
        group["max_scope"] = max(group["max_scope"], size)
        group["violations"].extend(violations.get(id(node), []))
        group_of.append(key)
    names = {key: f"g{k}" for k, key in enumerate(sorted(groups))}
    for key, group in groups.items():
        level, kind, _ = key
        low, high = level * width, min(level * width + width - 1, top)
        levels = f"height {low}" if low == high else f"heights {low}..{high}"
        what = _family_text(group["family"]).split(" ")[0] + " input" if kind == "input" else kind
        lines = [f"{group['count']} {what} node{'s' if group['count'] != 1 else ''}", levels]
        if options["show_units"]:
            lines.append(f"{group['units']} unit{'s' if group['units'] != 1 else ''}")
        if options["show_scopes"]:
            lo, hi = group["min_scope"], group["max_scope"]
            lines.append(f"scopes of {lo} variable{'s' if hi != 1 else ''}" if lo == hi
                         else f"scopes of {lo}..{hi} variables")
        attrs = dict(_STYLE[kind], shape="box")
        attrs["style"] = "rounded,filled"
        tooltip = list(lines)
        label = [f"<B>{html.escape(lines[0])}</B>"] + [f'<FONT POINT-SIZE="9">{html.escape(s)}</FONT>'
                                                        for s in lines[1:]]
        if group["violations"]:
            attrs.update(_VIOLATION_STYLE)
            kinds = {}
            for v in group["violations"]:
                kinds[v.kind] = kinds.get(v.kind, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
            label.append(f'<FONT POINT-SIZE="9" COLOR="{_VIOLATION_COLOR}"><B>! {html.escape(summary)}</B></FONT>')
            tooltip += [str(v) for v in group["violations"][:10]]
        graph.node(names[key], label="<" + "<BR/>".join(label) + ">", tooltip=_tooltip(tooltip), **attrs)
    index = {id(n): i for i, n in enumerate(nodes)}
    edge_counts: dict[tuple, int] = {}
    for i, node in enumerate(nodes):
        for child in node.children:
            pair = (group_of[i], group_of[index[id(child)]])
            edge_counts[pair] = edge_counts.get(pair, 0) + 1
    for (parent, child), count in edge_counts.items():
        graph.edge(names[parent], names[child], label=f"{count} edge{'s' if count != 1 else ''}",
                   **({"style": "dashed"} if parent == child else {}))


def render_circuit(circuit, path: Union[str, os.PathLike], report=None, **options) -> str:
    """Draw ``circuit`` to ``path``; the format comes from the extension.

    Parameters
    ----------
    circuit : Circuit
    path : str or path-like
        ``.svg``, ``.png`` or ``.pdf`` (drawn by Graphviz's ``dot``), or ``.dot``/``.gv`` (the
        source only).
    report : ValidityReport or True, optional
        Violations to highlight (see :func:`circuit_to_dot`).
    **options
        Passed to :func:`circuit_to_dot`.

    Returns
    -------
    str
        The path written: ``path``, or the same path with the suffix ``.dot`` when the ``dot``
        program is missing (a :class:`GraphvizMissingWarning` then says how to get pictures).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in RENDER_FORMATS + ("dot", "gv"):
        raise ValueError(f"render_circuit: cannot tell the format from {path.name!r}; use a path ending in "
                         f".svg, .png, .pdf or .dot")
    source = circuit_to_dot(circuit, report=report, **options)
    if fmt in ("dot", "gv"):
        path.write_text(source, encoding="utf-8")
        return str(path)
    if shutil.which("dot") is not None:
        try:
            data = graphviz.Source(source).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            data = None
        except graphviz.CalledProcessError as err:
            raise RuntimeError(f"render_circuit: Graphviz's dot failed to draw {path.name}: "
                               f"{(err.stderr or b'').decode(errors='replace')[:500]}") from None
        if data is not None:
            path.write_bytes(data)
            return str(path)
    dot_path = path.with_suffix(".dot")
    dot_path.write_text(source, encoding="utf-8")
    warnings.warn(f"Graphviz's `dot` program was not found, so the drawing was written as Graphviz source to "
                  f"{dot_path} instead of {path}. To get pictures, install Graphviz (Debian/Ubuntu: "
                  f"`sudo apt-get install graphviz`; macOS: `brew install graphviz`; conda: `conda install "
                  f"graphviz`), then run `dot -T{fmt} {dot_path} -o {path}` or draw again.",
                  GraphvizMissingWarning, stacklevel=2)
    return str(dot_path)
