"""pcircuits on the reference workloads of PyJuice's anchor benchmark, for a side-by-side run.

The four structures over 28x28 inputs with 256-category leaves at batch 512: PD (delta 7) with
K = 32 and K = 128, RAT-SPN (784 variables, depth 5, 16 repetitions, K = 32) and HCLT (K = 128),
each timed as a forward pass, a forward + backward (flows) pass and one mini-batch EM step
(online EM with step size 0.1, as the anchor's ``mini_batch_em(step_size=0.1)``). Prints one JSON
line per structure (median of ``--reps``, after warm-up; the device is synchronized around every
timed call) and appends it to ``--out``.

    python benchmarks/gpu_anchor.py [--backend cupy] [--which pd32 pd128 rat hclt] [--out FILE]

``--backend numpy`` or ``strict`` with ``--batch 8 --size 8`` runs the same script on the CPU (the
tests do, so it cannot rot); the figures that matter come from ``--backend cupy`` on a GPU.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import pcircuits as pc
from pcircuits.learning import fit
from pcircuits.learning.learner import make_learner


def median_ms(fn, reps: int, sync) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def build(which: str, size: int, x_host: np.ndarray) -> pc.Circuit:
    leaf = dict(leaf="categorical", leaf_params={"num_categories": 256})
    if which in ("pd32", "pd128"):
        k = 32 if which == "pd32" else 128
        return pc.builders.poon_domingos(size, size, delta=max(1, size // 4), num_sums=k, num_leaves=k, **leaf)
    if which == "rat":
        return pc.builders.rat_spn(size * size, depth=min(5, int(np.log2(size * size)) - 1), num_repetitions=16,
                                   num_sums=32, num_leaves=32, **leaf)
    if which == "hclt":
        return pc.builders.hclt(x_host[:2048], num_latents=128, num_categories=256)
    raise ValueError(f"unknown workload {which!r}")


def bench(which: str, args) -> dict:
    rng = np.random.default_rng(0)
    x_host = rng.integers(0, 256, size=(4 * args.batch, args.size * args.size)).astype(np.float64)
    start = time.perf_counter()
    circuit = build(which, args.size, x_host)
    program = circuit.compile(backend=args.backend, dtype="float32")
    compile_s = time.perf_counter() - start
    be = program.backend
    xb = program.prepare(x_host[:args.batch])
    options = dict(fit.__kwdefaults__, method="em", mode="online", step_size=0.1, objective="nll", seed=0)
    learner = make_learner("em", program, options)
    memory = be.xp.get_default_memory_pool() if args.backend == "cupy" else None

    def forward():
        program._forward(xb)

    def forward_backward():
        program._forward(xb)
        program.backward(inputs=False)

    def em_step():
        learner.step(xb)

    record = {"lib": "pcircuits", "structure": which, "backend": args.backend, "batch": args.batch,
              "nodes": len(circuit.nodes), "units": program.num_units, "edges": program.num_edges,
              "sum_params": program.num_weights, "compile_s": round(compile_s, 2)}
    record["fwd_ms"] = round(median_ms(forward, args.reps, be.synchronize), 3)
    record["fwd_bwd_ms"] = round(median_ms(forward_backward, args.reps, be.synchronize), 3)
    record["em_step_ms"] = round(median_ms(em_step, args.reps, be.synchronize), 3)
    if memory is not None:
        record["pool_mb"] = round(memory.total_bytes() / 2**20, 1)
    record["mean_ll"] = float(pc.to_numpy(program._forward(xb)).mean())
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cupy", choices=("numpy", "cupy", "strict"))
    parser.add_argument("--which", nargs="+", default=["pd32", "pd128", "rat", "hclt"],
                        choices=("pd32", "pd128", "rat", "hclt"))
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--size", type=int, default=28, help="image side (28 for the anchor's workloads)")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = parser.parse_args(argv)
    for which in args.which:
        try:
            record = bench(which, args)
        except Exception as error:          # one failing workload must not hide the others
            record = {"lib": "pcircuits", "structure": which, "error": repr(error)[:400]}
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
