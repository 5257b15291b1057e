"""Loaders for the image benchmarks of the papers, with their standard splits.

Every loader returns a :class:`Dataset` of NumPy arrays with the pixels as stored (8-bit
integers, not rescaled); normalize with :func:`standardize_images` (per image, as P&D, DCSPN and
DGC-SPN do) or as a model needs. Files are looked up in :func:`default_data_dir` (the
``PCIRCUITS_DATA`` environment variable, else ``../shared/data`` next to the repository) unless
a ``path`` is given. Besides the ``.npz`` copies, the original formats are read too: MNIST idx
files (``*-ubyte``, optionally gzipped), P&D's ``olivetti.raw`` and Caltech ``*.raw.rescale``
text files. :func:`load_digits_8x8` needs no data folder: the 8x8 digits ship inside the
package (``pcircuits/data/digits8x8.npz``; source and licence in ``pcircuits/data/README.md``).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

__all__ = [
    "Dataset", "default_data_dir", "data_search_dirs",
    "load_mnist", "load_fashion_mnist", "load_olivetti", "load_caltech", "load_caltech_faces", "load_digits_8x8",
    "read_idx", "read_olivetti_raw", "read_caltech_raw", "read_caltech_raw_dir",
    "pd_test_size", "standardize_images", "unstandardize_images", "unstandardize",
]

PathLike = Union[str, os.PathLike]

#: Environment variable naming the folder that holds the data files.
DATA_ENV = "PCIRCUITS_DATA"


@dataclass
class Dataset:
    """Train and test images of one benchmark.

    Attributes
    ----------
    name : str
        For example ``"mnist"`` or ``"caltech101/Faces"``.
    x_train : ndarray, shape (num_train, height, width)
    y_train : ndarray of int, shape (num_train,), or None where there are no labels
    x_test : ndarray, shape (num_test, height, width)
    y_test : ndarray of int, shape (num_test,), or None
    shape : tuple of int
        The image shape ``(height, width)``.
    max_value : int
        The largest possible pixel value (255 for 8-bit images, 16 for the 8x8 digits), e.g. the
        ``n`` of Binomial leaves or the number of categories minus one.
    x_valid, y_valid : ndarray or None
        A validation split where the loader was asked for one.
    extra : dict
        Anything else the file holds (for example source file names).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None
    shape: tuple
    max_value: int = 255
    x_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_variables(self) -> int:
        """Pixels per image."""
        return int(np.prod(self.shape))

    def flat(self, split: str = "train") -> np.ndarray:
        """The images of ``split`` (``"train"``, ``"valid"``, ``"test"``) as rows, shape (n, num_variables)."""
        arrays = {"train": self.x_train, "valid": self.x_valid, "test": self.x_test}
        if split not in arrays:
            raise ValueError(f"Dataset.flat: split must be 'train', 'valid' or 'test', got {split!r}")
        if arrays[split] is None:
            raise ValueError(f"Dataset.flat: {self.name} has no {split!r} split")
        return arrays[split].reshape(len(arrays[split]), -1)

    def __repr__(self) -> str:
        valid = "" if self.x_valid is None else f", {len(self.x_valid)} valid"
        return (f"Dataset({self.name!r}: {len(self.x_train)} train{valid}, {len(self.x_test)} test, "
                f"images {self.shape}, {self.x_train.dtype}, 0..{self.max_value})")


# ---- where the data lives ---------------------------------------------------------------

def data_search_dirs() -> list[Path]:
    """Folders searched for data files: ``$PCIRCUITS_DATA`` alone when it is set, else
    ``../shared/data`` and ``shared/data`` relative to the repository that holds this package."""
    if os.environ.get(DATA_ENV):
        return [Path(os.environ[DATA_ENV]).expanduser()]
    repository = Path(__file__).resolve().parent.parent
    return [repository.parent / "shared" / "data", repository / "shared" / "data"]


def default_data_dir() -> Path:
    """The data folder: ``$PCIRCUITS_DATA`` if set, else the first existing repository-relative
    ``shared/data`` folder (the first candidate when none exists)."""
    dirs = data_search_dirs()
    for d in dirs:
        if d.is_dir():
            return d
    return dirs[0]


def _find(where: str, names: list[str], path: PathLike | None) -> Path:
    """The first of ``names`` that exists in ``path`` (a folder) or the data search folders."""
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        if not path.exists():
            raise FileNotFoundError(f"{where}: {path} does not exist")
        folders = [path]
    else:
        folders = data_search_dirs()
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    looked = ", ".join(str(f) for f in folders)
    raise FileNotFoundError(
        f"{where}: found none of {names} in {looked}. Pass path=... (a file or the folder that holds it) or set "
        f"the environment variable {DATA_ENV} to the folder with the data files (see shared/data/README.md).")


# ---- MNIST and Fashion-MNIST ------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format), gzipped or not.

    The header is two zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int,
    0x0D float, 0x0E double), the number of dimensions, and one big-endian int32 per dimension.

    Returns
    -------
    ndarray
        Shape as in the header, in native byte order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an idx file (header bytes {list(data[:4])})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"read_idx: {path} ends inside its header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"read_idx: {path} holds {len(data) - header} data bytes, but its header {shape} "
                         f"needs {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _idx_file(folder: Path, key: str) -> Path | None:
    for name in _IDX_NAMES[key]:
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _load_mnist_like(name: str, npz_name: str, path: PathLike | None, split: str, validation_size: int) -> Dataset:
    where = f"load_{name}"
    if split not in ("standard", "validation"):
        raise ValueError(f"{where}: split must be 'standard' (60000 train / 10000 test) or 'validation' "
                         f"(the last {validation_size} training images held out), got {split!r}")
    arrays = None
    folders = data_search_dirs() if path is None else [Path(path).expanduser()]
    if path is not None and Path(path).expanduser().is_file():
        arrays = _npz_arrays(Path(path).expanduser(), where, ("x_train", "y_train", "x_test", "y_test"))
    else:
        for folder in folders:
            if (folder / npz_name).is_file():
                arrays = _npz_arrays(folder / npz_name, where, ("x_train", "y_train", "x_test", "y_test"))
                break
            files = {key: _idx_file(folder, key) for key in _IDX_NAMES}
            if all(files.values()):
                arrays = {key: read_idx(f) for key, f in files.items()}
                break
    if arrays is None:
        looked = ", ".join(str(f) for f in folders)
        raise FileNotFoundError(
            f"{where}: found neither {npz_name} nor the four idx files ({', '.join(n[0] for n in _IDX_NAMES.values())}"
            f", optionally .gz) in {looked}. Pass path=... or set the environment variable {DATA_ENV} to the "
            f"folder with the data files.")
    x_train, y_train = arrays["x_train"], arrays["y_train"].astype(np.int64)
    x_valid = y_valid = None
    if split == "validation":
        if not 0 < validation_size < len(x_train):
            raise ValueError(f"{where}: validation_size must lie in 1..{len(x_train) - 1}, got {validation_size}")
        x_valid, y_valid = x_train[-validation_size:], y_train[-validation_size:]
        x_train, y_train = x_train[:-validation_size], y_train[:-validation_size]
    return Dataset(name, x_train, y_train, arrays["x_test"], arrays["y_test"].astype(np.int64),
                   tuple(x_train.shape[1:]), 255, x_valid, y_valid)


def load_mnist(path: PathLike | None = None, *, split: str = "standard", validation_size: int = 10000) -> Dataset:
    """MNIST: 60000 train and 10000 test images, 28x28, uint8 0..255, labels 0..9.

    Parameters
    ----------
    path : path, optional
        ``mnist.npz``, or a folder holding it or the four idx files (``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, with
        ``-`` or ``.`` before ``idx``, optionally ``.gz``). Default: the data search folders.
    split : {"standard", "validation"}
        ``"validation"`` holds out the last ``validation_size`` training images as
        ``x_valid`` / ``y_valid`` (50000 / 10000 / 10000 by default).
    """
    return _load_mnist_like("mnist", "mnist.npz", path, split, validation_size)


def load_fashion_mnist(path: PathLike | None = None, *, split: str = "standard",
                       validation_size: int = 10000) -> Dataset:
    """Fashion-MNIST: 60000 train and 10000 test images, 28x28, uint8, labels 0..9.

    ``path`` is ``fashion_mnist.npz`` or a folder holding it or the four idx files (named as
    MNIST's); ``split`` as in :func:`load_mnist`.
    """
    return _load_mnist_like("fashion_mnist", "fashion_mnist.npz", path, split, validation_size)


# ---- Olivetti ---------------------------------------------------------------------------

#: Test images of P&D's Olivetti split: the last 50 of 400.
OLIVETTI_TEST_SIZE = 50


def read_olivetti_raw(path: PathLike, *, size: int = 64) -> np.ndarray:
    """Read P&D's ``olivetti.raw``: a whitespace-separated ``size^2 x n`` text matrix.

    Column ``p`` is image ``p``; pixel ``(row i, column j)`` is matrix row ``j * size + i``
    (column-major, as in P&D's ``Dataset.readOlivettiInstance``). Values are truncated to
    integers as P&D's reader does.

    Returns
    -------
    ndarray, shape (n, size, size)
        uint8 where all values lie in 0..255, else int64.
    """
    matrix = _read_text_matrix(path, "read_olivetti_raw")
    if matrix.shape[0] != size * size:
        raise ValueError(f"read_olivetti_raw: {path} has {matrix.shape[0]} rows, but {size}x{size} images need "
                         f"{size * size} (one row per pixel, one column per image)")
    images = matrix.T.reshape(matrix.shape[1], size, size).transpose(0, 2, 1)
    return _as_pixels(np.trunc(images))


def load_olivetti(path: PathLike | None = None) -> Dataset:
    """Olivetti faces in P&D's split: the first 350 images train, the last 50 test.

    The 400 images (64x64, 8-bit grey levels) are ordered by subject, 10 per subject, so the
    test set is subjects 35..39, none of whom appears in training.

    Parameters
    ----------
    path : path, optional
        ``olivetti_pd.npz`` (the shared copy), P&D's ``olivetti.raw``, or a folder holding one
        of them. Default: the data search folders.
    """
    where = "load_olivetti"
    file = _find(where, ["olivetti_pd.npz", "olivetti.raw", "olivetti/olivetti.raw"], path)
    if file.suffix == ".npz":
        arrays = _npz_arrays(file, where, ("x_train", "x_test"))
        x = np.concatenate([arrays["x_train"], arrays["x_test"]])
        if "y_train" in arrays and "y_test" in arrays:
            y = np.concatenate([arrays["y_train"], arrays["y_test"]]).astype(np.int64)
        else:
            y = np.repeat(np.arange(len(x) // 10), 10) if len(x) % 10 == 0 else None
    else:
        x = read_olivetti_raw(file)
        y = np.repeat(np.arange(len(x) // 10), 10) if len(x) % 10 == 0 else None
    if len(x) <= OLIVETTI_TEST_SIZE:
        raise ValueError(f"{where}: {file} holds {len(x)} images, fewer than the {OLIVETTI_TEST_SIZE} test images "
                         f"plus a training set")
    cut = len(x) - OLIVETTI_TEST_SIZE
    return Dataset("olivetti", x[:cut], None if y is None else y[:cut], x[cut:], None if y is None else y[cut:],
                   tuple(x.shape[1:]), 255, extra={"file": str(file)})


# ---- Caltech-101 ------------------------------------------------------------------------

def pd_test_size(num_images: int, *, max_test_size: int = 50) -> int:
    """P&D's test-set size for a category of ``num_images``: ``min(max_test_size, n // 3)``."""
    return min(max_test_size, num_images // 3)


def read_caltech_raw(path: PathLike, *, size: int = 64) -> np.ndarray:
    """Read one Caltech ``*.raw.rescale`` file of P&D's release and crop its central ``size x size``.

    The file is a text matrix, one image row per line, whitespace-separated grey levels (P&D
    rescaled every image to 100x100). As in P&D's ``Dataset.readCalInstance``, values are
    truncated to integers and rows and columns ``offset .. offset + size - 1`` are kept, with
    ``offset = (side - size) // 2`` (18 for 100x100).

    Returns
    -------
    ndarray, shape (size, size)
        uint8 where all values lie in 0..255, else int64.
    """
    matrix = _read_text_matrix(path, "read_caltech_raw")
    rows, cols = matrix.shape
    if rows < size or cols < size:
        raise ValueError(f"read_caltech_raw: {path} is {rows}x{cols}, smaller than the {size}x{size} crop")
    top, left = (rows - size) // 2, (cols - size) // 2
    return _as_pixels(np.trunc(matrix[top:top + size, left:left + size]))


def read_caltech_raw_dir(folder: PathLike, *, size: int = 64, max_test_size: int = 50) -> Dataset:
    """All ``*.raw.rescale`` images of one category folder, with P&D's split.

    Files are sorted by name; the last :func:`pd_test_size` of them are the test set.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if ".raw.rescale" in p.name and p.is_file())
    if not files:
        raise FileNotFoundError(f"read_caltech_raw_dir: no *.raw.rescale files in {folder}")
    images = np.stack([read_caltech_raw(f, size=size) for f in files])
    cut = len(files) - pd_test_size(len(files), max_test_size=max_test_size)
    names = np.array([f.name for f in files])
    return Dataset(f"caltech101/{folder.name}", images[:cut], None, images[cut:], None, (size, size),
                   255, extra={"files_train": names[:cut], "files_test": names[cut:]})


_CALTECH_FILES = {"Faces": "caltech101_faces_pd64.npz", "Faces_easy": "caltech101_faces_easy_pd64.npz"}
_CALTECH_ALL = "caltech101_pd64.npz"


def load_caltech(category: str = "Faces", path: PathLike | None = None) -> Dataset:
    """One Caltech-101 category as 64x64 grey crops, with P&D's split.

    The test set is the last ``min(50, n // 3)`` images of the category (files sorted by name).

    Parameters
    ----------
    category : str
        A Caltech-101 category name, case-sensitive: ``"Faces"``, ``"Faces_easy"``,
        ``"helicopter"``, ...
    path : path, optional
        A per-category npz (``caltech101_faces_pd64.npz``), the all-category
        ``caltech101_pd64.npz``, a folder of ``*.raw.rescale`` files (P&D's release; either the
        category folder itself or its parent), or a folder holding the npz files. Default: the
        data search folders.
    """
    where = "load_caltech"
    if not isinstance(category, str) or not category:
        raise ValueError(f"{where}: category must be a category name such as 'Faces', got {category!r}")
    if path is not None:
        p = Path(path).expanduser()
        for folder in (p / category, p):
            if folder.is_dir() and any(".raw.rescale" in f.name for f in folder.iterdir()):
                return read_caltech_raw_dir(folder)
    names = ([_CALTECH_FILES[category]] if category in _CALTECH_FILES else []) + [_CALTECH_ALL]
    file = _find(where, names, path)
    name = f"caltech101/{category}"
    with np.load(file, allow_pickle=False) as data:
        keys = set(data.files)
        if {"x_train", "x_test"} <= keys:
            extra = {k: data[k] for k in ("files_train", "files_test") if k in keys}
            return Dataset(name, data["x_train"], None, data["x_test"], None, tuple(data["x_train"].shape[1:]),
                           255, extra=extra)
        required = {"x", "y", "is_test", "categories"}
        if not required <= keys:
            raise ValueError(f"{where}: {file} holds arrays {sorted(keys)}, neither x_train/x_test nor "
                             f"{sorted(required)}")
        categories = [str(c) for c in data["categories"]]
        if category not in categories:
            raise ValueError(f"{where}: no category {category!r} in {file}; categories are case-sensitive, "
                             f"for example {categories[:6]}")
        chosen = data["y"] == categories.index(category)
        is_test = data["is_test"]
        x = data["x"]
        extra = {}
        if "filenames" in keys:
            filenames = data["filenames"]
            extra = {"files_train": filenames[chosen & ~is_test], "files_test": filenames[chosen & is_test]}
        return Dataset(name, x[chosen & ~is_test], None, x[chosen & is_test], None, tuple(x.shape[1:]), 255,
                       extra=extra)


def load_caltech_faces(category: str = "Faces", path: PathLike | None = None) -> Dataset:
    """Caltech-101 faces (``"Faces"`` or ``"Faces_easy"``; any category works), as :func:`load_caltech`."""
    return load_caltech(category, path)


# ---- embedded default -------------------------------------------------------------------

#: The 8x8 digits inside the package (written by ``scripts/make_digits8x8.py``).
DIGITS_FILE = "digits8x8.npz"
#: Test images of the fixed 8x8-digits split: the last 360 of 1797 (20 %).
DIGITS_TEST_SIZE = 360


def load_digits_8x8() -> Dataset:
    """The 8x8 handwritten digits shipped inside the package; no download, no data folder needed.

    The UCI optical-digits test set as scikit-learn bundles it (Alpaydin & Kaynak, 1998; CC BY
    4.0, see ``pcircuits/data/README.md``): 1797 images with grey levels 0..16 (uint8) and
    labels 0..9 (int64), in the file's order; the first 1437 are the training set and the last
    360 the test set (a fixed 80/20 split).
    """
    from importlib import resources  # here: with tempfile and shutil, 4 ms for every process

    with resources.files(__package__).joinpath("data").joinpath(DIGITS_FILE).open("rb") as stream:
        with np.load(stream, allow_pickle=False) as archive:
            x = archive["images"].astype(np.uint8)
            y = archive["labels"].astype(np.int64)
    cut = len(x) - DIGITS_TEST_SIZE
    return Dataset("digits_8x8", x[:cut], y[:cut], x[cut:], y[cut:], (8, 8), 16)


# ---- per-image normalization ------------------------------------------------------------

def standardize_images(x, *, dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Give each image zero mean and unit variance over its own pixels (P&D, DCSPN, DGC-SPN).

    Parameters
    ----------
    x : array_like, shape (n, ...)
        Images (any shape after the first axis: ``(n, h, w)``, ``(n, h, w, c)`` or ``(n, d)``).
        NaN pixels (missing) are left out of the statistics and stay NaN.

    Returns
    -------
    z : ndarray, same shape as ``x``
        ``(x - mean) / std`` per image.
    mean, std : ndarray, shape (n,)
        Each image's mean and (population) standard deviation; a constant image gets std 1.
    """
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim < 2:
        raise ValueError(f"standardize_images: x must have shape (n, ...) with at least 2 dimensions, "
                         f"got shape {arr.shape}")
    flat = arr.reshape(len(arr), -1)
    observed = ~np.isnan(flat)
    if flat.shape[1] == 0 or not np.all(observed.any(axis=1)):
        raise ValueError("standardize_images: every image needs at least one observed (non-NaN) pixel")
    mean = np.nanmean(flat, axis=1)
    std = np.nanstd(flat, axis=1)
    constant = np.nanmax(flat, axis=1) == np.nanmin(flat, axis=1)
    std = np.where(constant | ~(std > 0), 1.0, std).astype(dtype)
    z = (flat - mean[:, None]) / std[:, None]
    return z.reshape(arr.shape), mean, std


def unstandardize_images(z, mean, std) -> np.ndarray:
    """Undo :func:`standardize_images`: ``z * std + mean`` per image.

    Parameters
    ----------
    z : array_like, shape (n, ...)
    mean, std : array_like, shape (n,)
    """
    arr = np.asarray(z, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if arr.ndim < 1 or not (len(arr) == len(mean) == len(std)):
        raise ValueError(f"unstandardize_images: z has {len(arr) if arr.ndim else 0} images but mean and std have "
                         f"{len(mean)} and {len(std)} entries")
    shape = (len(arr),) + (1,) * (arr.ndim - 1)
    return arr * std.reshape(shape) + mean.reshape(shape)


# ---- helpers ------------------------------------------------------------------------------

def _npz_arrays(file: Path, where: str, required: tuple[str, ...]) -> dict:
    with np.load(file, allow_pickle=False) as data:
        missing = [k for k in required if k not in data.files]
        if missing:
            raise ValueError(f"{where}: {file} lacks the arrays {missing} (it has {data.files})")
        return {k: data[k] for k in data.files}


def _read_text_matrix(path: PathLike, where: str) -> np.ndarray:
    path = Path(path)
    rows = []
    with open(path, "r", errors="strict") as f:
        for number, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                rows.append([float(t) for t in tokens])
            except ValueError:
                raise ValueError(f"{where}: {path} line {number} holds a token that is not a number") from None
    if not rows:
        raise ValueError(f"{where}: {path} holds no numbers")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"{where}: {path} has rows of different lengths {sorted(widths)[:5]}")
    return np.array(rows)


def _as_pixels(values: np.ndarray) -> np.ndarray:
    if values.size and values.min() >= 0 and values.max() <= 255:
        return values.astype(np.uint8)
    return values.astype(np.int64)


#: Short name of :func:`unstandardize_images`.
unstandardize = unstandardize_images
