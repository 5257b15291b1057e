"""Drawings: DOT source content, highlighted violations, summaries, rendering and its fallback."""
import shutil

import numpy as np
import pytest

import pcircuits as pc
from pcircuits.builders import figure1_spn
from pcircuits.viz import GraphvizMissingWarning, circuit_to_dot, render_circuit

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")


def broken_figure1():
    circuit = figure1_spn()
    product = next(n for n in circuit.product_nodes if n.scope == {0, 1})
    product.rewire([product.children[0], product.children[0]])
    return circuit, product


def chain_of_trees(num_leaves):
    leaves = [pc.InputNode(v, pc.Bernoulli.random(2, rng=v)) for v in range(num_leaves)]
    layer = leaves
    while len(layer) > 1:
        pairs = [pc.ProductNode(layer[i:i + 2]) for i in range(0, len(layer) - 1, 2)]
        layer = [pc.SumNode([p], num_units=2, rng=0) for p in pairs] + layer[len(pairs) * 2:]
    return pc.Circuit(pc.SumNode(layer, rng=0))


def test_dot_shows_every_node_with_kind_symbol_and_scope():
    source = figure1_spn().to_dot()
    assert source.startswith("digraph circuit {")
    assert source.count("->") == 34
    assert "×" in source and "+" in source and "Indicator = 1" in source
    assert "{X1, X2}" in source and "{X1, X2, X3, X4}" in source
    assert "<B>root</B>" in source and "<B>S12</B>" in source


def test_node_kinds_have_their_own_shape_and_colour():
    source = figure1_spn().to_dot()
    assert 'shape=box style="rounded,filled"' in source
    assert "fillcolor=\"#e3f2fd\"" in source and "fillcolor=\"#fff3e0\"" in source
    assert source.count("shape=circle") == 25 - 8


def test_one_unit_sums_show_their_weights_on_edges():
    source = figure1_spn().to_dot()
    assert "n24 -> n22 [label=0.7]" in source


def test_multi_unit_nodes_show_their_unit_count():
    leaf = pc.InputNode(0, pc.Bernoulli([0.2, 0.4, 0.6]))
    source = circuit_to_dot(pc.Circuit(pc.SumNode([leaf], rng=0)))
    assert "3 units" in source


def test_large_scopes_are_abbreviated():
    leaves = [pc.InputNode(v, pc.Bernoulli([0.5])) for v in range(40)]
    source = circuit_to_dot(pc.Circuit(pc.ProductNode(leaves[::2])))
    assert "... (20 vars)" in source


def test_image_scopes_are_shown_as_rectangles():
    variables = pc.Variables.image(4, 4)
    leaves = [pc.InputNode(v, pc.Bernoulli([0.5])) for v in variables.scope_of(slice(0, 2), slice(0, 2))]
    source = circuit_to_dot(pc.Circuit(pc.ProductNode(leaves), variables=variables))
    assert "x[0..1, 0..1]" in source


def test_scopes_can_be_hidden():
    assert "{X1, X2}" not in figure1_spn().to_dot(show_scopes=False)


def test_violations_are_highlighted_with_their_kind():
    circuit, product = broken_figure1()
    report = circuit.check()
    source = circuit.to_dot(report)
    assert source.count('fillcolor="#ffcdd2"') == 3
    assert "! decomposability" in source and source.count("! smoothness") == 2
    assert "validity: 1 decomposability, 2 smoothness (red)" in source
    index = circuit.index(product)
    node_line = next(line for line in source.splitlines() if line.strip().startswith(f"n{index} ["))
    assert "#ffcdd2" in node_line and "overlapping scopes" in node_line


def test_report_true_runs_the_check():
    circuit, _ = broken_figure1()
    assert circuit.to_dot(report=True) == circuit.to_dot(report=circuit.check())


def test_valid_report_says_ok():
    assert "validity: ok" in figure1_spn().to_dot(report=True)


def test_cycle_edge_is_drawn_dashed_and_red():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5]))
    inner = pc.SumNode([leaf, leaf], weights=[[0.5, 0.5]])
    outer = pc.SumNode([inner], weights=[[1.0]])
    inner.rewire([leaf, outer])
    source = pc.Circuit(outer).to_dot(report=True)
    cycle_edge = next(line for line in source.splitlines() if "cycle" in line and "->" in line)
    assert "dashed" in cycle_edge and "constraint=false" in cycle_edge


def test_big_circuits_are_summarized_by_height_and_kind():
    circuit = chain_of_trees(200)
    source = circuit.to_dot(max_nodes=50)
    assert f"summarized view: {circuit.num_nodes} nodes (more than max_nodes=50)" in source
    assert "200 Bernoulli input nodes" in source and "100 product nodes" in source
    assert source.count("->") < 60


def test_summary_bins_heights_when_there_are_many():
    weights = pc.SumWeights([[1.0]])
    node = pc.InputNode(0, pc.Bernoulli([0.5]))
    for _ in range(1000):
        node = pc.SumNode([node], weights=weights)
    source = pc.Circuit(node).to_dot(max_nodes=30)
    assert "heights 0..100" in source and "heights 909..1000" in source
    assert source.count("->") <= 20


def test_summary_marks_groups_with_violations():
    circuit = chain_of_trees(64)
    top = circuit.roots[0]
    top.weights = top.weights * 2
    source = circuit.to_dot(report=True, max_nodes=20)
    assert "! 1 weights" in source and 'fillcolor="#ffcdd2"' in source


@pytest.mark.parametrize("options, message", [
    ({"max_nodes": 0}, "max_nodes must be a positive int"),
    ({"rankdir": "up"}, "rankdir must be"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        figure1_spn().to_dot(**options)


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the format"):
        figure1_spn().render(tmp_path / "drawing.jpeg2000")


def test_dot_extension_writes_the_source(tmp_path):
    path = figure1_spn().render(tmp_path / "drawing.dot")
    assert path == str(tmp_path / "drawing.dot")
    assert (tmp_path / "drawing.dot").read_text().startswith("digraph")


@needs_dot
def test_render_writes_a_real_svg(tmp_path):
    circuit, _ = broken_figure1()
    path = circuit.render(tmp_path / "figure1.svg", report=circuit.check())
    text = (tmp_path / "figure1.svg").read_text()
    assert path == str(tmp_path / "figure1.svg")
    assert "<svg" in text and "decomposability" in text


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_render_format_follows_the_extension(tmp_path, suffix, magic):
    path = render_circuit(figure1_spn(), tmp_path / f"figure1{suffix}")
    assert open(path, "rb").read(4) == magic


def test_missing_dot_falls_back_to_source_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.warns(GraphvizMissingWarning, match="apt-get install graphviz"):
        path = figure1_spn().render(tmp_path / "figure1.svg")
    assert path == str(tmp_path / "figure1.dot")
    assert (tmp_path / "figure1.dot").read_text().startswith("digraph")
    assert not (tmp_path / "figure1.svg").exists()


def test_drawing_never_changes_the_circuit():
    circuit = figure1_spn()
    before = [n.weights.copy() for n in circuit.sum_nodes]
    circuit.to_dot(report=True)
    assert all(np.array_equal(a, n.weights) for a, n in zip(before, circuit.sum_nodes))
