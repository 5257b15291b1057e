"""The RAT-SPN builder: validity, region trees, sizes per region, class roots, seeds, leaves."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders.rat_spn import random_region_trees, rat_spn

FAST = settings(max_examples=30, deadline=None)


def repetition_structure(top):
    """Walk one repetition down from its top node: (leaf region nodes with their depths, sum nodes)."""
    leaves, sums = [], []
    stack = [(top, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, pc.SumNode):
            stack.extend((child, depth) for child in node.children)
            sums.append(node)
        elif isinstance(node, pc.ProductNode) and node.pattern == "cartesian":
            stack.extend((child, depth + 1) for child in node.children)
        else:
            leaves.append((node, depth))
    return leaves, sums


@FAST
@given(num_variables=st.integers(1, 20), depth=st.integers(0, 5), num_repetitions=st.integers(1, 3),
       num_sums=st.integers(1, 3), num_leaves=st.integers(1, 3), num_classes=st.integers(1, 3),
       leaf=st.sampled_from(["gaussian", "bernoulli", "binomial"]), seed=st.integers(0, 99))
def test_every_rat_spn_passes_check(num_variables, depth, num_repetitions, num_sums, num_leaves, num_classes, leaf,
                                    seed):
    circuit = rat_spn(num_variables, depth=depth, num_repetitions=num_repetitions, num_sums=num_sums,
                      num_leaves=num_leaves, num_classes=num_classes, leaf=leaf, seed=seed)
    report = circuit.check()
    assert report.ok, str(report)
    assert circuit.scope == pc.Scope(range(num_variables))


@FAST
@given(num_variables=st.integers(1, 40), depth=st.integers(0, 5), seed=st.integers(0, 99))
def test_each_repetitions_leaf_regions_partition_the_variables(num_variables, depth, seed):
    circuit = rat_spn(num_variables, depth=depth, num_repetitions=3, num_sums=2, num_leaves=2, seed=seed)
    for top in circuit.roots[0].children:
        leaves, _ = repetition_structure(top)
        ids = np.concatenate([node.scope.to_array() for node, _ in leaves])
        assert sorted(ids.tolist()) == list(range(num_variables))


@FAST
@given(depth=st.integers(0, 4), extra=st.integers(0, 9), seed=st.integers(0, 99))
def test_repetitions_have_2_to_the_depth_leaf_regions_all_at_depth(depth, extra, seed):
    num_variables = 2 ** depth + extra
    circuit = rat_spn(num_variables, depth=depth, num_repetitions=2, num_sums=2, num_leaves=2, seed=seed)
    for top in circuit.roots[0].children:
        leaves, _ = repetition_structure(top)
        assert len(leaves) == 2 ** depth
        assert {d for _, d in leaves} == {depth}


@FAST
@given(num_variables=st.integers(1, 12), depth=st.integers(0, 6), seed=st.integers(0, 99))
def test_region_trees_stop_at_single_variables(num_variables, depth, seed):
    for tree in random_region_trees(num_variables, depth=depth, num_repetitions=2, seed=seed):
        assert tree.depth == min(depth, math.ceil(math.log2(num_variables)))
        assert all(len(leaf.variables) >= 1 for leaf in tree.leaves())


def test_leaf_regions_split_variables_in_halves():
    for tree in random_region_trees(11, depth=2, num_repetitions=4, seed=5):
        assert sorted(len(child.variables) for child in tree.children) == [5, 6]
        sizes = sorted(len(leaf.variables) for leaf in tree.leaves())
        assert sizes == [2, 3, 3, 3]


def test_internal_regions_have_num_sums_units_and_roots_one():
    circuit = rat_spn(16, depth=3, num_repetitions=4, num_sums=5, num_leaves=3, num_classes=1)
    root = circuit.roots[0]
    assert root.num_units == 1 and len(root.children) == 4
    for top in root.children:
        _, sums = repetition_structure(top)
        assert len(sums) == 2 + 4  # regions at depths 1 and 2
        assert all(node.num_units == 5 for node in sums)
        assert top.num_units == 5 * 5


def test_leaf_regions_have_num_leaves_factorized_components():
    circuit = rat_spn(12, depth=2, num_repetitions=2, num_sums=2, num_leaves=7)
    for top in circuit.roots[0].children:
        leaves, _ = repetition_structure(top)
        for node, _ in leaves:
            assert node.num_units == 7
            assert isinstance(node, pc.ProductNode) and node.pattern == "elementwise"
            assert all(isinstance(child, pc.InputNode) for child in node.children)


def test_each_repetition_has_its_own_input_nodes():
    circuit = rat_spn(6, depth=1, num_repetitions=3, num_sums=2, num_leaves=2)
    assert len(circuit.input_nodes) == 3 * 6


def test_circuit_follows_the_region_trees_of_the_same_seed():
    trees = random_region_trees(20, depth=3, num_repetitions=3, seed=11)
    circuit = rat_spn(20, depth=3, num_repetitions=3, num_sums=2, num_leaves=2, seed=11)
    for tree, top in zip(trees, circuit.roots[0].children):
        leaves, _ = repetition_structure(top)
        built = sorted(tuple(node.scope) for node, _ in leaves)
        assert built == sorted(leaf.variables for leaf in tree.leaves())


def test_classification_variant_has_one_root_per_class_over_shared_children():
    circuit = rat_spn(8, depth=2, num_repetitions=3, num_sums=2, num_leaves=2, num_classes=4)
    assert circuit.num_roots == 4
    assert all(root.num_units == 1 and root.children == circuit.roots[0].children for root in circuit.roots)
    assert not np.array_equal(circuit.roots[0].weights, circuit.roots[1].weights)


def test_every_class_root_sums_to_one_over_all_binary_inputs():
    circuit = rat_spn(6, depth=2, num_repetitions=3, num_sums=2, num_leaves=2, num_classes=3, leaf="bernoulli")
    inputs = np.array(list(itertools.product([0, 1], repeat=6)), dtype=float)
    log_likelihood = np.asarray(circuit.compile(dtype="float64").log_likelihood(inputs)).reshape(len(inputs), -1)
    np.testing.assert_allclose(np.exp(log_likelihood).sum(axis=0), np.ones(3), atol=1e-9)


def test_rat_spn_same_seed_gives_the_same_circuit():
    first = rat_spn(10, depth=2, num_repetitions=2, num_sums=3, num_leaves=2, seed=4)
    second = rat_spn(10, depth=2, num_repetitions=2, num_sums=3, num_leaves=2, seed=4)
    assert [n.scope for n in first.nodes] == [n.scope for n in second.nodes]
    for a, b in zip(first.sum_nodes, second.sum_nodes):
        np.testing.assert_array_equal(a.weights, b.weights)
    for a, b in zip(first.input_nodes, second.input_nodes):
        np.testing.assert_array_equal(a.family.mean, b.family.mean)


def test_rat_spn_different_seeds_give_different_trees():
    first = random_region_trees(30, depth=2, num_repetitions=1, seed=0)[0]
    second = random_region_trees(30, depth=2, num_repetitions=1, seed=1)[0]
    assert [leaf.variables for leaf in first.leaves()] != [leaf.variables for leaf in second.leaves()]


def test_rat_spn_structure_does_not_depend_on_the_leaf_family():
    gaussian = rat_spn(12, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, leaf="gaussian", seed=3)
    categorical = rat_spn(12, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, leaf="categorical",
                          leaf_params={"num_categories": 4}, seed=3)
    assert [n.scope for n in gaussian.nodes] == [n.scope for n in categorical.nodes]


@pytest.mark.parametrize("leaf, leaf_params, name", [
    ("gaussian", None, "gaussian"),
    ("bernoulli", None, "bernoulli"),
    ("categorical", {"num_categories": 3}, "categorical"),
    ("binomial", {"n": 255}, "binomial"),
    ("indicator", {"num_categories": 2}, "indicator"),
])
def test_rat_spn_leaf_family_is_selectable(leaf, leaf_params, name):
    circuit = rat_spn(5, depth=1, num_repetitions=2, num_sums=2, num_leaves=4, leaf=leaf, leaf_params=leaf_params)
    assert {node.family.name for node in circuit.input_nodes} == {name}
    assert circuit.check().ok


def test_rat_spn_takes_image_variables():
    variables = pc.Variables.image(4, 4)
    circuit = rat_spn(16, depth=2, num_repetitions=1, variables=variables)
    assert circuit.variables is variables


@pytest.mark.parametrize("kwargs, error", [
    (dict(depth=-1), ValueError),
    (dict(num_repetitions=0), ValueError),
    (dict(num_sums=0), ValueError),
    (dict(num_leaves=2.0), ValueError),
    (dict(num_classes=0), ValueError),
    (dict(leaf="student"), ValueError),
    (dict(variables=pc.Variables(5)), ValueError),
    (dict(variables=5), TypeError),
])
def test_rat_spn_rejects_bad_arguments_with_a_clear_error(kwargs, error):
    with pytest.raises(error, match="rat_spn"):
        rat_spn(6, **kwargs)


def test_rat_spn_mnist_size_builds_quickly():
    circuit = rat_spn(784, depth=5, num_repetitions=10, num_sums=10, num_leaves=10, num_classes=10)
    assert circuit.num_roots == 10 and len(circuit.input_nodes) == 7840
