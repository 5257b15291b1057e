"""MNIST test bits per dimension of a Poon-Domingos and a RAT-SPN circuit with 256-category leaves.

The standard 60k/10k split, raw 8-bit pixels as categories 0..255 (a discrete model, so
``bpd = -log2 p(x) / 784`` needs no dequantization correction), mini-batch (stepwise) EM.
Prints one JSON line per structure and writes ``<out>/mnist_bpd.json``.

    python benchmarks/mnist_bpd.py --structures pd rat --epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import pcircuits as pc
from pcircuits import tasks


def build(structure: str, args):
    leaf = dict(leaf="categorical", leaf_params={"num_categories": 256})
    if structure == "pd":
        return pc.builders.poon_domingos(28, 28, delta=7, dense=True, num_sums=args.num_sums,
                                         num_leaves=args.num_leaves, seed=args.seed, **leaf)
    return pc.builders.rat_spn(784, depth=args.depth, num_repetitions=args.repetitions, num_sums=args.num_sums,
                               num_leaves=args.num_leaves, seed=args.seed, **leaf)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", nargs="+", choices=["pd", "rat"], default=["pd", "rat"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--step-size", type=float, default=0.1, help="stepwise EM blend factor")
    parser.add_argument("--num-sums", type=int, default=16)
    parser.add_argument("--num-leaves", type=int, default=8)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/mnist")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    data = pc.datasets.load_mnist()
    x_train = data.x_train.reshape(len(data.x_train), -1).astype(np.float32)[:args.train_size]
    x_test = data.x_test.reshape(len(data.x_test), -1).astype(np.float32)
    records = []
    for structure in args.structures:
        t0 = time.perf_counter()
        circuit = build(structure, args)
        program = circuit.compile()
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        history = pc.learning.fit(program, x_train, method="em", mode="online", step_size=args.step_size,
                                  epochs=args.epochs, batch_size=args.batch_size, progress=not args.no_progress,
                                  seed=args.seed)
        train_s = time.perf_counter() - t0
        ll = tasks.test_log_likelihood(program, x_test, batch_size=1000)
        record = {"structure": structure, "epochs": args.epochs, "batch_size": args.batch_size,
                  "step_size": args.step_size, "num_sums": args.num_sums, "num_leaves": args.num_leaves,
                  "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": circuit.num_edges,
                  "params": circuit.num_params, "train_images": len(x_train), "build_compile_s": round(build_s, 1),
                  "train_s": round(train_s, 1), "test_ll": round(ll, 2),
                  "test_bpd": round(tasks.bits_per_dimension(ll, 784), 4),
                  "train_ll_per_epoch": [round(v, 2) for v in history["train_ll"]]}
        print(json.dumps(record), flush=True)
        records.append(record)
    with open(os.path.join(args.out, "mnist_bpd.json"), "w") as f:
        json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
