"""
Convolutional SPNs
==================

Convolutional SPNs from cells, products and sums. Both convolutional SPN papers build circuits
layer by layer on a grid of *cells*: every cell is one node (a vector of units over the cell's
receptive field). This tutorial

1. builds a small DGC-SPN (van de Wolfshaar and Pronobis) and a DCSPN (Butz et al.), and
   prints their sizes, with the layer plan of the papers' full-size models;
2. draws a one-row DGC-SPN, the 1-D picture of the DGC-SPN paper's Figure 3;
3. breaks footnote 2 of the DGC-SPN paper on purpose (a dilation that is too small), first
   through the builder, which refuses it, then through the low-level layer helpers, where
   ``check()`` finds the products that multiply overlapping cells, and draws the report.

Run it from the repository root::

    python tutorials/02_convolutional_spns.py [output-folder]

Drawings go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial02``).
"""
import os
import sys
import time
from pathlib import Path

import pcircuits as pc
from pcircuits.builders import conv
from pcircuits.builders.dgcspn import gclp_plan

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial02"))
out.mkdir(parents=True, exist_ok=True)


def show_plan(height, width, **options):
    """Print the GCLP layers (kernel, stride, dilation, padding) the DGC-SPN builder plans."""
    for index, layer in enumerate(gclp_plan(height, width, **options)):
        print(f"    GCLP {index}: kernel {layer.kernel}, stride {layer.stride}, dilation {layer.dilation}, "
              f"padding {layer.padding!r}")


# %%
# Builders
# --------
# A generative DGC-SPN and the DCSPN lattice over 8x8 images, then the layer plans and build
# times of the papers' full-size models.
print("A generative DGC-SPN over 8x8 images (2 leaves per pixel, 4 sums per cell):")
small = pc.builders.dgcspn(8, 8, num_leaves=2, num_sums=4)
print("   ", small)
print("   ", small.check())
print("  its GCLP layers (dilations are products of the kernels below, DGC-SPN footnote 2):")
show_plan(8, 8)

print("\nThe DCSPN lattice over 8x8 images (1x2 and 2x1 sum-pooling, merged by channel augmentation):")
lattice = pc.builders.dcspn(8, 8, num_leaves=2, num_sums=4)
print("   ", lattice)
print("   ", lattice.check())

print("\nThe papers' models:")
print("  Olivetti 64x64, generative DGC-SPN (section 5.1):")
show_plan(64, 64)
print("  MNIST 28x28, discriminative DGC-SPN (section 5.2):")
show_plan(28, 28, num_non_overlapping=2)
for name, build in [("MNIST discriminative DGC-SPN", lambda: pc.builders.dgcspn(28, 28, mode="discriminative")),
                    ("MNIST DCSPN", lambda: pc.builders.dcspn(28, 28))]:
    start = time.perf_counter()
    circuit = build()
    print(f"  {name}: {circuit}, built in {time.perf_counter() - start:.2f} s")

# %%
# A drawing
# ---------
# A DGC-SPN over a 1x4 image, the picture of the DGC-SPN paper's Figure 3.
row = pc.builders.dgcspn(1, 4, num_leaves=2, num_sums=2)
path = row.render(out / "dgcspn_1x4.svg")
print(f"A DGC-SPN over a 1x4 image, as in the paper's Figure 3: {row}\n  drawn to {Path(path).name}")

# %%
# A violation on purpose
# ----------------------
# The builder refuses a dilation that breaks footnote 2 of the DGC-SPN paper.
try:
    pc.builders.dgcspn(1, 6, num_leaves=2, num_sums=2, dilations=[(1, 1), (1, 1), (1, 4), (1, 8)])
except ValueError as error:
    print("The builder refuses a dilation that breaks footnote 2:\n  ValueError:", error)

# %%
# Built by hand from the layer helpers, the same mistake is reported by ``check()``, and the
# drawing highlights the products that multiply overlapping cells.
leaves = conv.leaf_layer((1, 6), num_leaves=2)
first = conv.product_layer(leaves, kernel=(1, 2), padding="full", combinations="one-hot", name="gclp0")
sums = conv.spatial_sum_layer(first, 2, rng=0, name="sum0")
second = conv.product_layer(sums, kernel=(1, 2), dilation=(1, 1), padding="full", name="gclp1 (dilation 1)")
wrong = pc.Circuit(conv.spatial_sum_layer(second, 1, rng=1, name="top").nodes(), variables=leaves.variables)
report = wrong.check()
print(report)
path = wrong.render(out / "wrong_dilation.svg", report=report)
print(f"  the offending products are highlighted in {Path(path).name}")
