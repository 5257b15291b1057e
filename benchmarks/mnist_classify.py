"""MNIST / Fashion-MNIST classification with the discriminative DGC-SPN (DGC-SPN section 5.2).

Per-image standardization, 32 Gaussian leaves per pixel with equidistant means in [-1.5, 1.5]
(trained) and unit variance (kept fixed, as the authors' library does: its leaf layer creates the
scales with ``trainable=False``; ``--freeze-leaves`` without names trains them too), two
non-overlapping GCLPs then overlapping dilated ones, sum layers of 64, 64, 64 then 128 channels,
one root per class; Adam (the paper: Keras defaults, lr 1e-4), cross-entropy, product dropout
0.2 and input dropout 0.2, batch 64. The paper trains 400 epochs on a GPU; ``--epochs`` and
``--train-size`` shorten the schedule for a CPU. The test set is scored after every epoch (no
model selection on it: the reported accuracy is the last epoch's); ``<out>/<data>_epochs.jsonl``
gains a line per epoch and ``<out>/<data>_curve.png`` is the learning curve. NumPy's
element-wise work is single-threaded, so two runs side by side (each with
``OPENBLAS_NUM_THREADS=1``) use a 2-core machine about twice as well as one.

    python benchmarks/mnist_classify.py --data mnist --epochs 1 --train-size 10000
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import pcircuits as pc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-decay", type=float, default=1.0, help="epoch e uses lr * lr_decay ** e")
    parser.add_argument("--product-dropout", type=float, default=0.2)
    parser.add_argument("--input-dropout", type=float, default=0.2)
    parser.add_argument("--input-dropout-unit", choices=["variable", "component"], default="variable",
                        help="drop whole pixels (the paper) or single leaf units (libspn-keras)")
    parser.add_argument("--spare-top-products", action="store_true",
                        help="no product dropout on the products under the class roots (libspn-keras' example "
                             "in effect; the paper drops 'throughout the entire network')")
    parser.add_argument("--root-log-weight-std", type=float, default=None,
                        help="spread of the class roots' initial log-weights (default: the builder's, 3)")
    parser.add_argument("--sum-log-weight-std", type=float, default=None,
                        help="draw the spatial sums' log-weights from N(0, std^2) (default: uniform weights in [0.01, 1])")
    parser.add_argument("--first-combinations", default=None,
                        help="units of the first GCLP: 'depthwise' (default), 'one-hot' or a number of random "
                             "one-hot combinations")
    parser.add_argument("--shared-sums", action="store_true",
                        help="tie each spatial sum layer's weights across positions (default: one matrix per cell)")
    parser.add_argument("--freeze-leaves", nargs="*", default=["gaussian.std"], metavar="NAME",
                        help="leaf parameters kept at their initial values (default: gaussian.std, as the paper's "
                             "library does; give the flag without names to train every leaf parameter)")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/classify")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    data = pc.datasets.load_mnist() if args.data == "mnist" else pc.datasets.load_fashion_mnist()
    x_train, _, _ = pc.datasets.standardize_images(data.x_train.reshape(len(data.x_train), -1)[:args.train_size])
    x_test, _, _ = pc.datasets.standardize_images(data.x_test.reshape(len(data.x_test), -1)[:args.test_size])
    y_train = data.y_train[:args.train_size].astype(np.int64)
    y_test = data.y_test[:args.test_size].astype(np.int64)

    t0 = time.perf_counter()
    circuit = pc.builders.dgcspn(28, 28, mode="discriminative", num_classes=10, seed=args.seed,
                                 root_log_weight_std=args.root_log_weight_std,
                                 sum_log_weight_std=args.sum_log_weight_std,
                                 first_combinations=_combinations(args.first_combinations),
                                 shared_weights=args.shared_sums)
    program = circuit.compile(backend=args.backend)
    build_s = time.perf_counter() - t0
    progress_log = os.path.join(args.out, f"{args.data}_epochs.jsonl")

    def log_epoch(epoch, history):
        with open(progress_log, "a") as f:
            f.write(json.dumps({k: history[k][-1] for k in history}) + "\n")

    t0 = time.perf_counter()
    history = pc.learning.fit(program, x_train, labels=y_train, valid=x_test, valid_labels=y_test, method="adam",
                              lr=args.lr, lr_decay=args.lr_decay, epochs=args.epochs, batch_size=args.batch_size,
                              product_dropout=args.product_dropout, input_dropout=args.input_dropout,
                              input_dropout_unit=args.input_dropout_unit,
                              product_dropout_at_roots=not args.spare_top_products,
                              freeze_leaves=set(args.freeze_leaves),
                              progress=not args.no_progress, seed=args.seed, checkpoint=args.checkpoint,
                              callback=log_epoch)
    train_s = time.perf_counter() - t0
    history.plot(os.path.join(args.out, f"{args.data}_curve.png"),
                 title=f"discriminative DGC-SPN on {args.data}: Adam lr {args.lr} x {args.lr_decay}^epoch")
    record = {"data": args.data, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "lr_decay": args.lr_decay, "product_dropout": args.product_dropout,
              "input_dropout": args.input_dropout, "input_dropout_unit": args.input_dropout_unit,
              "spare_top_products": args.spare_top_products,
              "root_log_weight_std": args.root_log_weight_std, "sum_log_weight_std": args.sum_log_weight_std,
              "freeze_leaves": sorted(args.freeze_leaves), "first_combinations": args.first_combinations,
              "shared_sums": args.shared_sums,
              "train_images": len(x_train), "test_images": len(x_test), "nodes": circuit.num_nodes,
              "units": circuit.num_units, "edges": circuit.num_edges, "params": circuit.num_params,
              "build_compile_s": round(build_s, 1), "train_s": round(train_s, 1),
              "epoch_s": [round(t, 1) for t in history["seconds"]],
              "train_acc_per_epoch": [round(a, 4) for a in history["train_acc"]],
              "test_acc_per_epoch": [round(a, 4) for a in history["valid_acc"]],
              "test_accuracy": round(history["valid_acc"][-1], 4)}
    print(json.dumps(record), flush=True)
    with open(os.path.join(args.out, f"{args.data}.json"), "w") as f:
        json.dump(record, f, indent=2)


def _combinations(text):
    return int(text) if text is not None and text.isdigit() else text


if __name__ == "__main__":
    main()
