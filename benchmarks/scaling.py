"""Data-parallel EM on a Dask LocalCluster: epoch time against the number of workers, per-step
overhead, a projection of where communication overtakes compute, and training over a ``.npy``
file larger than the workers' memory.

``epochs``: full-batch EM epochs on MNIST (Gaussian leaves on standardized pixels, the dense
Poon-Domingos circuit of ``mnist_bpd.py``: resolution 7, 16 sums and 8 leaves per region) with 1, 2 and 4 worker processes of one BLAS thread each, against the
single process with one thread and with as many threads as the machine has cores. The data
goes to the workers as a ``.npy`` file read a batch at a time. Online EM on the cluster gives
the per-step overhead (parameters sent, statistics reduced, scheduler round trips).

``out-of-core``: one full-batch EM epoch and one evaluation over a synthetic ``.npy`` file
several times larger than each worker's memory limit; prints the workers' peak resident memory.

Prints JSON lines and writes ``<out>/scaling.json`` (or ``scaling_out_of_core.json``).

    python benchmarks/scaling.py epochs --train-size 20000 --workers 1 2 4
    python benchmarks/scaling.py out-of-core --gigabytes 1.2 --memory-limit 400MB
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.learning import TrainingRun, make_learner
from pcircuits.learning.distributed import _nbytes, _parameters, peak_worker_memory


def _local_cluster(workers: int, **options):
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                           **options)
    return cluster, Client(cluster)


def _mnist(train_size: int | None) -> np.ndarray:
    images = pc.datasets.load_mnist().x_train[:train_size].reshape(-1, 784).astype(np.float32)
    mean, std = images.mean(axis=1, keepdims=True), images.std(axis=1, keepdims=True)
    return (images - mean) / np.maximum(std, 1e-3)


def _program(args, x: np.ndarray):
    circuit = pc.builders.poon_domingos(28, 28, delta=args.delta, dense=True, num_sums=args.num_sums,
                                        num_leaves=args.num_leaves, leaf=pc.learning.quantile_gaussian_leaves(x[:5000], std=1.0), seed=0)
    return circuit.compile(dtype=args.dtype)


def _epoch_seconds(program, data, options: dict, epochs: int) -> tuple[float, TrainingRun]:
    """Mean seconds of ``epochs`` epochs after one warm-up epoch (workers compile in it)."""
    run = TrainingRun(program, data, options)
    learner = make_learner(options["method"], program, run.options)
    run.epoch(learner, 0)
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        run.epoch(learner, epoch)
    return (time.perf_counter() - started) / epochs, run


def _fit_options(**options) -> dict:
    return dict(pc.learning.fit.__kwdefaults__, progress=False, **options)


def _round_trip_seconds(client, repeats: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        client.submit(int, 0, pure=False).result()
    return (time.perf_counter() - started) / repeats


def epochs(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="scaling-") as folder:
        return _epochs(args, Path(folder))


def _epochs(args, folder: Path) -> dict:
    from threadpoolctl import threadpool_limits

    x = _mnist(args.train_size)
    np.save(folder / "mnist.npy", x)
    program = _program(args, x)
    parameters = _parameters(program)
    record = {"train_images": len(x), "delta": args.delta, "num_sums": args.num_sums, "num_leaves": args.num_leaves,
              "dtype": args.dtype, "units": program.circuit.num_units, "edges": program.circuit.num_edges,
              "parameter_bytes": _nbytes(parameters), "batch_size": args.batch_size, "cores": os.cpu_count(),
              "load_average_at_start": os.getloadavg()[0]}
    full = _fit_options(method="em", mode="full-batch", batch_size=args.batch_size)
    for threads in sorted({1, os.cpu_count()}):
        with threadpool_limits(threads):
            seconds, _ = _epoch_seconds(_program(args, x), x, full, args.epochs)
        record[f"single_process_{threads}_threads_epoch_s"] = round(seconds, 3)
        print(json.dumps({"single_process_threads": threads, "epoch_s": round(seconds, 3)}), flush=True)
    record["workers"] = {}
    for workers in args.workers:
        cluster, client = _local_cluster(workers)
        try:
            seconds, run = _epoch_seconds(_program(args, x), str(folder / "mnist.npy"),
                                          dict(full, client=client), args.epochs)
            cluster_run = run.cluster
            per_epoch = {"epoch_s": round(seconds, 3),
                         "speedup_over_1_thread": round(record["single_process_1_threads_epoch_s"] / seconds, 2),
                         "broadcasts": cluster_run.broadcasts, "bytes_broadcast": cluster_run.bytes_broadcast,
                         "bytes_reduced": cluster_run.bytes_reduced,
                         "round_trip_s": round(_round_trip_seconds(client), 5)}
            online = dict(full, mode="online", step_size=0.1, batch_size=args.online_batch_size, client=client)
            steps = -(-min(len(x), args.online_examples) // args.online_batch_size)
            subset = str(folder / "online.npy")
            np.save(subset, x[:args.online_examples])
            step_seconds, online_run = _epoch_seconds(_program(args, x), subset, online, 1)
            with threadpool_limits(1):
                single_seconds, _ = _epoch_seconds(_program(args, x), x[:args.online_examples],
                                                   dict(online, client=None), 1)
            per_epoch.update({
                "online_batch_size": args.online_batch_size, "online_step_s": round(step_seconds / steps, 4),
                "online_step_single_process_s": round(single_seconds / steps, 4),
                "online_bytes_broadcast_per_step": online_run.cluster.bytes_broadcast // max(
                    online_run.cluster.broadcasts, 1),
                "online_bytes_reduced_per_step": online_run.cluster.bytes_reduced // (2 * steps)})
        finally:
            client.close()
            cluster.close()
        record["workers"][workers] = per_epoch
        print(json.dumps({"workers": workers, **per_epoch}), flush=True)
    record["projection"] = projection(record, args)
    return record


def projection(record: dict, args) -> list[dict]:
    """Where communication overtakes compute as circuit and cluster grow (a model, not a measurement).

    Compute per epoch is ``c * N * E`` (examples times edges; ``c`` from the one-thread run) split
    over ``W`` workers; communication per full-batch EM epoch is one parameter broadcast and one
    tree reduction of statistics of the same size, ``2 * P * ceil(log2 W) / bandwidth`` plus a
    round trip per tree level; online EM and Adam pay it every step of ``B`` examples.
    """
    c = record["single_process_1_threads_epoch_s"] / (record["train_images"] * record["edges"])
    round_trip = max(v["round_trip_s"] for v in record["workers"].values())
    rows = []
    for scale in (1, 10, 100):
        edges, size = record["edges"] * scale, record["parameter_bytes"] * scale
        for examples in (60_000, 6_000_000):
            crossing = {}
            for schedule, per_round in (("full-batch", examples), ("online", args.online_batch_size)):
                crossing[schedule] = None
                for workers in (2 ** k for k in range(1, 13)):
                    levels = int(np.ceil(np.log2(workers)))
                    compute = c * per_round * edges / workers
                    communicate = levels * (2 * size / args.bandwidth + round_trip)
                    if communicate > compute:
                        crossing[schedule] = workers
                        break
            rows.append({"circuit_scale": scale, "edges": edges, "parameter_bytes": size, "examples": examples,
                         "workers_where_communication_exceeds_compute": crossing})
    return rows


def out_of_core(args) -> dict:
    from dask.utils import parse_bytes

    folder = Path(args.folder or tempfile.mkdtemp(prefix="out-of-core-"))
    path = folder / "big.npy"
    rows = int(args.gigabytes * 2 ** 30 / (8 * args.variables))
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, args.variables))
    rng = np.random.default_rng(0)
    for lo in range(0, rows, 100_000):
        data[lo:lo + 100_000] = rng.normal(size=(min(100_000, rows - lo), args.variables))
    data.flush()
    del data
    circuit = pc.builders.rat_spn(args.variables, depth=args.depth, num_repetitions=args.repetitions,
                                  num_sums=args.num_sums, num_leaves=args.num_leaves, seed=0)
    program = circuit.compile(dtype="float64")
    cluster, client = _local_cluster(args.workers, memory_limit=args.memory_limit)
    try:
        started = time.perf_counter()
        history = pc.learning.fit(program, str(path), method="em", epochs=1, batch_size=args.batch_size,
                                  progress=False, client=client)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        scores = pc.learning.evaluate(program, str(path), batch_size=args.batch_size, client=client)
        evaluate_s = time.perf_counter() - started
        peaks = peak_worker_memory(client)
    finally:
        client.close()
        cluster.close()
    limit = parse_bytes(args.memory_limit)
    record = {"file_bytes": path.stat().st_size, "rows": rows, "variables": args.variables,
              "circuit": {"depth": args.depth, "repetitions": args.repetitions, "num_sums": args.num_sums,
                          "num_leaves": args.num_leaves, "edges": circuit.num_edges},
              "workers": args.workers, "memory_limit_bytes": limit, "train_epoch_s": round(train_s, 1),
              "evaluate_s": round(evaluate_s, 1), "train_ll": history["train_ll"][-1], "ll": scores["ll"],
              "peak_worker_bytes": sorted(peaks.values()),
              "file_over_limit": round(path.stat().st_size / limit, 2),
              "peak_under_limit": max(peaks.values()) < limit}
    if args.folder is None:
        path.unlink()
        folder.rmdir()
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("epochs", help="epoch time against the number of workers, overhead, projection")
    timing.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    timing.add_argument("--train-size", type=int, default=None, help="the first N training images (default: all)")
    timing.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    timing.add_argument("--batch-size", type=int, default=1000, help="full-batch EM: examples per E-step block")
    timing.add_argument("--online-batch-size", type=int, default=500, help="online EM: examples per step")
    timing.add_argument("--online-examples", type=int, default=5000, help="online EM: examples in the timed epoch")
    timing.add_argument("--delta", type=int, default=7)
    timing.add_argument("--num-sums", type=int, default=16)
    timing.add_argument("--num-leaves", type=int, default=8)
    timing.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    timing.add_argument("--bandwidth", type=float, default=1.25e9, help="bytes/s between machines in the projection")
    memory = sub.add_parser("out-of-core", help="training and evaluation over a .npy file larger than the workers")
    memory.add_argument("--gigabytes", type=float, default=1.2)
    memory.add_argument("--variables", type=int, default=64)
    memory.add_argument("--workers", type=int, default=2)
    memory.add_argument("--depth", type=int, default=2, help="of the RAT-SPN circuit")
    memory.add_argument("--repetitions", type=int, default=2)
    memory.add_argument("--num-sums", type=int, default=2)
    memory.add_argument("--num-leaves", type=int, default=2)
    memory.add_argument("--memory-limit", default="400MB", help="per worker")
    memory.add_argument("--batch-size", type=int, default=1024)
    memory.add_argument("--folder", default=None, help="where the file is written (default: a temporary folder)")
    parser.add_argument("--out", default="out/scaling")
    args = parser.parse_args(argv)
    record = epochs(args) if args.command == "epochs" else out_of_core(args)
    record["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(record), flush=True)
    os.makedirs(args.out, exist_ok=True)
    name = "scaling.json" if args.command == "epochs" else "scaling_out_of_core.json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump(record, f, indent=2)
    return record


if __name__ == "__main__":
    main()
