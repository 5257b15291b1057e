"""The VAE-leaves poster's MNIST comparison: vanilla SPN vs SPN with VAE leaves vs a vanilla VAE.

Tan, Peharz and Adel, *Sum Product Network with VAE leaves*: binarized MNIST (pixels > 0.5 of
the [0, 1] range are 1), the dense Poon-Domingos SPN over 4x4 superpixels with K = 2, either
with a dense SPN of Bernoulli leaves inside every superpixel (vanilla SPN) or with 2 VAE leaves
per superpixel (latent 2, 16 hidden units), and a vanilla VAE as large as all leaves together
(latent 196, 1,568 hidden recognition / generative units). All three are trained with Adam at
learning rate 0.01. The vanilla VAE is itself one VAE leaf over all 784 pixels, so the same
Program trains it.

Per epoch it records the mean training loss (the bound with one latent draw, as trained), the
test negative log-likelihood bound in nats (importance-weighted with ``--test-samples`` draws
for the VAE-based models; exact for the vanilla SPN) on ``--test-size`` test images, and wall
time; at the end the bound on the whole test set. It writes ``<out>/vae_leaves.json``, the
training curves (``curves.png``) and, for the two SPNs, sample and completion grids.

    python benchmarks/vae_leaves.py --epochs 5 --out out/vae_leaves
    python benchmarks/vae_leaves.py --measure-leaf        # the stacked leaf pass vs its bare matmuls
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import pcircuits as pc

MODELS = ("spn", "spn-vae", "vae")
LABELS = {"spn": "vanilla SPN", "spn-vae": "SPN + VAE leaves", "vae": "vanilla VAE"}


def build(model: str, seed: int, num_samples: int = 1) -> pc.Circuit:
    """The poster's three models over 28 x 28 binary images (VAEs trained with ``num_samples`` draws)."""
    if model == "spn":
        return pc.builders.vae_spn(28, 28, superpixel=(4, 4), num_sums=2, leaves_per_superpixel=2, leaf="bernoulli",
                                   seed=seed)
    if model == "spn-vae":
        return pc.builders.vae_spn(28, 28, superpixel=(4, 4), num_sums=2, leaves_per_superpixel=2, latent_dim=2,
                                   hidden=16, num_samples=num_samples, seed=seed)
    family = pc.VAE.random(1, 784, seed, latent_dim=196, hidden=1568, num_samples=num_samples)
    return pc.Circuit(pc.InputNode(range(784), family), variables=pc.Variables.image(28, 28))


def with_samples(circuit: pc.Circuit, num_samples: int) -> pc.Circuit:
    """A copy of ``circuit`` whose VAE leaves use ``num_samples`` importance samples."""
    copy = circuit.copy()
    for node in copy.nodes:
        if isinstance(node, pc.InputNode) and isinstance(node.family, pc.VAE):
            node.family.num_samples = num_samples
    return copy


def test_nll(circuit: pc.Circuit, x: np.ndarray, num_samples: int, batch_size: int) -> float:
    """Mean negative log-likelihood bound in nats (exact for circuits without VAE leaves)."""
    program = with_samples(circuit, num_samples).compile()
    return -float(np.mean(pc.to_numpy(program.log_likelihood(x, batch_size=batch_size))))


def measure_leaf(repeats: int = 40, batch: int = 512, seed: int = 0) -> dict:
    """The stacked VAE leaf pass of the SPN + VAE model against the bare batched matmuls of its shapes.

    Three things are timed alternately, ``repeats`` rounds, and the fastest time of each kept (on
    a shared machine the fastest run is the undisturbed one): the bare ``np.matmul`` calls of
    the four dense layers' shapes, the networks alone (encoder and decoder forward, with bias and
    activations), and the whole leaf forward pass (encoder input, networks, reparameterization,
    the Bernoulli log-density of every pixel, KL). Also the leaf forward and backward together.
    The ``*_over_matmuls`` ratios divide the fastest times; ``*_median_of_rounds`` is the median
    over the rounds of the ratio within a round (what a busy machine disturbs least).
    ``compiled`` says whether the pass ran its compiled kernels (Numba installed and
    ``PCIRCUITS_JIT`` not ``0``; :mod:`pcircuits.jit`).
    """
    from pcircuits import jit
    from pcircuits.distributions.vae import VAE
    circuit = build("spn-vae", seed)
    program = circuit.compile()
    (layer,) = program.input_layers
    be = program.backend
    params = layer.params(program.leaf_tables[layer.table_key])
    x = (np.random.default_rng(seed).random((batch, 784)) > 0.5).astype(np.float32)
    xg = layer.gather_inputs(be.asarray(x))
    noise = layer.noise(params, batch, be.rng(0))
    units = xg.shape[1]
    names = ("encoder_w1", "encoder_w2", "decoder_w1", "decoder_w2")
    shapes = [(params[w].shape[1], params[w].shape[2]) for w in names]
    inputs = [np.ones((units, batch, i), np.float32) for i, _ in shapes]
    weights = [params[w] for w in names]
    encoder, enc_params, decoder, dec_params = VAE._networks(params)
    ones = np.ones((batch, units), np.float32)

    def forward_backward():
        _, state = layer.family.log_prob_and_state(be, params, xg, noise)
        layer.family.grad(be, params, xg, ones, noise=noise, state=state)

    passes = {"bare_matmuls": lambda: [np.matmul(a, w) for a, w in zip(inputs, weights)],
              "networks": lambda: (encoder.forward(enc_params, inputs[0]), decoder.forward(dec_params, inputs[2])),
              "leaf_forward": lambda: layer.log_prob(params, xg, noise),
              "leaf_forward_backward": forward_backward}
    times = {name: [] for name in passes}
    for _ in range(repeats):
        for name, run in passes.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    best = {name: min(values) for name, values in times.items()}
    per_round = {name: float(np.median(np.array(times[name]) / np.array(times["bare_matmuls"])))
                 for name in ("leaf_forward", "leaf_forward_backward")}
    return {"batch": batch, "units": units, "compiled": jit.available(), "rounds": repeats, "matmul_shapes": [[units, batch, i, o] for i, o in shapes],
            **{f"{name}_ms": round(1e3 * value, 3) for name, value in best.items()},
            "networks_over_matmuls": best["networks"] / best["bare_matmuls"],
            "leaf_forward_over_matmuls": best["leaf_forward"] / best["bare_matmuls"],
            "leaf_forward_backward_over_matmuls": best["leaf_forward_backward"] / best["bare_matmuls"],
            **{f"{name}_over_matmuls_median_of_rounds": value for name, value in per_round.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--train-size", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--test-size", type=int, default=1000, help="test images evaluated after every epoch")
    parser.add_argument("--test-samples", type=int, default=100, help="importance samples of the test bound")
    parser.add_argument("--train-samples", type=int, default=1,
                        help="latent draws per example in training: 1 trains the ELBO, more the importance-weighted bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/vae_leaves")
    parser.add_argument("--measure-leaf", action="store_true", help="only time the stacked leaf pass")
    parser.add_argument("--rounds", type=int, default=40, help="--measure-leaf: alternating rounds, the fastest kept")
    parser.add_argument("--replot", nargs="+", metavar="LOG[:MODEL]=LABEL",
                        help="train nothing: draw the curves of earlier runs from their printed JSON lines, one "
                             "series per log and model (or only MODEL), labelled LABEL")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        return replot(args.replot, os.path.join(args.out, "curves.png"))
    if args.measure_leaf:
        record = measure_leaf(args.rounds, seed=args.seed)
        print(json.dumps(record))
        with open(os.path.join(args.out, "leaf_pass.json"), "w") as f:
            json.dump(record, f, indent=1)
        return record

    data = pc.datasets.load_mnist()
    binarize = "pixels / 255 > 0.5"
    x_train = (data.x_train.reshape(len(data.x_train), -1) / 255.0 > 0.5).astype(np.float32)[:args.train_size]
    x_test = (data.x_test.reshape(len(data.x_test), -1) / 255.0 > 0.5).astype(np.float32)
    print(f"binarized MNIST ({binarize}): {len(x_train)} training, {len(x_test)} test images")
    records = {}
    for model in args.models:
        circuit = build(model, args.seed, args.train_samples)
        program = circuit.compile()
        samples = args.test_samples if not program.exact else 1
        curve = []
        started = time.perf_counter()

        def after_epoch(epoch, history):
            program.sync_to_circuit()
            t0 = time.perf_counter()
            nll = test_nll(circuit, x_test[:args.test_size], samples, batch_size=100)
            curve.append({"epoch": epoch, "train_loss": float(history["train_loss"][-1]), "test_nll": nll,
                          "epoch_s": float(history["seconds"][-1]),
                          "test_eval_s": time.perf_counter() - t0})
            print(json.dumps({"model": model, **curve[-1]}), flush=True)

        pc.learning.fit(program, x_train, method="adam", lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                        progress=not args.no_progress, seed=args.seed, callback=after_epoch)
        train_s = time.perf_counter() - started
        t0 = time.perf_counter()
        final = test_nll(circuit, x_test, samples, batch_size=100)
        records[model] = {"label": LABELS[model], "exact": program.exact, "test_samples": samples,
                          "train_samples": args.train_samples if not program.exact else None,
                          "sizes": _unit_counts(circuit), "curve": curve, "final_test_nll": final,
                          "final_eval_s": time.perf_counter() - t0, "train_s": train_s, "epochs": args.epochs}
        print(json.dumps({"model": model, "final_test_nll": final, "train_s": train_s}), flush=True)
        if model != "vae":
            pictures(circuit, x_test, model, args)
        circuit.save(os.path.join(args.out, f"{model}.pcz"))
        summary = {"data": f"binarized MNIST ({binarize})", "lr": args.lr, "seed": args.seed,
                   "batch_size": args.batch_size, "train_size": len(x_train), "test_size_per_epoch": args.test_size,
                   "models": records}
        with open(os.path.join(args.out, "vae_leaves.json"), "w") as f:
            json.dump(summary, f, indent=1)
        plot_curves(records, os.path.join(args.out, "curves.png"))
    return summary


def _unit_counts(circuit) -> dict:
    counts = {"input": 0, "sum": 0, "product": 0}
    for node in circuit.nodes:
        counts[node.kind] += node.num_units
    return counts


def pictures(circuit: pc.Circuit, x_test: np.ndarray, model: str, args):
    """A grid of 64 samples and a completion grid (original | bottom half missing | MPE | posterior mean)."""
    from pcircuits.imagegrid import save_completion_grid, save_image_grid
    program = circuit.compile()
    samples = pc.to_numpy(program.sample(64, seed=args.seed))
    save_image_grid(os.path.join(args.out, f"{model}_samples.png"), samples, 8, shape=(28, 28), value_range=(0, 1),
                    title=f"{LABELS[model]}: samples")
    originals = x_test[:10]
    mask = np.zeros((28, 28), dtype=bool)
    mask[14:] = True
    occluded = np.where(mask.ravel()[None], np.nan, originals)
    completions = {"MPE": pc.to_numpy(program.mpe(occluded)),
                   "posterior mean": pc.to_numpy(program.inpaint(occluded))}
    save_completion_grid(os.path.join(args.out, f"{model}_completions.png"), originals, mask.ravel(), completions,
                         shape=(28, 28), value_range=(0, 1), title=f"{LABELS[model]}: bottom half completed")


def replot(specs, path: str) -> dict:
    """Curves of earlier runs, read from the JSON lines they printed (``LOG[:MODEL]=LABEL`` each)."""
    records = {}
    for spec in specs:
        source, _, label = spec.partition("=")
        log, _, only = source.partition(":")
        curves = {}
        with open(log) as f:
            for line in f:
                if line.startswith("{") and '"epoch"' in line:
                    entry = json.loads(line)
                    if not only or entry["model"] == only:
                        curves.setdefault(entry["model"], []).append(entry)
        for model, curve in curves.items():
            name = label if len(curves) == 1 and label else f"{LABELS[model]} ({label or log})"
            records[name] = {"label": name, "curve": curve}
    plot_curves(records, path)
    return records


def plot_curves(records: dict, path: str):
    """Training loss and test NLL bound per epoch; runs far above the rest are drawn off scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], "train_loss", "training loss (nats, the bound trained)"),
                           (axes[1], "test_nll", "test NLL bound (nats)")):
        values = [c[key] for record in records.values() for c in record["curve"]]
        low = min(values)
        top = min(max(values), 1.6 * low)
        for record in records.values():
            series = [c[key] for c in record["curve"]]
            label = record["label"] + (" (off scale)" if min(series) > top else
                                       " (partly off scale)" if max(series) > top else "")
            ax.plot([c["epoch"] for c in record["curve"]], series, marker="o", label=label)
        ax.set_ylim(0.95 * low, top)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
