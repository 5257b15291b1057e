"""Speed of the Program on PD, RAT-SPN and DGC-SPN circuits over 28x28 inputs, against the matmul floor.

Prints one JSON line per circuit: its size (nodes, units, edges, params), compile seconds,
forward and forward+backward milliseconds (median of ``--reps``) and throughput in edge
evaluations per second at the given batch size. In the same run it times the bare dense matrix
products of the same shapes as the circuit's dense-block sum layers (one per layer forward, two
more backward) and prints forward+backward time divided by that floor. ``train_step_ms`` is
one Adam step (forward, backward, parameter update) at ``--train-batch``: NLL for PD and RAT;
for the discriminative DGC-SPN of DGC-SPN 5.2 (``dgcspn``) cross-entropy over its 10 class
roots with product and input dropout 0.2, the step that MNIST classification repeats.

    python benchmarks/program_cpu.py [--batch 512] [--reps 5] [--backend numpy] [--which pd rat dgcspn]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import pcircuits as pc
from pcircuits.program.layers import DenseSumLayer


def median_ms(fn, reps: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def matmul_floor_ms(program, batch: int, reps: int) -> tuple[float, float]:
    """Median time of the dense layers' matrix products alone: (forward, forward + backward)."""
    xp, dtype = program.backend.xp, program.backend.dtype
    rng = np.random.default_rng(0)
    shapes = [(getattr(l, "Nb", l.N), getattr(l, "Kb", l.K), l.I) for l in program.layers
              if isinstance(l, DenseSumLayer)]
    arrays = [(xp.asarray(rng.random((n, k, i)), dtype=dtype), xp.asarray(rng.random((n, i, batch)), dtype=dtype),
               xp.asarray(rng.random((n, k, batch)), dtype=dtype)) for n, k, i in shapes]

    def forward():
        for w, e, _ in arrays:
            xp.matmul(w, e)

    def forward_backward():
        for w, e, r in arrays:
            xp.matmul(w, e)
            xp.matmul(w.transpose(0, 2, 1), r)
            xp.matmul(r, e.transpose(0, 2, 1))

    sync = program.backend.synchronize
    return median_ms(forward, reps, sync), median_ms(forward_backward, reps, sync)


def build(which: str, args):
    if which == "pd":
        return pc.builders.poon_domingos(28, 28, delta=args.pd_delta, num_sums=args.pd_sums,
                                         num_leaves=args.pd_leaves, leaf="gaussian", dense=args.pd_dense, seed=0)
    if which == "rat":
        return pc.builders.rat_spn(784, depth=args.rat_depth, num_repetitions=args.rat_reps,
                                   num_sums=args.rat_sums, num_leaves=args.rat_leaves, leaf="gaussian", seed=0)
    if which == "dgcspn":
        return pc.builders.dgcspn(28, 28, mode="discriminative", num_classes=10, seed=0)
    raise ValueError(f"unknown circuit {which!r}")


def train_step_ms(program, which: str, args) -> float:
    """Median time of one Adam step on a fixed random batch of ``args.train_batch`` examples."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(args.train_batch, 784))
    if which == "dgcspn":
        labels = rng.integers(0, program.num_outputs, size=args.train_batch)
        learner = pc.learning.Adam(program, lr=1e-3, objective="cross-entropy", product_dropout=0.2,
                                   input_dropout=0.2)
    else:
        labels = None
        learner = pc.learning.Adam(program, lr=1e-3)
    device_rng = program.backend.rng(0)
    return median_ms(lambda: learner.step(x, labels, rng=device_rng), args.reps, program.backend.synchronize)


def run(which: str, args) -> dict:
    t0 = time.perf_counter()
    circuit = build(which, args)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    program = circuit.compile(backend=args.backend, dtype="float32")
    compile_s = time.perf_counter() - t0
    x = np.random.default_rng(0).normal(size=(args.batch, 784))
    xb = program.prepare(x)
    sync = program.backend.synchronize

    def forward():
        program._forward(xb, "sum", cache=False)

    def forward_backward():
        program._forward(xb, "sum", cache=True)
        program.backward(leaves=True)

    fwd = median_ms(forward, args.reps, sync)
    fwd_bwd = median_ms(forward_backward, args.reps, sync)
    floor_f, floor_fb = matmul_floor_ms(program, args.batch, args.reps)
    step = train_step_ms(program, which, args)
    edges = circuit.num_edges
    return {
        "circuit": which, "backend": args.backend, "batch": args.batch,
        "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": edges, "params": circuit.num_params,
        "build_s": round(build_s, 3), "compile_s": round(compile_s, 3),
        "forward_ms": round(fwd, 2), "forward_backward_ms": round(fwd_bwd, 2),
        "forward_edges_per_s": round(edges * args.batch / (fwd / 1e3)),
        "forward_backward_edges_per_s": round(edges * args.batch / (fwd_bwd / 1e3)),
        "matmul_floor_forward_ms": round(floor_f, 2), "matmul_floor_forward_backward_ms": round(floor_fb, 2),
        "forward_over_floor": round(fwd / floor_f, 2),
        "forward_backward_over_floor": round(fwd_bwd / floor_fb, 2),
        "train_batch": args.train_batch, "train_step_ms": round(step, 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--which", nargs="+", default=["pd", "rat", "dgcspn"], choices=["pd", "rat", "dgcspn"])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--pd-delta", type=int, default=7)
    parser.add_argument("--pd-sums", type=int, default=32)
    parser.add_argument("--pd-leaves", type=int, default=4)
    parser.add_argument("--pd-dense", action=argparse.BooleanOptionalAction, default=True,
                        help="regions on the delta grid only, grid cells as factorized leaves (as PyJuice's PD)")
    parser.add_argument("--rat-depth", type=int, default=5)
    parser.add_argument("--rat-reps", type=int, default=8)
    parser.add_argument("--rat-sums", type=int, default=16)
    parser.add_argument("--rat-leaves", type=int, default=8)
    args = parser.parse_args(argv)
    for which in args.which:
        print(json.dumps(run(which, args)), flush=True)


if __name__ == "__main__":
    main()
