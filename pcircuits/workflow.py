"""The image workflow that the ``pcircuits`` command and its demo share.

Preparing images for a model (each image standardized with its own statistics, or the grey
levels as they are), building a Poon-Domingos or RAT-SPN circuit over them with quantile
Gaussian leaves, writing a trained model as two files (the circuit ``model.pcz`` and beside it
its JSON record ``model.pcz.json``: data set, image shape, preprocessing, settings, history),
reading them back with every field of the record checked, and the papers' scores (test
log-likelihood, bits per dimension, completion MSE).

:mod:`pcircuits.cli` and :mod:`pcircuits.demo` import this module; it imports neither.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import CheckpointError, CircuitFileError

__all__ = ["PREPROCESSINGS", "STRUCTURES", "LEAVES", "RECORD_SUFFIX", "prepare_images", "leaf_family",
           "build_image_circuit", "initialize_leaves", "default_valid_size", "history_record", "checkpoint_epochs",
           "record_path", "save_model", "load_model", "read_record", "write_json", "check_scorable",
           "evaluate_program"]

#: Preprocessings of the pixels: per-image standardization (P&D) or the grey levels as they are.
PREPROCESSINGS = ("standardize", "none")
#: Circuit structures over images: Poon-Domingos or RAT-SPN.
STRUCTURES = ("pd", "rat")
#: Leaf families of a pixel.
LEAVES = ("gaussian", "binomial", "categorical")
#: Appended to a model file's name to give its record's: ``model.pcz`` -> ``model.pcz.json``.
RECORD_SUFFIX = ".json"


# ---- images ---------------------------------------------------------------------------------

def prepare_images(images, preprocess: str, *, what: str = "image") -> tuple[np.ndarray, np.ndarray | None,
                                                                              np.ndarray | None]:
    """Flatten and prepare images as a model over them expects.

    Parameters
    ----------
    images : array_like, shape (n, height, width[, channels])
        Grey levels, finite; NaN marks a missing pixel, but every image needs an observed one.
    preprocess : {"standardize", "none"}
    what : str
        What the images are, for error messages (``"test image"``).

    Returns
    -------
    x : ndarray, shape (n, num_pixels)
        Each image standardized to mean 0 and std 1 over its own pixels (``"standardize"``) or
        the grey levels (``"none"``), float64.
    mean, std : ndarray, shape (n,), or None
        Each image's statistics (``"standardize"`` only).

    Raises
    ------
    ValueError
        Non-numeric images, an infinite value, an image without an observed pixel, or an unknown
        ``preprocess``.
    """
    from .datasets import standardize_images

    if preprocess not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESSINGS)}")
    array = np.asarray(images)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"the {what}s must be numbers, got dtype {array.dtype}")
    flat = array.astype(np.float64).reshape(len(array), -1)
    if np.isinf(flat).any():
        image, pixel = (int(i) for i in np.argwhere(np.isinf(flat))[0])
        raise ValueError(f"{what} {image} has an infinite value at pixel {pixel}; use NaN for a missing pixel")
    empty = np.flatnonzero(np.isnan(flat).all(axis=1))
    if flat.shape[1] == 0 or len(empty):
        first = int(empty[0]) if len(empty) else 0
        more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
        raise ValueError(f"{what} {first}{more} has no observed pixel (all NaN); drop such images from the data")
    if preprocess == "standardize":
        return standardize_images(flat)
    return flat, None, None


# ---- building --------------------------------------------------------------------------------

def leaf_family(leaf: str, max_value: int) -> tuple[str, dict | None]:
    """The ``leaf`` and ``leaf_params`` arguments of a builder for pixels with grey levels 0..``max_value``.

    Binomial leaves count ``max_value`` trials; categorical leaves have ``max_value + 1``
    categories; Gaussian leaves are set from the data afterwards (:func:`initialize_leaves`).
    """
    if leaf == "gaussian":
        return "gaussian", None
    if leaf == "binomial":
        return "binomial", {"n": int(max_value)}
    if leaf == "categorical":
        return "categorical", {"num_categories": int(max_value) + 1}
    raise ValueError(f"unknown leaf family {leaf!r}; choose one of {', '.join(LEAVES)}")


def build_image_circuit(structure: str, shape: tuple, *, leaf: str = "gaussian", max_value: int = 255,
                        delta=4, num_sums: int = 4, num_leaves: int = 4, max_splits: int | None = None,
                        depth: int = 3, repetitions: int = 10, seed: int = 0):
    """A circuit with random parameters over images of ``shape`` (height, width[, channels]).

    ``structure="pd"`` builds :func:`~pcircuits.builders.poon_domingos` (``delta``,
    ``max_splits``); ``"rat"`` builds :func:`~pcircuits.builders.rat_spn` (``depth``,
    ``repetitions``) with image variables. ``num_sums`` and ``num_leaves`` are K and G (PD) or
    S and I (RAT-SPN); ``leaf`` and ``max_value`` choose the leaves (:func:`leaf_family`).
    """
    from . import builders
    from .scope import Variables

    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; choose one of {', '.join(STRUCTURES)}")
    family, leaf_params = leaf_family(leaf, max_value)
    shape = tuple(int(s) for s in shape)
    if structure == "pd":
        return builders.poon_domingos(shape[0], shape[1], channels=shape[2] if len(shape) == 3 else None,
                                      delta=delta, num_sums=num_sums, num_leaves=num_leaves, leaf=family,
                                      leaf_params=leaf_params, max_splits=max_splits, seed=seed)
    return builders.rat_spn(int(np.prod(shape)), depth=depth, num_repetitions=repetitions, num_sums=num_sums,
                            num_leaves=num_leaves, leaf=family, leaf_params=leaf_params, seed=seed,
                            variables=Variables.image(*shape))


def initialize_leaves(circuit, x_train: np.ndarray, num_leaves: int, std: float) -> int:
    """P&D's and DGC-SPN's (5.1) Gaussian leaves, set in place.

    The ``k``-th of ``G = num_leaves`` components of a pixel gets the mean of the ``k``-th of
    ``G`` equal-count quantile groups of that pixel's values in ``x_train`` (shape (n,
    num_pixels)) and standard deviation ``std``. Returns how many input nodes were set.
    """
    from .learning import quantile_means, set_gaussian_leaves
    return set_gaussian_leaves(circuit, quantile_means(x_train, num_leaves), std)


def default_valid_size(num_images: int) -> int:
    """Images held out for validation by default: a tenth of ``num_images`` (at least one)."""
    return max(int(num_images) // 10, 1)


def history_record(history) -> dict:
    """The measured fields of a learning :class:`~pcircuits.learning.History` as JSON-ready lists."""
    return {key: [None if v is None else float(v) for v in values] for key, values in history.items()
            if any(v is not None for v in values)}


def checkpoint_epochs(path: os.PathLike) -> int | None:
    """How many epochs a :func:`~pcircuits.learning.fit` checkpoint has finished; None without a readable one.

    Only reads the checkpoint's JSON record; ``fit`` itself checks the whole file on resuming.
    """
    from .learning.checkpoint import read_checkpoint
    from .learning.fit import CHECKPOINT_FORMAT, CHECKPOINT_VERSION
    try:
        _, meta = read_checkpoint(path, format_name=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, arrays=False)
    except (CheckpointError, OSError):
        return None
    epoch = meta.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None


# ---- model files ---------------------------------------------------------------------------

def record_path(model: os.PathLike) -> Path:
    """Where the JSON record of ``model`` lies: ``model.pcz`` -> ``model.pcz.json``."""
    model = Path(model)
    return model.with_name(model.name + RECORD_SUFFIX)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: os.PathLike, content: dict) -> Path:
    """Write ``content`` as indented JSON (NumPy scalars and arrays, paths allowed) to ``path``."""
    path = Path(path)
    path.write_text(json.dumps(content, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def save_model(program, path: os.PathLike, record: dict) -> Path:
    """Copy the program's learned parameters into its circuit; write it to ``path`` and ``record`` beside it."""
    path = Path(path)
    program.sync_to_circuit()
    program.circuit.save(path)
    write_json(record_path(path), record)
    return path


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


#: The record fields that the workflow reads: name -> (check, what it must be).
_RECORD_FIELDS = {
    "data": (lambda v: isinstance(v, str) and v != "", "a data set name or .npz path"),
    "shape": (lambda v: isinstance(v, list) and len(v) in (2, 3) and all(_is_positive_int(s) for s in v),
              "a list of 2 or 3 positive integers (height, width[, channels])"),
    "max_value": (_is_positive_int, "a positive integer"),
    "preprocess": (lambda v: v in PREPROCESSINGS, f"one of {', '.join(PREPROCESSINGS)}"),
}


def read_record(path: os.PathLike) -> dict:
    """The JSON record at ``path`` (see :func:`save_model`), with the fields the workflow reads checked.

    ``data``, ``shape``, ``max_value`` and ``preprocess`` may be missing (or null); when present
    they must have the right type. Other fields are returned as they are.

    Raises
    ------
    CircuitFileError
        The file is not UTF-8 text, not JSON, not a JSON object, or has a field of the wrong type.
    """
    path = Path(path)
    fix = "repair or delete it"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise CircuitFileError(f"model record {path} is not UTF-8 text (byte {err.start}); {fix}") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise CircuitFileError(f"model record {path} is not valid JSON ({err.msg} at line {err.lineno}, "
                               f"column {err.colno}); {fix}") from None
    if not isinstance(record, dict):
        raise CircuitFileError(f"model record {path} holds a JSON {type(record).__name__}, not an object; {fix}")
    for name, (valid, expected) in _RECORD_FIELDS.items():
        if record.get(name) is not None and not valid(record[name]):
            raise CircuitFileError(f"model record {path}: {name!r} must be {expected}, got {record[name]!r}; {fix}")
    return record


def load_model(path: os.PathLike, *, validate: bool = True):
    """The circuit in ``path`` and its record (:func:`read_record`; an empty dict when there is none).

    ``validate=False`` also reads a circuit that fails ``check()`` (see :func:`~pcircuits.serialization.load`).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CircuitFileError
        The circuit file or its record is damaged, or (``validate``) the circuit is invalid
        (an ``InvalidCircuitFileError``, which carries the validity report).
    """
    from .circuit import Circuit

    path = Path(path)
    circuit = Circuit.load(path, validate=validate)
    side = record_path(path)
    return circuit, read_record(side) if side.is_file() else {}


# ---- scores ----------------------------------------------------------------------------------

def check_scorable(x: np.ndarray, mask: np.ndarray, mask_name: str, *, what: str = "test image") -> None:
    """Refuse to score completions of ``mask`` where a true pixel under it is missing (NaN).

    ``x`` has shape (n, num_pixels); ``mask`` holds ``num_pixels`` booleans (True = occluded).
    The completion MSE compares the completed pixels with the true ones, so it would be NaN.
    """
    unknown = np.isnan(x[:, np.asarray(mask).reshape(-1)]).any(axis=1)
    if unknown.any():
        count = int(unknown.sum())
        raise ValueError(f"{what} {int(np.argmax(unknown))}{f' (and {count - 1} more)' if count > 1 else ''} has "
                         f"missing (NaN) pixels in the {mask_name} part, so its completion cannot be scored; fill "
                         f"or drop such images, or occlude another part")



def evaluate_program(program, images: np.ndarray, *, preprocess: str, shape: tuple, max_value: int,
                     masks=("left", "bottom"), methods=("posterior-mean",), batch_size: int | None = None,
                     progress: bool = False) -> tuple[dict, dict]:
    """Test log-likelihood, bits per dimension and completion MSEs of ``images`` (grey levels).

    Parameters
    ----------
    program : Program
        A model over ``shape`` images.
    images : ndarray, shape (n, height, width[, channels])
    preprocess : {"standardize", "none"}
        As the model was trained (:func:`prepare_images`).
    shape : tuple of int
        The image shape, for the masks.
    max_value : int
        The largest grey level (the MSE is rescaled to 0..255).
    masks, methods : sequences of str
        Halves to occlude (:func:`pcircuits.tasks.make_mask`) and completion methods. A true
        pixel under a mask must not be missing (:func:`check_scorable`).

    Returns
    -------
    metrics : dict
        ``num_images``, ``log_likelihood`` (nats per image), ``bits_per_dimension``, and
        ``mse_<mask>_<method>`` (0..255 scale, occluded pixels only) for every mask and method.
    completions : dict
        ``(mask, method)`` -> completed images in the model's units, shape (n, num_pixels),
        with ``"x"``, ``"mean"`` and ``"std"`` (:func:`prepare_images`) for drawing.
    """
    from . import tasks
    from .backend import to_numpy

    x, mean, std = prepare_images(images, preprocess, what="test image")
    num_dims = x.shape[1]
    ll = np.asarray(to_numpy(program.log_likelihood(x, batch_size=batch_size, progress=progress)))
    ll = ll[:, 0] if ll.ndim == 2 else ll
    scale = 1.0 if std is None else std
    metrics = {"num_images": len(x), "log_likelihood": float(np.mean(ll)),
               "bits_per_dimension": tasks.bits_per_dimension(ll, num_dims, scale=scale)}
    completions = {"x": x, "mean": mean, "std": std}
    masks = {mask_name: tasks.make_mask(mask_name, shape) for mask_name in masks}
    for mask_name, mask in masks.items():
        check_scorable(x, mask, mask_name)
    for mask_name, mask in masks.items():
        for method in methods:
            done = tasks.complete(program, x, mask, method=method, batch_size=batch_size, progress=progress)
            completions[(mask_name, method)] = done
            metrics[f"mse_{mask_name}_{method}"] = tasks.completion_mse(x, done, mask, mean=mean, std=std,
                                                                        max_value=max_value)
    return metrics, completions
