"""``fit``: one training loop for every method, with progress, history and resumable checkpoints.

Reproducibility: every random choice of epoch ``e`` (the shuffle, the dropout masks) comes from
``numpy.random.default_rng([seed, e])``, so the random state needs no saving: a run resumed
from the checkpoint written after epoch ``e`` draws exactly the numbers an uninterrupted run
draws, and (on NumPy, whose reductions are deterministic) ends with bit-identical parameters.
The checkpoint is one ``.npz`` file without pickled objects: the Program's parameters, the
learner's state (Adam moments and step, EM running statistics), the epoch and the history.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from .checkpoint import read_checkpoint, write_checkpoint
from .em import EM, table_order
from .gradient import GradientLearner
from .objectives import OBJECTIVES, check_labels, cross_entropy, negative_log_likelihood

__all__ = ["fit", "evaluate", "History", "METHODS"]

METHODS = ("em", "hard-em", "usi", "adam", "sgd")
_EM_KINDS = {"em": "soft", "hard-em": "hard", "usi": "usi"}
_FORMAT = "pcircuits-fit-checkpoint"
_VERSION = 2


class History(dict):
    """Per-epoch records of :func:`fit`: a dict of lists, one entry per epoch.

    Keys (those that apply to the run): ``epoch``; ``train_ll`` and ``train_loss`` (running
    means over the epoch's training batches, each measured before the update it led to, with
    dropout if any); ``train_acc``; ``valid_ll``, ``valid_loss``, ``valid_acc`` (the
    parameters at the end of the epoch, no dropout); ``seconds``. Log-likelihoods are means per
    example in nats; with labels, of the label's root.
    """

    def __init__(self, records: dict | None = None):
        super().__init__()
        for key, values in (records or {}).items():
            self[key] = list(values)

    def append(self, record: dict):
        """Add one epoch's values."""
        for key, value in record.items():
            self.setdefault(key, []).append(value)

    @property
    def num_epochs(self) -> int:
        return len(self.get("epoch", []))

    def plot(self, path, *, title: str = "learning curve") -> str:
        """Write a learning-curve PNG: log-likelihood (or loss) per epoch, and accuracy if measured.

        Returns
        -------
        str
            The path written.
        """
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = self.get("epoch", [])
        curves = [k for k in ("train_ll", "valid_ll") if k in self] or [k for k in ("train_loss", "valid_loss")
                                                                       if k in self]
        accuracy = [k for k in ("train_acc", "valid_acc") if k in self]
        fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(10 if accuracy else 6, 4), squeeze=False)
        for key in curves:
            axes[0, 0].plot(epochs, self[key], marker="o", label=key.replace("_", " "))
        axes[0, 0].set_xlabel("epoch")
        axes[0, 0].set_ylabel("mean log-likelihood (nats)" if curves and curves[0].endswith("ll") else "loss")
        axes[0, 0].legend(loc="best")
        for key in accuracy:
            axes[0, 1].plot(epochs, self[key], marker="o", label=key.replace("_", " "))
        if accuracy:
            axes[0, 1].set_xlabel("epoch")
            axes[0, 1].set_ylabel("accuracy")
            axes[0, 1].legend(loc="best")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return str(path)


def evaluate(program, data, labels=None, *, objective: str = "nll", batch_size: int = 1024) -> dict:
    """Mean log-likelihood, loss and accuracy of ``program`` on a data set, in batches.

    Parameters
    ----------
    data : array, shape (n, num_variables)
    labels : array of int, shape (n,), optional
        The label (root) of each example: required by cross-entropy and by circuits with
        several roots.
    objective : {"nll", "cross-entropy"}

    Returns
    -------
    dict
        ``"ll"`` (NLL objective only), ``"loss"``, and ``"acc"`` when there are labels and
        several roots.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"evaluate: objective must be one of {OBJECTIVES}, got {objective!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive int, got {batch_size!r}")
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
    result = {"loss": loss / max(counted, 1)}
    if objective == "nll":
        result["ll"] = -result["loss"]
    if y is not None and program.num_outputs > 1:
        result["acc"] = correct / max(n, 1)
    return result


def fit(program, data, *, method: str = "em", epochs: int = 10, batch_size: int = 128, labels=None,
        valid=None, valid_labels=None, objective: str | None = None, lr: float = 1e-2, lr_decay: float = 1.0,
        optimizer_betas=(0.9, 0.999), momentum: float = 0.0, mode: str | None = None,
        step_size: float | None = None, inference: str = "sum", ties: str = "random", counts: str = "sum",
        eps: float | None = None, leaf_eps: float = 1e-2,
        freeze_leaves=False, learn_leaves: bool = True, freeze_weights: bool = False, min_std: float = 1e-2,
        product_dropout: float = 0.0, input_dropout: float = 0.0, input_dropout_unit: str = "variable",
        product_dropout_at_roots: bool = True, progress: bool = True, seed: int = 0,
        checkpoint=None, resume: bool = True, callback=None) -> History:
    """Train ``program`` on ``data``; returns the per-epoch :class:`History`.

    All arguments are checked before the first batch; at the end the trained parameters are
    written back into the circuit (:meth:`Program.sync_to_circuit`).

    Parameters
    ----------
    program : Program
        From ``circuit.compile()``; trained in place.
    data : array, shape (n, num_variables)
        Training data (images are flattened); NaN marks missing values.
    method : {"em", "hard-em", "usi", "adam", "sgd"}
        Soft EM, hard EM (winner by ``inference`` values), hard EM with unweighted sum inputs,
        or first-order optimization of log-space parameters.
    epochs : int
        Total number of epochs (a resumed run trains the ones still missing).
    batch_size : int
        Examples per batch (EM: per E-step chunk in full-batch mode, per update online).
    labels : array of int, shape (n,), optional
        Class of each example: the target of cross-entropy, or the root that models the example
        under NLL / EM (class-conditional generative training).
    valid, valid_labels : optional
        Validation data (and labels), evaluated after every epoch.
    objective : {"nll", "cross-entropy"}, optional
        Default: cross-entropy for gradient methods with labels and several roots, else NLL.
        EM always maximizes the likelihood.
    lr, optimizer_betas, momentum : gradient methods
    lr_decay : float in (0, 1]
        Gradient methods: epoch ``e`` (from 0) steps with ``lr * lr_decay ** e``.
        Learning rate (default 1e-2), Adam's decay rates, SGD momentum.
    mode : {"full-batch", "online"}, optional
        EM schedule; default full-batch for soft EM without ``step_size``, else online.
    step_size : float in (0, 1], optional
        Online EM: stepwise blend factor of the running statistics; None accumulates all counts.
    inference : {"sum", "max"}
        Hard EM and USI: marginal (DGC-SPN) or max values for picking the winners.
    ties : {"random", "first"}
        Hard EM and USI: how a tie between winners is broken (see :class:`EM`).
    counts : {"sum", "mean"}
        EM: a batch adds the sum or the mean of its examples' statistics (see :class:`EM`).
    eps, leaf_eps, min_std : EM smoothing of the weights (default ``1e-2 / |w|``), pseudo-count of
        the leaf updates, floor of Gaussian standard deviations (also for gradient methods).
    freeze_leaves : bool or set of str
        Keep those leaves fixed: family names (DGC-SPN's generative setup keeps its Gaussians
        fixed) or ``"family.parameter"`` (its authors' classifier keeps ``"gaussian.std"`` at 1).
    learn_leaves : bool
        False is the same as ``freeze_leaves=True``.
    freeze_weights : bool
        Keep the sum weights fixed.
    product_dropout, input_dropout : float in [0, 1)
        Gradient methods: DGC-SPN 5.2's regularizers (training batches only).
    input_dropout_unit : {"variable", "component"}
        Input dropout drops whole variables (the paper) or single leaf units (libspn-keras).
    product_dropout_at_roots : bool
        False keeps the products that feed a root directly out of product dropout (libspn-keras'
        DGC-SPN example in effect); the paper drops products "throughout the entire network".
    progress : bool
        Show a tqdm progress bar.
    seed : int
        Seeds the shuffles and dropout masks (epoch ``e`` uses ``default_rng([seed, e])``).
    checkpoint : path, optional
        Written after every epoch (npz, no pickle). If it exists and ``resume`` is true, training
        continues from it (a checkpoint with ``epochs`` or more finished epochs is loaded and
        returned as is); ``resume=False`` starts over and overwrites it.
    callback : callable, optional
        ``callback(epoch, history)`` after every epoch (``epoch`` counts from 1); a true return
        value stops training.

    Returns
    -------
    History
    """
    if not (hasattr(program, "prepare") and hasattr(program, "leaf_tables")):
        raise TypeError(f"fit: needs a compiled Program (circuit.compile()), got {type(program).__name__}")
    if method not in METHODS:
        raise ValueError(f"fit: method must be one of {METHODS}, got {method!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if name == "seed" else 1):
            raise ValueError(f"fit: {name} must be a {'non-negative' if name == 'seed' else 'positive'} int, "
                             f"got {value!r}")
    if isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float)) or not 0 < lr_decay <= 1:
        raise ValueError(f"fit: lr_decay must be in (0, 1], got {lr_decay!r}")
    if checkpoint is not None and not Path(checkpoint).resolve().parent.is_dir():
        raise ValueError(f"fit: the folder of checkpoint {str(checkpoint)!r} does not exist")
    if callback is not None and not callable(callback):
        raise TypeError(f"fit: callback must be callable, got {type(callback).__name__}")
    x = program.prepare(data, what="data")
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("fit: data has no examples")
    gradient = method in ("adam", "sgd")
    if labels is not None:
        labels = check_labels(labels, n, program.num_outputs)
    if objective is None:
        objective = "cross-entropy" if gradient and labels is not None and program.num_outputs > 1 else "nll"
    if objective not in OBJECTIVES:
        raise ValueError(f"fit: objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "cross-entropy" and (labels is None or not gradient):
        raise ValueError("fit: the cross-entropy objective needs labels and a gradient method ('adam' or 'sgd')")
    if objective == "nll" and labels is None and program.num_outputs > 1:
        raise ValueError(f"fit: the circuit has {program.num_outputs} root outputs; pass labels (the class / root "
                         f"of each example) for class-conditional likelihood or cross-entropy training")
    xv = None
    if valid is not None:
        xv = program.prepare(valid, what="valid")
    if valid_labels is not None:
        if xv is None:
            raise ValueError("fit: valid_labels were given without valid data")
        valid_labels = check_labels(valid_labels, int(xv.shape[0]), program.num_outputs, what="valid_labels")
    elif xv is not None and (objective == "cross-entropy" or labels is not None):
        raise ValueError("fit: valid data needs valid_labels when training with labels")

    if gradient:
        learner = GradientLearner(program, optimizer=method, lr=lr, betas=optimizer_betas, momentum=momentum,
                                  objective=objective, learn_leaves=learn_leaves, freeze_leaves=freeze_leaves,
                                  freeze_weights=freeze_weights, min_std=min_std, product_dropout=product_dropout,
                                  input_dropout=input_dropout, input_dropout_unit=input_dropout_unit,
                                  product_dropout_at_roots=product_dropout_at_roots)
    else:
        kind = _EM_KINDS[method]
        if mode is None:
            mode = "full-batch" if kind == "soft" and step_size is None else "online"
        learner = EM(program, kind, inference=inference, mode=mode, step_size=step_size, eps=eps,
                     leaf_eps=leaf_eps, min_std=min_std, freeze_leaves=True if not learn_leaves else freeze_leaves,
                     freeze_weights=freeze_weights, ties=ties, counts=counts, seed=seed)

    config = {"method": method, "objective": objective, "mode": mode, "seed": int(seed), "lr_decay": float(lr_decay),
              "counts": counts,
              "batch_size": int(batch_size), "num_examples": n, "num_weights": int(program.num_weights),
              "tables": _table_shapes(program)}
    history = History()
    start_epoch = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        start_epoch, history = _load_checkpoint(checkpoint, program, learner, config)

    be = program.backend
    num_batches = -(-n // batch_size)
    bar = None
    if progress and start_epoch < epochs:
        from tqdm.auto import tqdm
        bar = tqdm(total=(epochs - start_epoch) * num_batches, desc=f"fit {method}", unit="batch")
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([int(seed), epoch])
        order = rng.permutation(n)
        device_rng = be.rng(rng)
        total, correct = 0.0, 0.0
        if bar is not None:
            bar.set_description(f"fit {method} epoch {epoch + 1}/{epochs}")
        if gradient:
            learner.lr = lr * lr_decay ** epoch
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb = x[be.index(idx)]
            yb = None if labels is None else labels[idx]
            if gradient:
                loss, accuracy = learner.step(xb, yb, rng=device_rng)
                total += loss * len(idx)
                correct += 0.0 if accuracy is None else accuracy * len(idx)
            else:
                total -= learner.step(xb, yb)
            if bar is not None:
                bar.update(1)
        if not gradient:
            learner.end_epoch()
        record = {"epoch": epoch + 1}
        if objective == "nll":
            record["train_ll"] = -total / n
        record["train_loss"] = total / n
        if gradient and (objective == "cross-entropy" or labels is not None and program.num_outputs > 1):
            record["train_acc"] = correct / n
        if xv is not None:
            scores = evaluate(program, xv, valid_labels, objective=objective, batch_size=batch_size)
            record.update({f"valid_{k}": v for k, v in scores.items()})
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, program, learner, config, epoch + 1, history)
        if bar is not None:
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k not in ("epoch", "seconds")})
        if callback is not None and callback(epoch + 1, history):
            break
    if bar is not None:
        bar.close()
    program.sync_to_circuit()
    return history


# ---- checkpoints ---------------------------------------------------------------------------
def _table_keys(program) -> list:
    return sorted(program.leaf_tables, key=table_order)


def _table_shapes(program) -> list:
    return [[key[0].name, {name: list(value.shape) for name, value in program.leaf_tables[key].items()}]
            for key in _table_keys(program)]


def _save_checkpoint(path, program, learner, config: dict, epoch: int, history: History):
    """Write the checkpoint atomically (a temporary file renamed over the old one)."""
    arrays = {"program/weights": to_numpy(program.weights)}
    for i, key in enumerate(_table_keys(program)):
        for name, value in program.leaf_tables[key].items():
            arrays[f"program/leaves/{i}/{name}"] = to_numpy(value)
    arrays.update({f"learner/{k}": to_numpy(v) for k, v in learner.state().items()})
    meta = {"format": _FORMAT, "version": _VERSION, "config": config, "epoch": epoch, "history": dict(history)}
    write_checkpoint(path, arrays, meta)


def _load_checkpoint(path, program, learner, config: dict):
    """Restore a checkpoint into ``program`` and ``learner``; returns (finished epochs, history)."""
    arrays, meta = read_checkpoint(path, format_name=_FORMAT, version=_VERSION)
    saved = meta["config"]
    if saved["method"] != config["method"]:
        raise ValueError(f"fit: checkpoint {path} was written by method {saved['method']!r}, this run uses "
                         f"{config['method']!r}; pass resume=False to start over")
    for key in ("num_weights", "tables", "num_examples", "batch_size", "seed", "objective", "mode"):
        if saved.get(key) != config[key]:
            raise ValueError(f"fit: checkpoint {path} was written with {key}={saved.get(key)!r}, this run has "
                             f"{key}={config[key]!r}; resuming would not continue the same run (pass resume=False "
                             f"to start over)")
    be = program.backend
    program.set_weights(be.asarray(arrays["program/weights"]))
    for i, key in enumerate(_table_keys(program)):
        program.leaf_tables[key] = {name: be.asarray(arrays[f"program/leaves/{i}/{name}"], dtype=value.dtype)
                                    for name, value in program.leaf_tables[key].items()}
    learner.load_state({k[len("learner/"):]: v for k, v in arrays.items() if k.startswith("learner/")})
    return int(meta["epoch"]), History(meta["history"])
