"""Image tasks: occlusion masks, completion, the papers' MSE, bits per dimension, samples, PNG grids."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits import imagegrid, tasks

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG file's IHDR chunk (after checking the signature)."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def digits_program():
    """A small untrained Gaussian PD circuit over 8x8 images, compiled in float64."""
    circuit = pc.builders.poon_domingos(8, 8, delta=4, num_sums=2, num_leaves=3, seed=1)
    return circuit.compile("numpy", "float64")


@pytest.fixture(scope="module")
def digits_test():
    data = pc.datasets.load_digits_8x8()
    z, mean, std = pc.datasets.standardize_images(data.x_test[:12])
    return data.x_test[:12].astype(np.float64), z, mean, std


# ---- masks ------------------------------------------------------------------------------

sizes = st.integers(min_value=2, max_value=17)


@given(sizes, sizes)
def test_left_and_right_halves_occlude_half_of_the_columns(height, width):
    left, right = tasks.left_half(height, width), tasks.right_half(height, width)
    assert left.shape == right.shape == (height, width)
    assert left[:, : width // 2].all() and not left[:, width // 2:].any()
    assert right[:, width - width // 2:].all() and not right[:, : width - width // 2].any()


@given(sizes, sizes)
def test_top_and_bottom_halves_occlude_half_of_the_rows(height, width):
    top, bottom = tasks.top_half(height, width), tasks.bottom_half(height, width)
    assert top[: height // 2].all() and not top[height // 2:].any()
    assert bottom[height - height // 2:].all() and not bottom[: height - height // 2].any()


def test_center_mask_is_the_central_block():
    mask = tasks.center(8, 8)
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:6, 2:6] = True
    assert np.array_equal(mask, expected)


def test_make_mask_repeats_over_channels():
    mask = tasks.make_mask("bottom", (4, 6, 3))
    assert mask.shape == (4, 6, 3)
    assert np.array_equal(mask[..., 2], tasks.bottom_half(4, 6))


def test_unknown_mask_name_is_refused():
    with pytest.raises(ValueError, match="unknown mask"):
        tasks.make_mask("diagonal", (8, 8))


def test_occlude_sets_exactly_the_masked_pixels_to_nan():
    images = np.arange(2 * 4 * 4, dtype=float).reshape(2, 4, 4)
    out = tasks.occlude(images, tasks.left_half(4, 4))
    assert np.array_equal(np.isnan(out), np.broadcast_to(tasks.left_half(4, 4), (2, 4, 4)))
    assert np.array_equal(out[:, :, 2:], images[:, :, 2:])


# ---- the MSE --------------------------------------------------------------------------------

def test_mse_is_zero_for_a_perfect_completion(digits_test):
    _, z, mean, std = digits_test
    assert tasks.completion_mse(z, z.copy(), tasks.left_half(8, 8), mean=mean, std=std, max_value=16) == 0.0


def test_mse_counts_only_occluded_pixels():
    original = np.zeros((1, 2, 2))
    completed = np.array([[[3.0, 100.0], [5.0, -40.0]]])   # visible right column is way off
    mask = tasks.left_half(2, 2)
    assert tasks.completion_mse(original, completed, mask) == pytest.approx((9 + 25) / 2)


def test_mse_unstandardizes_with_each_images_own_statistics():
    # image 0: mean 10, std 2; image 1: mean 100, std 5; errors of 1 standardized unit each
    original = np.zeros((2, 1, 2))
    completed = np.array([[[1.0, 0.0]], [[-1.0, 0.0]]])
    mask = np.array([[True, False]])
    errors = tasks.completion_errors(original, completed, mask, mean=[10.0, 100.0], std=[2.0, 5.0])
    assert np.allclose(errors, [4.0, 25.0])
    assert tasks.completion_mse(original, completed, mask, mean=[10.0, 100.0], std=[2.0, 5.0]) == pytest.approx(14.5)


def test_mse_rescales_grey_levels_to_0_255():
    original = np.zeros((1, 1, 2))
    completed = np.array([[[16.0, 0.0]]])          # the full range of the 8x8 digits
    mask = np.array([[True, False]])
    assert tasks.completion_mse(original, completed, mask, max_value=16) == pytest.approx(255.0 ** 2)


def test_mse_of_unstandardized_completion_matches_grey_level_mse(digits_test):
    raw, z, mean, std = digits_test
    rng = np.random.default_rng(0)
    guess = z + rng.normal(size=z.shape)
    mask = tasks.bottom_half(8, 8)
    by_stats = tasks.completion_mse(z, guess, mask, mean=mean, std=std, max_value=16)
    grey = pc.datasets.unstandardize_images(guess, mean, std)
    direct = np.mean(((grey - raw) * 255 / 16)[:, 4:, :] ** 2)
    assert by_stats == pytest.approx(direct)


def test_mse_refuses_a_mask_that_hides_nothing():
    with pytest.raises(ValueError, match="occludes no pixel"):
        tasks.completion_mse(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), np.zeros((2, 2), dtype=bool))


def test_mse_refuses_nan_in_the_completion():
    completed = np.full((1, 2, 2), np.nan)
    with pytest.raises(ValueError, match="not finite"):
        tasks.completion_mse(np.zeros((1, 2, 2)), completed, tasks.left_half(2, 2))


# ---- bits per dimension ------------------------------------------------------------------

@given(st.floats(min_value=-1e4, max_value=1e3), st.integers(min_value=1, max_value=4096))
def test_bits_per_dimension_is_negative_log2_likelihood_per_dimension(ll, dims):
    assert tasks.bits_per_dimension(ll, dims) == pytest.approx(-ll / (dims * math.log(2)), abs=1e-9)


def test_bits_per_dimension_of_unit_interval_data_adds_eight_bits():
    assert tasks.bits_per_dimension(-100.0, 50, scale=256) == pytest.approx(100 / (50 * math.log(2)) + 8)


def test_bits_per_dimension_uses_a_scale_per_example():
    ll = np.array([-10.0, -20.0])
    expected = np.mean([10 / (4 * math.log(2)) + 1.0, 20 / (4 * math.log(2)) + 2.0])
    assert tasks.bits_per_dimension(ll, 4, scale=[2.0, 4.0]) == pytest.approx(expected)


def test_bits_per_dimension_of_a_uniform_byte_model_is_eight():
    dims = 10
    assert tasks.bits_per_dimension(dims * math.log(1 / 256), dims) == pytest.approx(8.0)


def test_test_log_likelihood_is_the_mean_of_the_programs_log_likelihoods(digits_program, digits_test):
    _, z, _, _ = digits_test
    expected = np.mean(pc.to_numpy(digits_program.log_likelihood(z.reshape(len(z), -1))))
    assert tasks.test_log_likelihood(digits_program, z, batch_size=5) == pytest.approx(expected)


# ---- completion -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["posterior-mean", "mpe"])
def test_completion_keeps_the_visible_pixels(digits_program, digits_test, method):
    _, z, _, _ = digits_test
    mask = tasks.left_half(8, 8)
    out = tasks.complete(digits_program, z, mask, method=method, batch_size=5)
    assert out.shape == z.shape
    assert np.array_equal(out[:, ~mask], z[:, ~mask])
    assert np.all(np.isfinite(out))


def test_completion_ignores_the_values_under_the_mask(digits_program, digits_test):
    _, z, _, _ = digits_test
    mask = tasks.bottom_half(8, 8)
    scrambled = z.copy()
    scrambled[:, mask] = 1e6
    assert np.allclose(tasks.complete(digits_program, z, mask), tasks.complete(digits_program, scrambled, mask))


def test_completion_does_not_depend_on_the_batch_size(digits_program, digits_test):
    _, z, _, _ = digits_test
    mask = tasks.left_half(8, 8)
    assert np.allclose(tasks.complete(digits_program, z, mask, batch_size=1),
                       tasks.complete(digits_program, z, mask, batch_size=None))


def test_posterior_mean_completion_lies_within_the_leaf_means(digits_program, digits_test):
    _, z, _, _ = digits_test
    means = np.concatenate([np.ravel(node.family.parameters()["mean"]) for node in digits_program.circuit.nodes
                            if isinstance(node, pc.InputNode)])
    mask = tasks.left_half(8, 8)
    filled = tasks.complete(digits_program, z, mask)[:, mask]
    assert means.min() - 1e-9 <= filled.min() and filled.max() <= means.max() + 1e-9


def test_unknown_completion_method_is_refused(digits_program, digits_test):
    with pytest.raises(ValueError, match="posterior-mean"):
        tasks.complete(digits_program, digits_test[1], tasks.left_half(8, 8), method="mean")


def test_completion_refuses_images_of_the_wrong_size(digits_program):
    with pytest.raises(ValueError, match="64 variables"):
        tasks.complete(digits_program, np.zeros((2, 7, 7)), tasks.left_half(7, 7))


# ---- samples ------------------------------------------------------------------------------------

def test_unconditional_samples_have_the_requested_shape(digits_program):
    samples = tasks.unconditional_samples(digits_program, 5, seed=3)
    assert samples.shape == (5, 64) and np.all(np.isfinite(samples))


def test_conditional_samples_keep_the_evidence(digits_program, digits_test):
    _, z, _, _ = digits_test
    mask = tasks.top_half(8, 8)
    out = tasks.conditional_samples(digits_program, z, mask, seed=1, batch_size=4)
    assert np.array_equal(out[:, ~mask], z[:, ~mask])
    assert np.all(np.isfinite(out))


# ---- pictures -----------------------------------------------------------------------------------

def test_completion_grid_is_a_png_with_one_row_per_kind(tmp_path, digits_test):
    _, z, _, _ = digits_test
    mask = tasks.left_half(8, 8)
    path = imagegrid.save_completion_grid(tmp_path / "grid.png", z, mask, {"a": z, "b": z}, max_images=6)
    width, height = png_size(path)
    assert width > height > 4 * 8          # six columns, four rows of enlarged 8x8 images


def test_image_grid_is_a_png_sized_by_its_columns(tmp_path):
    images = np.random.default_rng(0).normal(size=(12, 64))
    wide = png_size(imagegrid.save_image_grid(tmp_path / "wide.png", images, ncols=12))
    tall = png_size(imagegrid.save_image_grid(tmp_path / "tall.png", images, ncols=2))
    assert wide[0] > wide[1] and tall[1] > tall[0]


def test_image_grid_needs_a_shape_for_non_square_flat_images(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        imagegrid.save_image_grid(tmp_path / "x.png", np.zeros((2, 12)))
    assert png_size(imagegrid.save_image_grid(tmp_path / "x.png", np.zeros((2, 12)), shape=(3, 4)))[0] > 0


def test_image_canvas_places_images_on_a_white_background():
    red = np.zeros((1, 2, 2, 3))
    red[..., 0] = 1
    canvas = imagegrid.image_canvas([red, red], padding=1)
    assert canvas.shape == (7, 4, 3)
    assert np.array_equal(canvas[1:3, 1:3], red[0]) and np.all(canvas[0] == 1.0)
