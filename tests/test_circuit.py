"""Circuit: traversal order, deep circuits, statistics, copies, several roots."""
import numpy as np
import pytest
from hypothesis import given

import pcircuits as pc
from pcircuits.builders import figure1_spn
from strategies import (ALL_FAMILIES, DISCRETE_FAMILIES, LEARNABLE_FAMILIES, brute_force_log_likelihood,
                        enumerate_assignments, valid_circuits)


def small_circuit():
    """Two 2-unit Bernoulli leaves, their elementwise product, a 1-unit sum."""
    a = pc.InputNode(0, pc.Bernoulli([0.9, 0.2]))
    b = pc.InputNode(1, pc.Bernoulli([0.3, 0.6]))
    product = pc.ProductNode([a, b])
    root = pc.SumNode([product], weights=[[0.4, 0.6]])
    return pc.Circuit(root), (a, b, product, root)


@given(valid_circuits(multiple_roots=True))
def test_nodes_come_children_first(circuit):
    position = {id(n): i for i, n in enumerate(circuit.nodes)}
    assert len(position) == len(circuit.nodes)
    for node in circuit.nodes:
        assert all(position[id(c)] < position[id(node)] for c in node.children)


@given(valid_circuits(multiple_roots=True))
def test_every_reachable_node_is_listed_once(circuit):
    reachable, stack = set(), list(circuit.roots)
    while stack:
        node = stack.pop()
        if id(node) not in reachable:
            reachable.add(id(node))
            stack.extend(node.children)
    assert {id(n) for n in circuit.nodes} == reachable


def test_statistics_of_a_hand_made_circuit():
    circuit, _ = small_circuit()
    assert circuit.num_nodes == 4
    assert circuit.num_units == 2 + 2 + 2 + 1
    assert circuit.num_edges == 2 * 2 + 2
    assert circuit.num_params == 2 + 2 + 2
    assert circuit.depth == 2
    assert circuit.scope == {0, 1} and circuit.num_variables == 2
    assert circuit.statistics() == {"nodes": 4, "units": 7, "edges": 6, "params": 6, "depth": 2,
                                    "variables": 2, "roots": 1}


def test_tied_parameters_are_counted_once():
    family = pc.Bernoulli([0.1, 0.5, 0.9])
    weights = pc.SumWeights([[0.2, 0.3, 0.5]])
    sums = [pc.SumNode([pc.InputNode(v, family)], weights=weights) for v in range(2)]
    circuit = pc.Circuit(pc.ProductNode(sums))
    assert circuit.num_params == 3 + 3


def test_masked_and_cartesian_statistics():
    a = pc.InputNode(0, pc.Bernoulli.random(2, rng=0))
    b = pc.InputNode(1, pc.Bernoulli.random(3, rng=1))
    product = pc.ProductNode([a, b], "cartesian")
    mask = np.zeros((2, 6), dtype=bool)
    mask[0, :3] = mask[1, 3:] = True
    root = pc.SumNode([product], mask=mask, rng=0)
    circuit = pc.Circuit(root)
    assert product.num_units == 6
    assert circuit.num_edges == 6 * 2 + 6
    assert circuit.num_params == 2 + 3 + 6


def test_figure1_statistics():
    circuit = figure1_spn()
    assert circuit.num_nodes == 25 and circuit.num_units == 25 and circuit.depth == 5
    assert circuit.variables.names() == ["X1", "X2", "X3", "X4"]


def test_node_kind_lists():
    circuit, (a, b, product, root) = small_circuit()
    assert circuit.input_nodes == [a, b] and circuit.product_nodes == [product] and circuit.sum_nodes == [root]


def test_index_and_membership():
    circuit, (a, _, _, root) = small_circuit()
    assert circuit.index(root) == circuit.num_nodes - 1 and a in circuit
    stranger = pc.InputNode(0, pc.Bernoulli([0.5]))
    assert stranger not in circuit
    with pytest.raises(KeyError, match="is not in this circuit"):
        circuit.index(stranger)


def test_deep_chain_has_no_recursion_error():
    weights = pc.SumWeights([[1.0]])
    node = pc.InputNode(0, pc.Bernoulli([0.5]))
    for _ in range(50_000):
        node = pc.SumNode([node], weights=weights)
    circuit = pc.Circuit(node)
    assert circuit.num_nodes == 50_001 and circuit.depth == 50_000
    assert node.scope == {0}
    assert circuit.check().ok
    assert circuit.copy().num_nodes == 50_001


def test_copy_is_deep():
    circuit, (a, _, _, root) = small_circuit()
    copy = circuit.copy()
    originals = {id(n) for n in circuit.nodes} | {id(p) for n in circuit.nodes for p in n.parameter_objects()}
    copies = {id(n) for n in copy.nodes} | {id(p) for n in copy.nodes for p in n.parameter_objects()}
    assert not originals & copies
    copy.roots[0].weights[0, 0] = 0.9
    copy.input_nodes[0].family.p[0] = 0.1
    assert root.weights[0, 0] == 0.4 and a.family.p[0] == 0.9


@given(valid_circuits(families=tuple(f for f in DISCRETE_FAMILIES if f in LEARNABLE_FAMILIES)))
def test_copy_computes_the_same_function(circuit):
    x = enumerate_assignments(circuit)
    assert np.array_equal(brute_force_log_likelihood(circuit, x), brute_force_log_likelihood(circuit.copy(), x))


@given(valid_circuits(families=ALL_FAMILIES, multiple_roots=True))
def test_copy_keeps_the_tying_pattern(circuit):
    def tying(c):
        first = {}
        return [first.setdefault(id(p), len(first)) for n in c.nodes for p in n.parameter_objects()]
    copy = circuit.copy()
    assert tying(copy) == tying(circuit)
    assert copy.statistics() == circuit.statistics()
    assert [n.kind for n in copy.nodes] == [n.kind for n in circuit.nodes]


def test_copy_of_a_cyclic_circuit_is_refused():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5]))
    inner = pc.SumNode([leaf], weights=[[1.0]])
    outer = pc.SumNode([inner], weights=[[1.0]])
    inner.rewire([outer])
    with pytest.raises(ValueError, match="has a cycle"):
        pc.Circuit(outer).copy()


def test_several_roots_share_nodes():
    a = pc.InputNode(0, pc.Bernoulli([0.9, 0.2]))
    b = pc.InputNode(1, pc.Bernoulli([0.3, 0.6]))
    product = pc.ProductNode([a, b])
    roots = [pc.SumNode([product], weights=[[0.4, 0.6]]), pc.SumNode([product], weights=[[0.9, 0.1]])]
    circuit = pc.Circuit(roots)
    assert circuit.num_roots == 2 and circuit.num_nodes == 5
    assert circuit.roots == roots and circuit.scope == {0, 1}
    assert "2 roots" in repr(circuit)


def test_roots_with_different_scopes_give_the_union():
    circuit = pc.Circuit([pc.InputNode(0, pc.Bernoulli([0.5])), pc.InputNode(3, pc.Bernoulli([0.5]))])
    assert circuit.scope == {0, 3} and circuit.num_variables == 4 and circuit.depth == 0


@pytest.mark.parametrize("call, error, message", [
    (lambda: pc.Circuit([]), ValueError, "needs at least one root"),
    (lambda: pc.Circuit(["root"]), TypeError, "roots must be nodes, got str"),
    (lambda: pc.Circuit(pc.InputNode(0, pc.Bernoulli([0.5])), variables=3), TypeError,
     "variables must be a pcircuits.Variables"),
    (lambda: pc.Circuit(pc.InputNode(5, pc.Bernoulli([0.5])), variables=pc.Variables(3)), ValueError,
     "uses variable 5 but only 3 variables are declared"),
])
def test_bad_circuit_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_iteration_and_len_follow_nodes():
    circuit, nodes = small_circuit()
    assert list(circuit) == list(nodes) and len(circuit) == 4
