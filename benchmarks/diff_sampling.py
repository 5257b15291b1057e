"""Differentiable sampling experiments (Lang et al. 2022, section 5 and Table 5).

``synthetic``
    The six two-dimensional sets of section 5.1 (2-clusters K=2, varied K=3, aniso K=30,
    9-clusters K=9, 2-moons K=50, 2-circles K=30), each modelled by one sum over ``K`` products of
    two univariate Gaussian leaves, trained with LL (Adam on the NLL), ADV (a critic network) and
    MMD; writes the 6 x 3 grid of densities with the held-out data over them (Table 5's layout)
    and one JSON record per cell: held-out log-likelihood and MMD to held-out data, at
    initialization and after training.
``mnist``
    A RAT-SPN with binomial leaves (n = 255) on MNIST trained with LL, MMD and PAE (a RAT-SPN
    over the 784 pixels and Gaussian latents); sample grids, and the PAE reconstruction error
    in the paper's unit (binary cross-entropy summed over the pixels, mean over test images).
``speed``
    The relaxed pass with its backward against the exact sampler on the Poon-Domingos MNIST
    circuit, timed in one run.

    python benchmarks/diff_sampling.py synthetic [--epochs 60] [--temperature 0.1] [--out results/diff_sampling]
    python benchmarks/diff_sampling.py mnist [--train-size 3000] [--epochs 3]
    python benchmarks/diff_sampling.py speed [--batch 512]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.backend import get_backend
from pcircuits.learning import fit, mmd
from pcircuits.nodes import InputNode, ProductNode, SumNode

#: The sets of section 5.1 and the K of their circuits.
SYNTHETIC = {"2-clusters": 2, "varied": 3, "aniso": 30, "9-clusters": 9, "2-moons": 50, "2-circles": 30}
OBJECTIVES = ("LL", "ADV", "MMD")
#: Kernel widths of the reported MMD (standardized units; the same for every set and objective).
REPORT_BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0)


# ---- data ------------------------------------------------------------------------------------

def _blobs(rng, n, centers, stds):
    labels = rng.integers(0, len(centers), n)
    return np.asarray(centers, dtype=float)[labels] + rng.normal(size=(n, 2)) * np.asarray(stds, float)[labels, None]


def synthetic_data(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points of one of the six sets (before standardization)."""
    rng = np.random.default_rng([seed, list(SYNTHETIC).index(name)])
    if name == "2-clusters":
        return _blobs(rng, n, [(-2.0, -1.0), (2.0, 1.5)], [0.6, 0.6])
    if name == "varied":
        return _blobs(rng, n, [(-4.0, 3.0), (0.0, -1.0), (4.0, 3.5)], [1.0, 2.5, 0.5])
    if name == "aniso":
        return _blobs(rng, n, [(-4.0, 0.0), (0.0, 3.0), (4.0, -1.0)], [0.6, 0.6, 0.6]) @ np.array([[0.6, -0.6],
                                                                                                 [-0.4, 0.8]])
    if name == "9-clusters":
        grid = [(x, y) for x in (-2.0, 0.0, 2.0) for y in (-2.0, 0.0, 2.0)]
        return _blobs(rng, n, grid, [0.2] * 9)
    if name == "2-moons":
        t = rng.uniform(0, np.pi, n)
        upper = rng.random(n) < 0.5
        x = np.where(upper, np.cos(t), 1 - np.cos(t))
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
        return np.column_stack([x, y]) + 0.08 * rng.normal(size=(n, 2))
    if name == "2-circles":
        t = rng.uniform(0, 2 * np.pi, n)
        radius = np.where(rng.random(n) < 0.5, 1.0, 0.5)
        return np.column_stack([radius * np.cos(t), radius * np.sin(t)]) + 0.05 * rng.normal(size=(n, 2))
    raise ValueError(f"unknown synthetic set {name!r}; one of {list(SYNTHETIC)}")


def mixture_circuit(k: int, train: np.ndarray, seed: int) -> pc.Circuit:
    """One sum over ``k`` products of two Gaussian leaves; means at random training points, std 0.5."""
    rng = np.random.default_rng(seed)
    centers = train[rng.choice(len(train), k, replace=False)]
    products = [ProductNode([InputNode([0], pc.distributions.Gaussian([c[0]], [0.5])),
                             InputNode([1], pc.distributions.Gaussian([c[1]], [0.5]))]) for c in centers]
    return pc.Circuit(SumNode(products, weights=np.full((1, k), 1.0 / k)))


def held_out_scores(program, test: np.ndarray, seed: int) -> dict:
    be = get_backend("numpy", "float64")
    samples = np.asarray(program.sample(len(test), seed=seed), dtype=np.float64)
    return {"test_ll": float(np.mean(program.log_likelihood(test))),
            "test_mmd": float(mmd(be, samples, test, bandwidths=REPORT_BANDWIDTHS).loss)}


def train_synthetic(objective: str, program, train, args, seed: int):
    common = dict(epochs=args.epochs, batch_size=args.batch_size, progress=False, seed=seed, min_std=0.05)
    if objective == "LL":
        return fit(program, train, method="adam", lr=args.lr, **common)
    if objective == "MMD":
        return fit(program, train, method="mmd", lr=args.lr, temperature=args.temperature, hard=args.hard,
                   bandwidths=REPORT_BANDWIDTHS, **common)
    return fit(program, train, method="adversarial", lr=args.adv_lr, temperature=args.temperature, hard=args.hard,
               critic_hidden=(64, 64), critic_lr=args.critic_lr, critic_steps=args.critic_steps, **common)


def log_density_grid(program, lo, hi, steps=120):
    xs = np.linspace(lo[0], hi[0], steps)
    ys = np.linspace(lo[1], hi[1], steps)
    gx, gy = np.meshgrid(xs, ys)
    ll = program.log_likelihood(np.column_stack([gx.ravel(), gy.ravel()])).reshape(steps, steps)
    return xs, ys, ll


def synthetic(args) -> list[dict]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records, panels = [], {}
    for name in args.sets:
        data = synthetic_data(name, args.train + args.test, seed=args.seed)
        mean, std = data[:args.train].mean(axis=0), data[:args.train].std(axis=0)
        data = (data - mean) / std
        train, test = data[:args.train], data[args.train:]
        for objective in args.objectives:
            program = mixture_circuit(SYNTHETIC[name], train, args.seed).compile(dtype="float64")
            before = held_out_scores(program, test, args.seed)
            started = time.perf_counter()
            train_synthetic(objective, program, train, args, args.seed)
            seconds = time.perf_counter() - started
            after = held_out_scores(program, test, args.seed)
            record = {"set": name, "K": SYNTHETIC[name], "objective": objective, "epochs": args.epochs,
                      "seconds": round(seconds, 1), "init_test_ll": before["test_ll"],
                      "init_test_mmd": before["test_mmd"], **after}
            records.append(record)
            print(json.dumps(record), flush=True)
            lo, hi = data.min(axis=0) - 0.5, data.max(axis=0) + 0.5
            panels[name, objective] = (log_density_grid(program, lo, hi), test, record)
    with open(out / "synthetic.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    plot_grid(panels, args.sets, args.objectives, out / "synthetic.png")
    return records


def plot_grid(panels, sets, objectives, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(sets), len(objectives), figsize=(3.2 * len(objectives), 3.0 * len(sets)),
                             squeeze=False)
    for i, name in enumerate(sets):
        for j, objective in enumerate(objectives):
            ax = axes[i, j]
            (xs, ys, ll), test, record = panels[name, objective]
            ax.imshow(np.exp(ll), origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis",
                      aspect="auto")
            ax.scatter(test[:400, 0], test[:400, 1], s=2, c="white", alpha=0.5, linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"LL {record['test_ll']:.2f}  MMD {record['test_mmd']:.4f}", fontsize=8)
            if i == 0:
                ax.annotate(objective, (0.5, 1.18), xycoords="axes fraction", ha="center", fontsize=12,
                            fontweight="bold")
            if j == 0:
                ax.set_ylabel(f"{name} (K={SYNTHETIC[name]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---- MNIST -----------------------------------------------------------------------------------

def mnist_circuit(args, train: np.ndarray, num_latent: int = 0) -> pc.Circuit:
    """A RAT-SPN with binomial leaves (n = 255) over the pixels, each component's ``p`` the pixel of
    a random training image (clipped into [0.05, 0.95]), and standard Gaussian leaves over
    ``num_latent`` latent variables appended after the pixels."""
    def leaf(variables, num_units, rng):
        if variables[0] >= 784:
            return pc.distributions.Gaussian(rng.normal(size=num_units), np.ones(num_units))
        pixels = train[rng.integers(0, len(train), num_units), variables[0]]
        return pc.distributions.Binomial(255, np.clip(pixels / 255.0, 0.05, 0.95))

    return pc.builders.rat_spn(784 + num_latent, depth=args.depth, num_repetitions=args.reps, num_sums=args.sums,
                               num_leaves=args.leaves, leaf=leaf, seed=args.seed)


def bce_per_image(reconstruction, target) -> np.ndarray:
    """Binary cross-entropy of images in [0, 1] under reconstructions in [0, 1], summed over pixels."""
    p = np.clip(reconstruction / 255.0, 1e-6, 1 - 1e-6)
    t = target / 255.0
    return -(t * np.log(p) + (1 - t) * np.log1p(-p)).sum(axis=1)


def mnist(args) -> list[dict]:
    from pcircuits.imagegrid import save_image_grid
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = pc.datasets.load_mnist()
    train = data.x_train.reshape(len(data.x_train), -1)[:args.train_size].astype(np.float32)
    test = data.x_test.reshape(len(data.x_test), -1)[:args.test_size].astype(np.float32)
    be = get_backend("numpy", "float32")
    records = []
    for objective in args.objectives:
        latent = args.latent if objective == "PAE" else 0
        program = mnist_circuit(args, train, latent).compile()
        pad = np.full((len(train), latent), np.nan, dtype=np.float32)
        common = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, progress=args.progress,
                      seed=args.seed)
        started = time.perf_counter()
        if objective == "LL":
            fit(program, train, method="adam", **common)
        elif objective == "MMD":
            fit(program, train, method="mmd", temperature=args.temperature, **common)
        else:
            fit(program, np.hstack([train, pad]), method="pae", temperature=args.temperature,
                latent=list(range(784, 784 + latent)), **common)
        seconds = time.perf_counter() - started
        record = {"objective": objective, "train_images": len(train), "test_images": len(test),
                  "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                  "temperature": args.temperature, "circuit": f"RAT-SPN D={args.depth} R={args.reps} "
                  f"S={args.sums} I={args.leaves}, binomial leaves n=255", "seconds": round(seconds, 1)}
        samples = program.sample(64, seed=args.seed)[:, :784]
        if objective == "PAE":
            record.update(pae_scores(program, test, latent, args))
        else:
            record["test_ll"] = float(np.mean(program.log_likelihood(test, batch_size=500)))
            record["test_mmd"] = float(mmd(be, samples[:64].astype(np.float32), test[:500]).loss)
        save_image_grid(out / f"mnist_{objective.lower()}_samples.png", samples.reshape(-1, 28, 28), ncols=8,
                        value_range=(0, 255), title=f"{objective}: samples")
        records.append(record)
        print(json.dumps(record), flush=True)
    with open(out / "mnist.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return records


def pae_scores(program, test, latent, args) -> dict:
    """The reconstruction error of the test images: encode z* = MPE of z given x, reconstruct x by
    sampling given z* (exactly, and as the conditional mean), BCE summed over pixels."""
    from pcircuits.imagegrid import save_image_grid
    x = np.hstack([test, np.full((len(test), latent), np.nan, dtype=np.float32)])
    code = program.mpe(x)[:, 784:]
    given = np.full_like(x, np.nan)
    given[:, 784:] = code
    sampled = program.sample(evidence=given, seed=args.seed)[:, :784]
    mean = program.inpaint(given)[:, :784]
    errors = bce_per_image(sampled, test)
    mean_errors = bce_per_image(mean, test)
    pairs = np.stack([test[:16], sampled[:16], mean[:16]], axis=1).reshape(-1, 28, 28)
    save_image_grid(Path(args.out) / "mnist_pae_reconstructions.png", pairs, ncols=6, value_range=(0, 255),
                    title="PAE: test image | sampled | conditional mean")
    return {"latent": latent, "bce_sampled": float(errors.mean()), "bce_sampled_std": float(errors.std()),
            "bce_conditional_mean": float(mean_errors.mean()),
            "test_ll": float(np.mean(program.log_likelihood(x, batch_size=500)))}


# ---- speed -----------------------------------------------------------------------------------

def speed(args) -> dict:
    """Median times of the exact sampler and of the relaxed pass + backward (without and with the
    temperature's gradient), alternated round by round in one run."""
    circuit = pc.builders.poon_domingos(28, 28, delta=args.pd_delta, num_sums=args.pd_sums,
                                        num_leaves=args.pd_leaves, leaf="gaussian", dense=True, seed=0)
    program = circuit.compile(dtype="float32")
    grad = np.random.default_rng(0).normal(size=(args.batch, 784)).astype(np.float32)
    times = {"exact": [], "relaxed": [], "relaxed_tau": []}
    for rep in range(args.reps + 1):
        t = time.perf_counter()
        program.sample(args.batch, seed=rep)
        exact = time.perf_counter() - t
        measured = {}
        for key, with_tau in (("relaxed", False), ("relaxed_tau", True)):
            t = time.perf_counter()
            program.sample_relaxed(args.batch, temperature=0.5, hard=args.hard, seed=rep)
            program.backward_relaxed(grad, temperature=with_tau)
            measured[key] = time.perf_counter() - t
        if rep:                                 # the first round allocates the buffers
            times["exact"].append(exact)
            for key, value in measured.items():
                times[key].append(value)
    exact = np.array(times["exact"])
    record = {"circuit": f"PD 28x28 delta {args.pd_delta} grid K={args.pd_sums} {args.pd_leaves} Gaussian leaves/pixel",
              "units": int(program.num_units), "edges": int(program.num_edges), "batch": args.batch,
              "hard": args.hard, "reps": args.reps, "exact_sample_ms": round(1e3 * float(np.median(exact)), 1),
              "relaxed_fwd_bwd_ms": round(1e3 * float(np.median(times["relaxed"])), 1),
              "relaxed_fwd_bwd_with_tau_grad_ms": round(1e3 * float(np.median(times["relaxed_tau"])), 1),
              "ratio": round(float(np.median(np.array(times["relaxed"]) / exact)), 2),
              "ratio_with_tau_grad": round(float(np.median(np.array(times["relaxed_tau"]) / exact)), 2)}
    print(json.dumps(record), flush=True)
    return record


# ---- command line ----------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synthetic")
    s.add_argument("--sets", nargs="+", default=list(SYNTHETIC), choices=list(SYNTHETIC))
    s.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    s.add_argument("--train", type=int, default=2000)
    s.add_argument("--test", type=int, default=1000)
    s.add_argument("--epochs", type=int, default=60)
    s.add_argument("--batch-size", type=int, default=200)
    s.add_argument("--lr", type=float, default=0.03)
    s.add_argument("--adv-lr", type=float, default=0.01, help="the circuit's learning rate under ADV")
    s.add_argument("--critic-lr", type=float, default=1e-3)
    s.add_argument("--critic-steps", type=int, default=1)
    s.add_argument("--temperature", default="0.1", help="a number or a schedule name")
    s.add_argument("--hard", action="store_true", help="straight-through samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="results/diff_sampling")
    m = sub.add_parser("mnist")
    m.add_argument("--objectives", nargs="+", default=["LL", "MMD", "PAE"], choices=["LL", "MMD", "PAE"])
    m.add_argument("--train-size", type=int, default=3000)
    m.add_argument("--test-size", type=int, default=1000)
    m.add_argument("--epochs", type=int, default=3)
    m.add_argument("--batch-size", type=int, default=100)
    m.add_argument("--lr", type=float, default=0.03)
    m.add_argument("--temperature", type=float, default=0.5)
    m.add_argument("--depth", type=int, default=4)
    m.add_argument("--reps", type=int, default=4)
    m.add_argument("--sums", type=int, default=10)
    m.add_argument("--leaves", type=int, default=10)
    m.add_argument("--latent", type=int, default=16)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--progress", action="store_true")
    m.add_argument("--out", default="results/diff_sampling")
    p = sub.add_parser("speed")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--hard", action="store_true")
    p.add_argument("--pd-delta", type=int, default=7)
    p.add_argument("--pd-sums", type=int, default=32)
    p.add_argument("--pd-leaves", type=int, default=4)
    args = parser.parse_args(argv)
    if args.command == "synthetic":
        try:
            args.temperature = float(args.temperature)
        except ValueError:
            pass
        return synthetic(args)
    if args.command == "mnist":
        return mnist(args)
    return speed(args)


if __name__ == "__main__":
    main()
