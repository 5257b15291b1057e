"""Why the discriminative DGC-SPN's class roots start spread: the gradient's class contrast at initialization.

Builds the DGC-SPN of section 5.2 and, on the first ``--images`` standardized MNIST training
images, prints one JSON line per root initialization (the builder's log-weights from
``N(0, 3^2)``, and weights uniform in [0.01, 1] as every other sum draws them):

* ``top_units_range``: max - min of the top units' log-values per image (mean over images);
* ``logit_range``: max - min of the 10 class logits per image;
* ``root_max_share``: the largest share ``r_cj`` of one top unit ``j`` in a root ``c``;
* ``contrast``: ``|sum_c (p_c - y_c) r_cj|`` over ``sum_c |p_c - y_c| r_cj``, summed over the
  top units: the fraction of the cross-entropy gradient reaching the top units that survives
  the sum over classes (1: no cancellation; 0: all classes pull a unit equally both ways).

    python benchmarks/dgcspn_init.py [--images 64] [--seed 0]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import pcircuits as pc


def class_contrast(circuit: pc.Circuit, x: np.ndarray, y: np.ndarray) -> dict:
    """The figures above for one circuit with one root per class, on images ``x`` (batch, 784)."""
    program = circuit.compile()
    logits = program.forward(x)                                   # (B, C)
    root = program.layers[-1]
    log_w = np.log(root.weights(program))[:, 0]                   # (C, I)
    top = program.values[root.inputs]                             # (C, I, B): every root sees the same units
    scores = log_w[:, :, None] + top
    share = np.exp(scores - scores.max(axis=1, keepdims=True))
    share /= share.sum(axis=1, keepdims=True)                     # r_cj per image
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = p - np.eye(logits.shape[1])[y]                     # (B, C)
    signed = np.abs(np.einsum("bc,cib->ib", residual, share)).sum(axis=0)
    total = np.einsum("bc,cib->ib", np.abs(residual), share).sum(axis=0)
    return {"top_units_range": float(np.ptp(top[0], axis=0).mean()),
            "logit_range": float(np.ptp(logits, axis=1).mean()),
            "root_max_share": float(share.max(axis=1).mean()),
            "contrast": float((signed / total).mean())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = pc.datasets.load_mnist()
    x, _, _ = pc.datasets.standardize_images(data.x_train[:args.images].reshape(args.images, -1))
    y = data.y_train[:args.images].astype(np.int64)
    circuit = pc.builders.dgcspn(28, 28, mode="discriminative", num_classes=10, seed=args.seed)
    print(json.dumps({"roots": "log-weights N(0, 3^2)", **class_contrast(circuit, x, y)}))
    rng = np.random.default_rng(args.seed)
    for node in circuit.roots:
        raw = rng.uniform(0.01, 1.0, size=np.shape(node.weights))
        node.weights = raw / raw.sum(axis=-1, keepdims=True)
    print(json.dumps({"roots": "weights uniform in [0.01, 1]", **class_contrast(circuit, x, y)}))


if __name__ == "__main__":
    main()
