"""Dataset loaders: the shared files (skipped when absent), the raw formats on small files, normalization."""
import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pcircuits import datasets
from pcircuits.datasets import (
    default_data_dir, load_caltech, load_caltech_faces, load_digits_8x8, load_fashion_mnist, load_mnist,
    load_olivetti, pd_test_size, read_caltech_raw, read_caltech_raw_dir, read_idx, read_olivetti_raw,
    standardize_images, unstandardize_images,
)


def shared_file(name):
    path = default_data_dir() / name
    if not path.is_file():
        pytest.skip(f"{name} not found in {default_data_dir()} (set PCIRCUITS_DATA to the shared data folder)")
    return path


# ---- the shared data files -----------------------------------------------------------------

@pytest.mark.data
@pytest.mark.parametrize("loader, file", [(load_mnist, "mnist.npz"), (load_fashion_mnist, "fashion_mnist.npz")])
def test_mnist_like_loaders_give_the_standard_split(loader, file):
    shared_file(file)
    data = loader()
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.shape == (28, 28) and data.max_value == 255
    assert data.y_train.shape == (60000,) and set(np.unique(data.y_test)) == set(range(10))


@pytest.mark.data
def test_mnist_first_labels_are_the_known_ones():
    shared_file("mnist.npz")
    assert load_mnist().y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


@pytest.mark.data
def test_mnist_validation_split_holds_out_the_last_training_images():
    shared_file("mnist.npz")
    standard, held_out = load_mnist(), load_mnist(split="validation")
    assert len(held_out.x_train) == 50000 and len(held_out.x_valid) == 10000
    np.testing.assert_array_equal(held_out.x_valid, standard.x_train[50000:])
    np.testing.assert_array_equal(held_out.x_test, standard.x_test)


@pytest.mark.data
def test_olivetti_loader_gives_the_pd_split():
    shared_file("olivetti_pd.npz")
    data = load_olivetti()
    assert data.x_train.shape == (350, 64, 64) and data.x_test.shape == (50, 64, 64)
    assert data.x_train.dtype == np.uint8
    assert set(data.y_test.tolist()) == {35, 36, 37, 38, 39}
    assert set(data.y_train.tolist()).isdisjoint(data.y_test.tolist())


@pytest.mark.data
@pytest.mark.parametrize("category, num_train, num_test", [("Faces", 385, 50), ("Faces_easy", 385, 50)])
def test_caltech_faces_loader_gives_the_pd_split(category, num_train, num_test):
    shared_file("caltech101_faces_pd64.npz")
    data = load_caltech_faces(category)
    assert data.x_train.shape == (num_train, 64, 64) and data.x_test.shape == (num_test, 64, 64)
    assert data.x_train.dtype == np.uint8 and data.name == f"caltech101/{category}"


@pytest.mark.data
def test_caltech_other_categories_come_from_the_all_category_file():
    shared_file("caltech101_pd64.npz")
    data = load_caltech("helicopter")
    assert len(data.x_train) == 59 and len(data.x_test) == 29
    assert all(name.startswith("helicopter/") for name in data.extra["files_test"])


@pytest.mark.data
def test_caltech_unknown_category_names_the_known_ones():
    shared_file("caltech101_pd64.npz")
    with pytest.raises(ValueError, match="case-sensitive"):
        load_caltech("faces")


# ---- the embedded default ------------------------------------------------------------------

def test_digits_8x8_loads_without_files_with_a_fixed_split():
    data = load_digits_8x8()
    assert data.x_train.shape == (1437, 8, 8) and data.x_test.shape == (360, 8, 8)
    assert data.x_train.dtype == np.uint8 and data.max_value == 16 and data.x_train.max() == 16
    np.testing.assert_array_equal(load_digits_8x8().x_test, data.x_test)


def test_dataset_flat_gives_rows_of_pixels():
    data = load_digits_8x8()
    assert data.flat("test").shape == (360, 64)
    with pytest.raises(ValueError, match="no 'valid' split"):
        data.flat("valid")


# ---- raw formats on small files --------------------------------------------------------------

def write_idx(path, array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_reads_plain_and_gzipped_files(tmp_path, name):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, images)
    result = read_idx(tmp_path / name)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, images)


def test_read_idx_reads_big_endian_ints(tmp_path):
    values = np.array([1, -2, 70000], dtype=np.int32)
    write_idx(tmp_path / "ints-idx1", values, type_code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints-idx1"), values)


def test_read_idx_rejects_a_file_that_is_not_idx(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad")


def test_read_idx_rejects_a_truncated_file(tmp_path):
    write_idx(tmp_path / "x-idx3-ubyte", np.zeros((2, 3, 3), dtype=np.uint8))
    data = (tmp_path / "x-idx3-ubyte").read_bytes()
    (tmp_path / "x-idx3-ubyte").write_bytes(data[:-1])
    with pytest.raises(ValueError, match="needs 18"):
        read_idx(tmp_path / "x-idx3-ubyte")


def test_load_mnist_reads_a_folder_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8), rng.integers(0, 256, (3, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x_train)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2, 3, 4, 5], dtype=np.uint8))
    write_idx(tmp_path / "t10k-images.idx3-ubyte", x_test)
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", np.array([7, 8, 9], dtype=np.uint8))
    data = load_mnist(tmp_path)
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    assert data.y_train.tolist() == [1, 2, 3, 4, 5] and data.y_test.tolist() == [7, 8, 9]


def write_olivetti_raw(path, images):
    """P&D's layout: one row per pixel (column-major within the image), one column per image."""
    n, size, _ = images.shape
    matrix = images.transpose(0, 2, 1).reshape(n, size * size).T
    path.write_text("\n".join("  ".join(str(v) for v in row) for row in matrix) + "\n")


def test_read_olivetti_raw_puts_pixel_i_j_at_row_j_times_size_plus_i(tmp_path):
    images = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    write_olivetti_raw(tmp_path / "olivetti.raw", images)
    np.testing.assert_array_equal(read_olivetti_raw(tmp_path / "olivetti.raw", size=4), images)
    matrix = np.loadtxt(tmp_path / "olivetti.raw")
    assert matrix[2 * 4 + 1, 0] == images[0, 1, 2]


def test_load_olivetti_reads_a_raw_file_with_the_last_50_as_test(tmp_path):
    images = np.random.default_rng(1).integers(0, 243, (60, 64, 64)).astype(np.uint8)
    write_olivetti_raw(tmp_path / "olivetti.raw", images)
    data = load_olivetti(tmp_path / "olivetti.raw")
    np.testing.assert_array_equal(data.x_train, images[:10])
    np.testing.assert_array_equal(data.x_test, images[10:])
    assert data.y_test.tolist() == np.repeat(np.arange(1, 6), 10).tolist()


def test_read_olivetti_raw_rejects_a_wrong_number_of_rows(tmp_path):
    (tmp_path / "olivetti.raw").write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="4096"):
        read_olivetti_raw(tmp_path / "olivetti.raw")


def write_caltech_raw(path, image):
    path.write_text("\n".join(" ".join(f"{v:.1f}" for v in row) for row in image) + "\n")


def test_read_caltech_raw_crops_the_central_64_by_64(tmp_path):
    image = np.add.outer(np.arange(100), np.arange(100) * 2) % 256
    write_caltech_raw(tmp_path / "image_0001.raw.rescale", image)
    crop = read_caltech_raw(tmp_path / "image_0001.raw.rescale")
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, image[18:82, 18:82])


def test_read_caltech_raw_dir_makes_the_last_third_the_test_set(tmp_path):
    folder = tmp_path / "dolphin"
    folder.mkdir()
    for i in range(9):
        write_caltech_raw(folder / f"image_{i + 1:04d}.raw.rescale", np.full((100, 100), i))
    data = read_caltech_raw_dir(folder)
    assert len(data.x_train) == 6 and len(data.x_test) == 3
    assert data.x_test[:, 0, 0].tolist() == [6, 7, 8]
    assert data.extra["files_test"][0] == "image_0007.raw.rescale"


def test_load_caltech_finds_the_category_folder_of_a_raw_release(tmp_path):
    folder = tmp_path / "Faces_easy"
    folder.mkdir()
    for i in range(3):
        write_caltech_raw(folder / f"image_{i + 1:04d}.raw.rescale", np.full((100, 100), 10 * i))
    data = load_caltech("Faces_easy", tmp_path)
    assert len(data.x_train) == 2 and len(data.x_test) == 1


@pytest.mark.parametrize("n, expected", [(435, 50), (88, 29), (65, 21), (2, 0)])
def test_pd_test_size_is_a_third_capped_at_50(n, expected):
    assert pd_test_size(n) == expected


# ---- missing files ---------------------------------------------------------------------------

@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist, load_olivetti, load_caltech_faces])
def test_missing_files_name_the_folder_and_the_environment_variable(loader, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="PCIRCUITS_DATA") as caught:
        loader()
    assert str(tmp_path) in str(caught.value)


def test_default_data_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path


def test_default_data_dir_is_the_shared_folder_next_to_the_repository(monkeypatch):
    monkeypatch.delenv("PCIRCUITS_DATA", raising=False)
    assert default_data_dir().parts[-2:] == ("shared", "data")


def test_bad_split_name_is_rejected():
    with pytest.raises(ValueError, match="'standard'"):
        load_mnist(split="train")


# ---- per-image normalization -----------------------------------------------------------------

images = hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(2, 5), st.integers(2, 5)),
                    elements=st.integers(0, 255).map(float))


@settings(max_examples=40, deadline=None)
@given(x=images)
def test_standardized_images_have_zero_mean_and_unit_or_zero_spread(x):
    z, mean, std = standardize_images(x)
    flat = z.reshape(len(z), -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-9)
    spread = flat.std(axis=1)
    constant = np.ptp(x.reshape(len(x), -1), axis=1) == 0
    np.testing.assert_allclose(spread[~constant], 1, atol=1e-6)
    np.testing.assert_array_equal(spread[constant], 0)


@settings(max_examples=40, deadline=None)
@given(x=images)
def test_unstandardize_inverts_standardize(x):
    z, mean, std = standardize_images(x)
    np.testing.assert_allclose(unstandardize_images(z, mean, std), x, atol=1e-9)


def test_standardize_ignores_missing_pixels():
    x = np.array([[[1.0, 3.0], [np.nan, 5.0]]])
    z, mean, std = standardize_images(x)
    assert mean[0] == 3.0 and np.isnan(z[0, 1, 0])


def test_standardize_matches_pd_population_statistics():
    x = np.array([[0.0, 2.0, 4.0, 6.0]])
    _, mean, std = standardize_images(x)
    assert mean[0] == 3.0 and std[0] == pytest.approx(np.sqrt(5.0))


def test_unstandardize_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="2 images"):
        unstandardize_images(np.zeros((2, 3)), [0.0], [1.0])


def test_unstandardize_short_name_is_the_same_function():
    assert datasets.unstandardize is unstandardize_images
