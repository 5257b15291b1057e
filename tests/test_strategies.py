"""The test strategies and the brute-force oracle themselves (later tests rely on both)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders import figure1_spn
from strategies import (DISCRETE_FAMILIES, brute_force_log_likelihood, enumerate_assignments, leaf_log_values,
                        selective_circuits, valid_circuits)


# ---- the oracle on Figure 1, against numbers worked out by hand ---------------------------------
# Leaf mixtures give P(X1=1) = 0.9 / 0.2, P(X2=1) = 0.3 / 0.6, P(X3=1) = 0.7 / 0.4, P(X4=1) = 0.1 / 0.8
# in the two components; S12 = 0.4 L0 + 0.6 L1, S34 = 0.5 R0 + 0.5 R1,
# root = 0.7 S12 * S34 + 0.3 L0 * R1.
def test_oracle_on_figure1_complete_assignment():
    # x = (1, 0, 1, 1): L0 = 0.9*0.7, L1 = 0.2*0.4, R0 = 0.7*0.1, R1 = 0.4*0.8
    left0, left1, right0, right1 = 0.63, 0.08, 0.07, 0.32
    expected = 0.7 * (0.4 * left0 + 0.6 * left1) * (0.5 * right0 + 0.5 * right1) + 0.3 * left0 * right1
    assert expected == pytest.approx(0.10143)
    value = brute_force_log_likelihood(figure1_spn(), [[1, 0, 1, 1]])
    assert value.shape == (1, 1)
    assert np.exp(value[0, 0]) == pytest.approx(expected, rel=1e-12)


def test_oracle_on_figure1_marginal():
    # only X1 = 1 observed: L0 = 0.9, L1 = 0.2, right factors are 1
    expected = 0.7 * (0.4 * 0.9 + 0.6 * 0.2) + 0.3 * 0.9
    value = brute_force_log_likelihood(figure1_spn(), [[1, np.nan, np.nan, np.nan]])
    assert np.exp(value[0, 0]) == pytest.approx(expected, rel=1e-12) == pytest.approx(0.606)


def test_oracle_on_figure1_sums_to_one():
    circuit = figure1_spn()
    x = enumerate_assignments(circuit)
    assert x.shape == (16, 4)
    assert np.exp(brute_force_log_likelihood(circuit, x)).sum() == pytest.approx(1.0, abs=1e-12)


def test_oracle_everything_missing_gives_log_one():
    assert brute_force_log_likelihood(figure1_spn(), np.full((2, 4), np.nan)) == pytest.approx(0.0, abs=1e-12)


# ---- leaf oracle against closed forms ---------------------------------------------------------
def test_leaf_oracle_matches_closed_forms():
    x = np.array([[0.0], [1.0], [2.0], [np.nan]])
    cases = [
        (pc.Bernoulli([0.3]), [0.7, 0.3, 0.0, 1.0]),
        (pc.Categorical([[0.2, 0.3, 0.5]]), [0.2, 0.3, 0.5, 1.0]),
        (pc.Indicator([2], num_categories=3), [0.0, 0.0, 1.0, 1.0]),
        (pc.Binomial(2, [0.4]), [0.36, 0.48, 0.16, 1.0]),
    ]
    for family, expected in cases:
        got = np.exp(leaf_log_values(pc.InputNode(0, family), x))[:, 0]
        assert got == pytest.approx(expected, abs=1e-12), family.name


def test_leaf_oracle_gaussian_marginalizes_missing_dimensions():
    node = pc.InputNode([0, 1], pc.Gaussian([[0.0, 1.0]], [[1.0, 2.0]]))
    x = np.array([[0.5, np.nan], [0.5, 2.0]])
    one = -0.5 * 0.25 - 0.5 * math.log(2 * math.pi)
    two = -0.5 * 0.25 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
    assert leaf_log_values(node, x)[:, 0] == pytest.approx([one, one + two])


def test_oracle_refuses_wrong_widths():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        brute_force_log_likelihood(figure1_spn(), np.zeros((2, 3)))


def test_enumeration_refuses_continuous_circuits():
    circuit = pc.Circuit(pc.InputNode(0, pc.Gaussian([0.0])))
    with pytest.raises(ValueError, match="continuous"):
        enumerate_assignments(circuit)


# ---- valid circuits -----------------------------------------------------------------------------
@given(valid_circuits(families=DISCRETE_FAMILIES, multiple_roots=True))
def test_valid_circuits_are_normalized(circuit):
    x = enumerate_assignments(circuit)
    totals = np.exp(brute_force_log_likelihood(circuit, x)).sum(axis=0)
    assert totals == pytest.approx(np.ones(circuit.num_roots), abs=1e-9)


@given(valid_circuits(families=DISCRETE_FAMILIES))
def test_marginalizing_a_variable_sums_it_out(circuit):
    x = enumerate_assignments(circuit)
    joint = np.exp(brute_force_log_likelihood(circuit, x))[:, 0]
    marginal_x = x.copy()
    marginal_x[:, 0] = np.nan
    marginal = np.exp(brute_force_log_likelihood(circuit, marginal_x))[:, 0]
    for value in np.unique(x[:, 1:], axis=0):
        rows = np.all(x[:, 1:] == value, axis=1)
        assert joint[rows].sum() == pytest.approx(marginal[rows][0], abs=1e-9)


@given(st.booleans().flatmap(lambda many: valid_circuits(max_variables=5, multiple_roots=many)))
def test_valid_circuits_cover_all_variables_with_one_unit_roots(circuit):
    assert circuit.scope == pc.Scope.range(0, circuit.num_variables)
    assert all(r.num_units == 1 and r.scope == circuit.scope for r in circuit.roots)
    assert len({id(r) for r in circuit.roots}) == circuit.num_roots


@pytest.mark.parametrize("feature", ["elementwise", "cartesian", "table", "masked sum", "multi-unit input",
                                     "tied weights", "tied family", "multivariate gaussian", "shared node"])
def test_valid_circuits_include_every_feature(feature):
    def has(circuit):
        nodes = circuit.nodes
        params = [p for n in nodes for p in n.parameter_objects()]
        parents = [c for n in nodes for c in n.children]
        return {
            "elementwise": any(n.kind == "product" and n.pattern == "elementwise" and len(n.children) > 1
                               for n in nodes),
            "cartesian": any(n.kind == "product" and n.pattern == "cartesian" for n in nodes),
            "table": any(n.kind == "product" and n.pattern == "table" for n in nodes),
            "masked sum": any(n.kind == "sum" and n.mask is not None for n in nodes),
            "multi-unit input": any(n.kind == "input" and n.num_units > 1 for n in nodes),
            "tied weights": len({id(p) for p in params if isinstance(p, pc.SumWeights)})
            < sum(isinstance(p, pc.SumWeights) for p in params),
            "tied family": len({id(p) for p in params if isinstance(p, pc.LeafFamily)})
            < sum(isinstance(p, pc.LeafFamily) for p in params),
            "multivariate gaussian": any(n.kind == "input" and len(n.variables) > 1 for n in nodes),
            "shared node": len({id(c) for c in parents}) < len(parents),
        }[feature]

    found = []

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(valid_circuits(families=("gaussian",) if feature == "multivariate gaussian" else
                          ("bernoulli", "categorical", "indicator", "binomial", "gaussian")))
    def search(circuit):
        if not found and has(circuit):
            found.append(circuit)

    search()
    assert found, f"no generated circuit had a {feature}"


# ---- selective circuits -------------------------------------------------------------------------
@given(selective_circuits(multiple_roots=True))
def test_selective_circuits_are_normalized(circuit):
    x = enumerate_assignments(circuit)
    assert np.exp(brute_force_log_likelihood(circuit, x)).sum(axis=0) == pytest.approx(1.0, abs=1e-9)


@given(selective_circuits())
def test_selective_sums_have_at_most_one_active_input(circuit):
    x = enumerate_assignments(circuit)
    values = {}
    for node in circuit.nodes:
        sub = pc.Circuit(node, variables=circuit.variables)
        values[id(node)] = brute_force_log_likelihood(sub, x)
    for node in circuit.sum_nodes:
        inputs = np.concatenate([values[id(c)] for c in node.children], axis=1)
        active = np.isfinite(inputs) & (node.weights[0][None, :] > 0)
        assert active.sum(axis=1).max() <= 1
