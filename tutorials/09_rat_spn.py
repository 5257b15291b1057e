"""
Builder: RAT-SPNs
=================

Random tensorized SPNs (RAT-SPN, Peharz et al., 2019) need no geometry: each *repetition*
splits the variables at random into two halves, the halves again, down to ``depth`` levels,
and multiplies the halves' sums. Several repetitions are mixed at the root. With
``num_classes=C`` the circuit has ``C`` roots, one class-conditional distribution each, and
classifies by Bayes' rule. This page draws a small RAT-SPN and trains one as a density model
and one as a classifier on the 8x8 digits.

Run it from the repository root::

    python tutorials/09_rat_spn.py [output-folder]

Pictures go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial09``).
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.imagegrid import save_image_grid

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial09"))
out.mkdir(parents=True, exist_ok=True)

# %%
# The structure, drawn small
# --------------------------
# Four variables, one split level, two repetitions: each repetition cuts {x0, x1, x2, x3} into
# two random pairs, and the root mixes the two repetitions' products.
small = pc.builders.rat_spn(4, depth=1, num_repetitions=2, num_sums=2, num_leaves=2, leaf="bernoulli", seed=0)
print(small)
print(small.check())
small.render(out / "rat_spn_small.svg")

# %%
# A density model of the digits
# -----------------------------
digits = pc.datasets.load_digits_8x8()
x_train = digits.x_train.reshape(len(digits.x_train), -1).astype(float)
x_test = digits.x_test.reshape(len(digits.x_test), -1).astype(float)
circuit = pc.builders.rat_spn(64, depth=3, num_repetitions=10, num_sums=8, num_leaves=4,
                              leaf="binomial", leaf_params={"n": 16}, seed=0)
print(circuit)
program = circuit.compile()
history = pc.learning.fit(program, x_train, method="em", mode="online", step_size=0.1, epochs=5,
                          batch_size=128, valid=x_test, progress=False, seed=0)
print(f"test log-likelihood per epoch: {np.round(history['valid_ll'], 2)}")
save_image_grid(out / "samples.png", program.sample(16, seed=0), 8, shape=(8, 8), value_range=(0, 16),
                title="RAT-SPN: samples")

# %%
# A classifier
# ------------
# Ten roots, one per digit class, trained with Adam on the cross-entropy of the class posterior
# ``p(y | x)``. ``history.plot`` draws the loss and the accuracy per epoch.
classifier = pc.builders.rat_spn(64, depth=3, num_repetitions=10, num_sums=8, num_leaves=4, num_classes=10,
                                 leaf="binomial", leaf_params={"n": 16}, seed=0)
program = classifier.compile()
history = pc.learning.fit(program, x_train, labels=digits.y_train, valid=x_test, valid_labels=digits.y_test,
                          method="adam", lr=0.05, epochs=5, batch_size=128, progress=False, seed=0)
print(f"test accuracy per epoch: {np.round(history['valid_acc'], 3)}")
history.plot(out / "classifier_curve.png", title="RAT-SPN classifier, 8x8 digits")
