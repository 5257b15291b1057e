"""Image completion (Poon & Domingos' protocol) on Olivetti, Caltech-101, MNIST and Fashion-MNIST.

One protocol for every data set, as DGC-SPN's Table 1 (section 5.1) measures it: each image
standardized with its own mean and standard deviation, 4 Gaussian leaves per pixel at the means
of the pixel's training-value quantiles with unit variance (kept fixed), the left and the bottom
half of each test image completed by posterior mean (the papers' method) and by MPE, and the MSE
over the occluded pixels on the 0..255 scale (``pcircuits.tasks``). The mean standardized
training image, pasted into the occluded half, is the baseline.

Data: ``olivetti`` (P&D split: first 350 train, last 50 test), ``mnist`` and ``fashion-mnist``
(the standard 60k / 10k split), ``caltech`` (one model per category, as P&D did, each on its
category's P&D split; the figure is the mean over the categories).

Models (``--model``), each a preset that the flags below override:

- ``dgcspn-usi``: DGC-SPN generative (16 channels), online hard EM with unweighted sum inputs,
  marginal inference, batch 128, 15 epochs, counts in libspn-keras' units (``counts="mean"``),
  uniform initial weights (DGC-SPN 5.1);
- ``dcspn``: DCSPN (12 channels), Adam lr 0.005 on the NLL, batch 50, 60 epochs (DCSPN paper);
- ``pd``: Poon-Domingos, pixel-level with coarse resolution 4, K=4, online hard EM with USI,
  batch 50, 3 epochs, first winner on ties.

Every trained model (one seed, one Caltech category) appends one JSON line to ``--results``
(default ``<out>/results.jsonl``) and writes its completion grids into ``<out>``. A run skips the
models whose record is already there with the same settings, so a stopped run resumes where it
stopped. Models run in up to ``--jobs`` processes (seeds, or Caltech categories). ``--summarize``
trains nothing and prints the mean and standard deviation over the seeds (for Caltech: of the
per-seed means over the categories) of every configuration of ``--data`` and ``--model`` in the
results file.

    python benchmarks/completion.py --data olivetti --model dgcspn-usi --runs 5
    python benchmarks/completion.py --data mnist --model pd --runs 3 --jobs 2
    python benchmarks/completion.py --data caltech --model dgcspn-usi --jobs 2
    python benchmarks/completion.py --data caltech --model dgcspn-usi --summarize
"""
from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import pcircuits as pc
from pcircuits import tasks
from pcircuits.imagegrid import save_completion_grid
from pcircuits.learning import quantile_means

DATA_SETS = ("olivetti", "caltech", "mnist", "fashion-mnist")
PRESETS = {
    "dgcspn-usi": dict(structure="dgcspn", method="usi", epochs=15, batch_size=128, num_sums=16, counts="mean",
                       ties="random", init_weights="uniform"),
    "dcspn": dict(structure="dcspn", method="adam", epochs=60, batch_size=50, num_sums=12, counts="sum",
                  ties="random", init_weights="random"),
    "pd": dict(structure="pd", method="usi", epochs=3, batch_size=50, num_sums=4, counts="sum", ties="first",
               init_weights="random"),
}
STRUCTURE_MODELS = {"dgcspn": "dgcspn-usi", "dcspn": "dcspn", "pd": "pd"}
HALVES = (("left", tasks.left_half), ("bottom", tasks.bottom_half))
METHODS = ("posterior-mean", "mpe")
#: The settings that make two records the same configuration.
SETTINGS = ("structure", "method", "epochs", "batch_size", "lr", "num_sums", "delta", "dense", "counts", "ties",
            "init_weights", "train_size", "test_size")
SCORES = tuple(f"{half}_{method}_mse" for half, _ in HALVES for method in METHODS)
GRID_IMAGES = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=DATA_SETS, default="olivetti")
    parser.add_argument("--model", choices=sorted(PRESETS), default=None,
                        help="preset (default: the one of --structure, else dgcspn-usi)")
    parser.add_argument("--structure", choices=sorted(STRUCTURE_MODELS), default=None,
                        help="circuit structure (default: the preset's)")
    parser.add_argument("--method", choices=["usi", "hard-em", "em", "adam"], default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=0.005, help="Adam learning rate (DCSPN: 0.005)")
    parser.add_argument("--num-sums", type=int, default=None, help="sum units per region / channels per sum layer")
    parser.add_argument("--delta", type=int, default=4, help="PD coarse resolution")
    parser.add_argument("--dense", action="store_true", help="PD: grid cells as factorized leaves")
    parser.add_argument("--ties", choices=["random", "first"], default=None,
                        help="hard EM / USI: break ties between winners at random (libspn-keras) or take the first")
    parser.add_argument("--counts", choices=["sum", "mean"], default=None,
                        help="EM: a batch adds the sum of its examples' counts or their mean (libspn-keras "
                             "accumulates the gradient of a batch-mean loss, which makes the smoothing "
                             "1e-2/|w| weigh batch-size times more)")
    parser.add_argument("--init-weights", choices=["random", "uniform"], default=None,
                        help="start from the builder's random sum weights or from uniform ones")
    parser.add_argument("--train-size", type=int, default=None,
                        help="train on the first N training images (default: all; per category for Caltech)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="score the first N test images (default: all; per category for Caltech)")
    parser.add_argument("--categories", nargs="+", default=None,
                        help="Caltech categories to run, in this order (default: all 101, in the file's order)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument("--runs", type=int, default=1, help="independent runs, seeds seed .. seed + runs - 1")
    parser.add_argument("--jobs", type=int, default=1, help="models trained at once, each in its own process")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: mean and standard deviation over the runs in --results")
    parser.add_argument("--out", default=None, help="folder of the results and pictures (default out/<data>)")
    parser.add_argument("--results", default=None, help="JSON-lines results file (default <out>/results.jsonl)")
    parser.add_argument("--eval-batch-size", type=int, default=50, help="images per completion pass")
    parser.add_argument("--trace", action="store_true",
                        help="also measure the posterior-mean completion MSEs after every epoch")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = STRUCTURE_MODELS[args.structure] if args.structure else "dgcspn-usi"
    for key, value in PRESETS[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ("epochs", "batch_size", "num_sums", "runs", "jobs", "eval_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("train_size", "test_size"):
        if getattr(args, name) is not None and getattr(args, name) < 2:
            parser.error(f"--{name.replace('_', '-')} must be at least 2, got {getattr(args, name)}")
    if args.categories and args.data != "caltech":
        parser.error("--categories is for --data caltech")
    if args.out is None:
        args.out = os.path.join("out", args.data)
    if args.results is None:
        args.results = os.path.join(args.out, "results.jsonl")
    return args


def settings(args) -> dict:
    """The settings of a configuration (method options that do not apply are None)."""
    out = {key: getattr(args, key) for key in SETTINGS}
    if args.structure != "pd":
        out["delta"] = out["dense"] = None
    if args.method == "adam":
        out["counts"] = out["ties"] = None
    else:
        out["lr"] = None
    return out


# ---- data ---------------------------------------------------------------------------------


def caltech_categories() -> list[str]:
    """The 101 Caltech categories of the all-category file, in its order."""
    path = pc.datasets.default_data_dir() / "caltech101_pd64.npz"
    if not path.is_file():
        raise SystemExit(f"completion: {path} is missing (see shared/data/README.md)")
    with np.load(path, allow_pickle=False) as data:
        return [str(c) for c in data["categories"]]


def load(data: str, category: str | None, train_size: int | None, test_size: int | None):
    """Standardized train and test images (flat), the test images' own means and stds, and the image shape."""
    if data == "caltech":
        dataset = pc.datasets.load_caltech(category)
    else:
        dataset = {"olivetti": pc.datasets.load_olivetti, "mnist": pc.datasets.load_mnist,
                   "fashion-mnist": pc.datasets.load_fashion_mnist}[data]()
    x_train = dataset.x_train[:train_size]
    x_test = dataset.x_test[:test_size]
    z_train, _, _ = pc.datasets.standardize_images(x_train.reshape(len(x_train), -1))
    z_test, mean_test, std_test = pc.datasets.standardize_images(x_test.reshape(len(x_test), -1))
    return z_train, z_test, mean_test, std_test, tuple(dataset.x_train.shape[1:3])


# ---- one model ----------------------------------------------------------------------------


def build(args, shape: tuple[int, int], means: np.ndarray, seed: int) -> pc.Circuit:
    """The circuit of ``args.structure`` over ``shape`` images with fixed unit-variance Gaussian leaves at ``means``."""
    height, width = shape
    stds = np.ones_like(means)
    if args.structure == "pd":
        circuit = pc.builders.poon_domingos(height, width, delta=args.delta, num_sums=args.num_sums, num_leaves=4,
                                            dense=args.dense, seed=seed)
        pc.learning.set_gaussian_leaves(circuit, means, stds)
        return circuit
    shaped = dict(leaf_means=means.reshape(height, width, 4), leaf_stds=stds.reshape(height, width, 4), seed=seed)
    if args.structure == "dgcspn":
        return pc.builders.dgcspn(height, width, num_sums=args.num_sums, **shaped)
    return pc.builders.dcspn(height, width, num_sums=args.num_sums, **shaped)


#: Compiled programs of this process by (structure settings, seed, shape), with their initial weights.
_PROGRAMS: dict = {}


def prepare(args, shape: tuple[int, int], means: np.ndarray, seed: int):
    """A compiled program with leaves at ``means`` and the builder's initial weights for ``seed``.

    The first call for a structure, seed and shape builds, checks and compiles the circuit;
    later calls (the other Caltech categories) reuse the program, reset to those initial weights
    and given the new leaf means, which is the same model that a fresh build would give.
    """
    key = (args.structure, args.num_sums, args.delta, args.dense, args.init_weights, seed, shape)
    if key not in _PROGRAMS:
        circuit = build(args, shape, means, seed)
        report = circuit.check()
        if not report.ok:
            raise SystemExit(str(report))
        program = circuit.compile(check=False)
        if args.init_weights == "uniform":
            rows = pc.learning.WeightRows(program)
            program.set_weights(rows.normalize(program.backend.xp.ones(rows.num_weights,
                                                                         dtype=program.backend.dtype)))
        _PROGRAMS[key] = program, program.weights.copy()
        return circuit, program
    program, weights = _PROGRAMS[key]
    program.set_weights(weights.copy())
    pc.learning.set_gaussian_leaves(program, means, 1.0)
    return program.circuit, program


def baselines(z_train, z_test, mean, std, shape) -> dict:
    """MSE of filling each occluded half with the mean standardized training image."""
    out = {}
    for name, make in HALVES:
        mask = make(*shape)
        guess = np.where(mask.ravel()[None], z_train.mean(axis=0)[None], z_test)
        out[name] = round(tasks.completion_mse(z_test, guess, mask, mean=mean, std=std), 1)
    return out


def posterior_mean_mses(program, z_test, mean, std, shape, batch_size: int) -> dict:
    """Posterior-mean completion MSEs of the left and bottom halves (0..255 scale)."""
    out = {}
    for name, make in HALVES:
        mask = make(*shape)
        completed = tasks.complete(program, z_test, mask, method="posterior-mean", batch_size=batch_size)
        out[name] = round(tasks.completion_mse(z_test, completed, mask, mean=mean, std=std), 1)
    return out


def tag(args, seed: int, category: str | None) -> str:
    return f"{args.data}_{args.model}_seed{seed}" + (f"_{category}" if category else "")


def run(args, seed: int, category: str | None) -> dict:
    """Build, train and score one model; write its grids and completions; return its record."""
    t_start = time.perf_counter()
    z_train, z_test, mean_test, std_test, shape = load(args.data, category, args.train_size, args.test_size)
    t0 = time.perf_counter()
    circuit, program = prepare(args, shape, quantile_means(z_train, 4), seed)
    build_s = time.perf_counter() - t0

    trace = []

    def trace_epoch(epoch, history):
        trace.append({"epoch": epoch, **posterior_mean_mses(program, z_test, mean_test, std_test, shape,
                                                             args.eval_batch_size)})
        print(json.dumps({"seed": seed, "category": category, "trace": trace[-1]}), flush=True)

    t0 = time.perf_counter()
    history = pc.learning.fit(program, z_train, method=args.method, epochs=args.epochs,
                              batch_size=min(args.batch_size, len(z_train)), lr=args.lr, freeze_leaves=True,
                              learn_leaves=False, progress=not args.no_progress, ties=args.ties or "random",
                              counts=args.counts or "sum", seed=seed, callback=trace_epoch if args.trace else None)
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    scores, grids = {}, {}
    prefix = os.path.join(args.out, tag(args, seed, category))
    for name, make in HALVES:
        mask = make(*shape)
        completions = {}
        for method in METHODS:
            completions[method] = tasks.complete(program, z_test, mask, method=method,
                                                 batch_size=args.eval_batch_size)
            scores[f"{name}_{method}_mse"] = round(tasks.completion_mse(z_test, completions[method], mask,
                                                                        mean=mean_test, std=std_test), 1)
        save_completion_grid(f"{prefix}_{name}.png", z_test[:GRID_IMAGES], mask,
                             {k: v[:GRID_IMAGES] for k, v in completions.items()}, shape=shape)
        grids[name] = completions["posterior-mean"][:GRID_IMAGES]
    np.savez_compressed(f"{prefix}_completions.npz", original=z_test[:GRID_IMAGES], **grids)
    test_ll = float(np.mean(pc.to_numpy(program.log_likelihood(z_test))))
    eval_s = time.perf_counter() - t0

    record = {
        "data": args.data, "model": args.model, "category": category, "seed": seed, "settings": settings(args),
        "train_images": len(z_train), "test_images": len(z_test),
        "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
        "params": circuit.num_params, **scores, "test_ll": round(test_ll, 2),
        "baseline_mean_image_mse": baselines(z_train, z_test, mean_test, std_test, shape),
        "train_ll_per_epoch": [round(v, 2) for v in history["train_ll"] if v is not None],
        "build_s": round(build_s, 1), "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if args.trace:
        record["mse_per_epoch"] = trace
    append_record(args.results, record)
    return record


# ---- records ------------------------------------------------------------------------------


def read_records(path: str) -> list[dict]:
    """The records of a results file (none if it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_record(path: str, record: dict) -> None:
    """Append one JSON line under an exclusive lock (several processes share the file)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record) + "\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)


def pending(args, categories: list[str | None]) -> list[tuple[int, str | None]]:
    """The (seed, category) models of this configuration that have no record yet."""
    done = {(r["seed"], r["category"]) for r in read_records(args.results)
            if r["data"] == args.data and r["model"] == args.model and r["settings"] == settings(args)}
    return [(seed, category) for seed in range(args.seed, args.seed + args.runs) for category in categories
            if (seed, category) not in done]


def _stats(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(values.mean()), 1),
            "std": round(float(values.std(ddof=1)), 1) if len(values) > 1 else 0.0}


def summarize(records: list[dict], data: str, model: str) -> list[dict]:
    """Mean and standard deviation over the seeds of every configuration of ``data`` and ``model``.

    For Caltech a seed's score is its mean over the categories; the summary says how many
    categories each seed has and uses only the seeds with the most.
    """
    groups: dict[str, list[dict]] = {}
    for r in records:
        if r["data"] == data and r["model"] == model:
            groups.setdefault(json.dumps(r["settings"], sort_keys=True), []).append(r)
    summaries = []
    for key, group in groups.items():
        by_seed: dict[int, dict] = {}
        for r in group:
            by_seed.setdefault(r["seed"], {})[r["category"]] = r
        most = max(len(v) for v in by_seed.values())
        seeds = sorted(s for s, v in by_seed.items() if len(v) == most)
        per_seed = {s: {k: float(np.mean([r[k] for r in by_seed[s].values()])) for k in SCORES + ("test_ll",)}
                    for s in seeds}
        baseline = {half: float(np.mean([r["baseline_mean_image_mse"][half] for r in by_seed[seeds[0]].values()]))
                    for half, _ in HALVES}
        summary = {"data": data, "model": model, "settings": json.loads(key), "runs": len(seeds), "seeds": seeds,
                   "categories": most if data == "caltech" else None,
                   **{k: {**_stats([per_seed[s][k] for s in seeds]),
                          "runs": [round(per_seed[s][k], 1) for s in seeds]} for k in SCORES + ("test_ll",)},
                   "baseline_mean_image_mse": {k: round(v, 1) for k, v in baseline.items()},
                   "wall_s_per_run": _stats([sum(r["wall_s"] for r in by_seed[s].values()) for s in seeds])}
        summaries.append(summary)
    return summaries


# ---- pictures -----------------------------------------------------------------------------


def caltech_grid(args, seed: int, categories: list[str], path: str, count: int = GRID_IMAGES) -> str | None:
    """One grid with the first test image of ``count`` categories spread over the list."""
    chosen = [categories[i] for i in np.linspace(0, len(categories) - 1, min(count, len(categories))).astype(int)]
    files = [os.path.join(args.out, f"{tag(args, seed, c)}_completions.npz") for c in chosen]
    if not all(os.path.exists(f) for f in files):
        return None
    loaded = [np.load(f) for f in files]
    original = np.stack([f["original"][0] for f in loaded])
    for name, make in HALVES:
        completed = np.stack([f[name][0] for f in loaded])
        save_completion_grid(path.format(half=name), original, make(64, 64), {"posterior-mean": completed},
                             shape=(64, 64), title=", ".join(chosen))
    return path


# ---- main ---------------------------------------------------------------------------------


def _run_one(args, seed, category):
    return run(args, seed, category)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    categories: list[str | None] = [None]
    if args.data == "caltech":
        every = caltech_categories()
        unknown = sorted(set(args.categories or ()) - set(every))
        if unknown:
            raise SystemExit(f"completion: unknown Caltech categories {unknown}; categories are case-sensitive, "
                             f"for example {every[:6]}")
        categories = list(dict.fromkeys(args.categories)) if args.categories else every
    if not args.summarize:
        todo = pending(args, categories)
        print(json.dumps({"models_to_train": len(todo), "already_done": args.runs * len(categories) - len(todo)}),
              flush=True)
        if args.jobs == 1 or len(todo) <= 1:
            for seed, category in todo:
                print(json.dumps(run(args, seed, category)), flush=True)
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
                futures = [pool.submit(_run_one, args, seed, category) for seed, category in todo]
                for future in futures:
                    print(json.dumps(future.result()), flush=True)
        if args.data == "caltech":
            for seed in range(args.seed, args.seed + args.runs):
                caltech_grid(args, seed, categories, os.path.join(args.out, f"{tag(args, seed, None)}_{{half}}.png"))
    summaries = summarize(read_records(args.results), args.data, args.model)
    if not summaries:
        raise SystemExit(f"completion: no {args.data} / {args.model} records in {args.results}")
    for summary in summaries:
        print(json.dumps({"summary": summary}), flush=True)
    with open(os.path.join(args.out, f"{args.data}_{args.model}_summary.json"), "w") as f:
        json.dump(summaries, f, indent=2)
    return summaries


if __name__ == "__main__":
    main()
