"""Olivetti face completion (Poon & Domingos' protocol) with the PD, DGC-SPN and DCSPN builders.

P&D split (first 350 train, last 50 test), each image standardized with its own mean and
standard deviation, 4 Gaussian leaves per pixel at the means of the pixel's training-value
quantiles with unit variance (kept fixed for EM), left- and bottom-half completion of the test
images, MSE on the 0..255 scale over the occluded pixels (see ``pcircuits.tasks``).

Each run (seed) prints a JSON line and writes ``<out>/<structure>_seed<k>.json``, completion
grids and a learning curve; then the mean and standard deviation over all the per-seed records
of the structure in ``<out>`` (the DGC-SPN paper averages 5 runs) are printed and written to
``<out>/<structure>_summary.json``. Runs of one configuration can be spread over processes
(``--seed 0 --runs 3`` and ``--seed 3 --runs 2`` with the same ``--out``) and then summed up
with ``--summarize``.

    python benchmarks/olivetti.py --structure pd --method usi --epochs 3
    python benchmarks/olivetti.py --structure dgcspn --method usi --epochs 15 --batch-size 128 --runs 5
    python benchmarks/olivetti.py --structure dcspn --method adam --lr 0.005 --epochs 60
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import pcircuits as pc
from pcircuits import tasks
from pcircuits.imagegrid import save_completion_grid
from pcircuits.learning import quantile_means


def build(args, means: np.ndarray):
    stds = np.ones_like(means)
    if args.structure == "pd":
        circuit = pc.builders.poon_domingos(64, 64, delta=args.delta, num_sums=args.num_sums, num_leaves=4,
                                            dense=args.dense, seed=args.seed)
        pc.learning.set_gaussian_leaves(circuit, means, stds)
        return circuit
    shaped = dict(leaf_means=means.reshape(64, 64, 4), leaf_stds=stds.reshape(64, 64, 4), seed=args.seed)
    if args.structure == "dgcspn":
        return pc.builders.dgcspn(64, 64, num_sums=args.num_sums, **shaped)
    return pc.builders.dcspn(64, 64, num_sums=args.num_sums, **shaped)


def baselines(z_train, z_test, mean, std) -> dict:
    """MSE of filling the occluded half with the mean standardized training image."""
    out = {}
    for name, make in (("left", tasks.left_half), ("bottom", tasks.bottom_half)):
        mask = make(64, 64).ravel()
        guess = np.where(mask[None], z_train.mean(axis=0)[None], z_test)
        out[name] = round(tasks.completion_mse(z_test, guess, make(64, 64), mean=mean, std=std), 1)
    return out


def completion_mses(program, z_test, mean, std) -> dict:
    """Posterior-mean completion MSEs of the left and bottom halves (0..255 scale)."""
    out = {}
    for name, make in (("left", tasks.left_half), ("bottom", tasks.bottom_half)):
        mask = make(64, 64)
        completed = tasks.complete(program, z_test, mask, method="posterior-mean", batch_size=25)
        out[name] = tasks.completion_mse(z_test, completed, mask, mean=mean, std=std)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structure", choices=["pd", "dgcspn", "dcspn"], default="pd")
    parser.add_argument("--method", choices=["usi", "hard-em", "em", "adam"], default="usi")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.005, help="Adam learning rate (DCSPN: 0.005)")
    parser.add_argument("--num-sums", type=int, default=None, help="sum units per region / channels per sum layer")
    parser.add_argument("--delta", type=int, default=4, help="PD coarse resolution")
    parser.add_argument("--dense", action="store_true", help="PD: grid cells as factorized leaves")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument("--runs", type=int, default=1, help="independent runs, seeds seed .. seed + runs - 1")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: average the per-seed records of --structure found in --out")
    parser.add_argument("--out", default="out/olivetti")
    parser.add_argument("--ties", choices=["random", "first"], default="random",
                        help="hard EM / USI: break ties between winners at random (libspn-keras) or take the first")
    parser.add_argument("--counts", choices=["sum", "mean"], default="sum",
                        help="EM: a batch adds the sum of its examples' counts or their mean (libspn-keras "
                             "accumulates the gradient of a batch-mean loss, which makes the smoothing "
                             "1e-2/|w| weigh batch-size times more)")
    parser.add_argument("--init-weights", choices=["random", "uniform"], default=None,
                        help="start from the builder's random sum weights or from uniform ones (default: uniform "
                             "for dgcspn, whose libspn-keras accumulators start equal; random otherwise)")
    parser.add_argument("--trace", action="store_true",
                        help="also measure the posterior-mean completion MSEs after every epoch")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.num_sums is None:
        args.num_sums = {"pd": 4, "dgcspn": 16, "dcspn": 12}[args.structure]
    if args.init_weights is None:
        args.init_weights = "uniform" if args.structure == "dgcspn" else "random"
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def load_data():
    """Standardized P&D train and test images, and the test images' own means and stds."""
    data = pc.datasets.load_olivetti()
    x_train = data.x_train.reshape(len(data.x_train), -1).astype(np.float64)
    x_test = data.x_test.reshape(len(data.x_test), -1).astype(np.float64)
    z_train, _, _ = pc.datasets.standardize_images(x_train)
    z_test, mean_test, std_test = pc.datasets.standardize_images(x_test)
    return z_train, z_test, mean_test, std_test


def run(args, seed: int, z_train, z_test, mean_test, std_test) -> dict:
    """Build, train and evaluate one model; writes its pictures and returns its record."""
    args = argparse.Namespace(**{**vars(args), "seed": seed})
    t0 = time.perf_counter()
    circuit = build(args, quantile_means(z_train, 4))
    build_s = time.perf_counter() - t0
    report = circuit.check()
    if not report.ok:
        raise SystemExit(str(report))
    program = circuit.compile(check=False)
    if args.init_weights == "uniform":
        rows = pc.learning.WeightRows(program)
        program.set_weights(rows.normalize(program.backend.xp.ones(rows.num_weights, dtype=program.backend.dtype)))

    trace = []

    def trace_epoch(epoch, history):
        trace.append({"epoch": epoch, **{name: round(mse, 1) for name, mse in
                                         completion_mses(program, z_test, mean_test, std_test).items()}})
        print(json.dumps({"seed": seed, "trace": trace[-1]}), flush=True)

    t0 = time.perf_counter()
    history = pc.learning.fit(program, z_train, method=args.method, epochs=args.epochs, batch_size=args.batch_size,
                              lr=args.lr, freeze_leaves=True, learn_leaves=False, progress=not args.no_progress,
                              ties=args.ties, counts=args.counts, seed=seed,
                              callback=trace_epoch if args.trace else None)
    train_s = time.perf_counter() - t0

    results = {}
    prefix = os.path.join(args.out, f"{args.structure}_seed{seed}")
    for name, make in (("left", tasks.left_half), ("bottom", tasks.bottom_half)):
        mask = make(64, 64)
        completions = {}
        for method in ("posterior-mean", "mpe"):
            completions[method] = tasks.complete(program, z_test, mask, method=method, batch_size=25)
            results[f"{name}_{method}_mse"] = round(tasks.completion_mse(z_test, completions[method], mask,
                                                                         mean=mean_test, std=std_test), 1)
        save_completion_grid(f"{prefix}_{name}.png", z_test[:10], mask,
                             {k: v[:10] for k, v in completions.items()}, shape=(64, 64))
    history.plot(f"{prefix}_curve.png")
    record = {
        "structure": args.structure, "method": args.method, "ties": args.ties, "counts": args.counts,
        "init_weights": args.init_weights,
        "epochs": args.epochs, "batch_size": args.batch_size, "num_sums": args.num_sums,
        "delta": args.delta if args.structure == "pd" else None,
        "dense": args.dense if args.structure == "pd" else None, "seed": seed,
        "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
        "params": circuit.num_params, "build_s": round(build_s, 1), "train_s": round(train_s, 1),
        "test_ll": round(float(np.mean(pc.to_numpy(program.log_likelihood(z_test)))), 2),
        **results, "baseline_mean_image_mse": baselines(z_train, z_test, mean_test, std_test),
        "train_ll_per_epoch": [round(v, 2) for v in history["train_ll"] if v is not None],
    }
    if args.trace:
        record["mse_per_epoch"] = trace
    with open(f"{prefix}.json", "w") as f:
        json.dump(record, f, indent=2)
    return record


def summarize(structure: str, folder: str) -> dict:
    """Mean and standard deviation over the per-seed records of ``structure`` in ``folder``."""
    records = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(f"{structure}_seed") and name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                records.append(json.load(f))
    if not records:
        raise SystemExit(f"summarize: no {structure}_seed*.json records in {folder}")
    settings = {k: records[0].get(k) for k in ("method", "ties", "counts", "init_weights", "epochs", "batch_size",
                                               "num_sums")}
    if any({k: r.get(k) for k in settings} != settings for r in records):
        raise SystemExit(f"summarize: the records in {folder} were made with different settings; "
                         f"use one folder per configuration")
    summary = {"structure": structure, **settings, "runs": len(records), "seeds": [r["seed"] for r in records]}
    for key in ("left_posterior-mean_mse", "bottom_posterior-mean_mse", "left_mpe_mse", "bottom_mpe_mse", "test_ll"):
        values = np.array([r[key] for r in records], dtype=np.float64)
        summary[key] = {"mean": round(float(values.mean()), 1), "std": round(float(values.std(ddof=1)), 1)
                        if len(values) > 1 else 0.0, "runs": values.tolist()}
    return summary


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if not args.summarize:
        data = load_data()
        for seed in range(args.seed, args.seed + args.runs):
            print(json.dumps(run(args, seed, *data)), flush=True)
    summary = summarize(args.structure, args.out)
    print(json.dumps({"summary": summary}), flush=True)
    with open(os.path.join(args.out, f"{args.structure}_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
