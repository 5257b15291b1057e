"""DCGMM experiments on MNIST / Fashion-MNIST (Gepperth, sections V-B, V-D, V-H, V-I).

Pixels are scaled to [0, 1]. Every run writes ``<out>/<task>_<data>_<instance>.json`` (settings,
figures, wall times) and prints it.

* ``outliers``: train on the inlier classes 1-9 of the training set, score the test set by each
  cGMM layer's exact and max-component log-likelihood (mean over positions), report the AUC of
  inliers (1-9) against outliers (class 0) for every layer (the paper's Table II reports the
  top layer of DCGMM-E: MNIST 92.8, Fashion-MNIST 74.9).
* ``classify``: DCGMM with a classifier on its two highest cGMM layers (Table IV, DCGMM-B:
  98.0 / 89.6), test accuracy.
* ``samples``: train, then save sample grids without and with sharpening (Fig. 5), an
  in-painting grid (right half erased, Fig. 8) and the centroids of the lowest cGMM layer
  (Fig. 14).
* ``timing``: one cGMM layer's forward pass against the bare matrix products of the same
  shapes (for the layer with 9 inputs also each step of the pass alone, the compiled softmax
  step and the array steps it replaces), and the time of one training epoch.

    OPENBLAS_NUM_THREADS=1 python benchmarks/dcgmm.py outliers --data mnist --instance E --epochs 3
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits import jit
from pcircuits.dcgmm import CGMM, Folding, _kernels
from pcircuits.imagegrid import save_completion_grid, save_image_grid


def load(name: str, train_size: int | None, test_size: int | None):
    data = pc.datasets.load_mnist() if name == "mnist" else pc.datasets.load_fashion_mnist()
    x_train = data.x_train[:train_size].astype(np.float32)[..., None] / 255.0
    x_test = data.x_test[:test_size].astype(np.float32)[..., None] / 255.0
    return x_train, data.y_train[:train_size], x_test, data.y_test[:test_size]


def auc(inlier_scores: np.ndarray, outlier_scores: np.ndarray) -> float:
    """Probability that an inlier scores higher than an outlier (ties count half)."""
    from scipy.stats import rankdata
    ranks = rankdata(np.concatenate([inlier_scores, outlier_scores]))
    n_in, n_out = len(inlier_scores), len(outlier_scores)
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def train(stack, x, labels, args, callback=None) -> tuple[dict, float]:
    """Fit; returns the history (with ``cpu_seconds`` of this process, the figure that other
    programs on a shared machine do not inflate) and the wall time."""
    for layer in stack.cgmm_layers:
        layer.rates = dict(layer.rates, logits=args.weight_rate)
    started, cpu = time.perf_counter(), time.process_time()
    history = stack.fit(x, labels, epochs=args.epochs, batch_size=args.batch_size, progress=args.progress,
                        seed=args.seed, checkpoint=args.checkpoint, callback=callback)
    history = dict(history, cpu_seconds=time.process_time() - cpu)
    return history, time.perf_counter() - started


def run_outliers(args) -> dict:
    x_train, y_train, x_test, y_test = load(args.data, args.train_size, args.test_size)
    inliers = y_train != 0
    stack = pc.builders.dcgmm(args.instance, seed=args.seed)
    trace = []

    def score_epoch(epoch, history):
        ll = stack.layer_log_likelihoods(x_test)[stack.layers[stack.top_cgmm].name]
        trace.append(100 * auc(ll[y_test != 0], ll[y_test == 0]))
        print(json.dumps({"epoch": epoch, "top_layer_auc_exact": trace[-1]}), flush=True)

    history, seconds = train(stack, x_train[inliers], None, args, score_epoch if args.trace else None)
    scored = time.perf_counter()
    results = {}
    for kind in ("exact", "max-component"):
        lls = stack.layer_log_likelihoods(x_test, kind=kind)
        results[kind] = {name: 100 * auc(ll[y_test != 0], ll[y_test == 0]) for name, ll in lls.items()}
    top = stack.layers[stack.top_cgmm].name
    return {"history": history, "train_seconds": seconds, "score_seconds": time.perf_counter() - scored,
            "train_images": int(inliers.sum()), "test_images": len(x_test), "auc_percent": results,
            "weight_rate": args.weight_rate, "top_layer_auc_per_epoch": trace or None,
            "top_layer": top, "top_layer_auc_exact": results["exact"][top],
            "paper_top_layer_auc": {"mnist": 92.8, "fashion-mnist": 74.9}[args.data] if args.instance == "E" else None}


def build_circuit(structure: str, args, x_train: np.ndarray):
    """A circuit over the 784 pixels and the data it models.

    PD and RAT-SPN: binomial leaves over the grey levels 0..255 (as the paper's SPN baselines);
    DGC-SPN (generative, 5.1): 4 Gaussian leaves per pixel at the pixel's quantile means, unit
    variance kept fixed, on images standardized with the training set's mean and deviation.
    Returns the circuit and a function that maps images in [0, 1] to its inputs.
    """
    leaf = dict(leaf="binomial", leaf_params={"n": 255})
    if structure == "pd":
        circuit = pc.builders.poon_domingos(28, 28, delta=7, dense=True, num_sums=args.num_sums,
                                            num_leaves=args.num_leaves, seed=args.seed, **leaf)
        return circuit, lambda x: np.rint(x.reshape(len(x), -1) * 255)
    if structure == "rat":
        circuit = pc.builders.rat_spn(784, depth=args.depth, num_repetitions=args.repetitions, num_sums=args.num_sums,
                                      num_leaves=args.num_leaves, seed=args.seed, **leaf)
        return circuit, lambda x: np.rint(x.reshape(len(x), -1) * 255)
    mean, std = float(x_train.mean()), float(x_train.std())

    def standardize(x):
        return (x.reshape(len(x), -1).astype(np.float64) - mean) / std

    means = pc.learning.quantile_means(standardize(x_train), 4).reshape(28, 28, 4)
    circuit = pc.builders.dgcspn(28, 28, num_sums=args.dgcspn_sums, leaf_means=means,
                                 leaf_stds=np.ones_like(means), seed=args.seed)
    return circuit, standardize


def run_circuits(args) -> dict:
    """The outlier protocol for pcircuits' own circuits: train on the inliers by mini-batch EM,
    score the test images by the circuit's log-likelihood."""
    x_train, y_train, x_test, y_test = load(args.data, args.train_size, args.test_size)
    inliers = x_train[y_train != 0]
    if args.circuit_train_size:
        inliers = inliers[:args.circuit_train_size]
    records = {}
    for structure in args.structures:
        started = time.perf_counter()
        circuit, encode = build_circuit(structure, args, inliers)
        program = circuit.compile()
        built = time.perf_counter()
        frozen = structure == "dgcspn"
        history = pc.learning.fit(program, encode(inliers), method="em", mode="online", step_size=args.step_size,
                                  epochs=args.epochs, batch_size=args.em_batch_size, progress=args.progress,
                                  seed=args.seed, freeze_leaves=frozen, learn_leaves=not frozen)
        trained = time.perf_counter()
        ll = np.asarray(pc.to_numpy(program.log_likelihood(encode(x_test), batch_size=500))).reshape(len(x_test), -1)[:, 0]
        records[structure] = {
            "auc_percent": 100 * auc(ll[y_test != 0], ll[y_test == 0]),
            "paper_auc": {"pd": {"mnist": 91.2, "fashion-mnist": 48.5}, "rat": {"mnist": 91.8, "fashion-mnist": 39.2},
                          "dgcspn": {"mnist": 90.6, "fashion-mnist": 57.1}}[structure][args.data],
            "train_images": len(inliers), "test_images": len(x_test), "params": circuit.num_params, "nodes": circuit.num_nodes,
            "build_seconds": built - started, "train_seconds": trained - built,
            "score_seconds": time.perf_counter() - trained, "train_ll_per_epoch": list(history["train_ll"]),
            "test_ll_inliers": float(ll[y_test != 0].mean()), "test_ll_outliers": float(ll[y_test == 0].mean())}
        print(json.dumps({"structure": structure, **{k: v for k, v in records[structure].items()
                                                     if k != "train_ll_per_epoch"}}), flush=True)
    return {"circuits": records, "settings": {
        "pd": f"delta 7 grid, dense, K={args.num_sums}, {args.num_leaves} binomial leaves per cell",
        "rat": f"depth {args.depth}, R={args.repetitions}, S={args.num_sums}, I={args.num_leaves}, binomial leaves",
        "dgcspn": f"generative, {args.dgcspn_sums} sums, 4 fixed unit-variance Gaussian leaves per pixel",
        "em": f"online EM, step {args.step_size}, batch {args.em_batch_size}"}}


def run_classify(args) -> dict:
    x_train, y_train, x_test, y_test = load(args.data, args.train_size, args.test_size)
    stack = pc.builders.dcgmm(args.instance, num_classes=10, seed=args.seed)
    history, seconds = train(stack, x_train, y_train, args)
    accuracy = float((stack.predict(x_test) == y_test).mean())
    return {"history": history, "train_seconds": seconds, "train_images": len(x_train), "test_images": len(x_test),
            "test_accuracy_percent": 100 * accuracy,
            "paper_accuracy": {"mnist": 98.0, "fashion-mnist": 89.6}[args.data] if args.instance == "B" else None}


def run_samples(args) -> dict:
    x_train, _, x_test, _ = load(args.data, args.train_size, args.test_size)
    stack = pc.builders.dcgmm(args.instance, seed=args.seed)
    history, seconds = train(stack, x_train, None, args)
    out = Path(args.out)
    stem = f"{args.data}_{args.instance}"
    written, timings = [], {}
    options = {"top_s": args.top_s, "divisor": args.divisor}
    for sharpen in (False, True):
        started = time.perf_counter()
        samples = stack.sample(args.num_samples, seed=args.seed, sharpen=sharpen, sharpen_step=args.sharpen_step,
                               sharpen_iterations=args.sharpen_iterations, **options)
        timings[f"sample_sharpen_{sharpen}"] = time.perf_counter() - started
        path = out / f"{stem}_samples{'_sharpened' if sharpen else ''}.png"
        title = f"DCGMM-{args.instance} {args.data} samples" + (
            f", sharpened (I={args.sharpen_iterations}, eps={args.sharpen_step})" if sharpen else "")
        written.append(save_image_grid(path, np.clip(samples, 0, 1)[..., 0], ncols=10, value_range=(0, 1),
                                       title=title))
    occluded = x_test[:10].copy()
    occluded[:, :, 14:] = np.nan
    completions = {"in-painted": stack.inpaint(occluded, seed=args.seed, **options)[..., 0],
                   "sharpened": stack.inpaint(occluded, seed=args.seed, sharpen=True,
                                              sharpen_step=args.sharpen_step,
                                              sharpen_iterations=args.sharpen_iterations, **options)[..., 0]}
    written.append(save_completion_grid(out / f"{stem}_inpainting.png", x_test[:10, ..., 0], np.isnan(occluded[..., 0]),
                                        {k: np.clip(v, 0, 1) for k, v in completions.items()}, value_range=(0, 1)))
    lowest = stack.cgmm_layers[0]
    fold = stack.layers[stack.layers.index(lowest) - 1]
    if isinstance(fold, Folding):
        f = fold.kernel_size
        centroids = pc.to_numpy(lowest.means[0]).reshape(-1, f, f, fold.input_shape[2])[..., 0]
        written.append(save_image_grid(out / f"{stem}_centroids.png", centroids,
                                       ncols=int(np.ceil(np.sqrt(len(centroids)))),
                                       title=f"DCGMM-{args.instance} lowest cGMM layer centroids"))
    written.append(stack.render(out / f"{stem}_layers.png"))
    return {"history": history, "train_seconds": seconds, "train_images": len(x_train), "files": written,
            "sampling_seconds": timings, "top_s": args.top_s, "divisor": args.divisor,
            "sharpen_iterations": args.sharpen_iterations, "sharpen_step": args.sharpen_step}


def forward_steps(layer: CGMM, rows: np.ndarray, reps: int) -> dict:
    """CPU minima (ms, one BLAS thread) of the steps of the small-input forward pass over all rows
    at once, each timed alone: the tables, the shifted log-scores (squares and three products
    accumulated in the output), then either the compiled softmax step (``exp``, row sums and
    scaling in one kernel; where Numba is installed) or its array steps: ``exp``, the row sums
    (matrix-vector product), the division by them."""
    k = layer.num_components
    tables = layer._score_tables(rows.dtype, bounded=True)
    squares, ones = np.empty_like(rows), np.ones((rows.shape[0], 1), rows.dtype)
    unit, sums = np.ones(k, rows.dtype), np.empty(rows.shape[0], rows.dtype)
    out = np.empty((rows.shape[0], k), rows.dtype)
    scores = layer._scores_into(rows, tables, np.empty_like(out), squares, ones)
    exps = np.exp(scores)
    row_sums = exps.sum(-1, keepdims=True)
    steps = {"tables": lambda: layer._score_tables(rows.dtype, bounded=True),
             "shifted_scores": lambda: layer._scores_into(rows, tables, out, squares, ones),
             "exp": lambda: np.exp(scores, out=out),
             "row_sums": lambda: np.matmul(exps, unit, out=sums),
             "scale": lambda: np.divide(exps, row_sums, out=out)}
    if layer._compiled(rows.dtype):
        steps["compiled_softmax"] = lambda: _kernels.bounded_softmax(scores, 0.0, out, sums, layer.min_bounded_sum)
    minima = {}
    for label, fn in steps.items():
        fn()
        times = []
        for _ in range(reps):
            started = time.thread_time()
            fn()
            times.append(time.thread_time() - started)
        minima[label] = 1e3 * min(times)
    return minima


def run_timing(args) -> dict:
    """cGMM forward (log-scores and responsibilities) against the two bare products of the same shapes,
    timed alternately in the same run; minima are the figures least disturbed by other programs, and
    the thread's CPU time (one BLAS thread) is not inflated by the time other programs hold the core."""
    be = pc.backend.get_backend(args.backend, "float32")
    rng = np.random.default_rng(args.seed)
    cases = {"E L4: 12x12 positions, d=400, K=25": (12, 12, 400, 25),
             "E L6: 1 position, d=3600, K=49": (1, 1, 3600, 49),
             "E L2: 26x26 positions, d=9, K=25": (26, 26, 9, 25)}
    records = {}
    for name, (h, w, d, k) in cases.items():
        layer = CGMM(k)
        layer.build((h, w, d), be, rng)
        x = be.asarray(rng.random((args.batch_size, h, w, d)))
        rows = x.reshape(-1, d)
        a, b = be.asarray(rng.random((d, k))), be.asarray(rng.random((d, k)))

        def bare():
            return rows @ a, rows @ b

        def forward():
            return layer.forward(x)

        samples = {"bare_matmuls": [], "cgmm_forward": []}
        cpu = {"bare_matmuls": [], "cgmm_forward": []}
        bare()
        forward()
        for _ in range(args.reps):
            for label, fn in (("bare_matmuls", bare), ("cgmm_forward", forward)):
                started, started_cpu = time.perf_counter(), time.thread_time()
                fn()
                be.synchronize()
                samples[label].append(time.perf_counter() - started)
                cpu[label].append(time.thread_time() - started_cpu)
        record = {}
        for label, values in samples.items():
            record[f"{label}_median_ms"] = 1e3 * float(np.median(values))
            record[f"{label}_min_ms"] = 1e3 * float(np.min(values))
            record[f"{label}_cpu_min_ms"] = 1e3 * float(np.min(cpu[label]))
        record["ratio_of_medians"] = record["cgmm_forward_median_ms"] / record["bare_matmuls_median_ms"]
        record["ratio_of_minima"] = record["cgmm_forward_min_ms"] / record["bare_matmuls_min_ms"]
        record["ratio_of_cpu_minima"] = record["cgmm_forward_cpu_min_ms"] / record["bare_matmuls_cpu_min_ms"]
        if be.on_host and d <= layer.bounded_dim:
            record["steps_cpu_min_ms"] = forward_steps(layer, rows, args.reps)
        records[name] = record
    result = {"batch_size": args.batch_size, "reps": args.reps, "compiled_kernels": jit.available(), "forward": records}
    if args.epoch_images:
        x_train, _, _, _ = load(args.data, args.epoch_images, 1)
        stack = pc.builders.dcgmm(args.instance, seed=args.seed)
        started, cpu = time.perf_counter(), time.process_time()
        stack.fit(x_train, epochs=1, batch_size=100, progress=args.progress, seed=args.seed)
        result["epoch"] = {"instance": args.instance, "images": len(x_train),
                           "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["outliers", "circuits", "classify", "samples", "timing"])
    parser.add_argument("--data", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--instance", default=None, help="Table V instance (default: E for outliers, B for "
                                                         "classify, C for samples)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=50)
    parser.add_argument("--top-s", type=int, default=None, help="sample among the S largest control values")
    parser.add_argument("--divisor", type=float, default=1.0, help="divide the sampling standard deviations")
    parser.add_argument("--sharpen-iterations", type=int, default=300)
    parser.add_argument("--sharpen-step", type=float, default=1.0)
    parser.add_argument("--weight-rate", type=float, default=0.0,
                        help="factor of the mixture weights' step (0, the default as in the paper's code, keeps "
                             "them uniform; 1 learns them at the means' step)")
    parser.add_argument("--trace", action="store_true",
                        help="outliers: also score the test set after every epoch (top layer's AUC per epoch)")
    parser.add_argument("--structures", nargs="+", choices=["pd", "rat", "dgcspn"], default=["pd", "rat", "dgcspn"],
                        help="circuits: the structures to train")
    parser.add_argument("--num-sums", type=int, default=5, help="circuits: PD / RAT-SPN sums per region")
    parser.add_argument("--num-leaves", type=int, default=5, help="circuits: PD / RAT-SPN leaves per region")
    parser.add_argument("--depth", type=int, default=5, help="circuits: RAT-SPN split depth")
    parser.add_argument("--repetitions", type=int, default=10, help="circuits: RAT-SPN repetitions")
    parser.add_argument("--dgcspn-sums", type=int, default=16, help="circuits: DGC-SPN channels per sum layer")
    parser.add_argument("--step-size", type=float, default=0.1, help="circuits: stepwise EM blend factor")
    parser.add_argument("--em-batch-size", type=int, default=100, help="circuits: EM mini-batch")
    parser.add_argument("--circuit-train-size", type=int, default=None,
                        help="circuits: train on only the first N inlier images")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--epoch-images", type=int, default=0, help="timing: also time one epoch on this many images")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--out", default="out/dcgmm")
    args = parser.parse_args(argv)
    args.instance = args.instance or {"outliers": "E", "circuits": "-".join(args.structures), "classify": "B",
                                      "samples": "C", "timing": "E"}[args.task]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"outliers": run_outliers, "circuits": run_circuits, "classify": run_classify, "samples": run_samples,
              "timing": run_timing}[args.task](args)
    record = {"task": args.task, "data": args.data, "instance": args.instance, "epochs": args.epochs,
              "batch_size": args.batch_size, "seed": args.seed, "wall_seconds": time.perf_counter() - started,
              **result}
    path = Path(args.out) / f"{args.task}_{args.data}_{args.instance}.json"
    path.write_text(json.dumps(record, indent=1))
    summary = {k: v for k, v in record.items() if k != "history"}
    print(json.dumps(summary))
    return record


if __name__ == "__main__":
    main()
