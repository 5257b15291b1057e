"""The DCGMM model: a stack of folding, pooling, cGMM and classifier layers (Gepperth, section III).

A :class:`Stack` checks the layer shapes when it is made, trains every trainable layer on its
own loss in parallel (III-G), and runs the backward mode for sampling (III-I), sharpening and
in-painting (III-J). Images are arrays of shape ``(batch, height, width, channels)`` (a
missing channel axis is added).

Reproducibility follows :func:`~pcircuits.learning.fit`: epoch ``e`` shuffles with
``numpy.random.default_rng([seed, e])`` and the checkpoint holds every parameter and every
annealing state, so on NumPy a run resumed from a checkpoint ends bit-identical to an
uninterrupted one.
"""
from __future__ import annotations

import math
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from ..backend import get_backend, to_numpy
from ..learning.checkpoint import CheckpointContent, data_digest, read_checkpoint, write_checkpoint
from ..learning.history import History
from .layers import CGMM, Classifier, Folding, Layer, MaxPooling

__all__ = ["Stack"]

#: Sharpening steps are taken on the mean objective of a batch of this many samples (the paper's code).
SHARPEN_BATCH = 100
_FORMAT = "pcircuits-dcgmm-checkpoint"
_VERSION = 2
#: Layer attributes a checkpoint records as settings of the run (those a layer has).
_LAYER_SETTINGS = ("learning_rate", "shared", "max_precision", "min_precision", "init_range", "num_inputs")
#: Annealing attributes a checkpoint records as settings of the run.
_ANNEALING_SETTINGS = ("sigma_min", "gamma", "delta", "period")


class Stack:
    """A deep convolutional Gaussian mixture model.

    Parameters
    ----------
    layers : sequence of Layer
        Bottom to top: :class:`Folding`, :class:`MaxPooling`, :class:`CGMM` and, last, at most
        one :class:`Classifier` directly above a cGMM layer.
    image_shape : (height, width) or (height, width, channels)
    backend : {"numpy", "cupy"} or Backend
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initial means.

    Raises
    ------
    ValueError
        A layer cannot take the shape the layer below gives (the message names both), there is
        no cGMM layer, or a classifier is not last or not directly above a cGMM layer.
    """

    def __init__(self, layers, image_shape, *, backend="numpy", dtype: str = "float32", seed: int = 0):
        layers = list(layers)
        if not layers:
            raise ValueError("Stack: needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Stack: layer {i + 1} is a {type(layer).__name__}, not a DCGMM layer "
                                f"(Folding, MaxPooling, CGMM, Classifier)")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("Stack: the same layer object appears twice; make a new one for each place")
        image_shape = tuple(int(v) for v in image_shape)
        if len(image_shape) == 2:
            image_shape = image_shape + (1,)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"Stack: image_shape must be (height, width) or (height, width, channels) of positive "
                             f"ints, got {image_shape}")
        self.image_shape = image_shape
        self.layers = layers
        self.backend = get_backend(backend, dtype)
        self.seed = int(seed)
        self._check_structure()
        rng = np.random.default_rng(self.seed)
        shape = image_shape
        below = "the images"
        for i, layer in enumerate(layers):
            layer.name = f"L{i + 1}"
            problem = layer.shape_problem(shape)
            if problem is not None:
                raise ValueError(f"Stack: layer {layer.name} {layer.notation} cannot take the output of {below} "
                                 f"(shape {shape[0]}x{shape[1]}x{shape[2]}): {problem}")
            if isinstance(layer, Classifier):
                layer.build(shape, self.backend, rng, source_shapes=[layers[j].output_shape
                                                                     for j in self._classifier_sources()])
            else:
                layer.build(shape, self.backend, rng)
            shape = layer.output_shape
            below = f"layer {layer.name} {layer.notation}"

    def _check_structure(self):
        cgmm = [i for i, layer in enumerate(self.layers) if isinstance(layer, CGMM)]
        if not cgmm:
            raise ValueError("Stack: needs at least one CGMM layer")
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Classifier):
                if i != len(self.layers) - 1:
                    raise ValueError(f"Stack: the classifier {layer.notation} must be the last layer, it is layer "
                                     f"{i + 1} of {len(self.layers)}")
                if not isinstance(self.layers[i - 1] if i > 0 else None, CGMM):
                    raise ValueError(f"Stack: the classifier {layer.notation} must sit directly above a CGMM layer")
                if layer.num_inputs > len(cgmm):
                    raise ValueError(f"Stack: the classifier reads the {layer.num_inputs} highest CGMM layers but the "
                                     f"stack has {len(cgmm)}")

    # ---- structure -----------------------------------------------------------------------
    @property
    def cgmm_layers(self) -> list[CGMM]:
        return [layer for layer in self.layers if isinstance(layer, CGMM)]

    @property
    def classifier(self) -> Classifier | None:
        last = self.layers[-1]
        return last if isinstance(last, Classifier) else None

    def _classifier_sources(self) -> list[int]:
        cgmm = [i for i, layer in enumerate(self.layers) if isinstance(layer, CGMM)]
        return cgmm[-self.layers[-1].num_inputs:]

    @property
    def top_cgmm(self) -> int:
        """Index (0-based) of the highest cGMM layer."""
        return max(i for i, layer in enumerate(self.layers) if isinstance(layer, CGMM))

    @property
    def notation(self) -> str:
        """The paper's configuration string, e.g. ``F(3,1)-G(25)-F(4,2)-G(25)``."""
        return "-".join(layer.notation for layer in self.layers)

    def num_means(self) -> int:
        """Number of centroid entries of all cGMM layers (the parameter count of the paper's Table V)."""
        return sum(layer.num_means() for layer in self.layers)

    def summary(self) -> str:
        """One line per layer: name, notation, output shape, parameters."""
        lines = [f"L0 data  {'x'.join(map(str, self.image_shape))}"]
        for layer in self.layers:
            params = sum(int(np.prod(v.shape)) for v in layer.parameters().values())
            lines.append(f"{layer.name} {layer.notation}  {'x'.join(map(str, layer.output_shape))}"
                         + (f"  ({params} parameters)" if params else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Stack({self.notation}, image_shape={self.image_shape})"

    # ---- inputs --------------------------------------------------------------------------
    def _prepare(self, x, what: str, *, allow_missing: bool = False):
        arr = np.asarray(to_numpy(x))
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"Stack: {what} must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 3 and self.image_shape[2] == 1:
            arr = arr[..., None]
        if arr.ndim == 2 and arr.shape[1] == int(np.prod(self.image_shape)):
            arr = arr.reshape(len(arr), *self.image_shape)
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.image_shape:
            raise ValueError(f"Stack: {what} must have shape (batch, {', '.join(map(str, self.image_shape))}), got "
                             f"{arr.shape}")
        if len(arr) == 0:
            raise ValueError(f"Stack: {what} has no examples")
        arr = arr.astype(self.backend.dtype, copy=False)
        bad = ~np.isfinite(arr) if not allow_missing else np.isinf(arr)
        if bad.any():
            raise ValueError(f"Stack: {what} has {int(bad.sum())} " + ("infinite" if allow_missing else "non-finite")
                             + " values" + ("" if allow_missing else " (NaN means missing only for inpaint and "
                                                                     "layer_log_likelihoods)"))
        return self.backend.asarray(arr)

    def _labels(self, labels, n: int):
        y = np.asarray(labels)
        if y.shape != (n,) or y.dtype.kind not in "iu":
            raise ValueError(f"Stack.fit: labels must be ints of shape ({n},), got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= self.classifier.num_classes:
            raise ValueError(f"Stack.fit: labels must lie in 0..{self.classifier.num_classes - 1}, got "
                             f"{y.min()}..{y.max()}")
        return y

    # ---- forward -------------------------------------------------------------------------
    def activities(self, x, *, upto: int | None = None) -> list:
        """Forward mode: ``[x, A^(1), ..., A^(upto)]`` (backend arrays; default: every layer)."""
        acts = [x]
        last = len(self.layers) if upto is None else upto
        for layer in self.layers[:last]:
            acts.append(layer.forward(self._sources(acts) if isinstance(layer, Classifier) else acts[-1]))
        return acts

    def _sources(self, acts):
        return [acts[j + 1] for j in self._classifier_sources()]

    def layer_log_likelihoods(self, x, *, kind: str = "exact", batch_size: int = 500) -> dict:
        """Each cGMM layer's per-example log-likelihood: the mean over its positions (eq. 8).

        Parameters
        ----------
        x : array, shape (n, height, width, channels)
            NaN entries are marginalized in the cGMM layers that see them.
        kind : {"exact", "max-component"}
            ``log sum_k pi_k N_k`` or the max-component approximation the layers train on.

        Returns
        -------
        dict
            Layer name (``"L2"``, ...) to an array of shape (n,).
        """
        x = self._prepare(x, "x", allow_missing=True)
        results = {layer.name: [] for layer in self.cgmm_layers}
        for start in range(0, x.shape[0], batch_size):
            a = x[start:start + batch_size]
            for layer in self.layers[:self.top_cgmm + 1]:
                if isinstance(layer, CGMM):
                    results[layer.name].append(to_numpy(layer.log_likelihood(a, kind=kind).mean(-1)))
                a = layer.forward(a)
        return {name: np.concatenate(parts).astype(np.float64) for name, parts in results.items()}

    def outlier_scores(self, x, *, layer: str | None = None, batch_size: int = 500) -> np.ndarray:
        """Outlier scores (higher: more outlying): minus a cGMM layer's exact log-likelihood.

        Parameters
        ----------
        layer : str, optional
            The layer name; default the highest cGMM layer (the paper's best choice, V-B).
        """
        lls = self.layer_log_likelihoods(x, batch_size=batch_size)
        name = self.layers[self.top_cgmm].name if layer is None else layer
        if name not in lls:
            raise ValueError(f"Stack.outlier_scores: {name!r} is not a cGMM layer; choose from {sorted(lls)}")
        return -lls[name]

    def predict_proba(self, x, *, batch_size: int = 500) -> np.ndarray:
        """Class probabilities of the classifier layer, shape (n, S)."""
        if self.classifier is None:
            raise ValueError("Stack.predict_proba: the stack has no Classifier layer")
        x = self._prepare(x, "x")
        parts = [to_numpy(self.activities(x[s:s + batch_size])[-1]).reshape(-1, self.classifier.num_classes)
                 for s in range(0, x.shape[0], batch_size)]
        return np.concatenate(parts)

    def predict(self, x, *, batch_size: int = 500) -> np.ndarray:
        """Most probable class of each example, shape (n,)."""
        return self.predict_proba(x, batch_size=batch_size).argmax(1)

    # ---- training ------------------------------------------------------------------------
    def delays(self, delay: float = 0.1) -> list[float]:
        """Fraction of training before each layer starts learning: ``delay * L`` with ``L`` the
        number of cGMM layers below it (III-G; parameter-free layers get 0)."""
        result, below = [], 0
        for layer in self.layers:
            result.append(delay * below if layer.trainable else 0.0)
            below += isinstance(layer, CGMM)
        return result

    def fit(self, x, labels=None, *, epochs: int = 10, batch_size: int = 100, delay: float = 0.1,
            progress: bool = True, seed: int = 0, checkpoint=None, resume: bool = True, force_resume: bool = False,
            callback=None) -> History:
        """Train all layers in parallel, each on its own loss, by SGD (III-G).

        Every batch is propagated forward once; each trainable layer then takes one step on its
        own loss computed from its input (no gradient crosses layers). Layer ``i`` starts
        learning after the fraction ``delays(delay)[i]`` of all steps.

        Parameters
        ----------
        x : array, shape (n, height, width, channels)
        labels : array of int, shape (n,), optional
            Classes, required when the stack ends in a classifier.
        epochs, batch_size : int
        delay : float
            ``delta(L) = delay * L`` (the paper: 0.1).
        progress : bool
            A tqdm bar over the batches.
        seed : int
            Epoch ``e`` shuffles with ``default_rng([seed, e])``.
        checkpoint : str or path-like, optional
            Written after every epoch (npz, no pickle); resumed from when it exists. Its content
            is checked before anything is restored (every parameter present, of its layer's
            shape, finite, precisions in ``[min_precision, max_precision]``; every annealing
            state), and so is the run it belongs to: the stack and dtype (always), the settings
            (``seed``, ``batch_size``, ``epochs``, ``delay``, every layer's learning rate and
            ranges) and the data (number of examples, a fingerprint of the images and labels).
            Any problem raises one :class:`~pcircuits.errors.CheckpointError` naming it.
        resume : bool
            False starts over and overwrites the checkpoint.
        force_resume : bool
            Resume a checkpoint written with other settings or data anyway, with a warning
            that names them (another stack or dtype is still refused).
        callback : callable, optional
            ``callback(epoch, history)`` after each epoch; a true value stops training.

        Returns
        -------
        History
            Per epoch: ``epoch``; ``loss_<layer>`` for each cGMM layer (minus the mean annealed
            max-component log-likelihood per position, in nats, before each step); ``sigma_<layer>``
            (the annealing width at the end of the epoch); for a classifier ``loss_<layer>``
            (cross-entropy) and ``train_acc``; ``seconds``.
        """
        if not isinstance(force_resume, bool):
            raise TypeError(f"Stack.fit: force_resume must be True or False, got {force_resume!r}")
        for name, value in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Stack.fit: {name} must be a positive int, got {value!r}")
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ValueError(f"Stack.fit: delay must be a number >= 0, got {delay!r}")
        if max(self.delays(delay)) >= 1:
            raise ValueError(f"Stack.fit: with delay={delay!r} the highest trainable layer would start after "
                             f"{max(self.delays(delay)):.0%} of training; choose delay < "
                             f"{1 / max(1, len(self.cgmm_layers) - (self.classifier is None)):.3g}")
        data = self._prepare(x, "x")
        n = int(data.shape[0])
        if self.classifier is not None and labels is None:
            raise ValueError("Stack.fit: the stack ends in a classifier; pass labels")
        if self.classifier is None and labels is not None:
            raise ValueError("Stack.fit: labels were given but the stack has no Classifier layer")
        y = None if labels is None else self._labels(labels, n)
        batches = -(-n // batch_size)
        total_steps = epochs * batches
        starts = [math.floor(d * total_steps) for d in self.delays(delay)]
        config = None if checkpoint is None else self._run_config(
            data, y, seed=int(seed), batch_size=int(batch_size), epochs=int(epochs), delay=float(delay))
        history, start_epoch = self._resume(checkpoint, resume, force_resume, config)
        bar = None
        if progress and start_epoch < epochs:
            from tqdm.auto import tqdm
            bar = tqdm(total=(epochs - start_epoch) * batches, desc="dcgmm", unit="batch")
        for epoch in range(start_epoch, epochs):
            record = self._epoch(data, y, epoch, seed, batch_size, starts, batches, bar)
            history.append(record)
            if checkpoint is not None:
                self._save(checkpoint, config, epoch + 1, history)
            if callback is not None and callback(epoch + 1, history):
                break
        if bar is not None:
            bar.close()
        return history

    def _epoch(self, data, y, epoch, seed, batch_size, starts, batches, bar) -> dict:
        started = time.perf_counter()
        be = self.backend
        n = int(data.shape[0])
        order = np.random.default_rng([int(seed), epoch]).permutation(n)
        sums = {layer.name: 0.0 for layer in self.layers if layer.trainable}
        correct = 0
        for b, first in enumerate(range(0, n, batch_size)):
            step = epoch * batches + b
            idx = order[first:first + batch_size]
            acts = [data[be.index(idx)]]
            for i, layer in enumerate(self.layers):
                inp = acts[-1]
                active = step >= starts[i]
                if isinstance(layer, CGMM):
                    scores = layer.log_scores(inp)
                    acts.append(layer.responsibilities(scores).reshape(inp.shape[0], *layer.output_shape))
                    objective, grads = layer.objective_and_gradients(inp, scores)
                    sums[layer.name] -= objective * len(idx)
                    if active:
                        layer.apply_gradients(grads)
                        layer.annealing.add(objective)
                elif isinstance(layer, Classifier):
                    sources = self._sources(acts)
                    loss, hits, grads = layer.loss_and_gradients(sources, be.index(y[idx]))
                    sums[layer.name] += loss * len(idx)
                    correct += hits
                    if active:
                        layer.apply_gradients(grads)
                else:
                    acts.append(layer.forward(inp))
            if bar is not None:
                bar.update(1)
        record = {"epoch": epoch + 1}
        for layer in self.layers:
            if layer.trainable:
                record[f"loss_{layer.name}"] = sums[layer.name] / n
            if isinstance(layer, CGMM):
                record[f"sigma_{layer.name}"] = layer.annealing.sigma
        if self.classifier is not None:
            record["train_acc"] = correct / n
        record["seconds"] = time.perf_counter() - started
        if bar is not None:
            bar.set_postfix({k: round(v, 3) for k, v in record.items() if k.startswith("loss")})
        return record

    # ---- checkpoints ---------------------------------------------------------------------
    def state_arrays(self) -> dict:
        """Every parameter as a NumPy array, keyed ``"<layer>/<name>"``."""
        return {f"{layer.name}/{name}": to_numpy(value) for layer in self.layers
                for name, value in layer.parameters().items()}

    def load_state_arrays(self, arrays: dict):
        """Set parameters from :meth:`state_arrays`' output."""
        for layer in self.layers:
            values = {name: arrays[f"{layer.name}/{name}"] for name in layer.parameters()}
            if values:
                layer.set_parameters(**values)

    def _run_config(self, data, y, **settings) -> dict:
        """What decides a training run, as its checkpoint records it: the structure (the stack,
        image shape, dtype and parameter shapes), the settings (``fit``'s and every layer's)
        and the data (number of examples and a fingerprint of images and labels)."""
        layers = {}
        for layer in self.layers:
            own = {name: getattr(layer, name) for name in _LAYER_SETTINGS if hasattr(layer, name)}
            if isinstance(layer, CGMM):
                own.update({f"annealing_{name}": getattr(layer.annealing, name) for name in _ANNEALING_SETTINGS})
            if own:
                layers[layer.name] = own
        return _json_normal({
            "structure": {"notation": self.notation, "image_shape": list(self.image_shape),
                          "dtype": self.backend.dtype.name,
                          "parameters": {k: list(v.shape) for k, v in self.state_arrays().items()}},
            "settings": {"init_seed": self.seed, **settings, "layers": layers},
            "data": {"num_examples": int(data.shape[0]), "fingerprint": data_digest(data, y)}})

    def _save(self, path, config: dict, epoch: int, history: History):
        annealing = {layer.name: layer.annealing.state() for layer in self.cgmm_layers}
        meta = {"format": _FORMAT, "version": _VERSION, "config": config, "epoch": epoch, "history": dict(history),
                "annealing": annealing}
        write_checkpoint(path, self.state_arrays(), meta)

    def _resume(self, path, resume: bool, force_resume: bool, config: dict) -> tuple[History, int]:
        """The history and finished epochs of the checkpoint at ``path``, its parameters and
        annealing states restored (an empty history and 0 when there is none to resume); every
        part is checked before anything is restored."""
        if path is None or not resume or not Path(path).is_file():
            return History(), 0
        arrays, meta = read_checkpoint(path, format_name=_FORMAT, version=_VERSION, who="Stack.fit")
        check = CheckpointContent("Stack.fit", path)
        saved, epoch, history = check.record(meta)
        self._compare_runs(check, saved, config, force_resume)
        if epoch > config["settings"]["epochs"]:
            raise check.error(f"its record says {epoch} epochs finished, more than the run's "
                              f"{config['settings']['epochs']}")
        parameters = {}
        for layer in self.layers:
            for name, current in layer.parameters().items():
                key = f"{layer.name}/{name}"
                value = check.array(arrays, key, current.shape)
                if isinstance(layer, CGMM) and name == "precisions" and value.size and not (
                        value.min() >= layer.min_precision and value.max() <= layer.max_precision):
                    raise check.error(f"the array {key!r} holds precisions outside [{layer.min_precision:g}, "
                                      f"{layer.max_precision:g}] (from {value.min():g} to {value.max():g})")
                parameters[key] = value
        annealing = meta.get("annealing")
        states = {layer.name: _annealing_state(check, annealing, layer) for layer in self.cgmm_layers}
        self.load_state_arrays(parameters)
        for layer in self.cgmm_layers:
            layer.annealing.load_state(states[layer.name])
        return History(history), epoch

    @staticmethod
    def _compare_runs(check: CheckpointContent, saved: dict, config: dict, force_resume: bool):
        """Refuse a checkpoint of another stack; of other settings or data unless ``force_resume``."""
        def differences(part: str) -> list:
            old, new = saved.get(part), config[part]
            old = old if isinstance(old, dict) else {}
            return [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
                    if old.get(key) != new.get(key)]
        structure = differences("structure")
        if structure:
            key, old, new = structure[0]
            raise check.error(f"it was written with {key}={old!r}, this run has {key}={new!r}"[:400]
                              + ": another stack or dtype", prefix="")
        different = differences("settings") + [(f"data {key}", old, new) for key, old, new in differences("data")]
        if not different:
            return
        listed = ", ".join(f"{key}={old!r} (this run: {new!r})" for key, old, new in different[:4])[:600]
        more = f" and {len(different) - 4} more" if len(different) > 4 else ""
        if not force_resume:
            raise check.error(f"it was written with {listed}{more}; resuming would not continue the same run "
                              f"(pass force_resume=True to continue anyway)", prefix="")
        warnings.warn(f"Stack.fit: resuming the checkpoint {check.path} although it was written with {listed}{more} "
                      f"(force_resume=True)", stacklevel=4)

    # ---- backward mode -------------------------------------------------------------------
    def _descend(self, control, top: int, rng, *, sharpen: bool, top_s, divisor: float, iterations: int,
                 step_size: float):
        for i in range(top, -1, -1):
            control = self.layers[i].backward(control, rng, top_s=top_s, divisor=divisor)
            if sharpen and isinstance(self.layers[i], Folding):
                control = self.sharpen(control, i, iterations=iterations, step_size=step_size)
        return control

    def sharpen(self, control, layer_index: int, *, iterations: int = 300, step_size: float = 1.0):
        """Gradient ascent on the control signal below folding layer ``layer_index`` (III-I, Fig. 3).

        The control is propagated forward to the next cGMM layer above the folding layer (the
        target), and moved ``iterations`` times along the gradient of that layer's per-example
        max-component objective (eq. 8), which pulls overlapping patches towards agreeing with
        the target's components. The paper (V-D) uses I = 300, eps = 1.0.

        The ascent is on the paper's loss: the target layer's objective averaged over a
        sampling batch of ``SHARPEN_BATCH = 100`` examples (the batch the paper's code samples
        in) and over positions. Each example therefore moves by ``step_size / 100`` times the
        gradient of its own objective, whatever the number of samples. Larger steps pull
        more and more patches onto the target's most probable (blank) component.

        Parameters
        ----------
        control : backend array, shape ``(batch, *input_shape)`` of the folding layer
        layer_index : int
            0-based index of the folding layer.

        Returns
        -------
        backend array, same shape
        """
        targets = [j for j in range(layer_index + 1, len(self.layers)) if isinstance(self.layers[j], CGMM)]
        if not targets:
            return control
        target = targets[0]
        between = self.layers[layer_index:target]
        scale = step_size / SHARPEN_BATCH
        for _ in range(iterations):
            acts = [control]
            for layer in between:
                acts.append(layer.forward(acts[-1]))
            _, grad = self.layers[target].input_gradient(acts[-1])
            for layer, a in zip(reversed(between), reversed(acts[:-1])):
                grad = layer.vjp(a, grad)
            control = control + scale * grad
        return control

    def sample(self, n: int, *, seed: int = 0, sharpen: bool = False, classes=None, top_s: int | None = None,
               divisor: float = 1.0, sharpen_iterations: int = 300, sharpen_step: float = 1.0) -> np.ndarray:
        """Draw ``n`` images by the chain of hierarchical priors (III-I).

        The highest cGMM layer draws its components uniformly (or, with ``classes``, from the
        classifier's inverted control); every layer below is driven by the control signal of
        the layer above.

        Parameters
        ----------
        n : int
        seed : int
        sharpen : bool
            Sharpen at every folding layer (see :meth:`sharpen`).
        classes : int or array of int, shape (n,), optional
            Conditional sampling through the classifier layer.
        top_s : int, optional
            Sample each cGMM component only among the ``top_s`` largest control values.
        divisor : float
            Divides the components' standard deviations when sampling (``inf``: their means).
        sharpen_iterations, sharpen_step : int, float
            ``I`` and ``eps`` of the sharpening.

        Returns
        -------
        ndarray, shape (n, height, width, channels)
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"Stack.sample: n must be a positive int, got {n!r}")
        be, xp = self.backend, self.backend.xp
        rng = be.rng(np.random.default_rng(seed))
        top = self.top_cgmm
        if classes is not None:
            if self.classifier is None:
                raise ValueError("Stack.sample: classes need a Classifier layer")
            cls = np.broadcast_to(np.asarray(classes), (n,))
            if cls.dtype.kind not in "iu" or cls.min() < 0 or cls.max() >= self.classifier.num_classes:
                raise ValueError(f"Stack.sample: classes must be ints in 0..{self.classifier.num_classes - 1}")
            onehot = np.eye(self.classifier.num_classes)[cls].reshape(n, 1, 1, -1)
            control = self.classifier.backward(be.asarray(onehot))
        else:
            control = xp.ones((n, *self.layers[top].output_shape), dtype=be.dtype)
        out = self._descend(control, top, rng, sharpen=sharpen, top_s=top_s, divisor=divisor,
                            iterations=sharpen_iterations, step_size=sharpen_step)
        return to_numpy(out)

    def inpaint(self, x, *, seed: int = 0, sharpen: bool = False, top_s: int | None = None, divisor: float = 1.0,
                sharpen_iterations: int = 300, sharpen_step: float = 1.0) -> np.ndarray:
        """Fill the NaN entries of ``x`` (III-J).

        A forward pass up to the highest cGMM layer (NaN entries are marginalized in the cGMM
        layers that see them) gives its responsibilities, which drive a backward pass as its
        control signal; the sampled image fills the missing entries, the others are kept.

        Parameters
        ----------
        x : array, shape (n, height, width, channels)
            NaN marks missing entries.
        seed, sharpen, top_s, divisor, sharpen_iterations, sharpen_step
            As in :meth:`sample`.

        Returns
        -------
        ndarray, same shape as ``x`` (with the channel axis)
        """
        be, xp = self.backend, self.backend.xp
        data = self._prepare(x, "x", allow_missing=True)
        top = self.top_cgmm
        acts = self.activities(data, upto=top + 1)
        rng = be.rng(np.random.default_rng(seed))
        sampled = self._descend(acts[-1], top, rng, sharpen=sharpen, top_s=top_s, divisor=divisor,
                                iterations=sharpen_iterations, step_size=sharpen_step)
        return to_numpy(xp.where(xp.isnan(data), sampled, data))

    # ---- drawing -------------------------------------------------------------------------
    def to_dot(self) -> str:
        """Graphviz source of the layer diagram, data at the bottom."""
        import graphviz

        graph = graphviz.Digraph("dcgmm", graph_attr={"rankdir": "BT", "fontname": "Helvetica"},
                                 node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica"})
        colors = {Folding: "#e3f2fd", MaxPooling: "#ede7f6", CGMM: "#fff3e0", Classifier: "#e8f5e9"}
        graph.node("L0", f"L0 data\n{'x'.join(map(str, self.image_shape))}", fillcolor="#eeeeee")
        previous = "L0"
        for layer in self.layers:
            params = sum(int(np.prod(v.shape)) for v in layer.parameters().values())
            label = f"{layer.name} {layer.notation}\n{'x'.join(map(str, layer.output_shape))}"
            if isinstance(layer, CGMM):
                label += f"\n{'shared' if layer.shared else 'per position'}, {params} parameters"
            elif params:
                label += f"\n{params} parameters"
            graph.node(layer.name, label, fillcolor=colors[type(layer)])
            graph.edge(previous, layer.name)
            previous = layer.name
        if self.classifier is not None:
            for j in self._classifier_sources()[:-1]:
                graph.edge(self.layers[j].name, self.classifier.name, style="dashed")
        return graph.source

    def render(self, path) -> str:
        """Draw the layer diagram to ``path`` (``.svg``, ``.png``, ``.pdf``, or ``.dot`` for the source).

        Returns the path written; without Graphviz's ``dot`` program, the ``.dot`` source is
        written next to it with a warning.
        """
        import graphviz

        from ..viz import RENDER_FORMATS, GraphvizMissingWarning

        path = Path(path)
        fmt = path.suffix.lower().lstrip(".")
        if fmt not in RENDER_FORMATS + ("dot", "gv"):
            raise ValueError(f"Stack.render: cannot tell the format from {path.name!r}; use .svg, .png, .pdf or .dot")
        source = self.to_dot()
        if fmt in RENDER_FORMATS and shutil.which("dot") is not None:
            path.write_bytes(graphviz.Source(source).pipe(format=fmt))
            return str(path)
        if fmt in RENDER_FORMATS:
            warnings.warn(f"Graphviz's `dot` program was not found; wrote the source to {path.with_suffix('.dot')}",
                          GraphvizMissingWarning, stacklevel=2)
            path = path.with_suffix(".dot")
        path.write_text(source, encoding="utf-8")
        return str(path)


def _json_normal(value):
    """``value`` as JSON reads it back (tuples as lists, NumPy scalars as numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_normal(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_normal(v) for k, v in value.items()}
    return value


def _annealing_state(check: CheckpointContent, states, layer) -> dict:
    """A cGMM layer's annealing state from a checkpoint record, every field checked."""
    state = states.get(layer.name) if isinstance(states, dict) else None
    if not isinstance(state, dict):
        raise check.error(f"its record has no annealing state for layer {layer.name}")
    for name in ("sigma", "running", "first", "last"):
        value = state.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise check.error(f"the annealing {name} of layer {layer.name} must be a finite number, "
                              f"got {value!r}"[:300])
    if not state["sigma"] >= layer.annealing.sigma_min:
        raise check.error(f"the annealing sigma of layer {layer.name} is {state['sigma']!r}, below its minimum "
                          f"{layer.annealing.sigma_min!r}")
    iteration = state.get("iteration")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise check.error(f"the annealing iteration of layer {layer.name} must be an int >= 0, got {iteration!r}"[:300])
    return state
