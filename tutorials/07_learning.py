"""
Learning: EM variants and Adam
==============================

The same Poon-Domingos circuit over the 8x8 digits, trained from the same start by soft EM
(full-batch and online), hard EM, hard EM with unweighted sum inputs, and Adam; their learning
curves side by side; then a run interrupted after a few epochs and resumed from its checkpoint,
which ends bit for bit where the uninterrupted run ends.

Run it from the repository root::

    python tutorials/07_learning.py [output-folder]

Pictures and checkpoints go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default
``out/tutorial07``). It takes well under a minute.
"""
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np

import pcircuits as pc

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial07"))
out.mkdir(parents=True, exist_ok=True)

# %%
# Data and circuit
# ----------------
# The 8x8 digits ship with the package (grey levels 0..16). Each pixel gets binomial leaves
# with 16 trials. ``make_circuit`` builds the circuit from the same seed every time, so every
# method starts from the same parameters.
digits = pc.datasets.load_digits_8x8()
x_train = digits.x_train.reshape(len(digits.x_train), -1)
x_test = digits.x_test.reshape(len(digits.x_test), -1)
print(f"train {x_train.shape}, test {x_test.shape}")


def make_circuit():
    """A Poon-Domingos circuit over 8x8 images, binomial leaves, fixed seed."""
    return pc.builders.poon_domingos(8, 8, delta=2, num_sums=8, num_leaves=4,
                                     leaf="binomial", leaf_params={"n": 16}, seed=0)


print(make_circuit())

# %%
# Five ways to learn
# ------------------
# ``fit`` trains the compiled Program in place and returns a History: one entry per epoch of
# the mean training and validation log-likelihood.
#
# - ``"em"``: soft EM, one update per epoch from all batches' expected counts;
# - ``"em"`` with ``mode="online"``: stepwise EM, one update per batch blended in with a step size;
# - ``"hard-em"``: each example counts only for the winning child of each sum (max values);
# - ``"usi"``: hard EM with unweighted sum inputs (the winner ignores the weights);
# - ``"adam"``: gradient ascent on the log-likelihood in log-space weights and leaf parameters.
methods = {
    "soft EM (full batch)": dict(method="em"),
    "soft EM (online)": dict(method="em", mode="online", step_size=0.1),
    "hard EM": dict(method="hard-em"),
    "hard EM, unweighted inputs": dict(method="usi"),
    "Adam": dict(method="adam", lr=0.05),
}
EPOCHS = 6
histories = {}
for name, options in methods.items():
    program = make_circuit().compile()
    histories[name] = pc.learning.fit(program, x_train, epochs=EPOCHS, batch_size=128, valid=x_test,
                                      progress=False, seed=0, **options)
    print(f"{name:<28} test log-likelihood per image: {histories[name]['valid_ll'][-1]:8.2f} nats "
          f"({sum(histories[name]['seconds']):.1f} s)")

# %%
# Learning curves
# ---------------
# The mean log-likelihood of the test images after each epoch, for every method.
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for name, history in histories.items():
    axes[0].plot(history["epoch"], history["train_ll"], marker="o", label=name)
    axes[1].plot(history["epoch"], history["valid_ll"], marker="o", label=name)
axes[0].set_title("training images")
axes[1].set_title("test images")
for ax in axes:
    ax.set_xlabel("epoch")
axes[0].set_ylabel("mean log-likelihood (nats)")
axes[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(out / "learning_curves.png", dpi=100)
plt.close(fig)

# %%
# Checkpoint and resume
# ---------------------
# With ``checkpoint=``, ``fit`` saves the parameters, the optimizer's state, the random state
# and the history after every epoch. Calling ``fit`` again with the same checkpoint and more
# epochs continues from where the file left off. Here a run stops after 3 of 6 epochs (as if
# interrupted), a fresh Program resumes it, and the result equals the uninterrupted run's bit
# for bit.
checkpoint = out / "adam.ckpt.npz"
checkpoint.unlink(missing_ok=True)
options = dict(method="adam", lr=0.05, batch_size=128, progress=False, seed=0)
first = make_circuit().compile()
pc.learning.fit(first, x_train, epochs=3, checkpoint=checkpoint, **options)
resumed = make_circuit().compile()
history = pc.learning.fit(resumed, x_train, epochs=EPOCHS, checkpoint=checkpoint, **options)
print(f"resumed run: {len(history['epoch'])} epochs in its history, the last {EPOCHS - 3} trained now")

straight = make_circuit().compile()
pc.learning.fit(straight, x_train, epochs=EPOCHS, **options)
same = np.array_equal(resumed.log_likelihood(x_test), straight.log_likelihood(x_test))
print(f"resumed and uninterrupted runs give identical test log-likelihoods: {same}")
