"""``fit``: one training loop for every method, with progress, history and resumable checkpoints.

``fit`` is a composition: its arguments are checked against one declared table
(:data:`FIT_OPTIONS`, with the learners' :data:`~pcircuits.learning.em.EM_OPTIONS`,
:data:`~pcircuits.learning.gradient.GRADIENT_OPTIONS` and
:data:`~pcircuits.learning.learner.PARAMETER_OPTIONS`), the learner is looked up in the
registry by method name (:mod:`pcircuits.learning.learner`), and a :class:`TrainingRun` runs
the epochs, records them and writes the checkpoints.

Reproducibility: every random choice of epoch ``e`` (the shuffle, the dropout masks) comes from
``numpy.random.default_rng([seed, e])``, so the random state needs no saving: a run resumed
from the checkpoint written after epoch ``e`` draws exactly the numbers an uninterrupted run
draws, and (on NumPy, whose reductions are deterministic) ends with bit-identical parameters.
The checkpoint is one ``.npz`` file without pickled objects: the Program's parameters, the
learner's state (optimizer moments and step, EM running statistics), the epoch and the history.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np

from ..arguments import (Anything, Argument, Boolean, CallableValue, FolderOf, Integer, Options, Rule,
                         check_arguments, document_arguments)
from ..backend import to_numpy
from ..errors import CheckpointError, NonFiniteError
from .checkpoint import CheckpointContent, read_checkpoint, write_checkpoint
from .em import EM_OPTIONS, table_order
from .gradient import GRADIENT_OPTIONS
from .history import History
from .learner import LEARNERS, PARAMETER_OPTIONS, make_learner
from .objectives import OBJECTIVES, check_labels, cross_entropy, negative_log_likelihood
from .sampling import SAMPLING_OPTIONS

__all__ = ["fit", "evaluate", "History", "METHODS", "FIT_OPTIONS", "TrainingRun", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION"]

#: The learning methods registered when the package is imported.
METHODS = tuple(LEARNERS)
#: The format name and version a ``fit`` checkpoint's record carries.
CHECKPOINT_FORMAT = "pcircuits-fit-checkpoint"
CHECKPOINT_VERSION = 4
#: ``fit`` options that do not decide the trained parameters (the data is fingerprinted instead).
_BOOKKEEPING = frozenset({"epochs", "labels", "valid", "valid_labels", "progress", "checkpoint", "resume",
                          "force_resume", "callback", "client", "partitions"})
#: The option tables of each learner family (other families are compared on every option).
_FAMILY_OPTIONS = {"em": EM_OPTIONS, "gradient": GRADIENT_OPTIONS,
                   "sampling": {**GRADIENT_OPTIONS, **SAMPLING_OPTIONS}}


class _RegisteredMethod(Rule):
    """A name in the learner registry (looked up at call time, so later registrations count)."""

    type_name = "str"

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value in LEARNERS

    def describe(self) -> str:
        return f"one of {tuple(LEARNERS)}"


#: The options of ``fit`` itself (the learners declare theirs).
FIT_OPTIONS = {
    "method": Argument(_RegisteredMethod(), "The learner: soft EM, hard EM (winner by ``inference`` values), hard EM\n"
                       "with unweighted sum inputs, or first-order optimization of log-space parameters\n"
                       "(see ``pcircuits.learning.LEARNERS`` for every registered method)."),
    "epochs": Argument(Integer(1), "Total number of epochs (a resumed run trains the ones still missing)."),
    "batch_size": Argument(Integer(1), "Examples per batch (EM: per E-step chunk in full-batch mode, per update online)."),
    "labels": Argument(Anything("array of int, shape (n,)"), "Class of each example: the target of cross-entropy, or\n"
                       "the root that models the example under NLL / EM (class-conditional training).",
                       optional=True),
    "valid": Argument(Anything("array, shape (m, num_variables)"), "Validation data, evaluated after every epoch.",
                      optional=True),
    "valid_labels": Argument(Anything("array of int, shape (m,)"), "Labels of the validation data.", optional=True),
    "objective": Argument(Options(*OBJECTIVES), "Default: cross-entropy for gradient methods with labels and several\n"
                          "roots, else NLL. EM always maximizes the likelihood; the sample-based methods\n"
                          "(mmd, adversarial, pae) optimize their own objective.", optional=True),
    "progress": Argument(Boolean(), "Show a tqdm progress bar."),
    "seed": Argument(Integer(0), "Seeds the shuffles and dropout masks (epoch ``e`` uses ``default_rng([seed, e])``)."),
    "checkpoint": Argument(FolderOf(), "Written after every epoch (npz, no pickle). If it exists and ``resume`` is\n"
                           "true, training continues from it (a checkpoint with ``epochs`` or more finished\n"
                           "epochs is loaded and returned as is).", optional=True),
    "resume": Argument(Boolean(), "False starts over and overwrites the checkpoint."),
    "force_resume": Argument(Boolean(), "Resume even when the checkpoint records other settings or other data (a\n"
                             "warning names them); parameters of another circuit are refused regardless."),
    "callback": Argument(CallableValue(), "``callback(epoch, history)`` after every epoch (``epoch`` counts from 1);\n"
                         "a true return value stops training.", optional=True),
    "client": Argument(Anything('dask.distributed.Client or "local"'), "Train data-parallel on a Dask cluster: the data\n"
                       "is split into partitions kept on the workers, which compute each batch's statistics; the\n"
                       "client updates (``\"local\"``: a LocalCluster on this machine, closed at the end). Deterministic\n"
                       "learners reach the single-process parameters (see :mod:`pcircuits.learning.distributed`).\n"
                       "``data`` may then also be a ``.npy`` path (read a batch at a time), a list of ``.npz`` shards or a\n"
                       "dask array.", optional=True),
    "partitions": Argument(Integer(1), "With ``client``: how many partitions an array or ``.npy`` file is split into\n"
                           "(default twice the number of workers).", optional=True),
}


def fit(program, data, *, method: str = "em", epochs: int = 10, batch_size: int = 128, labels=None, valid=None,
        valid_labels=None, objective: str | None = None, lr: float = 1e-2, lr_decay: float = 1.0,
        optimizer_betas=(0.9, 0.999), momentum: float = 0.0, mode: str | None = None, step_size: float | None = None,
        inference: str = "sum", ties: str = "random", counts: str = "sum", eps: float | None = None,
        leaf_eps: float = 1e-2, freeze_leaves=False, learn_leaves: bool = True, freeze_weights: bool = False,
        min_std: float = 1e-2, product_dropout: float = 0.0, input_dropout: float = 0.0,
        input_dropout_unit: str = "variable", product_dropout_at_roots: bool = True, temperature=1.0,
        hard: bool = False, num_samples: int | None = None, ll_weight: float = 0.0, bandwidths=None,
        learned_kernel=None, critic_hidden=(64, 64), critic_lr: float = 2e-4, critic_steps: int = 1, latent=None,
        reconstruction: str = "bce", progress: bool = True, seed: int = 0, checkpoint=None, resume: bool = True,
        force_resume: bool = False, callback=None, client=None, partitions: int | None = None) -> History:
    options = {name: value for name, value in locals().items() if name not in ("program", "data")}
    if client is not None:
        from .distributed import client_session
        check_arguments("fit", {**FIT_OPTIONS, **PARAMETER_OPTIONS, **EM_OPTIONS, **GRADIENT_OPTIONS,
                                **SAMPLING_OPTIONS}, options)
        if LEARNERS[method].family not in ("em", "gradient"):
            raise ValueError(f"fit: method {method!r} keeps state besides the circuit's parameters and does not run on "
                             f"a cluster; the EM and gradient methods do")
        with client_session(client) as session:
            return _fit(program, data, dict(options, client=session))
    return _fit(program, data, options)


def _fit(program, data, options: dict) -> History:
    run = TrainingRun(program, data, options)
    learner = make_learner(options["method"], program, run.options)
    history, start = run.resume(learner)
    bar = run.progress_bar(start)
    for epoch in range(start, options["epochs"]):
        history.append(run.epoch(learner, epoch, bar))
        run.save(learner, epoch + 1, history)
        if options["callback"] is not None and options["callback"](epoch + 1, history):
            break
    if bar is not None:
        bar.close()
    program.sync_to_circuit()
    return history


fit.__doc__ = f"""Train ``program`` on ``data``; returns the per-epoch :class:`History`.

    All arguments are checked before the first batch; at the end the trained parameters are
    written back into the circuit (:meth:`Program.sync_to_circuit`). Options that the chosen
    method does not use are ignored.

    Parameters
    ----------
    program : Program
        From ``circuit.compile()``; trained in place.
    data : array, shape (n, num_variables)
        Training data (images are flattened); NaN marks missing values. With ``client``
        also the path of a ``.npy`` file, a list of ``.npz`` shards or a dask array.
{document_arguments(FIT_OPTIONS)}

    Other Parameters
    ----------------
{document_arguments(PARAMETER_OPTIONS)}
{document_arguments(EM_OPTIONS, prefix="EM methods: ")}
{document_arguments(GRADIENT_OPTIONS, prefix="Gradient methods: ")}
{document_arguments(SAMPLING_OPTIONS, prefix="Sample-based methods: ")}

    Returns
    -------
    History
    """


class TrainingRun:
    """The data, settings and bookkeeping of one ``fit`` call: checks, epochs, records, checkpoints.

    Parameters
    ----------
    program : Program
    data : array, shape (n, num_variables)
        With a ``client`` option: anything :class:`~pcircuits.learning.distributed.DataPartitions`
        takes; the data then stays on the workers.
    options : dict
        Every ``fit`` option by name; checked here, before any learner is made.
    """

    def __init__(self, program, data, options: dict):
        if not (hasattr(program, "prepare") and hasattr(program, "leaf_tables")):
            raise TypeError(f"fit: needs a compiled Program (circuit.compile()), got {type(program).__name__}")
        check_arguments("fit", {**FIT_OPTIONS, **PARAMETER_OPTIONS, **EM_OPTIONS, **GRADIENT_OPTIONS,
                                **SAMPLING_OPTIONS}, options)
        self.program = program
        self.cluster = None
        if options["client"] is not None:
            from .distributed import DataPartitions
            self.x = None
            self.partitions = DataPartitions(options["client"], data, options["labels"], program.num_variables,
                                             partitions=options["partitions"], align=options["batch_size"])
            self.n = n = self.partitions.n
        else:
            self.x = program.prepare(data, what="data")
            self.n = n = int(self.x.shape[0])
        if n == 0:
            raise ValueError("fit: data has no examples")
        self.labels = None if options["labels"] is None else check_labels(options["labels"], n, program.num_outputs)
        options = dict(options, objective=self._objective(options))
        self.valid, self.valid_labels = self._validation(options)
        self.options = options
        if options["client"] is not None:
            from .distributed import DistributedEpochs
            learner_options = {k: v for k, v in options.items() if k not in _BOOKKEEPING}
            self.cluster = DistributedEpochs(options["client"], program, self.partitions, options["method"],
                                             learner_options)

    def _objective(self, options: dict) -> str:
        objective, entry = options["objective"], LEARNERS[options["method"]]
        several = self.program.num_outputs > 1
        if entry.family == "sampling":
            return entry.objectives[0]
        if objective is None:
            objective = "cross-entropy" if "cross-entropy" in entry.objectives and self.labels is not None \
                and several else "nll"
        if objective == "cross-entropy" and (self.labels is None or objective not in entry.objectives):
            methods = ", ".join(repr(m) for m, e in LEARNERS.items() if objective in e.objectives)
            raise ValueError(f"fit: the cross-entropy objective needs labels and a gradient method ({methods})")
        if objective == "nll" and self.labels is None and several:
            raise ValueError(f"fit: the circuit has {self.program.num_outputs} root outputs; pass labels (the class "
                             f"/ root of each example) for class-conditional likelihood or cross-entropy training")
        return objective

    def _validation(self, options: dict):
        valid, valid_labels = options["valid"], options["valid_labels"]
        xv = None if valid is None else self.program.prepare(valid, what="valid")
        if valid_labels is not None:
            if xv is None:
                raise ValueError("fit: valid_labels were given without valid data")
            valid_labels = check_labels(valid_labels, int(xv.shape[0]), self.program.num_outputs,
                                        what="valid_labels")
        elif xv is not None and (options["objective"] == "cross-entropy" or self.labels is not None):
            raise ValueError("fit: valid data needs valid_labels when training with labels")
        return xv, valid_labels

    # ---- epochs -----------------------------------------------------------------------------
    def progress_bar(self, start: int):
        """A tqdm bar over the batches still to train (None without progress or work)."""
        epochs = self.options["epochs"]
        if not self.options["progress"] or start >= epochs:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=(epochs - start) * self.num_batches, desc=f"fit {self.options['method']}", unit="batch")

    @property
    def num_batches(self) -> int:
        return -(-self.n // self.options["batch_size"])

    def epoch(self, learner, epoch: int, bar=None) -> dict:
        """Train one epoch (a shuffled pass over the data); returns its record for the History."""
        started = time.perf_counter()
        options, be = self.options, self.program.backend
        rng = np.random.default_rng([int(options["seed"]), epoch])
        order = rng.permutation(self.n)
        device_rng = be.rng(rng)
        if bar is not None:
            bar.set_description(f"fit {options['method']} epoch {epoch + 1}/{options['epochs']}")
        learner.start_epoch(epoch)
        loss_sum, correct, measured = 0.0, 0, False
        if self.cluster is not None and not learner.updates_per_batch:
            batches = [self._whole_epoch(learner, epoch)]
        else:
            batches = (self._batch(learner, order[start:start + options["batch_size"]], epoch, step, device_rng)
                       for step, start in enumerate(range(0, self.n, options["batch_size"])))
        for step, (stats, count) in enumerate(batches):
            if not math.isfinite(stats["loss_sum"]):
                where = f"batch {step + 1}" if count == 1 else f"all {count} batches"
                data = "" if self.x is None else f" (|x| up to {float(np.nanmax(np.abs(to_numpy(self.x)))):.3g})"
                raise NonFiniteError(
                    f"fit: the loss of epoch {epoch + 1}, {where} is {stats['loss_sum']}: some example has "
                    f"probability 0 or one outside what {be.dtype.name} can evaluate{data}; standardize the data, "
                    f"compile with dtype='float64', or lower the learning rate")
            loss_sum += stats["loss_sum"]
            if stats["correct"] is not None:
                correct, measured = correct + stats["correct"], True
            if bar is not None:
                bar.update(count)
        learner.end_epoch()
        self._check_parameters(epoch)
        record = self._record(epoch, loss_sum, correct if measured else None, started)
        if bar is not None:
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k not in ("epoch", "seconds")})
        return record

    def _whole_epoch(self, learner, epoch: int) -> tuple[dict, int]:
        """All batches of an epoch on the cluster at once (the learner's parameters stay fixed
        until ``end_epoch``, so each partition's statistics are one task); the count of batches."""
        stats = self.cluster.epoch_statistics(self.options["batch_size"], epoch)
        learner.update(stats)
        return stats, self.num_batches

    def _batch(self, learner, idx, epoch: int, step: int, device_rng) -> tuple[dict, int]:
        """One training step on the examples ``idx``: their statistics and the count of batches (1)."""
        if self.cluster is not None:
            stats = self.cluster.statistics(idx, epoch, step)
            learner.update(stats)
            return stats, 1
        be = self.program.backend
        return learner.step(self.x[be.index(idx)], None if self.labels is None else self.labels[idx],
                            rng=device_rng), 1

    def _check_parameters(self, epoch: int):
        """Refuse to go on when an update made a weight or leaf parameter NaN or infinite."""
        program, xp = self.program, self.program.backend.xp
        tables = [("the sum weights", program.weights)] + [
            (f"the {key[0].name} parameter {name!r}", value)
            for key in _table_keys(program) for name, value in program.leaf_tables[key].items()]
        for what, value in tables:
            if not bool(xp.isfinite(value).all()):
                raise NonFiniteError(f"fit: epoch {epoch + 1} drove {what} to NaN or infinity; lower the learning "
                                     f"rate (lr={self.options['lr']}), standardize the data or compile with "
                                     f"dtype='float64'")

    def _record(self, epoch: int, loss_sum: float, correct: int | None, started: float) -> dict:
        options = self.options
        record = {"epoch": epoch + 1}
        if options["objective"] == "nll":
            record["train_ll"] = -loss_sum / self.n
        record["train_loss"] = loss_sum / self.n
        if correct is not None:
            record["train_acc"] = correct / self.n
        if self.valid is not None:
            objective = options["objective"] if options["objective"] in OBJECTIVES else "nll"
            scores = evaluate(self.program, self.valid, self.valid_labels, objective=objective,
                              batch_size=options["batch_size"])
            record.update({f"valid_{k}": v for k, v in scores.items()})
        record["seconds"] = time.perf_counter() - started
        return record

    # ---- checkpoints ---------------------------------------------------------------------
    def config(self, learner) -> dict:
        """What a checkpoint records about the run, in three groups a resumed run is compared on.

        ``structure`` (method, parameter shapes, dtype) must match; ``settings`` (every option
        that decides the trained parameters, and the learner's resolved settings) and ``data``
        (the number of examples and a fingerprint of the data and labels) must match unless
        ``force_resume`` is set.
        """
        options, program = self.options, self.program
        family = LEARNERS[options["method"]].family
        names = set(FIT_OPTIONS) | set(PARAMETER_OPTIONS) | set(_FAMILY_OPTIONS.get(family, {**EM_OPTIONS,
                                                                                           **GRADIENT_OPTIONS}))
        settings = {name: options[name] for name in sorted(names - _BOOKKEEPING) if name != "method"}
        settings.update({f"learner.{k}": v for k, v in learner.settings().items()})
        return _json_normal({
            "structure": {"method": options["method"], "num_weights": int(program.num_weights),
                          "tables": _table_shapes(program), "dtype": program.backend.dtype.name},
            "settings": settings,
            "data": {"num_examples": self.n, "fingerprint": self.fingerprint()}})

    def fingerprint(self) -> str:
        """A hash of the training data (as the Program sees it) and the labels."""
        if getattr(self, "_fingerprint", None) is None:
            import hashlib  # here: with OpenSSL's algorithms, 3 ms for every process

            digest = hashlib.blake2b(digest_size=16)
            if self.x is None:
                self.partitions.fingerprint(digest, self.program.backend.dtype)
            else:
                digest.update(repr((tuple(self.x.shape), str(self.x.dtype))).encode())
                rows = max(1, (1 << 24) // max(1, self.x.shape[1] * self.x.dtype.itemsize))
                for start in range(0, self.n, rows):
                    digest.update(np.ascontiguousarray(to_numpy(self.x[start:start + rows])).tobytes())
            if self.labels is not None:
                digest.update(np.ascontiguousarray(to_numpy(self.labels)).astype(np.int64).tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def save(self, learner, epoch: int, history: History):
        """Write the checkpoint after ``epoch`` finished epochs (if the run has one)."""
        if self.options["checkpoint"] is None:
            return
        program = self.program
        arrays = {"program/weights": to_numpy(program.weights)}
        for i, key in enumerate(_table_keys(program)):
            for name, value in program.leaf_tables[key].items():
                arrays[f"program/leaves/{i}/{name}"] = to_numpy(value)
        arrays.update({f"learner/{k}": to_numpy(v) for k, v in learner.state().items()})
        meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": self.config(learner),
                "epoch": epoch, "history": dict(history)}
        write_checkpoint(self.options["checkpoint"], arrays, meta)

    def resume(self, learner) -> tuple[History, int]:
        """The history and finished epochs of the checkpoint, restored into program and learner
        (an empty history and 0 when there is none to resume).

        Everything is checked before anything is restored: the record, the run it belongs to, and
        every array (present, of the right shape, finite, weights normalized, leaf parameters in
        their domains); a problem raises :class:`CheckpointError` naming it.
        """
        path = self.options["checkpoint"]
        if path is None or not self.options["resume"] or not Path(path).is_file():
            return History(), 0
        arrays, meta = read_checkpoint(path, format_name=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION)
        check = _CheckpointCheck(path)
        saved, epoch, history = check.record(meta)
        self._compare(check, saved, self.config(learner))
        weights, tables = check.parameters(arrays, self.program, self.options)
        state = {k[len("learner/"):]: v for k, v in arrays.items() if k.startswith("learner/")}
        check.learner_state(state, learner.state())
        program, be = self.program, self.program.backend
        program.set_weights(be.asarray(weights))
        for key, table in tables.items():
            program.leaf_tables[key] = table
        try:
            learner.load_state(state)
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
            raise check.error(f"the learner's state does not fit this run ({err})") from None
        return history, epoch

    def _compare(self, check: "_CheckpointCheck", saved: dict, config: dict):
        structure = _differences(saved.get("structure"), config["structure"])
        if structure:
            key, old, new = structure[0]
            if key == "method":
                raise check.error(f"it was written by method {old!r}, this run uses {new!r}", prefix="")
            raise check.error(f"it was written with {key}={old!r}, this run has {key}={new!r}: another circuit "
                              f"or dtype", prefix="")
        different = _differences(saved.get("settings"), config["settings"]) + \
            [(f"data {key}", old, new) for key, old, new in _differences(saved.get("data"), config["data"])]
        if not different:
            return
        listed = ", ".join(f"{key}={old!r} (this run: {new!r})" for key, old, new in different[:4])
        more = f" and {len(different) - 4} more" if len(different) > 4 else ""
        if not self.options["force_resume"]:
            raise check.error(f"it was written with {listed}{more}; resuming would not continue the same run "
                              f"(pass force_resume=True to continue anyway)", prefix="")
        warnings.warn(f"fit: resuming the checkpoint {check.path} although it was written with {listed}{more} "
                      f"(force_resume=True)", stacklevel=3)


class _CheckpointCheck(CheckpointContent):
    """The checks of a ``fit`` checkpoint's content; each problem is a :class:`CheckpointError`."""

    def __init__(self, path):
        super().__init__("fit", path)

    def record(self, meta: dict) -> tuple[dict, int, History]:
        config, epoch, history = super().record(meta)
        return config, epoch, History(history)

    def parameters(self, arrays: dict, program, options: dict) -> tuple[np.ndarray, dict]:
        """The weights and leaf tables of the checkpoint, each checked against the program."""
        weights = self.array(arrays, "program/weights", (program.num_weights,))
        for param, lo, hi in zip(program.plan.sum_params, program.plan.weight_offsets[:-1],
                                 program.plan.weight_offsets[1:]):
            rows = weights[lo:hi].reshape(param.values.shape).astype(np.float64)
            if np.any(rows < 0):
                raise self.error("the weights hold negative values")
            sums = rows.sum(axis=1)
            bad = np.flatnonzero(np.abs(sums - 1) > _WEIGHT_ATOL)
            if len(bad):
                raise self.error(f"the weights are not normalized (a row sums to {sums[bad[0]]:.6g})")
        tables = {}
        be = program.backend
        for i, key in enumerate(_table_keys(program)):
            constraints = {name: c.resolve(options) for name, c in key[0].constraints.items()}
            table = {}
            for name, current in program.leaf_tables[key].items():
                value = self.array(arrays, f"program/leaves/{i}/{name}", current.shape)
                reason = constraints[name].violation(value) if name in constraints else None
                if reason is not None:
                    raise self.error(f"the {key[0].name} parameter {name!r} is invalid: {reason}")
                table[name] = be.asarray(value, dtype=current.dtype)
            tables[key] = table
        return weights, tables

    def learner_state(self, state: dict, fresh: dict):
        """Every array the learner starts with is present in the same shape; all are finite."""
        for name, value in fresh.items():
            self.array(state, f"{name}", np.shape(value))
        for name, value in state.items():
            if value.dtype.kind not in "biuf" or (value.dtype.kind == "f" and not np.all(np.isfinite(value))):
                raise self.error(f"the learner's array {name!r} is not a finite number array")


#: How far a checkpoint's weight row may sum from 1 (float32 training rounds).
_WEIGHT_ATOL = 1e-3


def _json_normal(value):
    """``value`` as JSON reads it back (tuples as lists, sets as sorted lists, NumPy scalars as numbers)."""
    def plain(v):
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, (set, frozenset)):
            return sorted(plain(x) for x in v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        return repr(v)
    return json.loads(json.dumps(plain(value)))


def _differences(saved, current: dict) -> list[tuple[str, object, object]]:
    """``(key, saved value, current value)`` for every key whose values differ."""
    saved = saved if isinstance(saved, dict) else {}
    return [(key, saved.get(key), current.get(key)) for key in sorted(set(saved) | set(current))
            if saved.get(key) != current.get(key)]


def evaluate(program, data, labels=None, *, objective: str = "nll", batch_size: int = 1024,
             client=None) -> dict:
    """Mean log-likelihood, loss and accuracy of ``program`` on a data set, in batches.

    Parameters
    ----------
    data : array, shape (n, num_variables)
    labels : array of int, shape (n,), optional
        The label (root) of each example: required by cross-entropy and by circuits with
        several roots.
    objective : {"nll", "cross-entropy"}
    client : dask.distributed.Client or "local", optional
        Split the data into partitions on the client's workers (``"local"``: a LocalCluster on
        this machine) and add up their sums; the result equals the single-process one up to
        the order of additions.

    Returns
    -------
    dict
        ``"ll"`` (NLL objective only), ``"loss"``, and ``"acc"`` when there are labels and
        several roots.
    """
    check_arguments("evaluate", {"objective": Argument(Options(*OBJECTIVES), ""),
                                 "batch_size": Argument(Integer(1), "")},
                    {"objective": objective, "batch_size": batch_size})
    if client is not None:
        from .distributed import evaluate_on_client
        loss, counted, correct = evaluate_on_client(_evaluation_sums, program, data, labels, objective=objective,
                                                    batch_size=batch_size, client=client)
    else:
        loss, counted, correct = _evaluation_sums(program, data, labels, objective, batch_size)
    result = {"loss": loss / max(counted, 1)}
    if objective == "nll":
        result["ll"] = -result["loss"]
    if labels is not None and program.num_outputs > 1:
        result["acc"] = correct / max(len(labels), 1)
    return result


def _evaluation_sums(program, data, labels, objective: str, batch_size: int) -> tuple[float, int, int]:
    """The summed loss, the number of counted examples and of correct predictions, over ``data``."""
    be = program.backend
    x = program.prepare(data)
    n = x.shape[0]
    y = None if labels is None else check_labels(labels, n, program.num_outputs)
    if objective == "cross-entropy" and y is None:
        raise ValueError("evaluate: the cross-entropy objective needs labels")
    loss, counted, correct = 0.0, 0, 0
    for start in range(0, n, batch_size):
        out = program._forward(x[start:start + batch_size], "sum", cache=False)
        yb = None if y is None else be.index(y[start:start + batch_size])
        value = (negative_log_likelihood if objective == "nll" else cross_entropy)(be, out, yb)
        loss += value.loss * value.counted
        counted += value.counted
        correct += value.correct or 0
    return loss, counted, correct


def _table_keys(program) -> list:
    return sorted(program.leaf_tables, key=table_order)


def _table_shapes(program) -> list:
    return [[key[0].name, {name: list(value.shape) for name, value in program.leaf_tables[key].items()}]
            for key in _table_keys(program)]
