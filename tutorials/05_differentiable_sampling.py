"""
Differentiable sampling
=======================

Differentiable sampling, and training a circuit for the quality of its samples.

Run it from the repository root::

    python tutorials/05_differentiable_sampling.py [output-folder]

A picture goes to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial05``).
It takes a few seconds.
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.learning import fit, mmd
from pcircuits.program import RelaxedNoise

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial05"))
out.mkdir(parents=True, exist_ok=True)

# %%
# A circuit and some data
# -----------------------
# Two half moons in the plane, and a circuit that is one sum over K products of two univariate
# Gaussian leaves (Lang et al.'s synthetic setting): a mixture of K axis-aligned Gaussians.
rng = np.random.default_rng(0)
t = rng.uniform(0, np.pi, 1200)
upper = rng.random(1200) < 0.5
data = np.column_stack([np.where(upper, np.cos(t), 1 - np.cos(t)), np.where(upper, np.sin(t), 0.5 - np.sin(t))])
data = (data + 0.08 * rng.normal(size=data.shape) - [0.5, 0.25]) / [0.9, 0.5]
train, test = data[:1000], data[1000:]

K = 12
centers = train[rng.choice(len(train), K, replace=False)]
components = [pc.ProductNode([pc.InputNode([0], pc.Gaussian([c[0]], [0.5])), pc.InputNode([1], pc.Gaussian([c[1]], [0.5]))])
              for c in centers]
circuit = pc.Circuit(pc.SumNode(components, weights=np.full((1, K), 1.0 / K)))
program = circuit.compile(dtype="float64")

# %%
# Relaxed samples
# ---------------
# program.sample(n) draws exact samples: at every sum it picks one input, which has no gradient.
# program.sample_relaxed(n, temperature) replaces the pick by a Gumbel-softmax vector y over the
# inputs and returns the y-weighted interpolation of the inputs' samples. The noise can be
# drawn once and passed in: the samples are then a smooth function of the parameters.
noise = RelaxedNoise.draw(program, 5, seed=1)
exact = program.top_down(np.full((5, 2), np.nan), mode="sample", noise=noise)
for tau in (1.0, 0.1, 0.01):
    soft = program.sample_relaxed(temperature=tau, noise=noise)
    print(f"temperature {tau:<5}: largest distance to the exact draws of the same noise "
          f"{np.abs(soft - exact).max():.4f}")
hard = program.sample_relaxed(temperature=0.5, hard=True, noise=noise)
print("straight-through samples equal the exact draws:", bool(np.array_equal(hard, exact)))

# %%
# Gradients through the samples
# -----------------------------
# backward_relaxed(d loss / d samples) returns the gradients with respect to the log-weights,
# the leaf parameters (means and log standard deviations) and the temperature, noise fixed.
samples = program.sample_relaxed(temperature=0.5, noise=noise)
grads = program.backward_relaxed(2 * samples)                 # loss = sum of squared samples
print("gradient w.r.t. the log-weights has shape", grads.log_weights.shape,
      f"and d loss / d temperature = {grads.temperature:.4f}")

# %%
# Train for the samples: MMD
# --------------------------
# fit(method="mmd") draws relaxed samples every step, scores them against the batch with the
# kernel two-sample distance (MMD, Gaussian kernels) and follows its gradient with Adam.
widths = [0.1, 0.2, 0.5, 1.0, 2.0]


def held_out_mmd():
    return mmd(program.backend, program.sample(len(test), seed=0), test, bandwidths=widths).loss


before = held_out_mmd()
history = fit(program, train, method="mmd", epochs=40, batch_size=100, lr=0.03, temperature=0.1, bandwidths=widths,
              progress=False, seed=0)
after = held_out_mmd()
print(f"MMD to held-out data: {before:.4f} before, {after:.4f} after MMD training "
      f"(lower: {after < before})")

# %%
# Look at it
# ----------
import matplotlib                                              # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt                                # noqa: E402

xs, ys = np.meshgrid(np.linspace(-2.5, 2.5, 150), np.linspace(-2.5, 2.5, 150))
density = np.exp(program.log_likelihood(np.column_stack([xs.ravel(), ys.ravel()]))).reshape(xs.shape)
fig, ax = plt.subplots(figsize=(5, 5))
ax.imshow(density, origin="lower", extent=(-2.5, 2.5, -2.5, 2.5), cmap="viridis")
ax.scatter(test[:, 0], test[:, 1], s=3, c="white", alpha=0.6)
ax.set_title(f"MMD-trained mixture of {K} Gaussians (white: held-out data)")
fig.savefig(out / "mmd_density.png", dpi=80)
print("wrote", out / "mmd_density.png")
