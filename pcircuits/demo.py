"""``pcircuits demo``: the whole image workflow on the 8x8 digits shipped with the package, in seconds.

Builds a Poon-Domingos circuit with quantile-initialized Gaussian leaves over per-image
standardized digits, checks it, trains it with EM, scores it (test log-likelihood, bits per
dimension, left- and bottom-half completion MSE on the 0..255 scale), and writes pictures and a
report. The 8x8 digits have grey levels 0..16: the MSE maps them to 0..255 (times 255 / 16)
so that it is on the papers' scale. ``pcircuits train`` without options trains the same model
(its defaults are :data:`DEMO_SETTINGS`).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "DEMO_SETTINGS", "QUICK_SETTINGS"]

#: The demo's circuit and training settings.
DEMO_SETTINGS = {"delta": 1, "num_sums": 4, "num_leaves": 4, "leaf_std": 0.25, "method": "em", "em_mode": "online",
                 "step_size": 0.5, "epochs": 10, "batch_size": 50, "train_size": None, "test_size": None,
                 "num_samples": 32}
#: ``--quick``: a tiny run for tests.
QUICK_SETTINGS = dict(DEMO_SETTINGS, delta=4, num_sums=2, num_leaves=2, epochs=2, train_size=200, test_size=40,
                      num_samples=8)


def _print(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, flush=True)


def run_demo(out, *, quick: bool = False, epochs: int | None = None, progress: bool = True, seed: int = 0,
             quiet: bool = False) -> int:
    """Run the demo and write its files into the folder ``out``.

    Files: ``report.md``, ``report.json``, ``model.pcz`` (+ ``model.pcz.json``),
    ``circuit_small.png`` (a 2x2-pixel PD circuit drawn node by node), ``circuit.png`` (the
    demo's circuit, summarized), ``learning_curve.png``, ``completion_left.png``,
    ``completion_bottom.png`` and ``samples.png`` (drawings fall back to Graphviz ``.dot``
    sources when Graphviz's ``dot`` is missing).

    Returns
    -------
    int
        0 (the exit status of ``pcircuits demo``).
    """
    from . import builders, datasets, tasks
    from .imagegrid import save_completion_grid, save_image_grid
    from .learning import fit
    from .workflow import (build_image_circuit, default_valid_size, evaluate_program, history_record,
                           initialize_leaves, prepare_images, record_path, save_model)

    started = time.perf_counter()
    settings = dict(QUICK_SETTINGS if quick else DEMO_SETTINGS)
    if epochs is not None:
        settings["epochs"] = int(epochs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    timings = {}

    # data: the embedded digits, each image standardized with its own mean and std (P&D)
    data = datasets.load_digits_8x8()
    train_images = data.x_train if settings["train_size"] is None else data.x_train[:settings["train_size"]]
    test_images = data.x_test if settings["test_size"] is None else data.x_test[:settings["test_size"]]
    x_train, _, _ = prepare_images(train_images, "standardize", what="training image")
    valid_size = default_valid_size(len(x_train))
    x_train, x_valid = x_train[:-valid_size], x_train[-valid_size:]
    _print(quiet, f"[1/6] data: the embedded 8x8 digits (grey levels 0..{data.max_value}): "
                  f"{len(x_train)} training, {valid_size} validation and {len(test_images)} test "
                  f"images, each standardized to mean 0 and std 1")

    # a small circuit drawn node by node, and the demo's circuit
    small = builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=seed)
    files["circuit_small"] = small.render(out / "circuit_small.png", report=small.check(),
                                          title="Poon-Domingos circuit over 2x2 pixels (K=2, G=2)")
    tick = time.perf_counter()
    circuit = build_image_circuit("pd", data.shape, delta=settings["delta"], num_sums=settings["num_sums"],
                                  num_leaves=settings["num_leaves"], seed=seed)
    initialize_leaves(circuit, x_train, settings["num_leaves"], settings["leaf_std"])
    report = circuit.check()
    timings["build_and_check"] = time.perf_counter() - tick
    files["circuit"] = circuit.render(out / "circuit.png", report=report)
    _print(quiet, f"[2/6] circuit: Poon-Domingos 8x8, delta {settings['delta']}, K {settings['num_sums']} sums per "
                  f"region, G {settings['num_leaves']} Gaussians per pixel: {circuit.num_nodes} nodes, "
                  f"{circuit.num_units} units, {circuit.num_edges} edges; "
                  f"{'valid (smooth and decomposable)' if report.ok else 'INVALID'}")
    report.raise_if_invalid()

    # training
    tick = time.perf_counter()
    program = circuit.compile("numpy", "float32")
    history = fit(program, x_train, method=settings["method"], epochs=settings["epochs"],
                  batch_size=settings["batch_size"], mode=settings["em_mode"], step_size=settings["step_size"],
                  freeze_leaves=True, progress=progress, seed=seed, valid=x_valid)
    timings["train"] = time.perf_counter() - tick
    files["learning_curve"] = str(out / "learning_curve.png")
    history.plot(files["learning_curve"])
    files["model"] = str(save_model(program, out / "model.pcz", {
        "pcircuits_model": 1, "data": "digits8x8", "shape": [8, 8], "max_value": data.max_value,
        "preprocess": "standardize", "structure": "pd", "leaf": "gaussian", "settings": settings}))
    files["model_record"] = str(record_path(out / "model.pcz"))
    _print(quiet, f"[3/6] trained with {settings['method']} for {settings['epochs']} epochs in "
                  f"{timings['train']:.1f} s")

    # scores
    tick = time.perf_counter()
    metrics, completions = evaluate_program(program, test_images, preprocess="standardize", shape=(8, 8),
                                            max_value=data.max_value, masks=("left", "bottom"),
                                            methods=("posterior-mean", "mpe"), batch_size=512)
    x_test, mean, std = completions["x"], completions["mean"], completions["std"]
    for mask_name in ("left", "bottom"):
        mask = tasks.make_mask(mask_name, (8, 8)).reshape(-1)
        baseline = np.where(mask, x_train.mean(axis=0), x_test)
        metrics[f"mse_{mask_name}_train-mean"] = tasks.completion_mse(x_test, baseline, mask, mean=mean, std=std,
                                                                      max_value=data.max_value)
    timings["evaluate"] = time.perf_counter() - tick
    _print(quiet, f"[4/6] test log-likelihood {metrics['log_likelihood']:.2f} nats per image "
                  f"({metrics['bits_per_dimension']:.3f} bits per dimension)")
    _print(quiet, "      completion MSE over the occluded half, grey levels 0..16 rescaled to 0..255 (x 255/16):")
    for mask_name in ("left", "bottom"):
        _print(quiet, f"      {mask_name} half: posterior mean "
                      f"{metrics[f'mse_{mask_name}_posterior-mean']:.0f}, MPE {metrics[f'mse_{mask_name}_mpe']:.0f}, "
                      f"train-mean image {metrics[f'mse_{mask_name}_train-mean']:.0f}")

    # pictures
    tick = time.perf_counter()
    grey = datasets.unstandardize_images(x_test, mean, std)
    for mask_name in ("left", "bottom"):
        mask = tasks.make_mask(mask_name, (8, 8))
        drawn = {method: datasets.unstandardize_images(completions[(mask_name, method)], mean, std)
                 for method in ("posterior-mean", "mpe")}
        files[f"completion_{mask_name}"] = save_completion_grid(
            out / f"completion_{mask_name}.png", grey, mask, drawn, shape=(8, 8), value_range=(0, data.max_value),
            max_images=12, title=f"{mask_name} half completed (test digits)")
    samples = tasks.unconditional_samples(program, settings["num_samples"], seed=seed)
    low, high = np.percentile(x_train, [1, 99])
    files["samples"] = save_image_grid(out / "samples.png", samples, 8, shape=(8, 8), value_range=(low, high),
                                       title=f"{settings['num_samples']} samples (standardized pixels, "
                                             f"{low:.1f} black to {high:.1f} white)")
    timings["pictures"] = time.perf_counter() - tick
    _print(quiet, f"[5/6] pictures: {', '.join(Path(p).name for k, p in files.items() if not k.startswith('model'))}")

    timings["total"] = time.perf_counter() - started
    summary = {
        "command": "demo", "quick": quick, "seed": seed, "data": "digits8x8",
        "num_train": len(x_train), "num_valid": valid_size, "num_test": len(test_images),
        "settings": settings,
        "circuit": {"nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
                    "parameters": circuit.num_params, "valid": report.ok},
        "metrics": metrics,
        "history": history_record(history),
        "seconds": timings, "files": {k: Path(v).name for k, v in files.items()},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "processor": platform.machine()},
    }
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(summary), encoding="utf-8")
    _print(quiet, f"[6/6] report: {out / 'report.md'} and {out / 'report.json'} ({timings['total']:.1f} s in all)")
    return 0


def _markdown(s: dict) -> str:
    m, c, st, f = s["metrics"], s["circuit"], s["settings"], s["files"]
    rows = "\n".join(
        f"| {mask} | {m[f'mse_{mask}_posterior-mean']:.0f} | {m[f'mse_{mask}_mpe']:.0f} | "
        f"{m[f'mse_{mask}_train-mean']:.0f} |" for mask in ("left", "bottom"))
    quick = "\n**Quick run** (`--quick`): tiny settings for tests; the figures mean little.\n" if s["quick"] else ""
    return f"""# pcircuits demo: 8x8 digits
{quick}
Data: the 8x8 digits shipped with pcircuits (UCI optical digits, grey levels 0..16), {s['num_train']} training,
{s['num_valid']} validation and {s['num_test']} test images. Each image is standardized with its
own mean and standard deviation (Poon & Domingos).

Circuit: Poon-Domingos over 8x8 pixels, resolution delta={st['delta']}, {st['num_sums']} sums per
region, {st['num_leaves']} Gaussian leaves per pixel: {c['nodes']} nodes, {c['units']} units,
{c['edges']} edges, {c['parameters']} parameters; valid (smooth and decomposable): {c['valid']}.
The leaves' means are the means of equal-count quantile groups of each pixel's training values
(P&D); their standard deviation is {st['leaf_std']} (the papers use 1, but the digits are nearly
two-level images, on which leaves that wide cannot tell ink from background), and they stay fixed.

Training: soft EM ({st['method']}), {st['em_mode']}, step size {st['step_size']}, batches of
{st['batch_size']}, {st['epochs']} epochs ({s['seconds']['train']:.1f} s).

## Results on the test images

* Log-likelihood: {m['log_likelihood']:.2f} nats per image of standardized pixels;
  {m['bits_per_dimension']:.3f} bits per dimension (of the grey levels given each image's mean and
  standard deviation, see `pcircuits.tasks.bits_per_dimension`).
* Completion MSE over the occluded half, on the 0..255 scale (grey levels times 255/16), each
  image mapped back with its own mean and standard deviation as Poon & Domingos did. The
  posterior mean minimizes the expected squared error, so it scores better than the sharper
  MPE completion:

| occluded half | posterior mean | MPE | baseline: mean training image |
|---|---|---|---|
{rows}

## Pictures

![small circuit]({f['circuit_small']})

![demo circuit, summarized]({f['circuit']})

![learning curve]({f['learning_curve']})

![left completions]({f['completion_left']})

![bottom completions]({f['completion_bottom']})

![samples]({f['samples']})

Total time: {s['seconds']['total']:.1f} s (Python {s['machine']['python']}, NumPy {s['machine']['numpy']}).
"""
