"""
Builder: Poon-Domingos circuits
===============================

The Poon-Domingos architecture (Poon and Domingos, 2011) for images: every rectangle of the
image is a region with sum units, and every way to cut a rectangle in two along a grid line
is a product of the two halves' sums. This page draws the circuit of a 2x2 image, shows how
``delta`` (the step of the coarse cuts) sets the size, and trains the builder's circuit on the
8x8 digits.

Run it from the repository root::

    python tutorials/08_poon_domingos.py [output-folder]

Pictures go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial08``).
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits import tasks
from pcircuits.builders.poon_domingos import poon_domingos_size
from pcircuits.imagegrid import save_completion_grid, save_image_grid

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial08"))
out.mkdir(parents=True, exist_ok=True)

# %%
# The structure, drawn small
# --------------------------
# A 2x2 image with 2 leaves per pixel and 2 sums per region. The root region (the whole image)
# can be cut horizontally or vertically: two products below the root. Each half is a 1x2 or 2x1
# region cut once more into single pixels, whose leaves are Bernoulli distributions.
small = pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, leaf="bernoulli", seed=0)
print(small)
print(small.check())
small.render(out / "poon_domingos_2x2.svg")

# %%
# Sizes
# -----
# ``delta`` sets the coarse cut lines: a region is cut at multiples of ``delta`` while it
# contains such a line, and the coarse cells are then cut down to single pixels. ``delta=1``
# cuts at every pixel line, the largest circuit. ``poon_domingos_size`` gives the sizes without
# building the circuit.
for delta in (1, 2, 4):
    size = poon_domingos_size(8, 8, delta=delta, num_sums=8, num_leaves=4)
    print(f"8x8 image, delta {delta}: {size['nodes']} nodes, {size['units']} units, {size['edges']} edges")

# %%
# Trained on the 8x8 digits
# -------------------------
# Binomial leaves over the grey levels 0..16, online EM for a few epochs, then the test
# log-likelihood, completions of the left half and samples.
digits = pc.datasets.load_digits_8x8()
x_train = digits.x_train.reshape(len(digits.x_train), -1).astype(float)
x_test = digits.x_test.reshape(len(digits.x_test), -1).astype(float)
circuit = pc.builders.poon_domingos(8, 8, delta=2, num_sums=8, num_leaves=4,
                                    leaf="binomial", leaf_params={"n": 16}, seed=0)
program = circuit.compile()
history = pc.learning.fit(program, x_train, method="em", mode="online", step_size=0.1, epochs=5,
                          batch_size=128, valid=x_test, progress=False, seed=0)
print(f"test log-likelihood per epoch: {np.round(history['valid_ll'], 2)}")
history.plot(out / "learning_curve.png", title="Poon-Domingos, 8x8 digits")

left = tasks.left_half(8, 8).ravel()
completed = program.inpaint(np.where(left, np.nan, x_test), method="posterior-mean")
print(f"left-half MSE (0..255 scale): {tasks.completion_mse(x_test, completed, left, max_value=16):.1f}")
save_completion_grid(out / "completions.png", x_test, left, {"posterior mean": completed},
                     shape=(8, 8), value_range=(0, 16), title="Poon-Domingos: left halves completed")
save_image_grid(out / "samples.png", program.sample(16, seed=0), 8, shape=(8, 8), value_range=(0, 16),
                title="Poon-Domingos: samples")
