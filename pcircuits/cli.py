"""The ``pcircuits`` command: train, evaluate, complete, sample, draw and check circuits; the demo.

Every subcommand explains its options with ``--help``. A trained model is two files: the
circuit (``model.pcz``, see :mod:`pcircuits.serialization`) and beside it a small JSON record
(``model.pcz.json``) of how it was made: the data set, the image shape, the preprocessing of
the pixels, the settings and the learning history. The other subcommands read both, so that
``pcircuits evaluate model.pcz`` prepares the test images exactly as training prepared the
training images.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "load_data", "DATA_SETS"]

#: Names accepted by ``--data`` (besides a path to an ``.npz`` file).
DATA_SETS = ("digits8x8", "mnist", "fashion-mnist", "olivetti")
#: Preprocessings of the pixels: per-image standardization (P&D) or the grey levels as they are.
PREPROCESSINGS = ("standardize", "none")
LEAVES = ("gaussian", "binomial", "categorical")
METHODS = ("em", "hard-em", "usi", "adam", "sgd")
MASK_NAMES = ("left", "bottom", "top", "right", "center")
RECORD_SUFFIX = ".json"


class CommandError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


# ---- data ---------------------------------------------------------------------------------------

def load_data(name: str):
    """The :class:`~pcircuits.datasets.Dataset` named by ``--data``.

    ``digits8x8`` (embedded, no download), ``mnist``, ``fashion-mnist``, ``olivetti`` (from
    the data folder, see :func:`pcircuits.datasets.default_data_dir`), or a path to an
    ``.npz`` file with ``x_train`` and ``x_test`` arrays of shape (n, height, width) (optional:
    ``y_train``, ``y_test``, and a scalar ``max_value``, else 255).
    """
    from . import datasets

    loaders = {"digits8x8": datasets.load_digits_8x8, "mnist": datasets.load_mnist,
               "fashion-mnist": datasets.load_fashion_mnist, "olivetti": datasets.load_olivetti}
    if name in loaders:
        try:
            return loaders[name]()
        except FileNotFoundError as err:
            raise CommandError(str(err)) from None
    path = Path(name).expanduser()
    if path.suffix != ".npz":
        raise CommandError(f"--data must be one of {', '.join(DATA_SETS)} or a path to an .npz file, got {name!r}")
    if not path.is_file():
        raise CommandError(f"--data: no such file: {path}")
    with np.load(path, allow_pickle=False) as archive:
        missing = [k for k in ("x_train", "x_test") if k not in archive.files]
        if missing:
            raise CommandError(f"--data: {path} lacks the arrays {missing} (it has {archive.files})")
        arrays = {k: archive[k] for k in archive.files}
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.ndim not in (3, 4) or x_train.shape[1:] != x_test.shape[1:]:
        raise CommandError(f"--data: x_train and x_test must be images of one shape (n, height, width[, channels]),"
                           f" got {x_train.shape} and {x_test.shape}")
    max_value = int(arrays["max_value"]) if "max_value" in arrays else 255
    return datasets.Dataset(path.stem, x_train, arrays.get("y_train"), x_test, arrays.get("y_test"),
                            tuple(x_train.shape[1:]), max_value, extra={"file": str(path)})


def prepare(images: np.ndarray, preprocess: str):
    """Flatten and prepare images as the model expects them.

    Returns
    -------
    x : ndarray, shape (n, num_pixels)
        Standardized per image (``"standardize"``) or the grey levels (``"none"``), float64.
    mean, std : ndarray, shape (n,), or None
        Each image's statistics (``"standardize"`` only).
    """
    from .datasets import standardize_images

    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if preprocess == "standardize":
        return standardize_images(flat)
    if preprocess == "none":
        return flat, None, None
    raise CommandError(f"unknown preprocessing {preprocess!r}; choose one of {PREPROCESSINGS}")


def _subset(x: np.ndarray, limit: int | None) -> np.ndarray:
    return x if limit is None or limit >= len(x) else x[:limit]


# ---- model files ------------------------------------------------------------------------------

def record_path(model: os.PathLike) -> Path:
    """Where the JSON record of ``model`` lies: ``model.pcz`` -> ``model.pcz.json``."""
    model = Path(model)
    return model.with_name(model.name + RECORD_SUFFIX)


def save_model(program, path: os.PathLike, record: dict) -> Path:
    """Copy the program's learned parameters into its circuit and write the circuit and its record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.sync_to_circuit()
    program.circuit.save(path)
    record_path(path).write_text(json.dumps(record, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return path


def load_model(path: os.PathLike):
    """The circuit in ``path`` and its record (an empty dict when the record file is missing)."""
    from .circuit import Circuit
    from .errors import CircuitFileError

    path = Path(path)
    try:
        circuit = Circuit.load(path)
    except (FileNotFoundError, CircuitFileError) as err:
        raise CommandError(str(err)) from None
    side = record_path(path)
    record = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    return circuit, record


def _model_settings(args, record: dict, circuit) -> tuple[str, str, tuple, int]:
    """Data name, preprocessing, image shape and largest grey level: from the options, else the record."""
    data = args.data or record.get("data")
    if data is None:
        raise CommandError(f"the model has no record ({record_path(args.model)}) that names its data set; "
                           f"pass --data")
    preprocess = args.preprocess or record.get("preprocess") or "standardize"
    shape = record.get("shape") or (list(circuit.variables.shape) if circuit.variables.shape else None)
    return data, preprocess, tuple(shape) if shape else None, record.get("max_value")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_report(path: os.PathLike | None, report: dict) -> None:
    """Write ``report`` as JSON to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


# ---- building and training ----------------------------------------------------------------------

def parse_delta(text: str):
    """``--delta``: ``4``, ``7x4`` (rows x columns), or levels separated by commas (``8,4``, ``7x7,1``)."""
    levels = []
    for part in str(text).split(","):
        part = part.strip().lower()
        try:
            if "x" in part:
                dy, dx = part.split("x")
                levels.append([int(dy), int(dx)])
            else:
                levels.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--delta must look like 4, 7x4 or 8,4; got {text!r}") from None
    if len(levels) == 1:
        return levels[0] if isinstance(levels[0], int) else [levels[0]]
    return levels


def leaf_family(leaf: str, max_value: int):
    """The ``leaf`` and ``leaf_params`` arguments of a builder for ``--leaf``.

    Binomial leaves count ``max_value`` trials; categorical leaves have ``max_value + 1``
    categories; Gaussian leaves are set from the data afterwards (:func:`initialize_leaves`).
    """
    if leaf == "gaussian":
        return "gaussian", None
    if leaf == "binomial":
        return "binomial", {"n": int(max_value)}
    if leaf == "categorical":
        return "categorical", {"num_categories": int(max_value) + 1}
    raise CommandError(f"unknown leaf family {leaf!r}; choose one of {LEAVES}")


def initialize_leaves(circuit, x_train: np.ndarray, num_leaves: int, std: float) -> int:
    """P&D's and DGC-SPN's (5.1) Gaussian leaves: the ``k``-th of ``G`` components of a pixel
    has the mean of the ``k``-th of ``G`` equal-count quantile groups of that pixel's training
    values, and standard deviation ``std``. Returns how many input nodes were set."""
    from .learning import quantile_means, set_gaussian_leaves
    return set_gaussian_leaves(circuit, quantile_means(x_train, num_leaves), std)


def build_circuit(args, shape: tuple, max_value: int):
    """The circuit that ``--structure``, ``--leaf`` and the size options describe (random parameters)."""
    from . import builders
    from .scope import Variables

    leaf, leaf_params = leaf_family(args.leaf, max_value)
    height, width = shape[0], shape[1]
    channels = shape[2] if len(shape) == 3 else None
    try:
        if args.structure == "pd":
            return builders.poon_domingos(height, width, channels=channels, delta=args.delta,
                                          num_sums=args.num_sums, num_leaves=args.num_leaves, leaf=leaf,
                                          leaf_params=leaf_params, max_splits=args.max_splits, seed=args.seed)
        return builders.rat_spn(int(np.prod(shape)), depth=args.depth, num_repetitions=args.repetitions,
                                num_sums=args.num_sums, num_leaves=args.num_leaves, leaf=leaf,
                                leaf_params=leaf_params, seed=args.seed, variables=Variables.image(*shape))
    except (ValueError, TypeError) as err:
        raise CommandError(f"cannot build the {args.structure} circuit: {err}") from None


def _fit(program, x_train, x_valid, args):
    from . import learning

    options = dict(method=args.method, epochs=args.epochs, batch_size=args.batch_size, progress=args.progress,
                   seed=args.seed, valid=x_valid, checkpoint=args.checkpoint)
    if args.method in ("adam", "sgd"):
        options["learn_leaves"] = args.learn_leaves
        if args.lr is not None:
            options["lr"] = args.lr
    else:
        options["freeze_leaves"] = not args.learn_leaves
        options["mode"], options["counts"] = args.em_mode, args.em_counts
        if args.lr is not None:
            options["mode"], options["step_size"] = "online", args.lr
    try:
        return learning.fit(program, x_train, **options)
    except ValueError as err:
        raise CommandError(str(err)) from None


def history_record(history) -> dict:
    """The measured fields of a learning :class:`~pcircuits.learning.History` as JSON-ready lists."""
    return {key: [None if v is None else float(v) for v in values] for key, values in history.items()
            if any(v is not None for v in values)}


def _cmd_train(args) -> int:
    started = time.perf_counter()
    data = load_data(args.data)
    leaf = args.leaf
    preprocess = args.preprocess or ("standardize" if leaf == "gaussian" else "none")
    if leaf != "gaussian" and preprocess != "none":
        raise CommandError(f"--leaf {leaf} models grey levels; use --preprocess none")
    if args.method not in ("adam", "sgd") and args.lr is not None and not 0 < args.lr <= 1:
        raise CommandError(f"with --method {args.method}, --lr is the online EM step size and must lie in (0, 1], "
                           f"got {args.lr}")
    if args.learn_leaves is None:
        args.learn_leaves = leaf != "gaussian"
    x_train, _, _ = prepare(_subset(data.x_train, args.train_size), preprocess)
    x_valid = None
    if args.valid_size:
        if args.valid_size >= len(x_train):
            raise CommandError(f"--valid-size {args.valid_size} leaves no training images of {len(x_train)}")
        x_train, x_valid = x_train[:-args.valid_size], x_train[-args.valid_size:]
    _say(args, f"data {data.name}: {len(x_train)} training images of {data.shape}"
               + (f", {len(x_valid)} validation" if x_valid is not None else "") + f", preprocessing {preprocess}")
    circuit = build_circuit(args, data.shape, data.max_value)
    if leaf == "gaussian":
        initialize_leaves(circuit, x_train, args.num_leaves, args.leaf_std)
    report = circuit.check()
    if not report.ok:
        raise CommandError(f"the built circuit is invalid: {report}")
    _say(args, f"circuit: {circuit.num_nodes} nodes, {circuit.num_units} units, {circuit.num_edges} edges; valid")
    program = circuit.compile(args.backend, args.dtype)
    history = _fit(program, x_train, x_valid, args)
    record = {
        "pcircuits_model": 1, "data": args.data, "shape": list(data.shape), "max_value": data.max_value,
        "preprocess": preprocess, "structure": args.structure, "leaf": leaf,
        "settings": {k: getattr(args, k) for k in ("delta", "num_sums", "num_leaves", "max_splits", "depth",
                                                  "repetitions", "leaf_std", "learn_leaves", "method", "em_mode",
                                                  "epochs", "batch_size", "lr", "seed", "train_size", "valid_size",
                                                  "backend", "dtype")},
        "circuit": {"nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
                    "parameters": circuit.num_params},
        "history": history_record(history), "train_seconds": time.perf_counter() - started,
    }
    save_model(program, args.out, record)
    if args.curve:
        history.plot(args.curve)
    last = record["history"].get("train_ll", [float("nan")])[-1]
    _say(args, f"trained {args.epochs} epoch(s) with {args.method} in {record['train_seconds']:.1f} s; "
               f"final training log-likelihood {last:.3f}; model written to {args.out} (+ {record_path(args.out).name})")
    write_report(args.report, {"command": "train", "model": str(args.out), **record})
    return 0


# ---- evaluation ------------------------------------------------------------------------------------

def evaluate_program(program, images: np.ndarray, *, preprocess: str, shape: tuple, max_value: int,
                     masks=("left", "bottom"), methods=("posterior-mean",), batch_size: int = 256,
                     progress: bool = False) -> tuple[dict, dict]:
    """Test log-likelihood, bits per dimension and completion MSEs of ``images`` (grey levels).

    Returns
    -------
    metrics : dict
        ``log_likelihood`` (nats per image), ``bits_per_dimension``, and
        ``mse_<mask>_<method>`` (0..255 scale, occluded pixels only) for every mask and method.
    completions : dict
        ``(mask, method)`` -> completed images in the model's units, with ``"x"``, ``"mean"``
        and ``"std"`` for drawing.
    """
    from . import tasks

    x, mean, std = prepare(images, preprocess)
    num_dims = x.shape[1]
    ll = np.asarray(_to_numpy(program.log_likelihood(x, batch_size=batch_size, progress=progress)))
    ll = ll[:, 0] if ll.ndim == 2 else ll
    scale = 1.0 if std is None else std
    metrics = {"num_images": len(x), "log_likelihood": float(np.mean(ll)),
               "bits_per_dimension": tasks.bits_per_dimension(ll, num_dims, scale=scale)}
    completions = {"x": x, "mean": mean, "std": std}
    for mask_name in masks:
        mask = tasks.make_mask(mask_name, shape)
        for method in methods:
            done = tasks.complete(program, x, mask, method=method, batch_size=batch_size, progress=progress)
            completions[(mask_name, method)] = done
            metrics[f"mse_{mask_name}_{method}"] = tasks.completion_mse(x, done, mask, mean=mean, std=std,
                                                                        max_value=max_value)
    return metrics, completions


def _to_numpy(a):
    from .backend import to_numpy
    return to_numpy(a)


def _open_model(args):
    circuit, record = load_model(args.model)
    data_name, preprocess, shape, max_value = _model_settings(args, record, circuit)
    data = load_data(data_name)
    shape = shape or data.shape
    if int(np.prod(shape)) != circuit.num_variables:
        raise CommandError(f"the model has {circuit.num_variables} variables but the {data_name} images have "
                           f"{int(np.prod(data.shape))} pixels")
    program = circuit.compile(args.backend, args.dtype)
    return circuit, record, program, data, preprocess, tuple(shape), max_value or data.max_value


def _cmd_evaluate(args) -> int:
    started = time.perf_counter()
    _, record, program, data, preprocess, shape, max_value = _open_model(args)
    images = _subset(data.x_test, args.limit)
    methods = ("posterior-mean", "mpe") if args.method == "both" else (args.method,)
    metrics, _ = evaluate_program(program, images, preprocess=preprocess, shape=shape, max_value=max_value,
                                  masks=args.masks, methods=methods, batch_size=args.batch_size,
                                  progress=args.progress)
    metrics["seconds"] = time.perf_counter() - started
    _say(args, f"{data.name} test set, {metrics['num_images']} images ({preprocess}):")
    _say(args, f"  log-likelihood {metrics['log_likelihood']:.3f} nats per image, "
               f"{metrics['bits_per_dimension']:.4f} bits per dimension")
    for key, value in metrics.items():
        if key.startswith("mse_"):
            _, mask_name, method = key.split("_", 2)
            _say(args, f"  {mask_name}-half completion MSE ({method}, 0..255 scale, occluded pixels): {value:.1f}")
    write_report(args.report, {"command": "evaluate", "model": str(args.model), "data": data.name,
                               "preprocess": preprocess, **metrics})
    return 0


def _display(x: np.ndarray, mean, std, max_value: int):
    """Model units back to grey levels (standardized images use each image's statistics)."""
    from .datasets import unstandardize_images
    return x if mean is None else unstandardize_images(x, mean, std), (0, max_value)


def _cmd_inpaint(args) -> int:
    from . import tasks
    from .imagegrid import save_completion_grid

    _, _, program, data, preprocess, shape, max_value = _open_model(args)
    images = _subset(data.x_test, args.num_images)
    x, mean, std = prepare(images, preprocess)
    mask = tasks.make_mask(args.mask, shape)
    methods = ("posterior-mean", "mpe") if args.method == "both" else (args.method,)
    completions, metrics = {}, {}
    for method in methods:
        done = tasks.complete(program, x, mask, method=method, batch_size=args.batch_size, progress=args.progress)
        completions[method] = _display(done, mean, std, max_value)[0]
        metrics[f"mse_{args.mask}_{method}"] = tasks.completion_mse(x, done, mask, mean=mean, std=std,
                                                                    max_value=max_value)
        _say(args, f"{args.mask}-half completion MSE ({method}, 0..255 scale) over {len(x)} images: "
                   f"{metrics[f'mse_{args.mask}_{method}']:.1f}")
    original, value_range = _display(x, mean, std, max_value)
    path = save_completion_grid(args.out, original, mask, completions, shape=shape, value_range=value_range,
                                max_images=args.max_drawn, title=f"{data.name}: {args.mask} half completed")
    _say(args, f"completions drawn to {path}")
    write_report(args.report, {"command": "inpaint", "model": str(args.model), "mask": args.mask,
                               "num_images": len(x), "picture": path, **metrics})
    return 0


def _cmd_sample(args) -> int:
    from . import tasks
    from .imagegrid import save_completion_grid, save_image_grid

    _, _, program, data, preprocess, shape, max_value = _open_model(args)
    if args.mask is None:
        samples = tasks.unconditional_samples(program, args.num, seed=args.seed)
        value_range = None if preprocess == "standardize" else (0, max_value)
        path = save_image_grid(args.out, samples, args.columns, shape=shape, value_range=value_range,
                               title=f"{args.num} samples")
    else:
        images = _subset(data.x_test, args.num)
        x, mean, std = prepare(images, preprocess)
        mask = tasks.make_mask(args.mask, shape)
        samples = tasks.conditional_samples(program, x, mask, seed=args.seed)
        original, value_range = _display(x, mean, std, max_value)
        path = save_completion_grid(args.out, original, mask, {"sampled": _display(samples, mean, std, max_value)[0]},
                                    shape=shape, value_range=value_range, max_images=args.num,
                                    title=f"{args.mask} half sampled given the rest")
    if args.save is not None:
        np.save(args.save, samples.reshape((len(samples),) + tuple(shape)))
    _say(args, f"{len(samples)} samples drawn to {path}")
    write_report(args.report, {"command": "sample", "model": str(args.model), "num_samples": len(samples),
                               "conditional_on": args.mask, "seed": args.seed, "picture": path,
                               "array": None if args.save is None else str(args.save)})
    return 0


def _cmd_draw(args) -> int:
    circuit, _ = load_model(args.model)
    report = circuit.check() if args.highlight else None
    path = circuit.render(args.out, report=report, max_nodes=args.max_nodes, show_scopes=not args.no_scopes)
    _say(args, f"drawing of {circuit.num_nodes} nodes written to {path}"
               + (" (summarized)" if circuit.num_nodes > args.max_nodes else ""))
    write_report(args.report, {"command": "draw", "model": str(args.model), "picture": path,
                               "nodes": circuit.num_nodes, "summarized": circuit.num_nodes > args.max_nodes})
    return 0


def _cmd_check(args) -> int:
    circuit, record = load_model(args.model)
    report = circuit.check()
    _say(args, str(report))
    write_report(args.report, {
        "command": "check", "model": str(args.model), "ok": report.ok,
        "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
        "parameters": circuit.num_params, "num_variables": circuit.num_variables,
        "violations": [{"kind": v.kind, "message": v.message} for v in report.violations],
        "record": record})
    return 0 if report.ok else 1


# ---- the demo ------------------------------------------------------------------------------------

def _cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(args.out, quick=args.quick, epochs=args.epochs, progress=args.progress, seed=args.seed,
                    quiet=args.quiet)


# ---- the parser ---------------------------------------------------------------------------------

class _Formatter(argparse.HelpFormatter):
    """Wrap each paragraph of a description on its own; add a default the help does not already state."""

    def _fill_text(self, text, width, indent):
        return "\n\n".join(super(_Formatter, self)._fill_text(paragraph, width, indent)
                            for paragraph in text.split("\n\n"))

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default in (None, True, False, argparse.SUPPRESS)
                or action.option_strings == []):
            return text
        return text + " (default: %(default)s)"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _common(parser: argparse.ArgumentParser, *, runs: bool = True) -> None:
    parser.add_argument("--report", metavar="PATH", default=None,
                        help="also write the results as JSON to PATH")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    if runs:
        parser.add_argument("--no-progress", dest="progress", action="store_false",
                            help="hide the progress bars")
        parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                            help="where the circuit runs: numpy (CPU) or cupy (a CUDA GPU)")
        parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                            help="floating-point precision of the compiled circuit")


def _model_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model file written by `pcircuits train` (model.pcz)")
    parser.add_argument("--data", default=None,
                        help=f"data set whose test images to use: {', '.join(DATA_SETS)} or a path to an .npz "
                             f"(default: the model's training data, from its record model.pcz.json)")
    parser.add_argument("--preprocess", choices=PREPROCESSINGS, default=None,
                        help="how pixels are prepared for the model (default: as in training)")
    parser.add_argument("--batch-size", type=_positive_int, default=256, help="images per pass")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pcircuits`` command and its subcommands."""
    from .demo import DEMO_SETTINGS, QUICK_SETTINGS

    parser = argparse.ArgumentParser(
        prog="pcircuits", formatter_class=_Formatter,
        description="Probabilistic circuits (sum-product networks): build, check, draw, train, complete and "
                    "sample.\n\nStart with `pcircuits demo`, which needs no download. Every subcommand has --help.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train", formatter_class=_Formatter, help="build a circuit over images and train it",
        description="Build a Poon-Domingos (pd) or RAT-SPN (rat) circuit over the images of a data set, check it, "
                    "train it and save it.\n\nGaussian leaves model each image standardized to mean 0 and "
                    "standard deviation 1 (Poon & Domingos); their means start at per-pixel quantile means "
                    "of the training data. Binomial and categorical leaves model the grey levels.\n\nWrites "
                    "MODEL.pcz and its record MODEL.pcz.json, which the other subcommands read.")
    train.add_argument("--data", default="digits8x8",
                       help=f"training data: {', '.join(DATA_SETS)} (digits8x8 is embedded; the others are read "
                            f"from the data folder, $PCIRCUITS_DATA or ../shared/data) or a path to an .npz with "
                            f"x_train and x_test arrays")
    train.add_argument("--structure", choices=("pd", "rat"), default="pd",
                       help="pd: Poon-Domingos (all rectangle splits at resolution --delta); rat: RAT-SPN "
                            "(random binary region trees)")
    train.add_argument("--leaf", choices=LEAVES, default="gaussian", help="leaf distribution of every pixel")
    train.add_argument("--preprocess", choices=PREPROCESSINGS, default=None,
                       help="standardize: each image to mean 0, std 1 (P&D; default for gaussian leaves); "
                            "none: the grey levels (default for binomial and categorical leaves)")
    train.add_argument("--delta", type=parse_delta, default=4,
                       help="pd: coarse resolution of the splits: 4, 7x4 (rows x columns), or several levels "
                            "such as 8,4")
    train.add_argument("--num-sums", type=_positive_int, default=4,
                       help="sum units per region (pd: K; rat: S)")
    train.add_argument("--num-leaves", type=_positive_int, default=4,
                       help="leaf components per pixel (pd: G) or per leaf region (rat: I)")
    train.add_argument("--max-splits", type=_positive_int, default=None,
                       help="pd: keep at most this many random splits per region (default: all)")
    train.add_argument("--depth", type=_positive_int, default=3, help="rat: splits from the root to the leaf "
                                                                      "regions (D)")
    train.add_argument("--repetitions", type=_positive_int, default=10, help="rat: random region trees (R)")
    train.add_argument("--leaf-std", type=_positive_float, default=1.0,
                       help="gaussian: standard deviation of every leaf component (the papers: 1, in units of "
                            "each image's standard deviation)")
    leaves = train.add_mutually_exclusive_group()
    leaves.add_argument("--learn-leaves", dest="learn_leaves", action="store_true", default=None,
                        help="learn the leaf parameters too (default for binomial and categorical leaves)")
    leaves.add_argument("--freeze-leaves", dest="learn_leaves", action="store_false",
                        help="keep the leaves as initialized (default for gaussian leaves, which start at the "
                             "quantile means, as in DGC-SPN's generative setup)")
    train.add_argument("--method", choices=METHODS, default="em",
                       help="em: soft EM; hard-em: hard (Viterbi) EM; usi: hard EM choosing by unweighted sum "
                            "inputs (Kalra et al.); adam, sgd: gradient steps on the log-likelihood")
    train.add_argument("--em-mode", choices=("full-batch", "online"), default=None,
                       help="EM schedule: one update per epoch from all batches' statistics, or one per batch "
                            "(default: full-batch for em, online for hard-em and usi)")
    train.add_argument("--em-counts", choices=("sum", "mean"), default="sum",
                       help="EM: a batch adds the sum of its examples' statistics or their mean (libspn-keras' "
                            "units, in which DGC-SPN's smoothing 1e-2/|w| weighs batch-size times more)")
    train.add_argument("--epochs", type=_positive_int, default=10, help="passes over the training data")
    train.add_argument("--batch-size", type=_positive_int, default=128, help="images per update")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="adam/sgd: learning rate (default 0.01); EM methods: online step size in (0, 1], "
                            "each batch's estimate blended in with this weight (implies --em-mode online)")
    train.add_argument("--seed", type=int, default=0, help="seeds the structure, the parameters and the data order")
    train.add_argument("--train-size", type=_positive_int, default=None,
                       help="use only the first N training images (default: all)")
    train.add_argument("--valid-size", type=int, default=0,
                       help="hold out the last N of those as validation data (log-likelihood after each epoch)")
    train.add_argument("--checkpoint", metavar="PATH", default=None,
                       help="write a resumable checkpoint (.npz) to PATH after every epoch; running the same "
                            "command again continues from it")
    train.add_argument("--curve", metavar="PNG", default=None, help="also draw the learning curve to PNG")
    train.add_argument("--out", default="model.pcz", help="model file to write (its record goes to OUT.json)")
    _common(train)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser(
        "evaluate", formatter_class=_Formatter, help="test log-likelihood, bits per dimension and completion MSE",
        description="Score a trained model on the test images: average log-likelihood, bits per dimension, and "
                    "the MSE of completing occluded halves (0..255 scale, occluded pixels only, each image "
                    "mapped back with its own mean and standard deviation as Poon & Domingos did).")
    _model_data_options(evaluate)
    evaluate.add_argument("--masks", nargs="+", choices=MASK_NAMES, default=["left", "bottom"],
                          help="halves to occlude and complete")
    evaluate.add_argument("--method", choices=("posterior-mean", "mpe", "both"), default="posterior-mean",
                          help="completion: posterior mean of the leaves (DGC-SPN 5.1) or approximate MPE")
    evaluate.add_argument("--limit", type=_positive_int, default=None, help="use only the first N test images")
    _common(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    inpaint = sub.add_parser(
        "inpaint", formatter_class=_Formatter, help="complete occluded test images and draw them",
        description="Occlude part of each test image, complete it with the model, print the MSE and draw a grid "
                    "(original | occluded | completed).")
    _model_data_options(inpaint)
    inpaint.add_argument("--mask", choices=MASK_NAMES, default="left", help="the part to occlude")
    inpaint.add_argument("--method", choices=("posterior-mean", "mpe", "both"), default="both",
                         help="completion method(s); each gets a row in the picture")
    inpaint.add_argument("--num-images", type=_positive_int, default=50, help="test images to complete and score")
    inpaint.add_argument("--max-drawn", type=_positive_int, default=10, help="images in the picture")
    inpaint.add_argument("--out", default="completions.png", help="picture to write (.png, .svg or .pdf)")
    _common(inpaint)
    inpaint.set_defaults(func=_cmd_inpaint)

    sample = sub.add_parser(
        "sample", formatter_class=_Formatter, help="draw samples of a model",
        description="Draw samples of a trained model; with --mask, sample the occluded part of test images given "
                    "the rest. Standardized samples are drawn each with its own grey range.")
    _model_data_options(sample)
    sample.add_argument("--num", type=_positive_int, default=32, help="number of samples (or test images)")
    sample.add_argument("--mask", choices=MASK_NAMES, default=None,
                        help="sample this part of test images given the rest (default: unconditional samples)")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("--columns", type=_positive_int, default=8, help="images per row of the picture")
    sample.add_argument("--out", default="samples.png", help="picture to write (.png, .svg or .pdf)")
    sample.add_argument("--save", metavar="NPY", default=None, help="also save the samples as a .npy array")
    _common(sample)
    sample.set_defaults(func=_cmd_sample)

    draw = sub.add_parser(
        "draw", formatter_class=_Formatter, help="draw a circuit with Graphviz",
        description="Draw the circuit of a model file. Circuits with more than --max-nodes nodes are drawn "
                    "summarized (one box per height and kind). Needs Graphviz's `dot` for .svg/.png/.pdf; "
                    "without it the Graphviz source is written.")
    draw.add_argument("model", help="a model file (model.pcz)")
    draw.add_argument("--out", default="circuit.svg", help="picture to write: .svg, .png, .pdf or .dot")
    draw.add_argument("--max-nodes", type=_positive_int, default=300, help="largest circuit drawn node by node")
    draw.add_argument("--no-scopes", action="store_true", help="leave the scopes out of the node labels")
    draw.add_argument("--highlight", action="store_true", help="check the circuit and highlight its violations")
    _common(draw, runs=False)
    draw.set_defaults(func=_cmd_draw)

    check = sub.add_parser(
        "check", formatter_class=_Formatter, help="check smoothness, decomposability and weights",
        description="Check a model file's circuit: smoothness, decomposability, cycles, weights and shapes. Exits "
                    "with status 0 when it is valid, 1 when not.")
    check.add_argument("model", help="a model file (model.pcz)")
    _common(check, runs=False)
    check.set_defaults(func=_cmd_check)

    demo = sub.add_parser(
        "demo", formatter_class=_Formatter, help="train a circuit on the embedded 8x8 digits; write pictures",
        description="On scikit-learn's embedded 8x8 digits (no download): build a Poon-Domingos circuit, check "
                    "it, train it with EM, report the test log-likelihood, bits per dimension and left/bottom "
                    "completion MSE (0..255 scale), and write pictures (circuit drawings, completions, "
                    "samples, learning curve) and report.md / report.json into OUT.")
    demo.add_argument("--out", default=os.path.join("out", "demo"), help="folder for the report and pictures")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help=f"training epochs (default: {DEMO_SETTINGS['epochs']}; with --quick "
                           f"{QUICK_SETTINGS['epochs']})")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--quick", action="store_true",
                      help="a tiny run (few images and epochs) for tests; its figures mean little")
    demo.add_argument("--quiet", action="store_true", help="print nothing but errors")
    demo.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    """Run the ``pcircuits`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as err:
        print(f"pcircuits {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
