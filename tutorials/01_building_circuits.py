"""
Building circuits by hand
=========================

Build a circuit by hand, look at its scopes, check it, draw it, break it.

Run it from the repository root::

    python tutorials/01_building_circuits.py [output-folder]

Pictures and files go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default
``out/tutorial01``). Without Graphviz's ``dot`` program the drawings are written as ``.dot``
source files, with a warning that says how to install it.
"""
import os
import sys
from pathlib import Path

import pcircuits as pc
from pcircuits.builders import figure1_spn

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial01"))
out.mkdir(parents=True, exist_ok=True)

# %%
# Variables and leaves
# --------------------
# The SPN of Figure 1 of the DGC-SPN paper is over four binary variables X1..X4. Its leaves are
# indicators: [Xi = 1] and [Xi = 0]. An InputNode holds a leaf *family* (here Indicator) for
# one variable; the family holds the parameters of all the node's units (here one unit each).
variables = pc.Variables(4, names=["X1", "X2", "X3", "X4"])
on = [pc.InputNode(v, pc.Indicator([1], num_categories=2), label=f"X{v + 1}") for v in range(4)]
off = [pc.InputNode(v, pc.Indicator([0], num_categories=2), label=f"not X{v + 1}") for v in range(4)]


def bernoulli_mixture(v, p_true):
    """P(Xv = 1) = p_true, written as a weighted sum of the two indicators."""
    return p_true * on[v] + (1 - p_true) * off[v]


# %%
# Sums and products with operators
# --------------------------------
# `0.4 * a + 0.6 * b` is a one-unit SumNode with weights [0.4, 0.6]; `a * b` is a ProductNode.
# Each component multiplies a distribution over (X1, X2) with one over (X3, X4).
left = [bernoulli_mixture(0, 0.9) * bernoulli_mixture(1, 0.3),
        bernoulli_mixture(0, 0.2) * bernoulli_mixture(1, 0.6)]
right = [bernoulli_mixture(2, 0.7) * bernoulli_mixture(3, 0.1),
         bernoulli_mixture(2, 0.4) * bernoulli_mixture(3, 0.8)]
s12 = pc.mixture(left, [0.4, 0.6], label="S12")
s34 = pc.mixture(right, [0.5, 0.5], label="S34")
root = pc.mixture([s12 * s34, left[0] * right[1]], [0.7, 0.3], label="root")
circuit = pc.Circuit(root, variables=variables)
print("Hand-built:      ", circuit)

# The same circuit ships as a builder, written with the functions product() and mixture():
print("figure1_spn():   ", figure1_spn())

# %%
# Scopes, node by node
# --------------------
# `circuit.nodes` lists every node children-first. A node's scope is the set of variables below
# it, computed once and cached; `format_scope` writes it with the variable names.
print("\nScopes, children before parents:")
for i, node in enumerate(circuit.nodes):
    print(f"  n{i:<3} {node.describe():<38} {circuit.variables.format_scope(node.scope)}")

# %%
# Check and draw
# --------------
# check() returns a ValidityReport: every sum must be smooth (children over the same scope),
# every product decomposable (children over disjoint scopes), no cycles, normalized weights.
report = circuit.check()
print("\n" + str(report))
print("drawing:", Path(circuit.render(out / "figure1.svg", report=report)).name)

# A circuit is saved as one file (JSON structure + arrays, no pickle) and loaded back exactly:
circuit.save(out / "figure1.pcz")
print("saved and loaded back:", pc.Circuit.load(out / "figure1.pcz"))

# %%
# Break decomposability on purpose
# --------------------------------
# Nodes do not demand validity, so invalid circuits can be built and inspected. Rewire the second
# (X1, X2) product to multiply two distributions over X1: its children now overlap, and the sum
# S12 above it mixes a child over {X1, X2} with one over {X1} only, so it is no longer smooth.
x1_factor = left[1].children[0]
left[1].rewire([x1_factor, bernoulli_mixture(0, 0.5)])
broken = circuit.check()
print("\nAfter the rewire:\n" + str(broken))
for violation in broken.violations:
    scopes = ", ".join(circuit.variables.format_scope(s) for s in violation.scopes)
    print(f"  - {violation.kind} at n{violation.node_index}; scopes involved: {scopes}")

# raise_if_invalid() turns a bad report into an exception, for code that needs valid circuits.
try:
    broken.raise_if_invalid()
except pc.InvalidCircuitError as error:
    print(f"\nraise_if_invalid() raised InvalidCircuitError ({len(error.report.violations)} violations)")

# The drawing marks the offending nodes in red and writes the broken property on them.
print("drawing:", Path(circuit.render(out / "figure1_broken.svg", report=broken)).name)
