"""
Builder: hidden Chow-Liu trees
==============================

A hidden Chow-Liu tree (HCLT) learns its structure from the data: the Chow-Liu tree is the
spanning tree of the variables with the largest total mutual information, and the circuit puts
a latent variable with ``K`` states at every node of the tree (``K`` units per leaf, product and
sum). This page draws the HCLT of six pixels, then builds one over all 64 pixels of the
binarized 8x8 digits and trains it.

Run it from the repository root::

    python tutorials/10_hclt.py [output-folder]

Pictures go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial10``).
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.imagegrid import save_image_grid

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial10"))
out.mkdir(parents=True, exist_ok=True)

digits = pc.datasets.load_digits_8x8()
x_train = (digits.x_train.reshape(len(digits.x_train), -1) > 8).astype(float)   # binarized pixels
x_test = (digits.x_test.reshape(len(digits.x_test), -1) > 8).astype(float)

# %%
# The structure, drawn small
# --------------------------
# Six pixels of the middle row, two latent states. The tree links the pixels that share the
# most information; the drawing shows one sum per tree node over its subtree.
middle_row = slice(24, 30)
small = pc.builders.hclt(x_train[:, middle_row], num_latents=2, leaf="bernoulli", seed=0)
print(small)
print(small.check())
small.render(out / "hclt_small.svg")

# %%
# All 64 pixels
# -------------
# The tree is estimated from the training images; the leaves start from the data. Soft EM
# then trains every parameter.
circuit = pc.builders.hclt(x_train, num_latents=16, leaf="bernoulli", seed=0)
print(circuit)
program = circuit.compile()
history = pc.learning.fit(program, x_train, method="em", epochs=10, batch_size=256, valid=x_test,
                          progress=False, seed=0)
print(f"test log-likelihood per epoch: {np.round(history['valid_ll'], 2)}")
history.plot(out / "learning_curve.png", title="HCLT, binarized 8x8 digits")
save_image_grid(out / "samples.png", program.sample(16, seed=0), 8, shape=(8, 8), value_range=(0, 1),
                title="HCLT: samples")
