"""The ``pcircuits`` command: train, evaluate, complete, sample, draw and check circuits; the demo.

Every subcommand explains its options and their defaults with ``--help``. A trained model is
two files: the circuit (``model.pcz``, see :mod:`pcircuits.serialization`) and beside it a small
JSON record (``model.pcz.json``) of how it was made (see :mod:`pcircuits.workflow`). The other
subcommands read both, so that ``pcircuits evaluate model.pcz`` prepares the test images exactly
as training prepared the training images.

A mistake in a command's input (a file, an option, data that does not fit the model) ends in
one line on stderr that names the problem and the fix, and exit status 2; ``pcircuits
--traceback COMMAND ...`` shows the Python traceback instead, for bug reports. Output paths,
the backend and the input files are checked before any work starts.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from .demo import DEMO_SETTINGS, QUICK_SETTINGS
from .errors import CheckpointError, CircuitFileError, InvalidCircuitError, OptionalDependencyError
from .learning import LEARNERS
from .workflow import (LEAVES, PREPROCESSINGS, STRUCTURES, build_image_circuit, check_scorable, checkpoint_epochs,
                       default_valid_size, evaluate_program, history_record, initialize_leaves, load_model,
                       prepare_images, record_path, save_model, write_json)

__all__ = ["main", "build_parser", "load_data", "parse_delta", "train_settings", "describe_error", "DATA_SETS",
           "USER_ERRORS"]

#: Names accepted by ``--data`` (besides a path to an ``.npz`` file).
DATA_SETS = ("digits8x8", "mnist", "fashion-mnist", "olivetti")
#: The training methods that take a learning rate; the others are EM variants with a step size.
MASK_NAMES = ("left", "bottom", "top", "right", "center")
#: Suffixes of pictures of images (completions, samples) and learning curves.
PICTURE_SUFFIXES = (".png", ".svg", ".pdf")
#: Suffixes of circuit drawings: Graphviz's pictures or its source.
DRAWING_SUFFIXES = (".svg", ".png", ".pdf", ".dot", ".gv")
#: The largest image (in pixels) for which ``train`` decomposes every rectangle (``--delta 1``).
FULL_RESOLUTION_PIXELS = 64


class CommandError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


#: What a user's mistake raises and the command reports in one line with exit status 2: the
#: command's own errors, the library's error types, and the builtins the library raises for a
#: bad argument, a missing or unwritable file, a missing optional package or too large an input.
USER_ERRORS = (CommandError, CircuitFileError, InvalidCircuitError, CheckpointError, OptionalDependencyError,
               ValueError, TypeError, OSError, ImportError, RuntimeError, MemoryError, zipfile.BadZipFile)


# ---- data ---------------------------------------------------------------------------------------

def load_data(name: str):
    """The :class:`~pcircuits.datasets.Dataset` named by ``--data``.

    ``digits8x8`` (shipped with the package), ``mnist``, ``fashion-mnist``, ``olivetti`` (from
    the data folder, see :func:`pcircuits.datasets.default_data_dir`), or a path to an ``.npz``
    file with numeric ``x_train`` and ``x_test`` arrays of shape (n, height, width[, channels])
    (optional: integer ``y_train``, ``y_test``, and a scalar ``max_value``, else 255).
    """
    from . import datasets

    loaders = {"digits8x8": datasets.load_digits_8x8, "mnist": datasets.load_mnist,
               "fashion-mnist": datasets.load_fashion_mnist, "olivetti": datasets.load_olivetti}
    if name in loaders:
        return loaders[name]()
    path = Path(name).expanduser()
    if path.suffix != ".npz":
        raise CommandError(f"--data must be one of {', '.join(DATA_SETS)} or a path to an .npz file, got {name!r}")
    if not path.is_file():
        raise CommandError(f"--data: no such file: {path}")
    arrays = _read_npz(path)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.ndim not in (3, 4) or x_train.shape[1:] != x_test.shape[1:] or not (len(x_train) and len(x_test)):
        raise CommandError(f"--data: x_train and x_test in {path} must be non-empty images of one shape (n, height, "
                           f"width[, channels]), got {x_train.shape} and {x_test.shape}")
    for split, x in (("train", x_train), ("test", x_test)):
        labels = arrays.get(f"y_{split}")
        if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != (len(x),)):
            raise CommandError(f"--data: y_{split} in {path} must hold one integer label per image ({len(x)}), "
                               f"got dtype {labels.dtype} and shape {labels.shape}")
    max_value = arrays.get("max_value", np.array(255))
    if max_value.shape != () or max_value.dtype.kind not in "iu" or int(max_value) < 1:
        raise CommandError(f"--data: max_value in {path} must be one positive integer (the largest grey level), "
                           f"got {max_value!r}")
    return datasets.Dataset(path.name, x_train, arrays.get("y_train"), x_test, arrays.get("y_test"),
                            tuple(x_train.shape[1:]), int(max_value), extra={"file": str(path)})


_DTYPE_KINDS = {"O": "Python objects", "U": "strings", "S": "byte strings", "V": "raw records", "c": "complex numbers",
                "M": "dates", "m": "time spans"}


def _read_npz(path: Path) -> dict:
    """The arrays of an ``.npz`` data file, each checked to hold numbers (never unpickled)."""
    fix = "write it with numpy.savez(path, x_train=..., x_test=...)"
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CommandError(f"--data: {path} is not a readable .npz archive ({err}); {fix}") from None
    if not hasattr(archive, "files"):
        raise CommandError(f"--data: {path} holds a single array, not an .npz archive; {fix}")
    with archive:
        missing = [k for k in ("x_train", "x_test") if k not in archive.files]
        if missing:
            raise CommandError(f"--data: {path} lacks the arrays {', '.join(missing)} (it has "
                               f"{', '.join(archive.files) or 'none'}); {fix}")
        arrays = {}
        for key in ("x_train", "x_test", "y_train", "y_test", "max_value"):
            if key not in archive.files:
                continue
            try:
                arrays[key] = archive[key]
            except ValueError:
                raise CommandError(f"--data: {key} in {path} holds Python objects, which are never unpickled (they "
                                   f"could run code); save it as a numeric array") from None
            except (OSError, EOFError, zipfile.BadZipFile) as err:
                raise CommandError(f"--data: {key} in {path} cannot be read ({err}); {fix}") from None
            kind = arrays[key].dtype.kind
            if kind not in "biuf":
                raise CommandError(f"--data: {key} in {path} holds {_DTYPE_KINDS.get(kind, 'non-numbers')} (dtype "
                                   f"{arrays[key].dtype}); save it as numbers")
    return arrays


def _subset(x: np.ndarray, limit: int | None) -> np.ndarray:
    return x if limit is None or limit >= len(x) else x[:limit]


def _prepare(program, images, preprocess: str, what: str, data_name: str, fix: str):
    """Prepare images for ``program`` (:func:`prepare_images`) and check that they lie in its leaves' domains."""
    x, mean, std = prepare_images(images, preprocess, what=f"{data_name} {what}")
    try:
        program.prepare(x, what=f"{what}s")
    except (ValueError, TypeError) as err:
        raise CommandError(f"the {data_name} {what}s do not fit the model: {err}; {fix}") from None
    return x, mean, std


# ---- output ------------------------------------------------------------------------------------

def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def _note(args, text: str) -> None:
    """One line on stderr, unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(f"pcircuits {args.command}: {text}", file=sys.stderr, flush=True)


def _check_output(path, option: str, suffixes: tuple | None) -> None:
    """Refuse an output path that cannot be written, before any work starts."""
    path = Path(path).expanduser()
    if suffixes and path.suffix.lower() not in suffixes:
        found = f"the format {path.suffix!r}" if path.suffix else "a path without a suffix"
        raise CommandError(f"{option} {path}: cannot write {found}; use a path ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise CommandError(f"{option} {path} is a folder; give a file path inside it")
    folder = path.parent
    if not folder.exists():
        raise CommandError(f"{option} {path}: the folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: {folder} is a file, not a folder; choose another path")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CommandError(f"{option} {path}: permission denied; choose a path you can write")


def _check_before_work(args) -> None:
    """Resolve the progress default, check every output path and the backend."""
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty()
    for dest, option, suffixes in args.outputs:
        if getattr(args, dest, None) is not None:
            _check_output(getattr(args, dest), option, suffixes)
    if getattr(args, "backend", "numpy") == "cupy":
        from .backend import Backend
        try:
            Backend("cupy", args.dtype)
        except ImportError:
            raise CommandError("--backend cupy needs CuPy, which is not installed; install it with pip install "
                               "'pcircuits[gpu]' on a machine with a CUDA GPU, or use --backend numpy") from None
        except RuntimeError as err:
            raise CommandError(f"--backend cupy needs a CUDA GPU and found none ({' '.join(str(err).split())}); "
                               f"use --backend numpy") from None


def _violations(report, model: str = "MODEL") -> str:
    """The first violation of an invalid circuit's report and how to see the others."""
    count = len(report.violations)
    return f"{report.violations[0]} ({count} violation{'s' if count > 1 else ''}; `pcircuits check {model}` lists them)"


def describe_error(err: BaseException) -> str:
    """One line that says what went wrong, for ``pcircuits COMMAND: error: ...``."""
    if isinstance(err, InvalidCircuitError) and err.report.violations:
        text = f"the circuit is invalid: {_violations(err.report)}"
    elif isinstance(err, MemoryError):
        text = "out of memory; use a smaller --batch-size or fewer images"
    elif isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.strerror}: {err.filename}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _show_warning(command: str, message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pcircuits {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)


# ---- train ---------------------------------------------------------------------------------------

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


def train_settings(args, shape: tuple, num_images: int) -> dict:
    """Every setting of a ``train`` run: the options given, the defaults filled in for ``shape`` images.

    Checks the combinations argparse cannot (a step size outside (0, 1], a step size with
    full-batch EM, a validation set that leaves no training images) and raises
    :class:`CommandError`.
    """
    gradient = LEARNERS[args.method].family == "gradient"
    if args.lr is not None and not gradient:
        if args.em_mode == "full-batch":
            raise CommandError("--lr is the step size of online EM; drop it, or use --em-mode online")
        if not 0 < args.lr <= 1:
            raise CommandError(f"with --method {args.method}, --lr is the online EM step size and must lie in (0, 1], "
                               f"got {args.lr}")
    preprocess = args.preprocess or ("standardize" if args.leaf == "gaussian" else "none")
    if args.leaf != "gaussian" and preprocess != "none":
        raise CommandError(f"--leaf {args.leaf} models grey levels; use --preprocess none")
    train_size = min(num_images, args.train_size or num_images)
    valid_size = default_valid_size(train_size) if args.valid_size is None else args.valid_size
    if valid_size >= train_size:
        raise CommandError(f"--valid-size {valid_size} leaves none of the {train_size} training images; "
                           f"use a smaller --valid-size")
    if args.delta is not None:
        delta = args.delta
    else:
        delta = DEMO_SETTINGS["delta"] if int(np.prod(shape[:2])) <= FULL_RESOLUTION_PIXELS else 4
    if gradient:
        lr = 0.01 if args.lr is None else args.lr
    else:
        lr = (DEMO_SETTINGS["step_size"] if args.em_mode == "online" else None) if args.lr is None else args.lr
    return {"structure": args.structure, "leaf": args.leaf, "preprocess": preprocess, "delta": delta,
            "num_sums": args.num_sums, "num_leaves": args.num_leaves, "max_splits": args.max_splits,
            "depth": args.depth, "repetitions": args.repetitions, "leaf_std": args.leaf_std,
            "learn_leaves": args.leaf != "gaussian" if args.learn_leaves is None else args.learn_leaves,
            "method": args.method, "em_mode": None if gradient else args.em_mode,
            "em_counts": None if gradient else args.em_counts, "lr": lr, "epochs": args.epochs,
            "batch_size": args.batch_size, "seed": args.seed, "train_size": train_size, "valid_size": valid_size,
            "backend": args.backend, "dtype": args.dtype}


def _fit_options(settings: dict) -> dict:
    """The keyword arguments of :func:`pcircuits.learning.fit` for the ``train`` settings."""
    options = dict(method=settings["method"], epochs=settings["epochs"], batch_size=settings["batch_size"],
                   seed=settings["seed"])
    if LEARNERS[settings["method"]].family == "gradient":
        options.update(learn_leaves=settings["learn_leaves"], lr=settings["lr"])
    else:
        options.update(freeze_leaves=not settings["learn_leaves"], mode=settings["em_mode"],
                       counts=settings["em_counts"], step_size=settings["lr"])
    return options


def _check_grey_levels(x: np.ndarray, settings: dict, data) -> None:
    """Refuse grey levels outside 0..max_value (or not whole) for discrete leaves."""
    if settings["leaf"] == "gaussian":
        return
    levels = np.where(np.isnan(x), 0, x)
    bad = (levels != np.round(levels)) | (levels < 0) | (levels > data.max_value)
    if bad.any():
        image, pixel = (int(i) for i in np.argwhere(bad)[0])
        raise CommandError(f"{data.name} training image {image} has the value {x[image, pixel]:g} at pixel {pixel}, "
                           f"outside the {settings['leaf']} leaves' grey levels 0..{data.max_value}; fix the data "
                           f"(or its max_value), or use --leaf gaussian")


@contextlib.contextmanager
def _cluster(args):
    """The Dask client that ``--workers`` or ``--scheduler`` asks for (None without them), closed at the end."""
    if args.workers is None and args.scheduler is None:
        yield None
        return
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise OptionalDependencyError("--workers and --scheduler need Dask: pip install 'pcircuits[distributed]'") \
            from None
    if args.scheduler is not None:
        try:
            client = Client(args.scheduler, timeout=30)
        except OSError as err:
            raise CommandError(f"no Dask scheduler answers at {args.scheduler} ({err})") from None
        with client:
            _say(args, f"cluster: {len(client.scheduler_info()['workers'])} workers at {args.scheduler}")
            yield client
        return
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        _say(args, f"cluster: {args.workers} local worker processes, one thread each")
        yield client


def _cmd_train(args) -> int:
    from . import learning

    started = time.perf_counter()
    data = load_data(args.data)
    settings = train_settings(args, data.shape, len(data.x_train))
    images = _subset(data.x_train, settings["train_size"])
    x_train, _, _ = prepare_images(images, settings["preprocess"], what=f"{data.name} training image")
    _check_grey_levels(x_train, settings, data)
    valid = settings["valid_size"]
    x_train, x_valid = (x_train[:-valid], x_train[-valid:]) if valid else (x_train, None)
    _say(args, f"data {data.name}: {len(x_train)} training images of {data.shape}"
               + (f", {valid} validation" if valid else "") + f", preprocessing {settings['preprocess']}")
    circuit = build_image_circuit(settings["structure"], data.shape, leaf=settings["leaf"], max_value=data.max_value,
                                  delta=settings["delta"], num_sums=settings["num_sums"],
                                  num_leaves=settings["num_leaves"], max_splits=settings["max_splits"],
                                  depth=settings["depth"], repetitions=settings["repetitions"], seed=settings["seed"])
    if settings["leaf"] == "gaussian":
        initialize_leaves(circuit, x_train, settings["num_leaves"], settings["leaf_std"])
    circuit.check().raise_if_invalid()
    _say(args, f"circuit: {circuit.num_nodes} nodes, {circuit.num_units} units, {circuit.num_edges} edges; valid")
    program = circuit.compile(settings["backend"], settings["dtype"])
    checkpoint = args.checkpoint
    done = checkpoint_epochs(checkpoint) if checkpoint is not None and not args.restart else None
    if done is not None:
        _note(args, f"resuming from the checkpoint {checkpoint} ({min(done, settings['epochs'])} of "
                    f"{settings['epochs']} epochs done); pass --restart to start over")
    try:
        with _cluster(args) as client:
            history = learning.fit(program, x_train, valid=x_valid, progress=args.progress, checkpoint=checkpoint,
                                   resume=not args.restart, client=client, **_fit_options(settings))
    except CheckpointError as err:
        problem = " ".join(str(err).split()).split("; ")[0]
        raise CommandError(f"{problem}; pass --restart to start over (overwriting it)") from None
    record = {
        "pcircuits_model": 1, "data": args.data, "shape": list(data.shape), "max_value": data.max_value,
        "preprocess": settings["preprocess"], "structure": settings["structure"], "leaf": settings["leaf"],
        "settings": settings,
        "circuit": {"nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
                    "parameters": circuit.num_params},
        "history": history_record(history), "train_seconds": time.perf_counter() - started,
        "cluster": {"workers": args.workers, "scheduler": args.scheduler},
    }
    save_model(program, args.out, record)
    if args.curve:
        history.plot(args.curve)
    last = record["history"].get("train_ll", [float("nan")])[-1]
    _say(args, f"trained {settings['epochs']} epoch(s) with {settings['method']} in {record['train_seconds']:.1f} s; "
               f"final training log-likelihood {last:.3f}; model written to {args.out} "
               f"(+ {record_path(args.out).name})")
    if args.report is not None:
        write_json(args.report, {"command": "train", "model": str(args.out), **record})
    return 0


# ---- the subcommands that read a model -------------------------------------------------------------

class _Opened:
    """A model opened for evaluate, inpaint or sample: its circuit, record, program and test data."""

    def __init__(self, args):
        try:
            self.circuit, self.record = load_model(args.model)
        except InvalidCircuitError as err:
            raise CommandError(f"{args.model} is not a valid circuit: {_violations(err.report, args.model)}") from None
        data_name = args.data or self.record.get("data")
        if data_name is None:
            raise CommandError(f"the model has no record ({record_path(args.model)}) that names its data set; "
                               f"pass --data")
        self.preprocess = args.preprocess or self.record.get("preprocess") or "standardize"
        self.data = load_data(data_name)
        shape = self.record.get("shape") or self.circuit.variables.shape or self.data.shape
        self.shape = tuple(shape)
        if int(np.prod(self.shape)) != self.circuit.num_variables:
            raise CommandError(f"{args.model} has {self.circuit.num_variables} variables but its record gives the "
                               f"image shape {self.shape}; repair or delete the record {record_path(args.model)}")
        trained_on = self.record.get("data")
        self.fix = (f"use the data it was trained on (--data {trained_on})" if trained_on else
                    "use data like the model's training data")
        if tuple(self.data.shape) != self.shape:
            raise CommandError(f"the model is over images of shape {_shape_text(self.shape)} but the {self.data.name} "
                               f"images have shape {_shape_text(self.data.shape)}; {self.fix}")
        try:
            self.program = self.circuit.compile(args.backend, args.dtype)
        except InvalidCircuitError as err:
            raise CommandError(f"{args.model} is not a valid circuit: {_violations(err.report, args.model)}") from None
        self.max_value = self.record.get("max_value") or self.data.max_value

    def prepare(self, images, what: str = "test image"):
        return _prepare(self.program, images, self.preprocess, what, self.data.name, self.fix)

    def display(self, x: np.ndarray, mean, std) -> np.ndarray:
        """Model units back to grey levels (standardized images use each image's statistics)."""
        from .datasets import unstandardize_images
        return x if mean is None else unstandardize_images(x, mean, std)


def _shape_text(shape) -> str:
    return "x".join(str(s) for s in shape)


def _cmd_evaluate(args) -> int:
    started = time.perf_counter()
    model = _Opened(args)
    images = _subset(model.data.x_test, args.limit)
    model.prepare(images)
    methods = ("posterior-mean", "mpe") if args.method == "both" else (args.method,)
    metrics, _ = evaluate_program(model.program, images, preprocess=model.preprocess, shape=model.shape,
                                  max_value=model.max_value, masks=args.masks, methods=methods,
                                  batch_size=args.batch_size, progress=args.progress)
    metrics["seconds"] = time.perf_counter() - started
    _say(args, f"{model.data.name} test set, {metrics['num_images']} images ({model.preprocess}):")
    _say(args, f"  log-likelihood {metrics['log_likelihood']:.3f} nats per image, "
               f"{metrics['bits_per_dimension']:.4f} bits per dimension")
    for key, value in metrics.items():
        if key.startswith("mse_"):
            _, mask_name, method = key.split("_", 2)
            _say(args, f"  {mask_name}-half completion MSE ({method}, 0..255 scale, occluded pixels): {value:.1f}")
    if args.report is not None:
        write_json(args.report, {"command": "evaluate", "model": str(args.model), "data": model.data.name,
                                 "preprocess": model.preprocess, **metrics})
    return 0


def _cmd_inpaint(args) -> int:
    from . import tasks
    from .imagegrid import save_completion_grid

    model = _Opened(args)
    x, mean, std = model.prepare(_subset(model.data.x_test, args.num_images))
    mask = tasks.make_mask(args.mask, model.shape)
    check_scorable(x, mask, args.mask, what=f"{model.data.name} test image")
    methods = ("posterior-mean", "mpe") if args.method == "both" else (args.method,)
    completions, metrics = {}, {}
    for method in methods:
        done = tasks.complete(model.program, x, mask, method=method, batch_size=args.batch_size,
                              progress=args.progress)
        completions[method] = model.display(done, mean, std)
        metrics[f"mse_{args.mask}_{method}"] = tasks.completion_mse(x, done, mask, mean=mean, std=std,
                                                                    max_value=model.max_value)
        _say(args, f"{args.mask}-half completion MSE ({method}, 0..255 scale) over {len(x)} images: "
                   f"{metrics[f'mse_{args.mask}_{method}']:.1f}")
    path = save_completion_grid(args.out, model.display(x, mean, std), mask, completions, shape=model.shape,
                                value_range=(0, model.max_value), max_images=args.max_drawn,
                                title=f"{model.data.name}: {args.mask} half completed")
    _say(args, f"completions drawn to {path}")
    if args.report is not None:
        write_json(args.report, {"command": "inpaint", "model": str(args.model), "mask": args.mask,
                                 "num_images": len(x), "picture": path, **metrics})
    return 0


def _cmd_sample(args) -> int:
    from . import tasks
    from .imagegrid import save_completion_grid, save_image_grid

    model = _Opened(args)
    if args.mask is None:
        samples = tasks.unconditional_samples(model.program, args.num, seed=args.seed)
        value_range = None if model.preprocess == "standardize" else (0, model.max_value)
        path = save_image_grid(args.out, samples, args.columns, shape=model.shape, value_range=value_range,
                               title=f"{args.num} samples")
    else:
        x, mean, std = model.prepare(_subset(model.data.x_test, args.num))
        mask = tasks.make_mask(args.mask, model.shape)
        samples = tasks.conditional_samples(model.program, x, mask, seed=args.seed, batch_size=args.batch_size)
        path = save_completion_grid(args.out, model.display(x, mean, std), mask,
                                    {"sampled": model.display(samples, mean, std)}, shape=model.shape,
                                    value_range=(0, model.max_value), max_images=args.num,
                                    title=f"{args.mask} half sampled given the rest")
    if args.save is not None:
        np.save(args.save, samples.reshape((len(samples),) + model.shape))
    _say(args, f"{len(samples)} samples drawn to {path}")
    if args.report is not None:
        write_json(args.report, {"command": "sample", "model": str(args.model), "num_samples": len(samples),
                                 "conditional_on": args.mask, "seed": args.seed, "picture": path,
                                 "array": None if args.save is None else str(args.save)})
    return 0


def _cmd_draw(args) -> int:
    circuit, _ = load_model(args.model, validate=False)
    report = circuit.check() if args.highlight else None
    path = circuit.render(args.out, report=report, max_nodes=args.max_nodes, show_scopes=not args.no_scopes)
    summarized = circuit.num_nodes > args.max_nodes
    _say(args, f"drawing of {circuit.num_nodes} nodes written to {path}" + (" (summarized)" if summarized else ""))
    if args.report is not None:
        write_json(args.report, {"command": "draw", "model": str(args.model), "picture": path,
                                 "nodes": circuit.num_nodes, "summarized": summarized})
    return 0


def _cmd_check(args) -> int:
    circuit, record = load_model(args.model, validate=False)
    report = circuit.check()
    _say(args, str(report))
    if args.report is not None:
        write_json(args.report, {
            "command": "check", "model": str(args.model), "ok": report.ok,
            "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
            "parameters": circuit.num_params, "num_variables": circuit.num_variables,
            "violations": [{"kind": v.kind, "message": v.message} for v in report.violations],
            "record": record})
    return 0 if report.ok else 1


def _cmd_demo(args) -> int:
    from .demo import run_demo

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file; the demo writes into a folder, choose another path")
    out.mkdir(parents=True, exist_ok=True)
    return run_demo(out, quick=args.quick, epochs=args.epochs, progress=args.progress, seed=args.seed,
                    quiet=args.quiet)


# ---- the parser ---------------------------------------------------------------------------------

class _Formatter(argparse.HelpFormatter):
    """Wrap each paragraph of a description on its own; add a default the help does not already state."""

    def _fill_text(self, text, width, indent):
        return "\n\n".join(super(_Formatter, self)._fill_text(paragraph, width, indent)
                            for paragraph in text.split("\n\n"))

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or any(action.default is v for v in (None, True, False, argparse.SUPPRESS))
                or action.option_strings == []):
            return text
        return text + " (default: %(default)s)"


def _integer_at_least(low: int, what: str):
    """An argparse type: an int >= ``low``, refused as ``expected {what}``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value
    return parse


_positive_int = _integer_at_least(1, "a positive integer")
_count = _integer_at_least(0, "a whole number (0 or more)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _subparser(sub, name: str, func, *, help: str, description: str, outputs=()) -> argparse.ArgumentParser:
    """A subcommand running ``func(args)``; ``outputs`` are ``(dest, option, suffixes)`` checked before it runs."""
    parser = sub.add_parser(name, formatter_class=_Formatter, help=help, description=description)
    parser.set_defaults(func=func, outputs=(("report", "--report", None),) + tuple(outputs))
    return parser


def _add_progress(parser: argparse.ArgumentParser) -> None:
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show progress bars on stderr (default: only when stderr is a terminal)")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")


def _add_common(parser: argparse.ArgumentParser, *, runs: bool = True, progress: bool = True) -> None:
    parser.add_argument("--report", metavar="PATH", default=None,
                        help="also write the results as JSON to PATH (default: none)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    if progress:
        _add_progress(parser)
    if runs:
        parser.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                            help="where the circuit runs: numpy (CPU) or cupy (a CUDA GPU)")
        parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                            help="floating-point precision of the compiled circuit")


def _add_model_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model file written by `pcircuits train` (model.pcz)")
    parser.add_argument("--data", default=None,
                        help=f"data set whose test images to use: {', '.join(DATA_SETS)} or a path to an .npz "
                             f"(default: the model's training data, from its record model.pcz.json)")
    parser.add_argument("--preprocess", choices=PREPROCESSINGS, default=None,
                        help="how pixels are prepared for the model (default: as in training)")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="images per pass (default: as many as fit the queries' working-memory budget, "
                             "256 MiB)")


def _add_train(sub) -> None:
    demo = DEMO_SETTINGS
    train = _subparser(
        sub, "train", _cmd_train, help="build a circuit over images and train it",
        description="Build a Poon-Domingos (pd) or RAT-SPN (rat) circuit over the images of a data set, check it, "
                    "train it and save it. Without options it trains the demo's model on the 8x8 digits.\n\n"
                    "Gaussian leaves model each image standardized to mean 0 and standard deviation 1 (Poon & "
                    "Domingos); their means start at per-pixel quantile means of the training data. Binomial and "
                    "categorical leaves model the grey levels.\n\nWrites MODEL.pcz and its record MODEL.pcz.json, "
                    "which the other subcommands read.",
        outputs=(("out", "--out", None), ("checkpoint", "--checkpoint", None), ("curve", "--curve", PICTURE_SUFFIXES)))
    train.add_argument("--data", default="digits8x8",
                       help=f"training data: {', '.join(DATA_SETS)} (digits8x8 ships with the package; the others "
                            f"are read from the data folder, $PCIRCUITS_DATA or ../shared/data) or a path to an .npz "
                            f"with x_train and x_test arrays")
    train.add_argument("--structure", choices=STRUCTURES, default="pd",
                       help="pd: Poon-Domingos (all rectangle splits at resolution --delta); rat: RAT-SPN "
                            "(random binary region trees)")
    train.add_argument("--leaf", choices=LEAVES, default="gaussian", help="leaf distribution of every pixel")
    train.add_argument("--preprocess", choices=PREPROCESSINGS, default=None,
                       help="standardize: each image to mean 0, std 1 (P&D; default for gaussian leaves); "
                            "none: the grey levels (default for binomial and categorical leaves)")
    train.add_argument("--delta", type=parse_delta, default=None,
                       help=f"pd: coarse resolution of the splits: 4, 7x4 (rows x columns), or several levels such "
                            f"as 8,4 (default: {demo['delta']}, the demo's, for images of at most "
                            f"{FULL_RESOLUTION_PIXELS} pixels; 4, P&D's, for larger ones)")
    train.add_argument("--num-sums", type=_positive_int, default=demo["num_sums"],
                       help="sum units per region (pd: K; rat: S)")
    train.add_argument("--num-leaves", type=_positive_int, default=demo["num_leaves"],
                       help="leaf components per pixel (pd: G) or per leaf region (rat: I)")
    train.add_argument("--max-splits", type=_positive_int, default=None,
                       help="pd: keep at most this many random splits per region (default: all)")
    train.add_argument("--depth", type=_positive_int, default=3,
                       help="rat: splits from the root to the leaf regions (D)")
    train.add_argument("--repetitions", type=_positive_int, default=10, help="rat: random region trees (R)")
    train.add_argument("--leaf-std", type=_positive_float, default=demo["leaf_std"],
                       help="gaussian: standard deviation of every leaf component, in units of each image's standard "
                            "deviation (the papers use 1; the digits' nearly two-level images need narrower leaves)")
    leaves = train.add_mutually_exclusive_group()
    leaves.add_argument("--learn-leaves", dest="learn_leaves", action="store_true", default=None,
                        help="learn the leaf parameters too (default for binomial and categorical leaves)")
    leaves.add_argument("--freeze-leaves", dest="learn_leaves", action="store_false",
                        help="keep the leaves as initialized (default for gaussian leaves, which start at the "
                             "quantile means, as in DGC-SPN's generative setup)")
    methods = [m for m, entry in LEARNERS.items() if entry.family in ("em", "gradient")]
    train.add_argument("--method", choices=methods, default=demo["method"],
                       help="training method: " + "; ".join(f"{m}: {LEARNERS[m].description}" for m in methods)
                            + f" (default {demo['method']})")
    train.add_argument("--em-mode", choices=("online", "full-batch"), default=demo["em_mode"],
                       help="EM schedule: one update per batch, blended in with step size --lr, or one per epoch "
                            "from all batches' statistics")
    train.add_argument("--em-counts", choices=("sum", "mean"), default="sum",
                       help="EM: a batch adds the sum of its examples' statistics or their mean (libspn-keras' "
                            "units, in which DGC-SPN's smoothing of 1e-2 per row weighs batch-size times more)")
    train.add_argument("--epochs", type=_positive_int, default=demo["epochs"], help="passes over the training data")
    train.add_argument("--batch-size", type=_positive_int, default=demo["batch_size"], help="images per update")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help=f"EM methods: the online step size in (0, 1], each batch's estimate blended in with this "
                            f"weight (default: {demo['step_size']}, the demo's); adam and sgd: the learning rate "
                            f"(default: 0.01)")
    train.add_argument("--seed", type=int, default=0, help="seeds the structure, the parameters and the data order")
    train.add_argument("--train-size", type=_positive_int, default=None,
                       help="use only the first N training images (default: all)")
    train.add_argument("--valid-size", type=_count, default=None,
                       help="hold out the last N of those as validation data, scored after each epoch (default: a "
                            "tenth, as the demo does; 0 for none)")
    train.add_argument("--checkpoint", metavar="PATH", default=None,
                       help="write a resumable checkpoint (.npz) to PATH after every epoch; running the same command "
                            "again resumes from it (default: none)")
    train.add_argument("--restart", action="store_true",
                       help="with --checkpoint: start over even if the checkpoint exists, overwriting it")
    cluster = train.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=_positive_int, default=None,
                         help="train data-parallel on N local worker processes, one thread each (a Dask "
                              "LocalCluster; needs pcircuits[distributed]; default: none, one process)")
    cluster.add_argument("--scheduler", metavar="ADDRESS", default=None,
                         help="train data-parallel on the Dask cluster whose scheduler is at ADDRESS "
                              "(tcp://host:8786; default: none)")
    train.add_argument("--curve", metavar="PICTURE", default=None,
                       help="also draw the learning curve to PICTURE (.png, .svg or .pdf; default: none)")
    train.add_argument("--out", default="model.pcz", help="model file to write (its record goes to OUT.json)")
    _add_common(train)


def _add_evaluate(sub) -> None:
    evaluate = _subparser(
        sub, "evaluate", _cmd_evaluate, help="test log-likelihood, bits per dimension and completion MSE",
        description="Score a trained model on the test images: average log-likelihood, bits per dimension, and the "
                    "MSE of completing occluded halves (0..255 scale, occluded pixels only, each image mapped back "
                    "with its own mean and standard deviation as Poon & Domingos did).")
    _add_model_data_options(evaluate)
    evaluate.add_argument("--masks", nargs="+", choices=MASK_NAMES, default=["left", "bottom"],
                          help="halves to occlude and complete")
    evaluate.add_argument("--method", choices=("posterior-mean", "mpe", "both"), default="posterior-mean",
                          help="completion: posterior mean of the leaves (DGC-SPN 5.1) or approximate MPE")
    evaluate.add_argument("--limit", type=_positive_int, default=None,
                          help="use only the first N test images (default: all)")
    _add_common(evaluate)


def _add_inpaint(sub) -> None:
    inpaint = _subparser(
        sub, "inpaint", _cmd_inpaint, help="complete occluded test images and draw them",
        description="Occlude part of each test image, complete it with the model, print the MSE and draw a grid "
                    "(original | occluded | completed).", outputs=(("out", "--out", PICTURE_SUFFIXES),))
    _add_model_data_options(inpaint)
    inpaint.add_argument("--mask", choices=MASK_NAMES, default="left", help="the part to occlude")
    inpaint.add_argument("--method", choices=("posterior-mean", "mpe", "both"), default="both",
                         help="completion method(s); each gets a row in the picture")
    inpaint.add_argument("--num-images", type=_positive_int, default=50, help="test images to complete and score")
    inpaint.add_argument("--max-drawn", type=_positive_int, default=10, help="images in the picture")
    inpaint.add_argument("--out", default="completions.png", help="picture to write (.png, .svg or .pdf)")
    _add_common(inpaint)


def _add_sample(sub) -> None:
    sample = _subparser(
        sub, "sample", _cmd_sample, help="draw samples of a model",
        description="Draw samples of a trained model; with --mask, sample the occluded part of test images given the "
                    "rest. Standardized samples are drawn each with its own grey range.",
        outputs=(("out", "--out", PICTURE_SUFFIXES), ("save", "--save", (".npy",))))
    _add_model_data_options(sample)
    sample.add_argument("--num", type=_positive_int, default=32, help="number of samples (or test images)")
    sample.add_argument("--mask", choices=MASK_NAMES, default=None,
                        help="sample this part of test images given the rest (default: unconditional samples)")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("--columns", type=_positive_int, default=8, help="images per row of the picture")
    sample.add_argument("--out", default="samples.png", help="picture to write (.png, .svg or .pdf)")
    sample.add_argument("--save", metavar="NPY", default=None,
                        help="also save the samples as a .npy array (default: none)")
    _add_common(sample, progress=False)


def _add_draw(sub) -> None:
    draw = _subparser(
        sub, "draw", _cmd_draw, help="draw a circuit with Graphviz",
        description="Draw the circuit of a model file. Circuits with more than --max-nodes nodes are drawn summarized "
                    "(one box per height and kind). Needs Graphviz's `dot` for .svg/.png/.pdf; without it the "
                    "Graphviz source is written.", outputs=(("out", "--out", DRAWING_SUFFIXES),))
    draw.add_argument("model", help="a model file (model.pcz)")
    draw.add_argument("--out", default="circuit.svg", help="picture to write: .svg, .png, .pdf or .dot")
    draw.add_argument("--max-nodes", type=_positive_int, default=300, help="largest circuit drawn node by node")
    draw.add_argument("--no-scopes", action="store_true", help="leave the scopes out of the node labels")
    draw.add_argument("--highlight", action="store_true", help="check the circuit and highlight its violations")
    _add_common(draw, runs=False, progress=False)


def _add_check(sub) -> None:
    check = _subparser(
        sub, "check", _cmd_check, help="check smoothness, decomposability and weights",
        description="Check a model file's circuit: smoothness, decomposability, cycles, weights and shapes. Exits "
                    "with status 0 when it is valid, 1 when not.")
    check.add_argument("model", help="a model file (model.pcz)")
    _add_common(check, runs=False, progress=False)


def _add_demo(sub) -> None:
    demo = _subparser(
        sub, "demo", _cmd_demo, help="train a circuit on the 8x8 digits shipped with the package; write pictures",
        description="On the 8x8 digits shipped with the package (no download): build a Poon-Domingos circuit, check "
                    "it, train it with EM, report the test log-likelihood, bits per dimension and left/bottom "
                    "completion MSE (0..255 scale), and write pictures (circuit drawings, completions, samples, "
                    "learning curve) and report.md / report.json into OUT.")
    demo.set_defaults(outputs=())
    demo.add_argument("--out", default=os.path.join("out", "demo"),
                      help="folder for the report and pictures (created if missing)")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help=f"training epochs (default: {DEMO_SETTINGS['epochs']}; with --quick "
                           f"{QUICK_SETTINGS['epochs']})")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--quick", action="store_true",
                      help="a tiny run (few images and epochs) for tests; its figures mean little")
    demo.add_argument("--quiet", action="store_true", help="print nothing but errors")
    _add_progress(demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pcircuits`` command and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="pcircuits", formatter_class=_Formatter,
        description="Probabilistic circuits (sum-product networks): build, check, draw, train, complete and "
                    "sample.\n\nStart with `pcircuits demo`, which needs no download. Every subcommand has --help.")
    parser.add_argument("--version", action="version", version=f"pcircuits {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, show the Python traceback instead of one line (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_evaluate, _add_inpaint, _add_sample, _add_draw, _add_check, _add_demo):
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run the ``pcircuits`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    A user's mistake (:data:`USER_ERRORS`) ends in one line on stderr and status 2; Ctrl-C in
    one line and status 130.
    """
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command)
        try:
            _check_before_work(args)
            return args.func(args)
        except KeyboardInterrupt:
            if args.traceback:
                raise
            print(f"pcircuits {args.command}: interrupted", file=sys.stderr)
            return 130
        except USER_ERRORS as err:
            if args.traceback:
                raise
            print(f"pcircuits {args.command}: error: {describe_error(err)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
