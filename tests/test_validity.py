"""Validity reports: valid circuits pass; every planted violation is found, alone, at its node."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits import validity
from pcircuits.builders import figure1_spn
from pcircuits.validity import KINDS
from strategies import ALL_FAMILIES, INVALID_KINDS, invalid_circuits, selective_circuits, valid_circuits


@given(valid_circuits(families=ALL_FAMILIES))
def test_valid_circuits_pass(circuit):
    report = circuit.check()
    assert report.ok and not report.violations, str(report)


@given(valid_circuits(multiple_roots=True))
def test_valid_circuits_with_several_roots_pass(circuit):
    assert circuit.check().ok


@given(selective_circuits())
def test_selective_circuits_pass(circuit):
    assert circuit.check().ok


def test_figure1_is_valid():
    assert figure1_spn().check().ok


def test_strategies_cover_every_kind():
    assert set(INVALID_KINDS) == set(KINDS)


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_planted_violation_is_found_alone_at_its_node(kind):
    @given(invalid_circuits(kind))
    def check(case):
        circuit, offending = case
        report = circuit.check()
        assert len(report.violations) == 1, str(report)
        violation = report.violations[0]
        assert violation.kind == kind
        assert violation.node is offending
        assert violation.node_index == circuit.index(offending)
        assert report.nodes == [offending]

    check()


@pytest.mark.parametrize("kind", INVALID_KINDS)
def test_planted_violation_is_found_in_circuits_with_several_roots(kind):
    @given(invalid_circuits(kind, multiple_roots=True))
    def check(case):
        circuit, offending = case
        assert [(v.kind, v.node) for v in circuit.check().violations] == [(kind, offending)]

    check()


def broken_figure1():
    """Figure 1 with the X1-X2 product of the second component multiplying X1 twice."""
    circuit = figure1_spn()
    product = next(n for n in circuit.product_nodes if n.scope == {0, 1})
    product.rewire([product.children[0], product.children[0]])
    return circuit, product


def test_decomposability_violation_names_the_shared_variables():
    circuit, product = broken_figure1()
    violation = circuit.check().by_kind("decomposability")[0]
    assert violation.node is product
    assert "children 0 and 1 share {X1}" in violation.message
    assert violation.scopes == (pc.Scope([0]), pc.Scope([0]))


def test_smoothness_violation_lists_the_childrens_scopes():
    a = pc.InputNode(0, pc.Bernoulli([0.5]))
    b = pc.InputNode(1, pc.Bernoulli([0.5]))
    root = pc.SumNode([a, b], weights=[[0.5, 0.5]])
    violation = pc.Circuit(root).check().violations[0]
    assert violation.kind == "smoothness" and violation.node is root
    assert set(violation.scopes) == {pc.Scope([0]), pc.Scope([1])}
    assert "child 1 (InputNode n1) over {x1}" in violation.message


def test_report_text_counts_and_explains():
    circuit, _ = broken_figure1()
    text = str(circuit.check())
    assert text.startswith("Invalid circuit: 3 violations (2 smoothness, 1 decomposability)")
    assert "[decomposability] ProductNode n3 (1 unit) over {X1} multiplies children with overlapping scopes" in text
    assert "a product must be decomposable" in text


def test_report_text_of_a_valid_circuit():
    assert str(figure1_spn().check()) == ("Valid circuit: smooth, decomposable, acyclic, normalized weights "
                                          "(25 nodes, 25 units checked).")


def test_long_reports_are_cut():
    leaves = [pc.InputNode(v, pc.Bernoulli([0.5])) for v in range(61)]
    sums = [pc.SumNode([leaves[i], leaves[i + 1]], weights=[[0.5, 0.5]]) for i in range(60)]
    text = str(pc.Circuit(sums).check())
    assert "60 violations" in text and "... and 10 more" in text


def test_raise_if_invalid_raises_with_the_report():
    circuit, _ = broken_figure1()
    report = circuit.check()
    with pytest.raises(pc.InvalidCircuitError, match="3 violations") as caught:
        report.raise_if_invalid()
    assert caught.value.report is report
    assert isinstance(caught.value, ValueError)


def test_raise_if_invalid_returns_a_valid_report():
    report = figure1_spn().check()
    assert report.raise_if_invalid() is report


def test_report_behaves_like_a_collection():
    circuit, _ = broken_figure1()
    report = circuit.check()
    assert len(report) == 3 and not report and list(report) == report.violations
    assert report.kinds == {"smoothness", "decomposability"}
    assert repr(report) == "ValidityReport(ok=False, violations=3)"


def test_by_kind_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="unknown violation kind 'dangling'"):
        figure1_spn().check().by_kind("dangling")


def test_weight_tolerance_is_adjustable():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5, 0.5]))
    circuit = pc.Circuit(pc.SumNode([leaf], weights=[[0.5, 0.5 + 1e-4]]))
    assert not circuit.check().ok
    assert circuit.check(atol=1e-3).ok


def test_tied_unnormalized_weights_are_reported_at_every_user():
    weights = pc.SumWeights([[0.5, 0.6]])
    sums = [pc.SumNode([pc.InputNode(v, pc.Bernoulli([0.5, 0.5]))], weights=weights) for v in range(2)]
    report = pc.Circuit(pc.ProductNode(sums)).check()
    assert [(v.kind, v.node) for v in report.violations] == [("weights", s) for s in sums]


def test_cycle_report_names_the_closing_edge():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5]))
    inner = pc.SumNode([leaf, leaf], weights=[[0.5, 0.5]])
    outer = pc.SumNode([inner], weights=[[1.0]])
    inner.rewire([leaf, outer])
    circuit = pc.Circuit(outer)
    violation = circuit.check().violations[0]
    assert violation.kind == "cycle" and violation.node is inner
    assert "which is also its ancestor" in violation.message
    assert circuit.back_edges == [(inner, outer)]


def test_shape_violation_after_editing_a_parameter_array():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5, 0.5]))
    root = pc.SumNode([leaf], weights=[[0.5, 0.5]])
    leaf.family.p = np.array([0.5, 0.5, 0.5])
    violation = pc.Circuit(root).check().violations[0]
    assert violation.kind == "shape" and violation.node is leaf
    assert "the family has 3 units but the node has 2" in violation.message


@pytest.mark.parametrize("pattern, child_units, message", [
    ("elementwise", 1, "pattern table refers to child units that do not exist"),
    ("cartesian", 1, r"pattern table has shape (2, 2) but the node needs (4, 2)"),
])
def test_product_whose_child_lost_units_is_a_shape_violation(pattern, child_units, message):
    children = [pc.InputNode(v, pc.Bernoulli([0.3, 0.6])) for v in (0, 1)]
    product = pc.ProductNode(children, pattern)
    children[1].num_units = child_units
    children[1].family.p = np.array([0.3])
    violations = pc.Circuit(product).check().by_kind("shape")
    assert [v.node for v in violations] == [product]
    assert message in violations[0].message


@pytest.mark.parametrize("pattern", ["elementwise", "cartesian"])
def test_products_with_implied_tables_have_no_shape_violation(pattern):
    children = [pc.InputNode(v, pc.Bernoulli([0.3, 0.6])) for v in (0, 1)]
    assert not pc.Circuit(pc.ProductNode(children, pattern)).check().by_kind("shape")


@settings(max_examples=40)
@given(valid_circuits(), st.data())
def test_sums_checked_together_report_the_weights_each_check_alone_reports(circuit, data):
    """check() clears most sums in one vectorized pass; it must flag exactly the sums whose own
    check flags them, also for rows off by about the tolerance and for invalid values."""
    sums = [(i, node) for i, node in enumerate(circuit.nodes) if node.kind == "sum"]
    for _, node in sums:
        w = node.params.values
        row = data.draw(st.integers(0, w.shape[0] - 1))
        changes = ["none", "scale", "nan", "inf", "negative"] + (["negative, same sum"] if w.shape[1] > 1 else [])
        change = data.draw(st.sampled_from(changes))
        if change == "scale":
            w[row] *= 1 + data.draw(st.sampled_from([-2e-6, -1e-6, -1e-6 + 1e-15, 1e-6 - 1e-15, 1e-6, 1e-6 + 1e-15]))
        elif change == "negative, same sum":
            w[row, 1] += w[row, 0] + 0.25
            w[row, 0] = -0.25
        elif change != "none":
            w[row, 0] = {"nan": np.nan, "inf": np.inf, "negative": -1e-300}[change]
    atol = data.draw(st.sampled_from([1e-6, 0.0]))
    alone = {i for i, node in sums if validity._weight_violations(circuit, node, i, atol)}
    assert {v.node_index for v in circuit.check(atol=atol).by_kind("weights")} == alone
