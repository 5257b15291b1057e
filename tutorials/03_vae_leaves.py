"""
VAE leaves
==========

An SPN whose leaves are small VAEs, next to the same SPN with plain leaves.

Run it from the repository root::

    python tutorials/03_vae_leaves.py [output-folder]

It uses the 8x8 digits shipped inside the package (grey levels 0..16), so it needs no data
folder and runs in about a minute. Pictures and files go to ``output-folder`` (or
``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial03``).
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.imagegrid import save_completion_grid, save_image_grid

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial03"))
out.mkdir(parents=True, exist_ok=True)
digits = pc.datasets.load_digits_8x8()
x_train = digits.x_train.reshape(len(digits.x_train), -1).astype(np.float64)
x_test = digits.x_test.reshape(len(digits.x_test), -1).astype(np.float64)

# %%
# The structure
# -------------
# The image is cut into 4x4 superpixels; every rectangle of superpixels is a
# region with K sum units, split at every grid line (a dense Poon-Domingos SPN). With
# leaf="vae" each superpixel is an input node of two VAE units: each unit is a small
# variational auto-encoder over the 16 pixels of its superpixel (here with Binomial pixels,
# 16 trials, for the grey levels 0..16). With a univariate family instead, each superpixel is
# itself a dense SPN over its pixels: the "vanilla" SPN of the VAE-leaves poster.
settings = dict(superpixel=(4, 4), num_sums=2, leaves_per_superpixel=2, seed=0)
with_vae = pc.builders.vae_spn(8, 8, leaf="vae", pixel="binomial", trials=16, latent_dim=2, hidden=16, **settings)
vanilla = pc.builders.vae_spn(8, 8, leaf="binomial", leaf_params={"n": 16}, **settings)
for name, circuit in (("SPN + VAE leaves", with_vae), ("vanilla SPN", vanilla)):
    circuit.check()
    units = {kind: sum(n.num_units for n in circuit.nodes if n.kind == kind) for kind in ("input", "sum", "product")}
    print(f"{name}: {units['input']} leaf units, {units['sum']} sum units, {units['product']} product units, "
          f"{circuit.num_params} parameters")
with_vae.render(out / "vae_spn.svg")

# %%
# What a VAE leaf computes
# ------------------------
# Its log-value is the ELBO (one latent draw, KL in closed form),
# or the importance-weighted bound with num_samples draws: a lower bound of log p(x), so the
# whole circuit computes a lower bound, and the Program says so.
program = with_vae.compile(dtype="float64")
print(f"exact log-likelihoods: {program.exact}")

# A superpixel whose pixels are all missing contributes exactly log 1 = 0, so marginalizing
# whole superpixels is exact (marginals of the bound).
top_half = x_test[:3].copy()
top_half[:, 32:] = np.nan
print("log p(top half) bound:", np.round(program.log_likelihood(top_half), 2))
print("log p(nothing observed):", program.log_likelihood(np.full((1, 64), np.nan)))

# %%
# Training
# --------
# VAE leaves have no EM update; Adam trains the sum weights and all encoders and
# decoders together, with fresh reparameterization noise per batch seeded by fit's seed (so a
# run resumes bit for bit from its checkpoint).
histories = {}
for name, circuit in (("SPN + VAE leaves", with_vae), ("vanilla SPN", vanilla)):
    p = circuit.compile(dtype="float64")
    histories[name] = pc.learning.fit(p, x_train, method="adam", lr=0.01, epochs=15, batch_size=64, seed=0,
                                      progress=False, checkpoint=out / f"{name.split()[0].lower()}-checkpoint.npz",
                                      resume=False)
    test_nll = -np.mean(circuit.compile(dtype="float64").log_likelihood(x_test))
    print(f"{name}: training loss {histories[name]['train_loss'][0]:.1f} -> {histories[name]['train_loss'][-1]:.1f} "
          f"nats, test NLL{' bound' if not p.exact else ''} {test_nll:.1f} nats")

import matplotlib  # noqa: E402  (only the pictures need it)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
fig, ax = plt.subplots(figsize=(5, 3.5))
for name, history in histories.items():
    ax.plot(history["epoch"], history["train_loss"], marker="o", label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("training loss (nats)")
ax.legend()
fig.tight_layout()
fig.savefig(out / "learning_curves.png", dpi=100)

# %%
# Completion and sampling
# -----------------------
# A partly observed superpixel is encoded from its observed pixels
# (the missing ones zero-filled, the observation mask as extra encoder input): MPE decodes the
# posterior mean latent and takes the most probable pixels, the posterior mean averages the
# decoders' pixel means under the circuit's posterior over the leaves. Sampling draws a latent
# from the prior and pixels from the decoder.
program = with_vae.compile(dtype="float64")
mask = np.zeros((8, 8), dtype=bool)
mask[4:] = True
occluded = np.where(mask.ravel()[None], np.nan, x_test[:10])
save_completion_grid(out / "completions.png", x_test[:10], mask.ravel(),
                     {"MPE": program.mpe(occluded), "posterior mean": program.inpaint(occluded)},
                     shape=(8, 8), value_range=(0, 16), title="SPN + VAE leaves: bottom half completed")
save_image_grid(out / "samples.png", program.sample(32, seed=0), 8, shape=(8, 8), value_range=(0, 16),
                title="SPN + VAE leaves: samples")

# %%
# Files
# -----
# The encoders and decoders are arrays of the leaf family: they are saved with the
# circuit in a .pcz file (no pickle) and load bit for bit.
with_vae.save(out / "vae_spn.pcz")
loaded = pc.Circuit.load(out / "vae_spn.pcz")
same = np.array_equal(loaded.compile(dtype="float64").log_likelihood(x_test[:20]),
                      with_vae.compile(dtype="float64").log_likelihood(x_test[:20]))
print(f"saved and loaded: identical bounds {same}")
