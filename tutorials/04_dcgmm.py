"""
Deep convolutional Gaussian mixture models
==========================================

Deep convolutional Gaussian mixture models (DCGMM, Gepperth).

A DCGMM is not one circuit: it is a stack of layers, each cGMM layer a Gaussian mixture over the
channel vectors at every position of its input, trained on its own loss. This tutorial

1. builds a small stack for the 8x8 digits, prints its layers, and shows the error a layer
   that does not fit gets;
2. trains it on the digits 1-9 (every layer by SGD on its own loss, higher layers starting
   later) and prints each layer's loss per epoch;
3. scores held-out digits by each cGMM layer's log-likelihood and measures how well the zeros
   (never seen in training) stand out (AUC);
4. samples by the chain of hierarchical priors, without and with sharpening, and fills in the
   erased right half of test digits;
5. exports one cGMM layer at one position as a circuit, checks that the Program computes the
   layer's log-likelihood, and shows what the validity report says when overlapping positions
   are multiplied as a circuit would need; draws the stack.

Run it from the repository root: ``python tutorials/04_dcgmm.py [output-folder]``. It writes its
pictures into the output folder (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial04``).
"""
import os
import sys
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.dcgmm import CGMM, Folding, Stack, cgmm_circuit
from pcircuits.imagegrid import save_completion_grid, save_image_grid


def auc(inliers, outliers):
    """Probability that a random inlier scores higher than a random outlier."""
    return float((inliers[:, None] > outliers[None, :]).mean() + 0.5 * (inliers[:, None] == outliers[None, :]).mean())


def main(out: Path):
    digits = pc.datasets.load_digits_8x8()
    x_train = digits.x_train[..., None] / 16.0                 # (n, 8, 8, 1) in [0, 1]
    x_test = digits.x_test[..., None] / 16.0

    # ---- 1. a stack of layers ---------------------------------------------------------------
    layers = [Folding(4, 2), CGMM(16), Folding(3, 1), CGMM(16)]
    stack = Stack(layers, image_shape=(8, 8), seed=0)
    print("The stack", stack.notation)
    print(stack.summary())
    try:
        Stack([Folding(4, 2), CGMM(16), Folding(4, 1), CGMM(16)], image_shape=(8, 8))
    except ValueError as err:
        print("\nA folding layer too large for its input is refused when the stack is made:\n   ", err)

    # ---- 2. training: every layer on its own loss ---------------------------------------------
    inliers = digits.y_train != 0
    history = stack.fit(x_train[inliers], epochs=40, batch_size=50, progress=False, seed=0)
    print(f"\nTrained on {int(inliers.sum())} digits 1-9 for {history.num_epochs} epochs "
          f"(layer L4 starts after {stack.delays()[3]:.0%} of the steps):")
    for key in ("loss_L2", "loss_L4"):
        values = history[key]
        print(f"  {key}: epoch 1 {values[0]:8.2f}   epoch 20 {values[19]:8.2f}   epoch 40 {values[-1]:8.2f}")
    print("  (L4's loss need not fall steadily: it describes L4's own input, the responsibilities of L2,")
    print("   which keep changing while L2 learns)")

    # ---- 3. outlier scores --------------------------------------------------------------------
    lls = stack.layer_log_likelihoods(x_test)
    zero = digits.y_test == 0
    print("\nHeld-out digits: AUC of digits 1-9 against the unseen zeros, by each layer's log-likelihood:")
    for name, ll in lls.items():
        print(f"  {name}: AUC {auc(ll[~zero], ll[zero]):.3f}")

    # ---- 4. sampling, sharpening, in-painting -------------------------------------------------
    options = {"seed": 1, "top_s": 2, "divisor": 5.0}         # the paper's code samples this way
    plain = stack.sample(32, **options)
    sharp = stack.sample(32, sharpen=True, sharpen_iterations=100, **options)
    objective = stack.layers[1].input_gradient
    before = objective(stack.layers[0].forward(stack.backend.asarray(plain)))[0].mean()
    after = objective(stack.layers[0].forward(stack.backend.asarray(sharp)))[0].mean()
    print(f"\nSamples: layer L2's mean max-component objective {before:.2f} without sharpening, {after:.2f} with")
    save_image_grid(out / "dcgmm_samples.png", np.clip(plain[..., 0], 0, 1), ncols=8, value_range=(0, 1),
                    title="DCGMM samples")
    save_image_grid(out / "dcgmm_samples_sharpened.png", np.clip(sharp[..., 0], 0, 1), ncols=8, value_range=(0, 1),
                    title="DCGMM samples, sharpened")
    occluded = x_test[:8].copy()
    occluded[:, :, 4:] = np.nan
    filled = stack.inpaint(occluded, seed=0, top_s=2, divisor=5.0)
    save_completion_grid(out / "dcgmm_inpainting.png", x_test[:8, ..., 0], np.isnan(occluded[..., 0]),
                         {"in-painted": np.clip(filled[..., 0], 0, 1)}, value_range=(0, 1))
    print("Wrote dcgmm_samples.png, dcgmm_samples_sharpened.png, dcgmm_inpainting.png")

    # ---- 5. the bridge to circuits ------------------------------------------------------------
    lowest = stack.layers[1]
    position = cgmm_circuit(lowest, position=(1, 1))
    print(f"\nLayer L2 at position (1, 1) as a circuit: {position}; {position.check()}")
    patches = np.asarray(stack.layers[0].forward(x_test.astype(np.float32)))
    program = position.compile(dtype="float64")
    difference = np.abs(program.log_likelihood(patches[:, 1, 1, :].astype(np.float64))
                        - lowest.log_likelihood(patches.astype(np.float64))[:, 4]).max()
    print(f"  its Program's log-likelihood equals the layer's at that position (largest difference {difference:.1e})")
    pixels = stack.layers[0].forward(np.arange(64.0).reshape(1, 8, 8, 1))[0]
    per_position = cgmm_circuit(lowest, variables=pixels)
    product = pc.Circuit(pc.ProductNode(per_position.roots, "cartesian"))
    report = product.check()
    print(f"\nMultiplying the 9 overlapping positions, as the next layer up would need: valid = {report.ok}")
    print("  ", report.violations[0].kind, "-", report.violations[0].message[:160])
    print("  (max-pooling has no node kind at all: a maximum is neither a sum nor a product)")
    print("Wrote", Path(stack.render(out / "dcgmm_stack.svg")).name)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial04"))
    target.mkdir(parents=True, exist_ok=True)
    main(target)
