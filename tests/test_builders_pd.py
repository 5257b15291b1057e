"""The Poon-Domingos builder: validity, closed-form sizes, the VAE-leaf poster's counts, options."""
import itertools
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders.poon_domingos import parse_resolutions, poon_domingos, poon_domingos_size

FAST = settings(max_examples=25, deadline=None)


def measured_sizes(circuit):
    """The quantities of poon_domingos_size, counted on the built circuit."""
    kinds = {"sum": circuit.sum_nodes, "product": circuit.product_nodes, "input": circuit.input_nodes}
    sizes = {}
    for kind, nodes in kinds.items():
        sizes[f"{kind}_nodes"] = len(nodes)
        sizes[f"{kind}_units"] = sum(n.num_units for n in nodes)
    sizes["sum_edges"] = sum(n.num_edges for n in circuit.sum_nodes)
    sizes["product_edges"] = sum(n.num_edges for n in circuit.product_nodes)
    sizes["cartesian_product_units"] = sum(n.num_units for n in circuit.product_nodes if n.pattern == "cartesian")
    sizes["nodes"], sizes["units"], sizes["edges"] = circuit.num_nodes, circuit.num_units, circuit.num_edges
    return sizes


def rectangle_of(circuit, node):
    """(row_start, row_stop, col_start, col_stop) of a node over a full rectangle of pixels."""
    shape = circuit.variables.shape
    ids = node.scope.to_array()
    rows, cols = np.unravel_index(ids, shape)[:2]
    rect = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
    channels = shape[2] if len(shape) == 3 else 1
    assert len(ids) == (rect[1] - rect[0]) * (rect[3] - rect[2]) * channels
    return tuple(int(v) for v in rect)


delta_levels = st.one_of(
    st.integers(1, 4),
    st.lists(st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4))), min_size=1, max_size=2),
)


@FAST
@given(height=st.integers(1, 6), width=st.integers(1, 6), delta=delta_levels, num_sums=st.integers(1, 3),
       num_leaves=st.integers(1, 3), dense=st.booleans(), max_splits=st.one_of(st.none(), st.integers(1, 3)),
       channels=st.sampled_from([None, 2]), leaf=st.sampled_from(["gaussian", "bernoulli"]), seed=st.integers(0, 9))
def test_every_pd_circuit_passes_check(height, width, delta, num_sums, num_leaves, dense, max_splits, channels,
                                       leaf, seed):
    circuit = poon_domingos(height, width, delta=delta, num_sums=num_sums, num_leaves=num_leaves, dense=dense,
                            max_splits=max_splits, channels=channels, leaf=leaf, seed=seed)
    report = circuit.check()
    assert report.ok, str(report)
    assert circuit.num_roots == 1 and circuit.roots[0].num_units == 1
    assert circuit.scope == circuit.variables.scope


@pytest.mark.parametrize("options", [
    dict(height=2, width=3, delta=2),
    dict(height=3, width=2, delta=[[2, 1]], dense=True),
    dict(height=2, width=2, delta=1, channels=2, dense=True),
])
def test_pd_circuit_sums_to_one_over_all_binary_images(options):
    circuit = poon_domingos(**options, num_sums=2, num_leaves=2, leaf="bernoulli")
    images = np.array(list(itertools.product([0, 1], repeat=circuit.num_variables)), dtype=float)
    log_likelihood = np.asarray(circuit.compile(dtype="float64").log_likelihood(images))
    assert np.exp(log_likelihood).sum() == pytest.approx(1.0, abs=1e-9)


@FAST
@given(rows=st.integers(1, 3), cols=st.integers(1, 3), dy=st.integers(1, 3), dx=st.integers(1, 3),
       num_sums=st.integers(1, 3), num_leaves=st.integers(1, 3), channels=st.sampled_from([None, 2]),
       leaf=st.sampled_from(["gaussian", "bernoulli"]), dense=st.booleans())
def test_pd_sizes_match_the_closed_form(rows, cols, dy, dx, num_sums, num_leaves, channels, leaf, dense):
    height, width = rows * dy, cols * dx
    assume(height * width >= 2)
    options = dict(delta=[(dy, dx)], num_sums=num_sums, num_leaves=num_leaves, channels=channels, leaf=leaf,
                   dense=dense)
    assert measured_sizes(poon_domingos(height, width, **options)) == poon_domingos_size(height, width, **options)


@FAST
@given(height=st.integers(1, 7), width=st.integers(1, 7), delta=delta_levels, num_sums=st.integers(1, 3))
def test_dense_pd_sizes_match_the_closed_form_for_any_grid(height, width, delta, num_sums):
    assume(height * width >= 2)
    options = dict(delta=delta, num_sums=num_sums, num_leaves=2, dense=True)
    assert measured_sizes(poon_domingos(height, width, **options)) == poon_domingos_size(height, width, **options)


@pytest.mark.parametrize("m, n, K", [(2, 1, 3), (2, 2, 2), (3, 4, 2), (5, 5, 3), (6, 3, 2)])
def test_dense_pd_counts_equal_the_vae_poster_formulas(m, n, K):
    """Tan, Peharz, Adel: K m(m+1)n(n+1)/4 sum nodes, K^2 (m+1)m(n+1)n(m+n-2)/12 product nodes."""
    circuit = poon_domingos(m, n, delta=1, num_sums=K, num_leaves=2, dense=True)
    sum_units = sum(node.num_units for node in circuit.sum_nodes)
    product_units = sum(node.num_units for node in circuit.product_nodes)
    root_correction = K - 1  # the poster gives the root region K sums; ours has one
    assert len(circuit.sum_nodes) == m * (m + 1) * n * (n + 1) // 4
    assert sum_units == K * m * (m + 1) * n * (n + 1) // 4 - root_correction
    assert product_units == K ** 2 * (m + 1) * m * (n + 1) * n * (m + n - 2) // 12


def test_pd_matches_the_vae_posters_vanilla_mnist_spn():
    """The poster's vanilla SPN on MNIST: 1568 Bernoulli leaves, 9702 sums, 51744 products.

    That is P&D's structure at coarse resolution 4 with unit resolution inside the 4x4 cells,
    K = 2 sums per region and two indicator leaves per binary pixel (the root has 1 sum, not 2).
    """
    circuit = poon_domingos(28, 28, delta=4, num_sums=2, num_leaves=2, leaf="indicator")
    assert sum(node.num_units for node in circuit.input_nodes) == 1568
    assert sum(node.num_units for node in circuit.sum_nodes) == 9702 - 1
    assert sum(node.num_units for node in circuit.product_nodes) == 51744


def test_dense_pd_matches_the_vae_posters_superpixel_mnist_spn():
    """The poster's SPN with VAE leaves: 98 superpixel leaves (7x7 cells of 4x4, 2 each), 1470 sums
    above the superpixels, 12544 products."""
    circuit = poon_domingos(28, 28, delta=4, num_sums=2, num_leaves=2, dense=True)
    cell_sums = [node for node in circuit.sum_nodes if len(node.scope) == 16]
    region_sums = [node for node in circuit.sum_nodes if len(node.scope) > 16]
    cartesian = [node for node in circuit.product_nodes if node.pattern == "cartesian"]
    assert sum(node.num_units for node in cell_sums) == 98
    assert sum(node.num_units for node in region_sums) == 1470 - 1
    assert sum(node.num_units for node in cartesian) == 12544


def test_pd_regions_are_whole_cells_or_inside_one_cell():
    circuit = poon_domingos(8, 12, delta=4, num_sums=1, num_leaves=1)
    for node in circuit.sum_nodes:
        r0, r1, c0, c1 = rectangle_of(circuit, node)
        on_grid = r0 % 4 == 0 and r1 % 4 == 0 and c0 % 4 == 0 and c1 % 4 == 0
        inside_cell = r0 // 4 == (r1 - 1) // 4 and c0 // 4 == (c1 - 1) // 4
        assert on_grid or inside_cell, (r0, r1, c0, c1)


def test_pd_splits_cut_a_region_into_two_rectangles_along_one_axis():
    circuit = poon_domingos(6, 5, delta=[3, 2], num_sums=1, num_leaves=1)
    for node in circuit.product_nodes:
        parent = rectangle_of(circuit, node)
        first, second = (rectangle_of(circuit, child) for child in node.children)
        row_cut = first[1] == second[0] and first[2:] == second[2:] == parent[2:]
        col_cut = first[3] == second[2] and first[:2] == second[:2] == parent[:2]
        assert row_cut or col_cut


def test_pd_shares_each_region_node_between_its_parents():
    circuit = poon_domingos(4, 4, delta=1, num_sums=1, num_leaves=1)
    scopes = [node.scope for node in circuit.sum_nodes]
    assert len(scopes) == len(set(scopes))


def test_pd_max_splits_caps_the_splits_of_every_region():
    circuit = poon_domingos(8, 8, delta=2, num_sums=2, num_leaves=2, max_splits=2, seed=3)
    assert max(len(node.children) for node in circuit.sum_nodes) == 2
    assert circuit.check().ok


def test_pd_max_splits_subset_depends_on_the_seed():
    first = poon_domingos(8, 8, delta=2, num_sums=1, num_leaves=1, max_splits=1, seed=1)
    second = poon_domingos(8, 8, delta=2, num_sums=1, num_leaves=1, max_splits=1, seed=2)
    assert [n.scope for n in first.sum_nodes] != [n.scope for n in second.sum_nodes]


def test_pd_same_seed_gives_the_same_circuit():
    first = poon_domingos(4, 6, delta=2, num_sums=3, num_leaves=2, max_splits=2, seed=7)
    second = poon_domingos(4, 6, delta=2, num_sums=3, num_leaves=2, max_splits=2, seed=7)
    assert [n.scope for n in first.nodes] == [n.scope for n in second.nodes]
    for a, b in zip(first.sum_nodes, second.sum_nodes):
        np.testing.assert_array_equal(a.weights, b.weights)
    for a, b in zip(first.input_nodes, second.input_nodes):
        np.testing.assert_array_equal(a.family.mean, b.family.mean)


def test_pd_different_seeds_give_different_parameters():
    first = poon_domingos(3, 3, delta=1, num_sums=2, num_leaves=2, seed=0)
    second = poon_domingos(3, 3, delta=1, num_sums=2, num_leaves=2, seed=1)
    assert not np.array_equal(first.roots[0].weights, second.roots[0].weights)


@pytest.mark.parametrize("leaf, leaf_params, check_family", [
    ("gaussian", None, lambda f: f.name == "gaussian"),
    ("bernoulli", None, lambda f: f.name == "bernoulli"),
    ("categorical", {"num_categories": 5}, lambda f: f.name == "categorical" and f.num_categories == 5),
    ("binomial", {"n": 16}, lambda f: f.name == "binomial" and f.n == 16),
    ("indicator", {"num_categories": 3}, lambda f: f.name == "indicator" and list(f.value) == [0, 1, 2, 0]),
    (pc.Bernoulli, None, lambda f: f.name == "bernoulli"),
])
def test_pd_leaf_family_is_selectable(leaf, leaf_params, check_family):
    circuit = poon_domingos(2, 3, delta=1, num_sums=2, num_leaves=4, leaf=leaf, leaf_params=leaf_params)
    assert len(circuit.input_nodes) == 6
    assert all(check_family(node.family) and node.num_units == 4 for node in circuit.input_nodes)
    assert circuit.check().ok


def test_pd_leaf_callable_receives_each_pixels_variables():
    seen = []

    def leaf(variables, num_units, rng):
        seen.append(variables)
        return pc.Gaussian(np.full(num_units, float(variables[0])), 1.0)

    circuit = poon_domingos(2, 2, delta=1, num_sums=1, num_leaves=3, leaf=leaf)
    assert sorted(seen) == [(0,), (1,), (2,), (3,)]
    assert all(node.family.mean[0] == node.variables[0] for node in circuit.input_nodes)


def test_pd_gaussian_pixel_is_one_input_node_over_its_channels():
    circuit = poon_domingos(2, 3, channels=3, delta=1, num_sums=1, num_leaves=2)
    assert len(circuit.input_nodes) == 6
    assert all(len(node.variables) == 3 for node in circuit.input_nodes)
    assert circuit.variables.shape == (2, 3, 3)


def test_pd_univariate_family_multiplies_one_leaf_per_channel():
    circuit = poon_domingos(2, 2, channels=3, delta=1, num_sums=1, num_leaves=2, leaf="bernoulli")
    assert len(circuit.input_nodes) == 12
    pixel_products = [n for n in circuit.product_nodes if n.pattern == "elementwise"]
    assert len(pixel_products) == 4 and all(len(n.children) == 3 for n in pixel_products)


def test_pd_single_pixel_image_has_a_one_unit_root():
    circuit = poon_domingos(1, 1, num_leaves=3)
    assert circuit.roots[0].num_units == 1 and circuit.check().ok


@pytest.mark.parametrize("delta, levels", [
    (4, [(4, 4)]),
    ([[7, 7]], [(7, 7)]),
    ([[7, 4]], [(7, 4)]),
    ([8, 4], [(8, 8), (4, 4)]),
    ([[7, 7], 2], [(7, 7), (2, 2)]),
])
def test_delta_is_read_as_einsum_networks_reads_it(delta, levels):
    assert parse_resolutions(delta) == levels


def test_delta_levels_are_tried_in_order():
    """With levels [4, 2], a 4x4 cell is split at 2 before the unit resolution takes over."""
    circuit = poon_domingos(8, 8, delta=[4, 2], num_sums=1, num_leaves=1)
    cell = next(n for n in circuit.sum_nodes if rectangle_of(circuit, n) == (0, 4, 0, 4))
    cuts = {rectangle_of(circuit, product.children[0]) for product in cell.children}
    assert cuts == {(0, 2, 0, 4), (0, 4, 0, 2)}


@pytest.mark.parametrize("kwargs, error", [
    (dict(delta=0), ValueError),
    (dict(delta=[]), ValueError),
    (dict(delta="4"), ValueError),
    (dict(delta=[[2, 0]]), ValueError),
    (dict(num_sums=0), ValueError),
    (dict(num_leaves=1.5), ValueError),
    (dict(max_splits=0), ValueError),
    (dict(channels=0), ValueError),
    (dict(leaf="poisson"), ValueError),
    (dict(leaf=3), TypeError),
    (dict(leaf="categorical", leaf_params={"categories": 3}), TypeError),
    (dict(leaf_params=[1]), TypeError),
    (dict(dense="yes"), TypeError),
])
def test_pd_rejects_bad_arguments_with_a_clear_error(kwargs, error):
    with pytest.raises(error, match="poon_domingos"):
        poon_domingos(4, 4, **kwargs)


def test_pd_size_refuses_partial_cells():
    with pytest.raises(ValueError, match="whole cells"):
        poon_domingos_size(6, 4, delta=4)


def test_pd_28x28_delta7_k32_categorical_size():
    """The PyJuice reference configuration (PD 28x28, delta 7, K 32, 256-category leaves).

    Built as the superpixel (dense) variant, which is PyJuice's and EinsumNetworks' layout:
    7x7 cells of factorized leaves. The standard P&D decomposition of the cells down to pixels
    is only sized, not built: it has about 1.65e9 sum weights.
    """
    options = dict(delta=7, num_sums=32, num_leaves=32, leaf="categorical", leaf_params={"num_categories": 256})
    start = time.perf_counter()
    circuit = poon_domingos(28, 28, dense=True, **options)
    seconds = time.perf_counter() - start
    sizes = measured_sizes(circuit)
    assert sizes == poon_domingos_size(28, 28, dense=True, delta=7, num_sums=32, num_leaves=32, leaf="categorical")
    standard = poon_domingos_size(28, 28, delta=7, num_sums=32, num_leaves=32, leaf="categorical")
    print(f"\nPD 28x28 delta 7 K 32 categorical(256), dense superpixels: {sizes['nodes']} nodes, {sizes['units']} "
          f"units, {sizes['edges']} edges, {circuit.num_params} params, built in {seconds:.2f} s "
          f"(PyJuice reference: 28,913 nodes, 251,712 edges); standard P&D with pixel-level cells: "
          f"{standard['nodes']} nodes, {standard['units']} units, {standard['edges']} edges")
    assert sizes["nodes"] == 1100


def test_pd_64x64_delta4_builds_in_seconds():
    start = time.perf_counter()
    circuit = poon_domingos(64, 64, delta=4, num_sums=4, num_leaves=4)
    seconds = time.perf_counter() - start
    expected = poon_domingos_size(64, 64, delta=4, num_sums=4, num_leaves=4)
    print(f"\nPD 64x64 delta 4 K 4 G 4: {circuit.num_nodes} nodes, {circuit.num_units} units, "
          f"{circuit.num_edges} edges, built in {seconds:.1f} s")
    assert circuit.num_nodes == expected["nodes"] and circuit.num_edges == expected["edges"]
    assert seconds < 60


@pytest.mark.slow
def test_pd_64x64_delta4_passes_check():
    circuit = poon_domingos(64, 64, delta=4, num_sums=4, num_leaves=4)
    assert circuit.check().ok
