"""
Queries: likelihoods, marginals, conditionals, completion, sampling
===================================================================

One circuit trained on the 8x8 digits answers every query of a probabilistic circuit:
log-likelihoods, marginals (missing values as ``NaN``), conditionals, the most probable
completion (MPE) against the posterior mean, and unconditional and conditional samples.

Run it from the repository root::

    python tutorials/06_queries.py [output-folder]

Pictures go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial06``).
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits import tasks
from pcircuits.imagegrid import save_completion_grid, save_image_grid

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial06"))
out.mkdir(parents=True, exist_ok=True)

# %%
# A trained circuit
# -----------------
# A Poon-Domingos circuit with binomial leaves (16 trials: the grey levels 0..16), trained by
# online EM for a few epochs.
digits = pc.datasets.load_digits_8x8()
x_train = digits.x_train.reshape(len(digits.x_train), -1).astype(float)
x_test = digits.x_test.reshape(len(digits.x_test), -1).astype(float)
circuit = pc.builders.poon_domingos(8, 8, delta=2, num_sums=8, num_leaves=4,
                                    leaf="binomial", leaf_params={"n": 16}, seed=0)
program = circuit.compile(dtype="float64")
pc.learning.fit(program, x_train, method="em", mode="online", step_size=0.1, epochs=5, batch_size=128,
                progress=False, seed=0)

# %%
# Log-likelihood
# --------------
# ``log_likelihood`` returns ``log p(x)`` per image, exactly. ``bits_per_dimension`` turns it
# into the usual figure of merit.
ll = program.log_likelihood(x_test)
print(f"log p(x) of the first test images: {np.round(ll[:4], 2)}")
print(f"mean {ll.mean():.2f} nats per image, {tasks.bits_per_dimension(ll, 64):.3f} bits per pixel")

# %%
# Marginals through NaN
# ---------------------
# A ``NaN`` marks a missing value: the circuit sums it out exactly. With the bottom half
# missing, the same call returns ``log p(top half)``; with nothing observed, ``log 1 = 0``.
bottom = tasks.bottom_half(8, 8).ravel()                    # True = occluded
top_only = np.where(bottom, np.nan, x_test)
log_top = program.log_likelihood(top_only)
print(f"log p(top half) of the first test images: {np.round(log_top[:4], 2)}")
print(f"log p(nothing observed) = {program.log_likelihood(np.full((1, 64), np.nan))[0]:.1e}")

# %%
# Conditionals
# ------------
# ``log p(bottom | top) = log p(top, bottom) - log p(top)``. ``log_conditional`` takes the
# query (bottom half) and the evidence (top half) as two arrays with ``NaN`` elsewhere.
query = np.where(bottom, x_test, np.nan)
log_bottom_given_top = program.log_conditional(query, top_only)
print(f"log p(bottom | top): {np.round(log_bottom_given_top[:4], 2)}")
print(f"equals log p(x) - log p(top): {np.allclose(log_bottom_given_top, ll - log_top)}")

# %%
# Completion: MPE against the posterior mean
# ------------------------------------------
# ``mpe`` fills the missing pixels with the values of the most probable explanation (a max pass,
# then a top-down pass that follows the best child of every sum). ``inpaint`` with
# ``method="posterior-mean"`` averages the leaves' means under the circuit's posterior given the
# observed pixels: smoother, and closer in squared error. Where the bottom half is uncertain,
# the most probable value of a pixel is often the background (0), so MPE completions look sparse.
mpe = program.mpe(top_only)
mean = program.inpaint(top_only, method="posterior-mean")
for name, completed in (("MPE", mpe), ("posterior mean", mean)):
    print(f"{name:<15} MSE over the bottom half (0..255 scale): "
          f"{tasks.completion_mse(x_test, completed, bottom, max_value=16):8.1f}")
save_completion_grid(out / "completions.png", x_test, bottom, {"MPE": mpe, "posterior mean": mean},
                     shape=(8, 8), value_range=(0, 16), title="bottom halves completed")

# %%
# Sampling
# --------
# ``sample`` draws exact samples top-down: at every sum a child by its weights, at every leaf a
# value. With ``evidence=`` it first conditions on the observed pixels, so the samples keep the
# top half and draw the bottom half from ``p(bottom | top)``.
samples = program.sample(32, seed=0)
save_image_grid(out / "samples.png", samples, 8, shape=(8, 8), value_range=(0, 16),
                title="unconditional samples")
evidence = np.repeat(top_only[:4], 8, axis=0)               # 8 samples for each of 4 top halves
conditional = program.sample(evidence=evidence, seed=0)
print(f"conditional samples keep the evidence: {np.array_equal(conditional[:, ~bottom], evidence[:, ~bottom])}")
save_image_grid(out / "conditional_samples.png", conditional, 8, shape=(8, 8), value_range=(0, 16),
                title="bottom halves sampled given the top (one row per digit)")
