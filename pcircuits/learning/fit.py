"""``fit``: one training loop for every method, with progress, history and resumable checkpoints.

Every random choice of epoch ``e`` (the shuffle, dropout masks) comes from a generator seeded
with ``(seed, e)``, so a run resumed from the checkpoint written after epoch ``e`` continues
with exactly the numbers an uninterrupted run would have used: the parameters come out
bit-identical.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from .em import EM
from .gradient import GradientLearner

__all__ = ["fit", "History", "METHODS"]

METHODS = ("em", "hard-em", "usi", "adam", "sgd")
_CHECKPOINT_VERSION = 1


class History(dict):
    """Per-epoch records: ``epoch``, ``train_ll``, ``valid_ll``, ``train_loss``, ``train_acc``,
    ``valid_acc``, ``seconds`` (lists, one entry per epoch; None where not measured)."""

    FIELDS = ("epoch", "train_ll", "valid_ll", "train_loss", "train_acc", "valid_acc", "seconds")

    def __init__(self, records=None):
        super().__init__({k: [] for k in self.FIELDS})
        if records:
            for k in self.FIELDS:
                self[k] = list(records.get(k, []))

    def append(self, **values):
        for k in self.FIELDS:
            self[k].append(values.get(k))

    def plot(self, path, *, title: str = "learning curve") -> str:
        """Write a learning-curve PNG (log-likelihood or loss, and accuracy if measured)."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for key, label in (("train_ll", "train log-likelihood"), ("valid_ll", "valid log-likelihood"),
                           ("train_loss", "train loss")):
            ys = [y for y in self[key] if y is not None]
            if ys:
                ax.plot(self["epoch"][:len(ys)], ys, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(loc="best")
        accs = [(e, a) for e, a in zip(self["epoch"], self["valid_acc"]) if a is not None]
        if accs:
            twin = ax.twinx()
            twin.plot([e for e, _ in accs], [a for _, a in accs], color="tab:red", linestyle="--", label="valid accuracy")
            twin.set_ylabel("accuracy")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return str(path)


def fit(program, data, *, method: str = "em", epochs: int = 10, batch_size: int = 128, labels=None,
        valid=None, valid_labels=None, objective: str | None = None, lr: float = 1e-2, optimizer_betas=(0.9, 0.999),
        mode: str | None = None, step_size: float | None = None, inference: str = "sum", eps: float | None = None,
        freeze_leaves=False, learn_leaves: bool = True, min_std: float = 1e-2, product_dropout: float = 0.0,
        input_dropout: float = 0.0, progress: bool = True, seed: int = 0, checkpoint=None, resume: bool = True,
        callback=None) -> History:
    """Train ``program`` on ``data`` and return the per-epoch :class:`History`.

    Parameters
    ----------
    program : Program
    data : array, shape (n, num_variables)
    method : {"em", "hard-em", "usi", "adam", "sgd"}
        Soft EM, hard EM (winner by ``inference`` values), hard EM with unweighted sum inputs,
        or gradient descent on log-space parameters.
    mode : {"full-batch", "online"}, optional
        EM schedule (default: full-batch for soft EM, online for hard EM and USI).
    step_size : float, optional
        Online EM: stepwise blend factor; None accumulates counts (DGC-SPN).
    objective : {"nll", "cross-entropy"}, optional
        Gradient methods; default cross-entropy when ``labels`` are given, else NLL.
    freeze_leaves : bool or set of family names
        EM: leaves kept fixed (DGC-SPN's generative setup freezes the Gaussians).
    learn_leaves : bool
        Gradient methods: whether leaf parameters are trained.
    checkpoint : path, optional
        Written after every epoch (npz, no pickle); with ``resume`` an existing one is continued.
    callback : callable, optional
        ``callback(epoch, history)`` after every epoch.
    """
    if method not in METHODS:
        raise ValueError(f"fit: method must be one of {METHODS}, got {method!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"fit: {name} must be a positive int, got {value!r}")
    x = program.prepare(data, what="data")
    n = x.shape[0]
    xv = program.prepare(valid, what="valid") if valid is not None else None
    gradient = method in ("adam", "sgd")
    if objective is None:
        objective = "cross-entropy" if labels is not None else "nll"
    if labels is not None:
        labels = np.asarray(to_numpy(labels))
        if labels.shape != (n,):
            raise ValueError(f"fit: labels must have shape ({n},), got {labels.shape}")
        if labels.min() < 0 or labels.max() >= program.num_outputs:
            raise ValueError(f"fit: labels must lie in 0..{program.num_outputs - 1}")
    if objective == "cross-entropy" and (labels is None or not gradient):
        raise ValueError("fit: the cross-entropy objective needs labels and a gradient method ('adam' or 'sgd')")
    if valid_labels is not None:
        valid_labels = np.asarray(to_numpy(valid_labels))
        if xv is None or valid_labels.shape != (xv.shape[0],):
            raise ValueError("fit: valid_labels need valid data with one label per row")

    if gradient:
        learner = GradientLearner(program, optimizer=method, lr=lr, betas=optimizer_betas, objective=objective,
                                  learn_leaves=learn_leaves, product_dropout=product_dropout,
                                  input_dropout=input_dropout)
    else:
        kind = {"em": "soft", "hard-em": "hard", "usi": "usi"}[method]
        learner = EM(program, kind, inference=inference, mode=mode or ("full-batch" if kind == "soft" else "online"),
                     step_size=step_size, eps=eps, min_std=min_std, freeze_leaves=freeze_leaves)

    history = History()
    start_epoch = 0
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        start_epoch, history = _load_checkpoint(checkpoint, program, learner, method)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs, initial=start_epoch, desc=f"fit ({method})", unit="epoch")
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        device_rng = program.backend.rng(rng)
        total_ll, total_loss, correct, batches = 0.0, 0.0, 0.0, 0
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            xb = x[program.backend.index(idx)]
            if gradient:
                loss, acc = learner.step(xb, None if labels is None else labels[idx], rng=device_rng)
                total_loss += loss * len(idx)
                if acc is not None:
                    correct += acc * len(idx)
            else:
                total_ll += learner.step(xb)
            batches += 1
        if not gradient:
            learner.end_epoch()
        record = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0}
        if gradient:
            record["train_loss"] = total_loss / n
            if objective == "cross-entropy":
                record["train_acc"] = correct / n
            else:
                record["train_ll"] = -total_loss / n
        else:
            record["train_ll"] = total_ll / n
        if xv is not None:
            out = program._forward(xv, "sum", cache=False)
            if program.num_outputs == 1:
                record["valid_ll"] = float(out.mean())
            if valid_labels is not None:
                record["valid_acc"] = float((to_numpy(out).argmax(axis=1) == valid_labels).mean())
        history.append(**record)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, program, learner, method, epoch + 1, history)
        if bar is not None:
            bar.update(1)
            shown = {k: round(v, 4) for k, v in record.items() if k not in ("epoch",) and v is not None}
            bar.set_postfix(shown)
        if callback is not None:
            callback(epoch + 1, history)
    if bar is not None:
        bar.close()
    program.sync_to_circuit()
    return history


# ---- checkpoints ---------------------------------------------------------------------------
def _program_arrays(program) -> dict:
    out = {"program/weights": to_numpy(program.weights)}
    for i, key in enumerate(sorted(program.leaf_tables, key=lambda k: (k[0].name, k[1], str(k[2])))):
        for name, value in program.leaf_tables[key].items():
            out[f"program/leaves/{i}/{name}"] = to_numpy(value)
    return out


def _save_checkpoint(path, program, learner, method: str, epoch: int, history: History):
    arrays = _program_arrays(program)
    arrays.update({f"learner/{k}": to_numpy(v) for k, v in learner.state().items()})
    meta = {"version": _CHECKPOINT_VERSION, "method": method, "epoch": epoch, "history": dict(history),
            "num_weights": int(program.num_weights)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_checkpoint(path, program, learner, method: str):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except Exception as err:
        raise ValueError(f"fit: checkpoint {path} cannot be read ({err}); delete it or pass resume=False") from None
    if meta.get("version") != _CHECKPOINT_VERSION or meta.get("method") != method:
        raise ValueError(f"fit: checkpoint {path} was written by method {meta.get('method')!r} "
                         f"(version {meta.get('version')}), not {method!r}; pass resume=False to start over")
    if meta.get("num_weights") != program.num_weights:
        raise ValueError(f"fit: checkpoint {path} belongs to a circuit with {meta.get('num_weights')} weights, "
                         f"this one has {program.num_weights}")
    be = program.backend
    program.set_weights(arrays["program/weights"])
    for i, key in enumerate(sorted(program.leaf_tables, key=lambda k: (k[0].name, k[1], str(k[2])))):
        program.leaf_tables[key] = {name: be.asarray(arrays[f"program/leaves/{i}/{name}"], dtype=value.dtype)
                                    for name, value in program.leaf_tables[key].items()}
    learner.load_state({k[len("learner/"):]: v for k, v in arrays.items() if k.startswith("learner/")})
    return int(meta["epoch"]), History(meta["history"])
