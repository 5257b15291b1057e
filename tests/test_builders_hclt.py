"""The HCLT builder: mutual information, the Chow-Liu tree, the hidden-tree circuit, sizes, seeds, errors."""
import itertools
import math
import time

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders.hclt import bin_codes, chow_liu_tree, hclt, learn_chow_liu_tree, mutual_information
from strategies import assert_circuits_equal, enumerate_assignments

FAST = settings(max_examples=25, deadline=None)

#: PyJuice's HCLT on 784 variables, 256 categories, K = 128 (../shared/bench/README.md).
PYJUICE_HCLT784_EDGES = 7_646_464


# ---- helpers ----------------------------------------------------------------------------
def tree_edges(parents):
    return {frozenset((v, int(p))) for v, p in enumerate(parents) if p >= 0}


def children_of(parents):
    children = [[] for _ in parents]
    for v, p in enumerate(parents):
        if p >= 0:
            children[p].append(v)
    return children


def subtree(parents, v):
    children = children_of(parents)
    found, stack = set(), [v]
    while stack:
        u = stack.pop()
        found.add(u)
        stack.extend(children[u])
    return frozenset(found)


def tree_height(parents):
    depth = {}

    def depth_of(v):
        if v not in depth:
            depth[v] = 0 if parents[v] < 0 else 1 + depth_of(int(parents[v]))
        return depth[v]

    return max(depth_of(v) for v in range(len(parents)))


def brute_force_mutual_information(codes, i, j):
    """Plug-in mutual information of columns i and j, one pair at a time."""
    n = len(codes)
    joint = {}
    for a, b in zip(codes[:, i].tolist(), codes[:, j].tolist()):
        joint[a, b] = joint.get((a, b), 0) + 1
    left = {a: np.sum(codes[:, i] == a) for a, _ in joint}
    right = {b: np.sum(codes[:, j] == b) for _, b in joint}
    return sum(c / n * math.log(c * n / (left[a] * right[b])) for (a, b), c in joint.items())


def sample_tree_distribution(parents, num_rows, num_values, stay, seed):
    """Rows from a tree-structured distribution: a child copies its parent with probability ``stay``."""
    rng = np.random.default_rng(seed)
    order = [int(np.flatnonzero(parents < 0)[0])]
    children = children_of(parents)
    for v in order:
        order.extend(children[v])
    x = np.zeros((num_rows, len(parents)), dtype=np.int64)
    for v in order:
        fresh = rng.integers(0, num_values, size=num_rows)
        if parents[v] < 0:
            x[:, v] = fresh
        else:
            x[:, v] = np.where(rng.random(num_rows) < stay, x[:, parents[v]], fresh)
    return x


def random_parents(num_variables, seed):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_variables)
    parents = np.full(num_variables, -1)
    for position in range(1, num_variables):
        parents[perm[position]] = perm[rng.integers(0, position)]
    return parents


def expected_sizes(parents, k, collapse_leaves):
    """Nodes, units, edges and sum weights of the HCLT of a rooted tree, in closed form."""
    n = len(parents)
    if n == 1:
        return {"nodes": 2, "units": k + 1, "edges": k, "sum_params": k}
    internal = len(set(int(p) for p in parents if p >= 0))
    transitions = internal - 1 if collapse_leaves else n - 1
    return {"nodes": n + internal + transitions + 1,
            "units": n * k + internal * k + transitions * k + 1,
            "edges": k * (n - 1 + internal) + transitions * k * k + k,
            "sum_params": transitions * k * k + k}


small_data = st.tuples(st.integers(2, 40), st.integers(1, 6), st.integers(2, 5), st.integers(0, 10_000)).map(
    lambda a: np.random.default_rng(a[3]).integers(0, a[2], size=(a[0], a[1])))

continuous_data = st.tuples(st.integers(2, 40), st.integers(1, 6), st.integers(0, 10_000)).map(
    lambda a: np.random.default_rng(a[2]).standard_t(2, size=(a[0], a[1])))


# ---- mutual information ------------------------------------------------------------------
@FAST
@given(data=st.one_of(small_data, continuous_data), num_bins=st.integers(1, 20))
def test_mutual_information_is_symmetric(data, num_bins):
    information = mutual_information(data, num_bins=num_bins)
    np.testing.assert_array_equal(information, information.T)


@FAST
@given(data=st.one_of(small_data, continuous_data), num_bins=st.integers(1, 20))
def test_mutual_information_is_non_negative(data, num_bins):
    assert np.all(mutual_information(data, num_bins=num_bins) >= 0)


@FAST
@given(data=small_data)
def test_mutual_information_equals_a_per_pair_computation(data):
    information = mutual_information(data)
    for i, j in itertools.combinations(range(data.shape[1]), 2):
        assert information[i, j] == pytest.approx(brute_force_mutual_information(data, i, j), abs=1e-10)


@FAST
@given(data=small_data)
def test_mutual_information_diagonal_is_the_entropy(data):
    information = mutual_information(data)
    for v in range(data.shape[1]):
        _, counts = np.unique(data[:, v], return_counts=True)
        p = counts / len(data)
        assert information[v, v] == pytest.approx(-(p * np.log(p)).sum(), abs=1e-10)


def test_many_categories_are_grouped_into_equal_width_bins():
    data = np.random.default_rng(3).integers(0, 64, size=(300, 4))
    data[:, 1] = (data[:, 0] + data[:, 1] // 16) % 64
    grouped = data * 4 // 64
    information = mutual_information(data, num_bins=4)
    for i, j in itertools.combinations(range(4), 2):
        assert information[i, j] == pytest.approx(brute_force_mutual_information(grouped, i, j), abs=1e-10)


def test_continuous_mutual_information_is_invariant_under_increasing_transforms():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(500, 5))
    data[:, 1] += data[:, 0]
    transformed = np.column_stack([np.exp(data[:, 0]), data[:, 1] ** 3, 2 * data[:, 2] + 7, data[:, 3:]])
    np.testing.assert_allclose(mutual_information(data, num_bins=8), mutual_information(transformed, num_bins=8),
                               atol=1e-12)


def test_quantile_bins_hold_about_equal_counts():
    data = np.random.default_rng(5).exponential(size=(1000, 3))
    codes, sizes = bin_codes(data, num_bins=10)
    assert sizes.tolist() == [10, 10, 10]
    for v in range(3):
        assert np.bincount(codes[:, v]).tolist() == [100] * 10


def test_empty_bins_are_dropped():
    data = np.array([[0, 5], [7, 5], [0, 5], [7, 9]])
    codes, sizes = bin_codes(data, num_bins=16)
    assert sizes.tolist() == [2, 2]
    assert codes.tolist() == [[0, 0], [1, 0], [0, 0], [1, 1]]


# ---- the Chow-Liu tree ----------------------------------------------------------------------
def test_chow_liu_tree_recovers_a_markov_chain():
    chain = np.random.default_rng(6).permutation(9)
    parents = np.full(9, -1)
    parents[chain[1:]] = chain[:-1]
    data = sample_tree_distribution(parents, 3000, 4, 0.8, seed=7)
    learned = learn_chow_liu_tree(data)
    assert tree_edges(learned) == tree_edges(parents)


@settings(max_examples=10, deadline=None)
@given(num_variables=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_chow_liu_tree_recovers_a_random_tree(num_variables, seed):
    parents = random_parents(num_variables, seed)
    data = sample_tree_distribution(parents, 3000, 4, 0.8, seed=seed + 1)
    assert tree_edges(learn_chow_liu_tree(data)) == tree_edges(parents)


@FAST
@given(data=small_data)
def test_chow_liu_tree_has_the_largest_total_information(data):
    information = mutual_information(data)
    parents = chow_liu_tree(information)
    total = sum(information[v, p] for v, p in enumerate(parents) if p >= 0)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(parents)))
    graph.add_weighted_edges_from((i, j, information[i, j]) for i, j in itertools.combinations(range(len(parents)), 2))
    assert total == pytest.approx(nx.maximum_spanning_tree(graph).size(weight="weight"), abs=1e-12)


@FAST
@given(data=small_data)
def test_chow_liu_tree_is_a_spanning_tree(data):
    parents = chow_liu_tree(mutual_information(data))
    assert (parents < 0).sum() == 1
    graph = nx.Graph(list(tree_edges(parents)))
    graph.add_nodes_from(range(len(parents)))
    assert nx.is_tree(graph)


@settings(max_examples=15, deadline=None)
@given(num_variables=st.integers(1, 15), seed=st.integers(0, 10_000))
def test_default_root_is_a_center(num_variables, seed):
    parents = random_parents(num_variables, seed)
    data = sample_tree_distribution(parents, 2000, 4, 0.8, seed=seed + 1)
    learned = learn_chow_liu_tree(data)
    graph = nx.Graph(list(tree_edges(learned)))
    graph.add_nodes_from(range(num_variables))
    assert tree_height(learned) == min(nx.eccentricity(graph).values())


def test_root_argument_roots_the_tree():
    data = np.random.default_rng(8).integers(0, 3, size=(100, 6))
    for root in range(6):
        parents = learn_chow_liu_tree(data, root=root)
        assert np.flatnonzero(parents < 0).tolist() == [root]
        assert tree_edges(parents) == tree_edges(learn_chow_liu_tree(data))


def test_chow_liu_samples_at_least_the_rows_use_every_row():
    data = sample_tree_distribution(random_parents(10, 9), 500, 3, 0.5, seed=10)
    full = learn_chow_liu_tree(data, chow_liu_samples=None)
    np.testing.assert_array_equal(learn_chow_liu_tree(data, chow_liu_samples=500), full)
    np.testing.assert_array_equal(learn_chow_liu_tree(data, chow_liu_samples=10_000, seed=3), full)


def test_hclt_uses_the_learned_tree():
    data = sample_tree_distribution(random_parents(12, 11), 2000, 4, 0.8, seed=12)
    parents = learn_chow_liu_tree(data, seed=4)
    circuit = hclt(data, num_latents=3, seed=4)
    root_variables = circuit.roots[0].children[0].children[0].variables
    assert root_variables == (int(np.flatnonzero(parents < 0)[0]),)
    transition_scopes = {frozenset(node.scope) for node in circuit.sum_nodes if node is not circuit.roots[0]}
    children = children_of(parents)
    assert transition_scopes == {subtree(parents, v) for v in range(12) if parents[v] >= 0 and children[v]}


# ---- the circuit ----------------------------------------------------------------------------
@FAST
@given(data=small_data, num_latents=st.integers(1, 4), leaf=st.sampled_from(["categorical", "bernoulli", "gaussian",
                                                                            "binomial"]),
       collapse_leaves=st.booleans(), leaf_init=st.sampled_from(["data", "random"]), seed=st.integers(0, 99))
def test_every_hclt_passes_check(data, num_latents, leaf, collapse_leaves, leaf_init, seed):
    if leaf == "bernoulli":
        data = data % 2
    leaf_params = {"n": 4} if leaf == "binomial" else None
    circuit = hclt(data, num_latents=num_latents, leaf=leaf, leaf_params=leaf_params, leaf_init=leaf_init,
                   collapse_leaves=collapse_leaves, seed=seed)
    report = circuit.check()
    assert report.ok, str(report)
    assert circuit.scope == pc.Scope(range(data.shape[1]))
    assert circuit.roots[0].num_units == 1


@FAST
@given(data=continuous_data, num_latents=st.integers(1, 4), collapse_leaves=st.booleans(),
       leaf_init=st.sampled_from(["data", "random"]), seed=st.integers(0, 99))
def test_every_gaussian_hclt_of_real_data_passes_check(data, num_latents, collapse_leaves, leaf_init, seed):
    circuit = hclt(data, num_latents=num_latents, leaf="gaussian", collapse_leaves=collapse_leaves,
                   leaf_init=leaf_init, seed=seed)
    report = circuit.check()
    assert report.ok, str(report)


@FAST
@given(data=small_data, num_latents=st.integers(1, 4), collapse_leaves=st.booleans())
def test_sizes_have_a_closed_form(data, num_latents, collapse_leaves):
    circuit = hclt(data, num_latents=num_latents, collapse_leaves=collapse_leaves)
    expected = expected_sizes(learn_chow_liu_tree(data), num_latents, collapse_leaves)
    sum_params = sum(node.params.num_params for node in circuit.sum_nodes)
    assert {"nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
            "sum_params": sum_params} == expected


def test_chain_sizes_have_a_closed_form_in_variables_and_latents():
    for n, k in [(5, 3), (8, 4), (9, 2)]:
        parents = np.arange(-1, n - 1)
        data = sample_tree_distribution(parents, 2000, 4, 0.8, seed=n)
        circuit = hclt(data, num_latents=k, root=0)
        # a chain rooted at an end: n - 1 variables with a child, one leaf
        assert circuit.num_edges == (n - 2) * k * k + k + k * (2 * n - 2)
        assert len(circuit.sum_nodes) == n - 1
        assert circuit.num_units == n * k + (n - 1) * k + (n - 2) * k + 1


@settings(max_examples=15, deadline=None)
@given(num_variables=st.integers(1, 5), num_latents=st.integers(1, 3), collapse_leaves=st.booleans(),
       seed=st.integers(0, 10_000))
def test_bernoulli_hclt_normalizes(num_variables, num_latents, collapse_leaves, seed):
    data = np.random.default_rng(seed).integers(0, 2, size=(30, num_variables))
    circuit = hclt(data, num_latents=num_latents, leaf="bernoulli", collapse_leaves=collapse_leaves, seed=seed)
    program = circuit.compile(dtype="float64")
    total = np.exp(program.log_likelihood(enumerate_assignments(circuit))).sum()
    assert total == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=10, deadline=None)
@given(num_variables=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_categorical_hclt_normalizes(num_variables, seed):
    data = np.random.default_rng(seed).integers(0, 3, size=(30, num_variables))
    circuit = hclt(data, num_latents=3, seed=seed)
    program = circuit.compile(dtype="float64")
    total = np.exp(program.log_likelihood(enumerate_assignments(circuit))).sum()
    assert total == pytest.approx(1.0, abs=1e-12)


def test_same_seed_gives_the_same_circuit():
    data = np.random.default_rng(13).integers(0, 5, size=(3000, 10))
    first = hclt(data, num_latents=4, seed=21, chow_liu_samples=500)
    second = hclt(data, num_latents=4, seed=21, chow_liu_samples=500)
    assert_circuits_equal(first, second)


def test_different_seeds_give_different_parameters():
    data = np.random.default_rng(14).integers(0, 5, size=(100, 6))
    first, second = hclt(data, num_latents=4, seed=1), hclt(data, num_latents=4, seed=2)
    assert not np.array_equal(first.roots[0].weights, second.roots[0].weights)


def test_data_initialized_categorical_leaves_favour_a_constant_value():
    data = np.zeros((200, 3), dtype=np.int64)
    data[:, 1] = np.arange(200) % 4
    data[:, 2] = 3
    circuit = hclt(data, num_latents=5)
    for node in circuit.input_nodes:
        assert node.family.probs.shape == (5, 4)
        if node.variables[0] != 1:
            assert np.all(np.argmax(node.family.probs, axis=1) == data[0, node.variables[0]])


def test_gaussian_leaves_start_around_the_data():
    rng = np.random.default_rng(15)
    data = rng.normal(loc=[10.0, -5.0], scale=[1.0, 3.0], size=(500, 2))
    circuit = hclt(data, num_latents=6, leaf="gaussian")
    for node in circuit.input_nodes:
        v = node.variables[0]
        assert abs(node.family.mean.mean() - data[:, v].mean()) < 2 * data[:, v].std()
        np.testing.assert_allclose(node.family.std, data[:, v].std())


def test_image_data_are_flattened_and_named_as_pixels():
    images = np.random.default_rng(16).integers(0, 2, size=(20, 3, 4))
    circuit = hclt(images, num_latents=2, leaf="bernoulli")
    assert circuit.variables == pc.Variables.image(3, 4)
    assert circuit.scope == pc.Scope(range(12))


def test_boolean_data_take_bernoulli_leaves():
    data = np.random.default_rng(18).random((40, 5)) < 0.3
    circuit = hclt(data, num_latents=3, leaf="bernoulli")
    assert circuit.check().ok
    assert all(isinstance(node.family, pc.Bernoulli) for node in circuit.input_nodes)


def test_leaf_callable_makes_every_leaf():
    data = np.random.default_rng(19).integers(0, 4, size=(40, 4))
    calls = []

    def leaf(variables, num_units, rng):
        calls.append(variables)
        return pc.Categorical.random(num_units, num_categories=4, rng=rng)

    circuit = hclt(data, num_latents=2, leaf=leaf)
    assert circuit.check().ok
    assert sorted(calls) == [(0,), (1,), (2,), (3,)]


def test_categorical_leaves_cover_num_categories():
    data = np.random.default_rng(17).integers(0, 3, size=(30, 3))
    circuit = hclt(data, num_latents=2, num_categories=7)
    assert {node.family.num_categories for node in circuit.input_nodes} == {7}


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    (np.zeros(5), "shape"),
    (np.zeros((2, 2, 2, 2, 2)), "shape"),
    (np.zeros((1, 4)), "at least 2 rows"),
    (np.zeros((5, 0)), "at least one variable"),
    (np.array([[0.0, np.nan], [1.0, 0.0]]), "NaN"),
    (np.array([[0.0, np.inf], [1.0, 0.0]]), "NaN or infinite"),
    (np.array([[0, -1], [1, 0]]), "non-negative"),
    (np.array([[0.5, 1.0], [1.0, 0.0]]), "integer data"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
])
def test_bad_data_is_refused_with_a_clear_message(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        hclt(data)


@pytest.mark.parametrize("options, message", [
    ({"num_latents": 0}, "num_latents must be a positive int"),
    ({"num_latents": 2.5}, "num_latents must be a positive int"),
    ({"leaf": "bernoulli"}, "Bernoulli leaves need 0/1 data"),
    ({"num_categories": 2}, "num_categories=2 but the data hold the value 2"),
    ({"leaf": "gaussian", "num_categories": 3}, "num_categories applies to categorical leaves"),
    ({"leaf": "binomial", "leaf_params": {"n": 1}}, "take values 0..1"),
    ({"leaf": "poisson"}, "unknown leaf family"),
    ({"leaf_init": "zeros"}, "leaf_init must be 'data' or 'random'"),
    ({"root": 3}, "root must be a variable id in 0..2"),
    ({"num_bins": 0}, "num_bins must be a positive int"),
    ({"chow_liu_samples": 1}, "chow_liu_samples must be at least 2"),
    ({"variables": pc.Variables(4)}, "variables holds 4 variables, but the data have 3"),
    ({"leaf_params": {"num_categories": 5}}, "disagrees with num_categories=3"),
])
def test_bad_options_are_refused_with_a_clear_message(options, message):
    data = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]])
    with pytest.raises((ValueError, TypeError), match=message):
        hclt(data, **options)


def test_chow_liu_tree_refuses_a_non_square_matrix():
    with pytest.raises(ValueError, match="square matrix"):
        chow_liu_tree(np.zeros((2, 3)))


def test_chow_liu_tree_refuses_an_asymmetric_matrix():
    with pytest.raises(ValueError, match="symmetric"):
        chow_liu_tree(np.array([[0.0, 1.0], [2.0, 0.0]]))


# ---- the reference workload: HCLT on 784 variables with 256 categories, K = 128 ---------------
def report(name, circuit, seconds):
    sum_params = sum(node.params.num_params for node in circuit.sum_nodes)
    print(f"\n{name}: {circuit.num_nodes:,} nodes, {circuit.num_units:,} units, {circuit.num_edges:,} edges, "
          f"{circuit.num_params:,} params ({sum_params:,} sum weights), built in {seconds:.2f} s; "
          f"edges / PyJuice's {PYJUICE_HCLT784_EDGES:,} = {circuit.num_edges / PYJUICE_HCLT784_EDGES:.3f}")


def test_hclt784_k128_on_pyjuices_data_matches_its_edge_count():
    """The anchor's data (seed 0, 2048 rows of 784 uniform 256-category values): edges within 10%."""
    data = np.random.default_rng(0).integers(0, 256, size=(2048, 784))
    start = time.perf_counter()
    circuit = hclt(data, num_latents=128)
    seconds = time.perf_counter() - start
    report("HCLT784 K=128 (random data)", circuit, seconds)
    assert abs(circuit.num_edges / PYJUICE_HCLT784_EDGES - 1) < 0.10
    assert circuit.num_units == 784 * 128 + (2 * len(circuit.product_nodes) - 1) * 128 + 1
    assert circuit.check().ok


def test_hclt784_k128_on_mnist_size_report(shared_data):
    with np.load(shared_data("mnist.npz")) as archive:
        images = archive["x_train"]
    start = time.perf_counter()
    circuit = hclt(images, num_latents=128, num_categories=256)
    seconds = time.perf_counter() - start
    report("HCLT784 K=128 (MNIST)", circuit, seconds)
    assert circuit.check().ok
