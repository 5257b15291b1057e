"""Nodes and leaf families: construction errors, unit tables, cached scopes, operators."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.distributions import family_from_parameters
from pcircuits.nodes import WeightedSum


def bernoulli(var, units=1, seed=0):
    return pc.InputNode(var, pc.Bernoulli.random(units, rng=seed))


# ---- every construction error path ------------------------------------------------------------
NODE_ERRORS = [
    ("product child not a node", lambda: pc.ProductNode([bernoulli(0), "x"]), TypeError, "children must be nodes, got str"),
    ("children not a sequence", lambda: pc.ProductNode(5), TypeError, "children must be a sequence of nodes, got int"),
    ("no children", lambda: pc.SumNode([]), ValueError, "SumNode: needs at least one child"),
    ("family not a family", lambda: pc.InputNode(0, [0.5]), TypeError, "family must be a leaf family"),
    ("no variables", lambda: pc.InputNode([], pc.Bernoulli([0.5])), ValueError, "needs at least one variable"),
    ("too many variables", lambda: pc.InputNode([0, 1], pc.Bernoulli([0.5])), ValueError,
     r"Bernoulli family is over 1 variable\(s\) per unit, but 2 variables were given"),
    ("unknown pattern", lambda: pc.ProductNode([bernoulli(0)], "outer"), ValueError,
     "pattern must be 'elementwise', 'cartesian' or an int table, got 'outer'"),
    ("float table", lambda: pc.ProductNode([bernoulli(0)], np.zeros((1, 1))), TypeError,
     "a pattern table must hold ints, got dtype float64"),
    ("elementwise sizes", lambda: pc.ProductNode([bernoulli(0, 2), bernoulli(1, 3)]), ValueError,
     r"elementwise products need children of equal size, got sizes \[2, 3\]"),
    ("table shape", lambda: pc.ProductNode([bernoulli(0), bernoulli(1)], np.zeros((2, 3), dtype=int)), ValueError,
     r"pattern table must have shape \(num_units, 2\), got \(2, 3\)"),
    ("table range", lambda: pc.ProductNode([bernoulli(0, 2), bernoulli(1, 2)], np.array([[0, 2]])), ValueError,
     r"pattern table column 1 refers to units outside 0..1 of child 1"),
    ("weights not numeric", lambda: pc.SumWeights([["a", "b"]]), TypeError, "weights must be numeric"),
    ("weights 1-D", lambda: pc.SumWeights([0.5, 0.5]), ValueError,
     r"weights must have shape \(num_units, num_inputs\), got \(2,\)"),
    ("weights nan", lambda: pc.SumWeights([[np.nan, 1.0]]), ValueError, "weights must be finite"),
    ("weights negative", lambda: pc.SumWeights([[-0.5, 1.5]]), ValueError, "weights must be non-negative, got minimum -0.5"),
    ("mask not bool", lambda: pc.SumWeights([[0.5, 0.5]], mask=[[1, 1]]), TypeError, "mask must be boolean"),
    ("mask shape", lambda: pc.SumWeights([[0.5, 0.5]], mask=[[True]]), ValueError,
     r"mask has shape \(1, 1\) but weights have shape \(1, 2\)"),
    ("mask empty row", lambda: pc.SumWeights([[0.0, 0.0]], mask=[[False, False]]), ValueError,
     "mask row 0 connects the unit to no input"),
    ("weights off mask", lambda: pc.SumWeights([[0.5, 0.5]], mask=[[True, False]]), ValueError,
     "weights outside the mask must be 0"),
    ("num_units zero", lambda: pc.SumNode([bernoulli(0)], num_units=0), ValueError,
     "num_units must be a positive int, got 0"),
    ("num_units bool", lambda: pc.SumNode([bernoulli(0)], num_units=True), ValueError, "num_units must be a positive int"),
    ("sum mask shape", lambda: pc.SumNode([bernoulli(0, 2)], num_units=1, mask=[[True]]), ValueError,
     r"mask has shape \(1, 1\) but the node has 1 units and its children 2 units in total"),
    ("mask beside shared weights", lambda: pc.SumNode([bernoulli(0)], weights=pc.SumWeights([[1.0]]), mask=[[True]]),
     ValueError, "give the mask inside SumWeights when sharing weights"),
    ("num_units vs weights", lambda: pc.SumNode([bernoulli(0)], num_units=3, weights=[[1.0], [1.0]]), ValueError,
     "num_units=3 but the weights have 2 rows"),
    ("weights vs children", lambda: pc.SumNode([bernoulli(0, 2)], weights=[[0.2, 0.3, 0.5]]), ValueError,
     r"weights have shape \(1, 3\) but the children have 2 units in total"),
    ("mixture weight count", lambda: pc.mixture([bernoulli(0, 2)], [1.0]), ValueError,
     r"give one weight per input unit: the children have sizes \[2\] \(2 units\)"),
    ("weighted sum plus bare node", lambda: (0.5 * bernoulli(0)) + bernoulli(1), TypeError,
     "a node in a weighted sum needs a weight"),
]

FAMILY_ERRORS = [
    ("unknown family", lambda: family_from_parameters("poisson", {}, {}), ValueError, "unknown leaf family 'poisson'"),
    ("not numeric", lambda: pc.Bernoulli(["a"]), TypeError, "Bernoulli: p must be numeric"),
    ("wrong rank", lambda: pc.Bernoulli([[0.5]]), ValueError, r"Bernoulli: p must have 1 dimension\(s\), got shape \(1, 1\)"),
    ("no units", lambda: pc.Bernoulli([]), ValueError, r"Bernoulli: p needs at least one unit, got shape \(0,\)"),
    ("not finite", lambda: pc.Gaussian([np.inf]), ValueError, "Gaussian: mean must be finite"),
    ("p out of range", lambda: pc.Bernoulli([1.2]), ValueError, r"Bernoulli: p must lie in \[0, 1\], got values from 1.2"),
    ("indicator not integer", lambda: pc.Indicator([0.5]), ValueError, "Indicator: values must be non-negative integers"),
    ("indicator negative", lambda: pc.Indicator([-1]), ValueError, "Indicator: values must be non-negative integers"),
    ("indicator categories", lambda: pc.Indicator([3], num_categories=2), ValueError,
     "Indicator: num_categories=2 is smaller than the largest value"),
    ("categorical no categories", lambda: pc.Categorical(np.zeros((2, 0))), ValueError,
     "Categorical: probs needs at least one category"),
    ("categorical negative", lambda: pc.Categorical([[1.5, -0.5]]), ValueError, "Categorical: probs must be non-negative"),
    ("categorical rows", lambda: pc.Categorical([[0.5, 0.5], [0.2, 0.2]]), ValueError,
     "Categorical: each row of probs must sum to 1; row 1 sums to 0.4"),
    ("binomial n", lambda: pc.Binomial(0, [0.5]), ValueError, "Binomial: n must be a positive int, got 0"),
    ("binomial n bool", lambda: pc.Binomial(True, [0.5]), ValueError, "Binomial: n must be a positive int"),
    ("binomial p", lambda: pc.Binomial(3, [-0.1]), ValueError, r"Binomial: p must lie in \[0, 1\]"),
    ("gaussian std shape", lambda: pc.Gaussian([0.0, 1.0], [1.0, 1.0, 1.0]), ValueError,
     r"Gaussian: std of shape \(3,\) does not fit mean of shape \(2,\)"),
    ("gaussian std sign", lambda: pc.Gaussian([0.0], [0.0]), ValueError, "Gaussian: std must be positive"),
]


@pytest.mark.parametrize("call, error, message", [case[1:] for case in NODE_ERRORS],
                         ids=[case[0] for case in NODE_ERRORS])
def test_node_construction_errors_say_what_is_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("call, error, message", [case[1:] for case in FAMILY_ERRORS],
                         ids=[case[0] for case in FAMILY_ERRORS])
def test_family_construction_errors_say_what_is_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_rewiring_a_product_to_a_different_size_is_refused():
    node = pc.ProductNode([bernoulli(0, 2), bernoulli(1, 2)])
    with pytest.raises(ValueError, match="the new children give 3 units, the node has 2"):
        node.rewire([bernoulli(0, 3), bernoulli(1, 3)])


def test_rewiring_a_sum_to_a_different_size_is_refused():
    node = pc.SumNode([bernoulli(0, 2)], num_units=1, rng=0)
    with pytest.raises(ValueError, match=r"weights have shape \(1, 2\) but the children have 3 units in total"):
        node.rewire([bernoulli(0, 3)])


def test_input_nodes_cannot_be_rewired():
    with pytest.raises(TypeError, match="InputNode has no children"):
        bernoulli(0).rewire([bernoulli(1)])


def test_invalid_structure_is_allowed_at_construction():
    leaf = bernoulli(0)
    product = pc.ProductNode([leaf, leaf])
    mixed = pc.SumNode([bernoulli(0), bernoulli(1)], rng=0)
    assert product.scope == {0} and mixed.scope == {0, 1}


# ---- unit tables ------------------------------------------------------------------------------
def test_elementwise_product_pairs_equal_units():
    node = pc.ProductNode([bernoulli(0, 3), bernoulli(1, 3)], "elementwise")
    assert node.num_units == 3
    assert node.table.tolist() == [[0, 0], [1, 1], [2, 2]]


def test_cartesian_product_lists_all_combinations_first_child_slowest():
    node = pc.ProductNode([bernoulli(0, 2), bernoulli(1, 3)], "cartesian")
    assert node.num_units == 6
    assert node.table.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_cartesian_table_has_every_combination_once(sizes):
    node = pc.ProductNode([bernoulli(i, s) for i, s in enumerate(sizes)], "cartesian")
    rows = {tuple(r) for r in node.table.tolist()}
    assert node.num_units == int(np.prod(sizes)) == len(rows)
    assert node.num_edges == node.num_units * len(sizes)


def test_explicit_table_is_kept():
    table = np.array([[0, 1], [1, 0], [1, 1]])
    node = pc.ProductNode([bernoulli(0, 2), bernoulli(1, 2)], table)
    assert node.pattern == "table" and node.num_units == 3
    assert node.table.tolist() == table.tolist() and node.table.dtype == np.int64


# ---- scopes -----------------------------------------------------------------------------------
def test_scope_is_the_union_of_the_leaves_below():
    node = pc.SumNode([pc.ProductNode([bernoulli(0), bernoulli(3)])], rng=0)
    assert node.scope == {0, 3}


def test_scope_is_cached():
    node = pc.ProductNode([bernoulli(0), bernoulli(1)])
    assert node.scope is node.scope


def test_scopes_are_recomputed_after_rewire():
    a, b = bernoulli(0), bernoulli(1)
    inner = pc.ProductNode([a, b])
    root = pc.SumNode([inner], rng=0)
    assert root.scope == {0, 1}
    inner.rewire([a, bernoulli(5)])
    assert inner.scope == {0, 5}
    assert root.scope == {0, 5}


def test_input_node_scope_is_its_variables():
    node = pc.InputNode(pc.Scope([2, 4]), pc.Gaussian.random(3, num_variables=2, rng=0))
    assert node.scope == {2, 4} and node.variables == (2, 4) and node.num_units == 3


# ---- sums and weights -------------------------------------------------------------------------
@given(st.integers(1, 5), st.integers(1, 6), st.integers(0, 1000))
def test_random_sum_weights_are_normalized(units, inputs, seed):
    node = pc.SumNode([bernoulli(0, inputs)], num_units=units, rng=seed)
    assert node.weights.shape == (units, inputs)
    assert np.allclose(node.weights.sum(axis=1), 1.0) and np.all(node.weights > 0)


def test_random_weights_are_reproducible_with_a_seed():
    a = pc.SumNode([bernoulli(0, 4)], num_units=2, rng=7).weights
    b = pc.SumNode([bernoulli(0, 4)], num_units=2, rng=7).weights
    assert np.array_equal(a, b)


def test_masked_random_weights_are_zero_off_the_mask():
    mask = np.array([[True, False, True], [False, True, False]])
    node = pc.SumNode([bernoulli(0, 3)], mask=mask, rng=0)
    assert node.num_units == 2 and np.all(node.weights[~mask] == 0)
    assert np.allclose(node.weights.sum(axis=1), 1.0)
    assert node.num_edges == node.params.num_params == 3


def test_a_full_mask_is_dropped():
    assert pc.SumWeights([[0.5, 0.5]], mask=[[True, True]]).mask is None


def test_shared_sum_weights_are_one_object():
    weights = pc.SumWeights([[0.3, 0.7]])
    a = pc.SumNode([bernoulli(0, 2)], weights=weights)
    b = pc.SumNode([bernoulli(1, 2)], weights=weights)
    assert a.params is b.params
    a.weights = [[0.6, 0.4]]
    assert b.weights.tolist() == [[0.6, 0.4]]


# ---- leaf families ----------------------------------------------------------------------------
@pytest.mark.parametrize("make, units, num_params", [
    (lambda: pc.Bernoulli.random(4, rng=0), 4, 4),
    (lambda: pc.Categorical.random(4, 3, rng=0), 4, 12),
    (lambda: pc.Gaussian.random(4, rng=0), 4, 8),
    (lambda: pc.Gaussian.random(4, num_variables=2, rng=0), 4, 16),
    (lambda: pc.Binomial.random(4, n=5, rng=0), 4, 4),
    (lambda: pc.Indicator.random(4, 3, rng=0), 4, 0),
])
def test_every_family_has_random_constructor(make, units, num_params):
    family = make()
    assert family.num_units == units and family.num_params == num_params
    assert family.value_problems() == [] and family.shape_problems() == []


def test_indicator_all_values_has_one_unit_per_value():
    family = pc.Indicator.all_values(3)
    assert family.value.tolist() == [0, 1, 2] and family.num_categories == 3


def test_family_copy_is_deep_and_equal():
    family = pc.Binomial(4, [0.2, 0.7])
    copy = family.copy()
    assert copy is not family and copy.n == 4 and np.array_equal(copy.p, family.p)
    copy.p[0] = 0.9
    assert family.p[0] == 0.2


def test_multivariate_gaussian_is_over_several_variables():
    assert pc.Gaussian(np.zeros((2, 3)), 1.0).num_variables == 3


# ---- operators --------------------------------------------------------------------------------
def test_weighted_sum_operators_make_a_mixture():
    a, b = bernoulli(0), bernoulli(0, seed=1)
    node = pc.Circuit(0.3 * a + 0.7 * b).roots[0]
    assert isinstance(node, pc.SumNode)
    assert node.children == (a, b) and node.weights.tolist() == [[0.3, 0.7]]


def test_weight_may_be_written_on_either_side():
    a, b = bernoulli(0), bernoulli(0, seed=1)
    assert (a * 0.25 + b * 0.75).node.weights.tolist() == [[0.25, 0.75]]


def test_a_weighted_sum_expression_is_one_node():
    expression = 0.5 * bernoulli(0) + 0.5 * bernoulli(0, seed=1)
    assert expression.node is expression.node


def test_product_operator_multiplies_nodes():
    a, b = bernoulli(0), bernoulli(1)
    node = a * b
    assert isinstance(node, pc.ProductNode) and node.children == (a, b) and node.scope == {0, 1}


def test_weighted_sum_times_node_is_a_product():
    mix = 0.5 * bernoulli(0) + 0.5 * bernoulli(0, seed=1)
    c = bernoulli(1)
    assert isinstance(mix * c, pc.ProductNode) and (mix * c).children == (mix.node, c)


def test_product_function_accepts_nodes_or_a_list():
    a, b, c = bernoulli(0), bernoulli(1), bernoulli(2)
    assert pc.product(a, b, c).children == (a, b, c)
    assert pc.product([a, b], label="ab").label == "ab"


def test_mixture_takes_one_weight_per_input_unit():
    node = pc.mixture([bernoulli(0, 2), bernoulli(0, 1)], [0.2, 0.3, 0.5], label="m")
    assert node.num_units == 1 and node.weights.tolist() == [[0.2, 0.3, 0.5]] and node.label == "m"


def test_multiplying_by_a_string_is_unsupported():
    with pytest.raises(TypeError):
        bernoulli(0) * "a"


def test_weighted_sum_accepts_weighted_sums():
    total = (0.2 * bernoulli(0)) + (0.3 * bernoulli(0) + 0.5 * bernoulli(0))
    assert isinstance(total, WeightedSum) and len(total.terms) == 3


def test_describe_names_kind_label_and_units():
    node = pc.InputNode(0, pc.Bernoulli([0.5, 0.5]), label="pixel")
    assert node.describe() == "InputNode[bernoulli] 'pixel' (2 units)"
