"""Speed of pcircuits.nn's stacked networks against the bare batched matmuls of the same shapes.

The timed pass is one VAE training step's network work: the encoder forward, the decoder
forward (on a given latent sample), the decoder backward with the gradient for its input (the
latent sample, for the reparameterization), and the encoder backward without an input gradient
(its input is data). The floor is the same pass's matrix products alone, with the same shapes:
``x @ W`` per dense layer, ``x^T @ g`` per dense layer, and ``g @ W^T`` where the pass needs the
input gradient; so ``ratio`` measures what the biases, activations, checks and allocations add.
Pass and floor are timed alternately in one run, ``--reps`` times each. ``ratio`` is the median
over the rounds of pass time / floor time measured back to back (so a busy machine, which
slows the two alike, disturbs it least); ``ratio_of_medians`` divides the medians and
``ratio_of_minima`` the fastest times.

Cases:

* ``vae_leaf``: ``L`` = 98 networks (the VAE leaves of a 28x28 image with 4x4 superpixels),
  encoder ``2*16 -> 16 -> 2*latent`` (pixels and observation mask in, mean and log-variance
  out), decoder ``latent -> 16 -> 16`` (one Bernoulli logit per pixel), ``latent = 2``.
* ``vae_baseline``: one network (``L`` = 1), encoder ``784 -> 1568 -> 392``, decoder
  ``196 -> 1568 -> 784``: the poster's vanilla VAE, as large as all leaves together.

Prints one JSON line per case and batch size::

    OPENBLAS_NUM_THREADS=1 python benchmarks/nn_stacked.py [--batch 100 512] [--reps 30] [--dtype float32]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from pcircuits import nn
from pcircuits.backend import get_backend

CASES = {
    "vae_leaf": {"networks": 98, "encoder": [32, 16, 4], "decoder": [2, 16, 16]},
    "vae_baseline": {"networks": 1, "encoder": [784, 1568, 392], "decoder": [196, 1568, 784]},
}


def dense_shapes(network) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in network if isinstance(layer, nn.StackedDense)]


def make_pass(backend, networks: int, encoder_sizes, decoder_sizes, batch: int, rng):
    """The nn pass of one training step, as a function of no arguments."""
    xp, dtype = backend.xp, backend.dtype
    encoder = nn.mlp(networks, encoder_sizes, activation="relu")
    decoder = nn.mlp(networks, decoder_sizes, activation="relu")
    enc_params = encoder.init(0, backend=backend)
    dec_params = decoder.init(1, backend=backend)
    x = xp.asarray(rng.random((networks, batch, encoder_sizes[0])) < 0.5, dtype=dtype)
    z = xp.asarray(rng.normal(size=(networks, batch, decoder_sizes[0])), dtype=dtype)
    grad_out = xp.asarray(rng.normal(size=(networks, batch, decoder_sizes[-1])), dtype=dtype)
    grad_code = xp.asarray(rng.normal(size=(networks, batch, encoder_sizes[-1])), dtype=dtype)

    def step():
        _, enc_cache = encoder.forward(enc_params, x)
        _, dec_cache = decoder.forward(dec_params, z)
        decoder.backward(dec_params, dec_cache, grad_out, input_grad=True)
        encoder.backward(enc_params, enc_cache, grad_code, input_grad=False)

    def forward():
        encoder.forward(enc_params, x)
        decoder.forward(dec_params, z)

    return step, forward, dense_shapes(encoder), dense_shapes(decoder), encoder.num_params + decoder.num_params


def make_floor(backend, networks: int, encoder_shapes, decoder_shapes, batch: int, rng):
    """The same pass's matmuls alone: (forward + backward, forward) as functions of no arguments."""
    xp, dtype = backend.xp, backend.dtype
    layers = []
    for shapes, needs_input_grad in ((encoder_shapes, False), (decoder_shapes, True)):
        for position, (fan_in, fan_out) in enumerate(shapes):
            x = xp.asarray(rng.random((networks, batch, fan_in)), dtype=dtype)
            w = xp.asarray(rng.random((networks, fan_in, fan_out)), dtype=dtype)
            g = xp.asarray(rng.random((networks, batch, fan_out)), dtype=dtype)
            layers.append((x, w, g, needs_input_grad or position > 0))

    def step():
        for x, w, g, input_grad in layers:
            xp.matmul(x, w)
        for x, w, g, input_grad in reversed(layers):
            xp.matmul(x.transpose(0, 2, 1), g)
            if input_grad:
                xp.matmul(g, w.transpose(0, 2, 1))

    def forward():
        for x, w, _, _ in layers:
            xp.matmul(x, w)

    return step, forward


def alternating_times(functions, reps: int, sync) -> np.ndarray:
    """Milliseconds of each function, timed in turn ``reps`` times after one warm-up: shape (reps, functions)."""
    for fn in functions:
        fn()
    sync()
    times = np.empty((reps, len(functions)))
    for rep in range(reps):
        for column, fn in enumerate(functions):
            start = time.perf_counter()
            fn()
            sync()
            times[rep, column] = (time.perf_counter() - start) * 1e3
    return times


def run_case(name: str, batch: int, backend, reps: int) -> dict:
    case = CASES[name]
    rng = np.random.default_rng(0)
    step, forward, enc_shapes, dec_shapes, num_params = make_pass(backend, case["networks"], case["encoder"],
                                                                  case["decoder"], batch, rng)
    floor_step, floor_forward = make_floor(backend, case["networks"], enc_shapes, dec_shapes, batch, rng)
    times = alternating_times([step, floor_step, forward, floor_forward], reps, backend.synchronize)
    step_ms, floor_ms, forward_ms, floor_forward_ms = np.median(times, axis=0)
    minima = times.min(axis=0)
    return {"case": name, "networks": case["networks"], "encoder": case["encoder"], "decoder": case["decoder"],
            "batch": batch, "dtype": backend.dtype.name, "backend": backend.name, "params": num_params,
            "step_ms": round(step_ms, 3), "matmul_floor_ms": round(floor_ms, 3),
            "ratio": round(float(np.median(times[:, 0] / times[:, 1])), 3),
            "ratio_of_medians": round(step_ms / floor_ms, 3), "ratio_of_minima": round(minima[0] / minima[1], 3),
            "forward_ms": round(forward_ms, 3), "forward_floor_ms": round(floor_forward_ms, 3),
            "forward_ratio": round(float(np.median(times[:, 2] / times[:, 3])), 3), "reps": reps,
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--batch", nargs="+", type=int, default=[100, 512])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--backend", choices=["numpy", "cupy"], default="numpy")
    return parser


def main(argv=None) -> list[dict]:
    args = build_parser().parse_args(argv)
    backend = get_backend(args.backend, args.dtype)
    records = []
    for name in args.which:
        for batch in args.batch:
            record = run_case(name, batch, backend, args.reps)
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


if __name__ == "__main__":
    main(sys.argv[1:])
