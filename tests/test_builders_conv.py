"""Convolutional SPNs: the cell-layer vocabulary, CSPN / DCSPN and DGC-SPN builders.

Properties: every configuration the builders accept passes ``check()``; configurations that
break the papers' conditions are refused with a message, or, built through the low-level
helpers, reported by ``check()`` at the offending node with the right kind; scopes are the
windows' receptive fields; unit counts of one-hot and depthwise layers; normalization by
enumeration on tiny binary images.
"""
import itertools
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders import conv
from pcircuits.builders.dcspn import cspn, dcspn
from pcircuits.builders.dgcspn import dgcspn, gclp_plan

FAST = settings(max_examples=25, deadline=None)

pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))


def window_pixels(variables, rows, cols):
    """The scope of the pixels at the in-range rows x cols."""
    height, width = variables.shape
    rows = [r for r in rows if 0 <= r < height]
    cols = [c for c in cols if 0 <= c < width]
    return pc.Scope([r * width + c for r in rows for c in cols])


def axis_taps(output, *, kernel, stride, dilation, padding):
    pad = (kernel - 1) * dilation if padding != "valid" else 0
    return [output * stride - pad + j * dilation for j in range(kernel)]


def stack(height, width, kernels, *, channels=2, dilations=None, sums=2, first="one-hot"):
    """leaf -> (GCLP -> sum)* with full padding; the dilations default to footnote 2's."""
    layer = conv.leaf_layer((height, width), num_leaves=channels)
    reach = (1, 1)
    for index, kernel in enumerate(kernels):
        dilation = reach if dilations is None else dilations[index]
        layer = conv.product_layer(layer, kernel=kernel, dilation=dilation, padding="full",
                                   combinations=first if index == 0 else "depthwise", name=f"gclp{index}")
        layer = conv.spatial_sum_layer(layer, sums, rng=index, name=f"sum{index}")
        reach = (reach[0] * kernel[0], reach[1] * kernel[1])
    return layer


# ---- the vocabulary ------------------------------------------------------------------------
@FAST
@given(height=st.integers(1, 7), width=st.integers(1, 7), kernel=pairs, stride=pairs, dilation=pairs,
       padding=st.sampled_from(["valid", "full"]), channels=st.integers(1, 3))
def test_product_scope_is_union_of_window_pixels(height, width, kernel, stride, dilation, padding, channels):
    span = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
    assume(padding == "full" or (span[0] <= height and span[1] <= width))
    leaves = conv.leaf_layer((height, width), num_leaves=channels)
    layer = conv.product_layer(leaves, kernel=kernel, stride=stride, dilation=dilation, padding=padding)
    for oy in range(layer.height):
        rows = axis_taps(oy, kernel=kernel[0], stride=stride[0], dilation=dilation[0], padding=padding)
        for ox in range(layer.width):
            cols = axis_taps(ox, kernel=kernel[1], stride=stride[1], dilation=dilation[1], padding=padding)
            expected = window_pixels(leaves.variables, rows, cols)
            assert layer.scope(oy, ox) == expected


@FAST
@given(height=st.integers(1, 9), width=st.integers(1, 9), kernel=pairs, dilation=pairs)
def test_full_padding_with_unit_stride_gives_size_plus_dilated_span(height, width, kernel, dilation):
    leaves = conv.leaf_layer((height, width), num_leaves=1)
    layer = conv.product_layer(leaves, kernel=kernel, dilation=dilation, padding="full")
    assert layer.shape == (height + (kernel[0] - 1) * dilation[0], width + (kernel[1] - 1) * dilation[1])


@FAST
@given(height=st.integers(1, 6), width=st.integers(1, 6), kernel=pairs, stride=pairs, dilation=pairs,
       padding=st.sampled_from(["valid", "full"]), channels=st.integers(1, 2), seed=st.integers(0, 3))
def test_one_product_layer_over_pixels_passes_check(height, width, kernel, stride, dilation, padding, channels,
                                                    seed):
    span = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
    assume(padding == "full" or (span[0] <= height and span[1] <= width))
    leaves = conv.leaf_layer((height, width), num_leaves=channels)
    layer = conv.product_layer(leaves, kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                               combinations="one-hot")
    sums = conv.spatial_sum_layer(layer, 2, rng=seed)
    assert pc.Circuit(sums.nodes(), variables=leaves.variables).check().ok


@pytest.mark.parametrize("channels,kernel", [(2, (2, 2)), (3, (1, 2)), (2, (3, 1)), (4, (2, 2))])
def test_one_hot_layer_has_channels_to_the_number_of_taps_units(channels, kernel):
    leaves = conv.leaf_layer((4, 4), num_leaves=channels)
    layer = conv.product_layer(leaves, kernel=kernel, stride=1, padding="full", combinations="one-hot")
    assert layer.num_channels == channels ** (kernel[0] * kernel[1])
    assert {node.num_units for node in layer.nodes()} == {channels ** (kernel[0] * kernel[1])}


@pytest.mark.parametrize("channels,kernel", [(2, (2, 2)), (5, (1, 3)), (3, (3, 3))])
def test_depthwise_layer_keeps_the_number_of_channels(channels, kernel):
    leaves = conv.leaf_layer((6, 6), num_leaves=channels)
    layer = conv.product_layer(leaves, kernel=kernel, stride=1, padding="full", combinations="depthwise")
    assert layer.num_channels == channels
    assert all(node.pattern == "elementwise" for node in layer.nodes())


def test_chosen_combinations_give_one_unit_per_row_or_per_draw():
    leaves = conv.leaf_layer((4, 4), num_leaves=3)
    table = np.array([[0, 1, 2, 0], [2, 2, 1, 1]])
    chosen = conv.product_layer(leaves, kernel=2, combinations=table)
    drawn = conv.product_layer(leaves, kernel=2, combinations=7, rng=0)
    assert chosen.num_channels == 2 and drawn.num_channels == 7
    assert len({tuple(row) for row in drawn.cells[0, 0].table}) == 7


def test_border_window_keeps_the_combination_rows_of_its_present_taps():
    leaves = conv.leaf_layer((3, 3), num_leaves=2)
    layer = conv.product_layer(leaves, kernel=2, padding="full", combinations="one-hot")
    corner = layer.cells[0, 0]
    assert corner.children == (leaves.cells[0, 0],)
    assert corner.num_units == 16
    assert sorted(corner.table[:, 0].tolist()) == [0] * 8 + [1] * 8


def test_window_entirely_over_padding_becomes_a_hole():
    leaves = conv.leaf_layer((2, 2), num_leaves=1)
    layer = conv.product_layer(leaves, kernel=(2, 1), dilation=(3, 1), padding="full")
    assert layer.shape == (5, 2)
    assert layer.holes[2].all() and not layer.holes[[0, 1, 3, 4]].any()
    assert layer.num_nodes == 8


def test_final_padding_keeps_one_window_per_split_of_the_image():
    layer = stack(8, 8, [(2, 2)] * 3)
    final = conv.product_layer(layer, kernel=2, dilation=8, padding="final")
    assert final.shape == (8, 8)
    assert {final.scope(r, c) for r in range(8) for c in range(8)} == {layer.variables.scope}
    assert len({tuple(map(id, node.children)) for node in final.nodes()}) == 64


def test_spatial_sums_with_shared_weights_hold_one_weight_object():
    leaves = conv.leaf_layer((3, 4), num_leaves=3)
    shared = conv.spatial_sum_layer(leaves, 5, shared_weights=True, rng=0)
    local = conv.spatial_sum_layer(leaves, 5, rng=0)
    assert len({id(node.params) for node in shared.nodes()}) == 1
    assert len({id(node.params) for node in local.nodes()}) == 12
    assert pc.Circuit(shared.nodes()).num_params == pc.Circuit(leaves.nodes()).num_params + 5 * 3


def test_leaf_layer_takes_means_and_stds_per_pixel():
    means = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    leaves = conv.leaf_layer((2, 3), num_leaves=4, means=means, stds=0.5)
    assert np.array_equal(leaves.cells[1, 2].family.mean, means[1, 2])
    assert np.all(leaves.cells[0, 0].family.std == 0.5)
    assert leaves.cells[1, 2].scope == pc.Scope([5])


@pytest.mark.parametrize("leaf", ["indicator", "bernoulli", "categorical", "binomial"])
def test_leaf_layer_accepts_the_shared_leaf_families(leaf):
    leaves = conv.leaf_layer((2, 2), num_leaves=3, leaf=leaf, rng=0)
    assert leaves.num_channels == 3
    assert [node.scope for node in leaves.nodes()] == [pc.Scope([v]) for v in range(4)]


def test_leaf_layer_over_channels_covers_each_pixel_channels():
    leaves = conv.leaf_layer((2, 2, 3), num_leaves=2, leaf="bernoulli", rng=0)
    assert leaves.cells[1, 0].scope == pc.Scope([6, 7, 8])
    gaussian = conv.leaf_layer((2, 2, 3), num_leaves=2)
    assert gaussian.cells[0, 1].family.mean.shape == (2, 3)


def test_quantile_means_are_the_means_of_equal_sorted_groups():
    data = np.array([[5.0, 0.0], [1.0, 1.0], [3.0, 2.0], [7.0, 3.0]])
    means = conv.quantile_means(data, 2)
    assert np.allclose(means, [[2.0, 6.0], [0.5, 2.5]])
    assert np.allclose(conv.quantile_stds(data, 2), [[1.0, 1.0], [0.5, 0.5]])


def test_quantile_means_refuse_missing_values_and_too_few_samples():
    with pytest.raises(ValueError, match="finite"):
        conv.quantile_means(np.array([[np.nan, 1.0], [0.0, 1.0]]), 2)
    with pytest.raises(ValueError, match="at least 4 samples"):
        conv.quantile_means(np.zeros((3, 2)), 4)


def test_root_sum_refuses_cells_over_different_scopes():
    leaves = conv.leaf_layer((2, 2), num_leaves=2)
    with pytest.raises(ValueError, match="different scopes"):
        conv.root_sum(leaves)


def test_root_sum_log_normal_weights_are_normalized_and_spread_as_asked():
    layer = conv.product_layer(conv.leaf_layer((2, 2), num_leaves=40), kernel=(2, 2), stride=(2, 2),
                               padding="valid", combinations="depthwise")
    roots = conv.root_sum(layer, num_roots=3, rng=0, log_weight_std=3.0)
    for root in roots:
        w = root.params.values
        assert np.allclose(w.sum(axis=1), 1.0)
        assert 2.0 < np.log(w).std() < 4.0
    assert not np.allclose(roots[0].params.values, roots[1].params.values)


def test_root_sum_refuses_a_negative_log_weight_spread():
    layer = conv.product_layer(conv.leaf_layer((2, 2), num_leaves=2), kernel=(2, 2), stride=(2, 2), padding="valid")
    with pytest.raises(ValueError, match="log_weight_std"):
        conv.root_sum(layer, log_weight_std=-1.0)


def test_discriminative_dgcspn_class_roots_start_with_spread_log_weights():
    circuit = dgcspn(8, 8, mode="discriminative", num_leaves=2, num_sums=(2, 3), num_classes=3, seed=0)
    spread = [np.log(root.params.values).std() for root in circuit.roots]
    assert all(s > 2.0 for s in spread)
    narrow = dgcspn(8, 8, mode="discriminative", num_leaves=2, num_sums=(2, 3), num_classes=3, seed=0,
                    root_log_weight_std=0.1)
    assert all(np.log(root.params.values).std() < 0.2 for root in narrow.roots)


@pytest.mark.parametrize("shared_weights", [False, True])
def test_spatial_sum_log_normal_weights_are_normalized_and_spread_as_asked(shared_weights):
    leaves = conv.leaf_layer((3, 3), num_leaves=50)
    layer = conv.spatial_sum_layer(leaves, 4, shared_weights=shared_weights, rng=0, log_weight_std=2.0)
    for node in layer.nodes():
        w = node.params.values
        assert np.allclose(w.sum(axis=1), 1.0)
        assert 1.5 < np.log(w).std(axis=1).mean() < 2.5
    uniform = conv.spatial_sum_layer(leaves, 4, shared_weights=shared_weights, rng=0)
    assert np.log(uniform.nodes()[0].params.values).std(axis=1).mean() < 1.5


def test_spatial_sum_refuses_a_negative_log_weight_spread():
    with pytest.raises(ValueError, match="spatial_sum_layer: log_weight_std"):
        conv.spatial_sum_layer(conv.leaf_layer((2, 2), num_leaves=2), 2, log_weight_std=-0.5)


def test_dgcspn_sum_log_weight_spread_reaches_every_spatial_sum_and_spares_the_roots():
    options = dict(mode="discriminative", num_leaves=30, num_sums=(30, 30), num_classes=3, seed=0)
    wide = dgcspn(8, 8, sum_log_weight_std=2.0, **options)
    roots = {id(root) for root in wide.roots}
    spreads = [np.log(node.params.values).std(axis=1).mean() for node in wide.sum_nodes if id(node) not in roots]
    assert min(spreads) > 1.5
    assert wide.check().ok
    assert all(2.0 < np.log(root.params.values).std() < 4.0 for root in wide.roots)   # still the roots' own 3


# ---- augmentation (DCSPN Definition 2) -------------------------------------------------------
def test_channel_augmentation_concatenates_channels_of_same_scope_cells():
    leaves = conv.leaf_layer((4, 4), num_leaves=2)
    first = conv.spatial_sum_layer(leaves, 3, rng=0)
    second = conv.spatial_sum_layer(leaves, 5, rng=1)
    merged = conv.channel_augmentation(first, second)
    assert merged.num_channels == 8 and merged.part_channels == (3, 5)
    summed = conv.spatial_sum_layer(merged, 2, rng=2)
    assert summed.cells[1, 2].children == (first.cells[1, 2], second.cells[1, 2])


def test_channel_augmentation_of_different_scopes_is_refused():
    leaves = conv.leaf_layer((4, 4), num_leaves=2)
    rows = conv.product_layer(leaves, kernel=(1, 2))
    cols = conv.product_layer(leaves, kernel=(2, 1))
    cols_resized = conv.CellLayer([cols.cells[:, :2].repeat(2, axis=0)], variables=leaves.variables)
    with pytest.raises(ValueError, match="Lemma 1"):
        conv.channel_augmentation(rows, cols_resized)


def test_channel_augmentation_of_different_scopes_is_reported_as_smoothness_at_the_sum():
    leaves = conv.leaf_layer((2, 4), num_leaves=2)
    pooled = conv.product_layer(leaves, kernel=(1, 2))
    shifted = conv.CellLayer([leaves.cells[:, 1:3]], variables=leaves.variables, name="shifted")
    merged = conv.channel_augmentation(pooled, shifted, require_same_scopes=False)
    summed = conv.spatial_sum_layer(merged, 2, rng=0, name="mix")
    circuit = pc.Circuit(summed.nodes(), variables=leaves.variables)
    report = circuit.check()
    assert report.kinds == {"smoothness"}
    assert set(map(id, report.nodes)) == set(map(id, summed.nodes()))


def test_width_augmentation_places_layers_side_by_side():
    leaves = conv.leaf_layer((2, 4), num_leaves=2)
    left = conv.CellLayer([leaves.cells[:, :2]], variables=leaves.variables, name="left")
    right = conv.CellLayer([leaves.cells[:, 2:]], variables=leaves.variables, name="right")
    wide = conv.width_augmentation(left, right)
    tall = conv.height_augmentation(left, right)
    assert wide.shape == (2, 4) and tall.shape == (4, 2)
    assert wide.cells[1, 3] is leaves.cells[1, 3] and tall.cells[3, 1] is leaves.cells[1, 3]


def test_width_augmentation_of_disjoint_layers_pools_decomposably():
    leaves = conv.leaf_layer((2, 4), num_leaves=2)
    left = conv.CellLayer([leaves.cells[:, :2]], variables=leaves.variables)
    right = conv.CellLayer([leaves.cells[:, 2:]], variables=leaves.variables)
    pooled = conv.product_layer(conv.width_augmentation(left, right), kernel=(2, 4))
    assert pc.Circuit(pooled.nodes(), variables=leaves.variables).check().ok


def test_width_augmentation_of_overlapping_layers_is_reported_as_decomposability():
    leaves = conv.leaf_layer((2, 2), num_leaves=2)
    pooled = conv.product_layer(conv.width_augmentation(leaves, leaves), kernel=(1, 4), name="seam")
    report = pc.Circuit(pooled.nodes(), variables=leaves.variables).check()
    assert report.kinds == {"decomposability"}
    assert all(node.label.startswith("seam") for node in report.nodes)


# ---- CSPN and DCSPN --------------------------------------------------------------------------
@FAST
@given(height=st.integers(1, 12), width=st.integers(1, 12), sums=st.integers(1, 3), leaves=st.integers(1, 3),
       shared=st.booleans(), seed=st.integers(0, 5))
def test_cspn_with_default_windows_passes_check(height, width, sums, leaves, shared, seed):
    circuit = cspn(height, width, num_sums=sums, num_leaves=leaves, shared_weights=shared, seed=seed)
    assert circuit.check().ok
    assert circuit.scope == pc.Variables.image(height, width).scope


@FAST
@given(data=st.data(), height=st.integers(1, 12), width=st.integers(1, 12))
def test_cspn_with_tiling_windows_passes_check(data, height, width):
    divisors = lambda n: [d for d in range(1, n + 1) if n % d == 0]  # noqa: E731
    window = (data.draw(st.sampled_from(divisors(height))), data.draw(st.sampled_from(divisors(width))))
    assume(window != (1, 1))
    circuit = cspn(height, width, windows=[window], num_sums=2, num_leaves=2)
    assert circuit.check().ok


def test_cspn_refuses_overlapping_sum_pooling_windows():
    with pytest.raises(ValueError, match=r"Definition 1 \(ii\)"):
        cspn(8, 8, windows=[(2, 2)], strides=[(1, 1)])


def test_cspn_refuses_windows_that_leave_pixels_uncovered():
    with pytest.raises(ValueError, match="uncovered"):
        cspn(5, 4, windows=[(2, 2)])


def test_overlapping_sum_pooling_built_by_hand_is_reported_above_it():
    leaves = conv.leaf_layer((6, 6), num_leaves=2)
    overlapping = conv.product_layer(conv.spatial_sum_layer(leaves, 2, rng=0), kernel=2, stride=1, name="overlap")
    above = conv.product_layer(conv.spatial_sum_layer(overlapping, 2, rng=1), kernel=2, stride=2, name="above")
    report = pc.Circuit(above.nodes(), variables=leaves.variables).check()
    assert report.kinds == {"decomposability"}
    assert report.nodes and all(node.label.startswith("above") for node in report.nodes)
    assert "overlapping scopes" in report.violations[0].message


@FAST
@given(height=st.integers(1, 12), width=st.integers(1, 12), pool_every=st.sampled_from([None, 1, 2, 3]),
       sums=st.integers(1, 3), shared=st.booleans(), seed=st.integers(0, 5))
def test_dcspn_accepted_configurations_pass_check(height, width, pool_every, sums, shared, seed):
    circuit = dcspn(height, width, num_leaves=2, num_sums=sums, pool_every=pool_every, shared_weights=shared,
                    seed=seed)
    assert circuit.check().ok
    assert circuit.scope == pc.Variables.image(height, width).scope


def test_dcspn_merges_same_scope_branches_by_channel_augmentation():
    circuit = dcspn(4, 4, num_leaves=2, num_sums=3)
    two_by_two = [n for n in circuit.sum_nodes if n.label and n.label.startswith("conv2x2")]
    assert len(two_by_two) == 4
    assert all(len(node.children) == 2 and node.num_inputs == 6 for node in two_by_two)
    labels = sorted(child.label.split("[")[0] for child in two_by_two[0].children)
    assert labels == ["pool1x2@2x1", "pool2x1@1x2"]


def test_dcspn_pools_two_by_two_in_alternate_blocks_of_layers():
    circuit = dcspn(8, 8, num_leaves=2, num_sums=2, pool_every=1)
    windows = {n.label.split("@")[0] for n in circuit.product_nodes}
    assert windows == {"pool1x2", "pool2x1", "pool2x2"}
    assert {n.label.split("@")[0] for n in dcspn(8, 8, num_sums=2).product_nodes} == {"pool1x2", "pool2x1"}


# ---- DGC-SPN ---------------------------------------------------------------------------------
@FAST
@given(height=st.integers(1, 9), width=st.integers(1, 9), kernel=st.tuples(st.integers(2, 3), st.integers(2, 3)),
       leaves=st.integers(1, 2), sums=st.integers(1, 3), first=st.sampled_from(["one-hot", "depthwise"]),
       shared=st.booleans(), seed=st.integers(0, 5))
def test_generative_dgcspn_accepted_configurations_pass_check(height, width, kernel, leaves, sums, first, shared,
                                                              seed):
    assume(height * width >= 2)
    circuit = dgcspn(height, width, kernel=kernel, num_leaves=leaves, num_sums=sums, first_combinations=first,
                     shared_weights=shared, seed=seed)
    assert circuit.check().ok
    assert circuit.scope == pc.Variables.image(height, width).scope


@FAST
@given(blocks=st.tuples(st.integers(1, 5), st.integers(1, 5)), non_overlapping=st.integers(0, 2),
       classes=st.integers(1, 4), seed=st.integers(0, 5))
def test_discriminative_dgcspn_accepted_configurations_pass_check(blocks, non_overlapping, classes, seed):
    height, width = (b * 2 ** non_overlapping for b in blocks)
    assume(height * width >= 2)
    circuit = dgcspn(height, width, mode="discriminative", num_leaves=2, num_sums=(2, 3), num_classes=classes,
                     num_non_overlapping=non_overlapping, seed=seed)
    assert circuit.check().ok
    assert circuit.num_roots == classes
    assert all(root.scope == pc.Variables.image(height, width).scope for root in circuit.roots)


@FAST
@given(height=st.integers(2, 12), width=st.integers(2, 12), kernels=st.lists(st.tuples(st.integers(2, 3),
                                                                                       st.integers(2, 3)),
                                                                             min_size=1, max_size=3))
def test_gclp_dilations_are_products_of_preceding_kernels(height, width, kernels):
    plan = gclp_plan(height, width, kernel=kernels)
    reach = (1, 1)
    for layer in plan:
        assert layer.dilation == reach
        reach = (reach[0] * layer.kernel[0], reach[1] * layer.kernel[1])
    assert reach[0] >= height and reach[1] >= width and plan[-1].padding == "final"


@FAST
@given(height=st.integers(1, 9), width=st.integers(1, 9),
       kernels=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=3))
def test_gclp_cell_covers_the_rows_and_columns_ending_at_its_position(height, width, kernels):
    layer = stack(height, width, kernels, channels=1, sums=1, first="depthwise")
    reach = (int(np.prod([k[0] for k in kernels])), int(np.prod([k[1] for k in kernels])))
    for oy, ox in itertools.product(range(layer.height), range(layer.width)):
        expected = window_pixels(layer.variables, range(oy - reach[0] + 1, oy + 1), range(ox - reach[1] + 1, ox + 1))
        assert layer.scope(oy, ox) == expected
    assert pc.Circuit(layer.nodes(), variables=layer.variables).check().ok


def test_olivetti_generative_plan_has_six_full_layers_and_a_final_one():
    plan = gclp_plan(64, 64)
    assert [layer.dilation[0] for layer in plan] == [1, 2, 4, 8, 16, 32, 64]
    assert [layer.padding for layer in plan] == ["full"] * 6 + ["final"]


def test_mnist_discriminative_plan_starts_with_two_non_overlapping_layers():
    plan = gclp_plan(28, 28, num_non_overlapping=2)
    assert [(layer.stride, layer.padding) for layer in plan[:2]] == [((2, 2), "valid")] * 2
    assert [layer.dilation[0] for layer in plan[2:]] == [1, 2, 4, 8]


def test_dgcspn_refuses_a_dilation_that_breaks_footnote_2():
    with pytest.raises(ValueError, match="footnote 2"):
        dgcspn(8, 8, dilations=[(1, 1), (1, 1), (4, 4), (8, 8)])


def test_dgcspn_accepts_the_dilations_of_footnote_2():
    circuit = dgcspn(8, 8, num_leaves=2, num_sums=2, dilations=[(1, 1), (2, 2), (4, 4), (8, 8)])
    assert circuit.check().ok


def test_dgcspn_refuses_non_overlapping_layers_that_do_not_tile():
    with pytest.raises(ValueError, match="divisible"):
        dgcspn(27, 28, mode="discriminative")


@pytest.mark.parametrize("dilation", [(1, 1), (1, 2), (2, 1)])
def test_dilation_below_footnote_2_built_by_hand_is_reported_as_decomposability(dilation):
    layer = stack(6, 6, [(2, 2), (2, 2)], dilations=[(1, 1), dilation])
    circuit = pc.Circuit(layer.nodes(), variables=layer.variables)
    report = circuit.check()
    assert report.kinds == {"decomposability"}
    assert report.nodes and all(node.label.startswith("gclp1") for node in report.nodes)
    assert all(isinstance(node, pc.ProductNode) for node in report.nodes)


def test_generative_dgcspn_first_layer_is_one_hot_and_later_ones_depthwise():
    circuit = dgcspn(4, 4, num_leaves=2, num_sums=3)
    first = [n for n in circuit.product_nodes if n.label.startswith("gclp0")]
    later = [n for n in circuit.product_nodes if not n.label.startswith("gclp0")]
    assert {n.num_units for n in first} == {16}
    assert {n.num_units for n in later} == {3} and {n.pattern for n in later} == {"elementwise"}


# ---- normalization by enumeration (through the compiled program) ----------------------------
@pytest.mark.parametrize("build", [
    lambda: cspn(2, 3, leaf="bernoulli", num_leaves=2, num_sums=2),
    lambda: dcspn(3, 2, leaf="indicator", num_leaves=2, num_sums=2, pool_every=1),
    lambda: dgcspn(2, 3, leaf="bernoulli", num_leaves=2, num_sums=2),
    lambda: dgcspn(4, 2, mode="discriminative", leaf="bernoulli", num_leaves=2, num_sums=2,
                   num_non_overlapping=1, num_classes=3),
], ids=["cspn", "dcspn", "dgcspn-generative", "dgcspn-discriminative"])
def test_convolutional_circuits_sum_to_one_over_binary_images(build):
    circuit = build()
    worlds = np.array(list(itertools.product([0.0, 1.0], repeat=circuit.num_variables)))
    log_likelihood = np.asarray(circuit.compile(dtype="float64").log_likelihood(worlds))
    assert np.allclose(np.exp(log_likelihood).sum(axis=0), 1.0)


# ---- paper sizes -------------------------------------------------------------------------------
def timed(build):
    start = time.perf_counter()
    circuit = build()
    return circuit, time.perf_counter() - start


def test_mnist_discriminative_dgcspn_and_dcspn_build_in_seconds():
    for name, build in [("DGC-SPN discriminative 28x28", lambda: dgcspn(28, 28, mode="discriminative")),
                        ("DCSPN 64x64", lambda: dcspn(64, 64))]:
        circuit, seconds = timed(build)
        print(f"{name}: {circuit} built in {seconds:.2f} s")
        assert seconds < 30
        assert circuit.check().ok


def test_olivetti_generative_dgcspn_builds_in_seconds():
    circuit, seconds = timed(lambda: dgcspn(64, 64))
    print(f"DGC-SPN generative 64x64: {circuit} built in {seconds:.2f} s")
    assert seconds < 60
    assert circuit.check().ok
    assert len(circuit.roots[0].children) == 64 * 64


def test_builder_names_stay_functions_after_their_modules_are_imported():
    import pcircuits.builders.dcspn  # noqa: F401  (imports the same-named submodule)
    import pcircuits.builders.dgcspn  # noqa: F401
    assert callable(pc.builders.dcspn) and callable(pc.builders.dgcspn) and callable(pc.builders.cspn)
    assert pc.builders.dgcspn(2, 2, num_leaves=1, num_sums=1).check().ok
