"""
What is a probabilistic circuit?
================================

Sums, products and leaves; scopes; smoothness and decomposability; and why they make every
marginal a single pass. Each answer of the compiled Program is printed beside the same
quantity computed by brute force, summing the circuit's distribution over all assignments.

Run it from the repository root::

    python tutorials/00_what_is_a_circuit.py [output-folder]

Pictures go to ``output-folder`` (or ``$PCIRCUITS_TUTORIAL_OUT``, default ``out/tutorial00``).
"""
import itertools
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np

import pcircuits as pc

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PCIRCUITS_TUTORIAL_OUT", "out/tutorial00"))
out.mkdir(parents=True, exist_ok=True)

# %%
# Leaves, products and sums
# -------------------------
# Three binary variables X0, X1, X2. A *leaf* is a distribution over one variable, here a
# Bernoulli. A *product* of distributions over different variables is their joint distribution
# when they are independent. A *sum* with weights that add up to one is a mixture. The circuit
# below is a mixture of two fully factorized distributions:
#
# ``p(x) = 0.3 * B(x0; 0.9) B(x1; 0.8) B(x2; 0.1) + 0.7 * B(x0; 0.2) B(x1; 0.3) B(x2; 0.6)``
#
# Every node has a *scope*: the set of variables below it. A leaf's scope is its variable, a
# product's or a sum's the union of its children's scopes.
components = [[0.9, 0.8, 0.1], [0.2, 0.3, 0.6]]
weights = [0.3, 0.7]
variables = pc.Variables(3, names=["X0", "X1", "X2"])
products = [pc.product([pc.InputNode(v, pc.Bernoulli([p]), label=f"B(X{v}; {p})") for v, p in enumerate(ps)])
            for ps in components]
circuit = pc.Circuit(pc.mixture(products, weights, label="root"), variables=variables)
for node in circuit.nodes:
    print(f"{node.describe():<34} scope {variables.format_scope(node.scope)}")
circuit.render(out / "mixture.svg")

# %%
# Smooth and decomposable
# -----------------------
# The circuit is *smooth*: the children of each sum have the same scope. It is *decomposable*:
# the children of each product have disjoint scopes. ``check()`` verifies both.
print(circuit.check())
program = circuit.compile(dtype="float64")

# %%
# The joint distribution, by brute force
# --------------------------------------
# With three binary variables there are eight assignments. The brute-force joint below is
# written directly from the formula above; the Program computes ``log p(x)`` in one bottom-up
# pass. They agree, and the eight probabilities sum to one.
assignments = np.array(list(itertools.product([0, 1], repeat=3)), dtype=float)


def brute_force_joint(x):
    """p(x) from the mixture formula, for complete assignments ``x`` of shape (n, 3)."""
    probs = np.array(components)[None]                           # (1, 2 components, 3 variables)
    factors = np.where(x[:, None, :] == 1, probs, 1 - probs)     # (n, 2, 3)
    return factors.prod(axis=2) @ np.array(weights)


joint = brute_force_joint(assignments)
circuit_joint = np.exp(program.log_likelihood(assignments))
for x, p_brute, p_circuit in zip(assignments.astype(int), joint, circuit_joint):
    print(f"x = {x}   brute force {p_brute:.4f}   Program {p_circuit:.4f}")
print(f"sum over all assignments: {joint.sum():.6f}; largest difference {np.abs(joint - circuit_joint).max():.1e}")

# %%
# Marginals in one pass
# ---------------------
# To marginalize a variable, a query leaves it missing (``NaN``): its leaves then output 1, the
# integral of a distribution. Because each product is decomposable, the sum over the missing
# variable's values can be pushed down through the products to the leaves, and because each sum
# is smooth, through the sums: one pass computes the sum over exponentially many assignments.
query = np.array([[1.0, np.nan, np.nan], [np.nan, 0.0, 1.0]])
for row, p_circuit in zip(query, np.exp(program.log_likelihood(query))):
    observed = ~np.isnan(row)
    matches = (assignments[:, observed] == row[observed]).all(axis=1)
    print(f"p({row}) = {p_circuit:.4f} (Program), {joint[matches].sum():.4f} (sum over {matches.sum()} assignments)")

# %%
# Conditionals
# ------------
# ``p(x2 = 1 | x0 = 1)`` is a ratio of two marginals: ``log_conditional`` takes the query and
# the evidence as two arrays with ``NaN`` elsewhere.
conditional = np.exp(program.log_conditional(np.array([[np.nan, np.nan, 1.0]]), np.array([[1.0, np.nan, np.nan]])))
brute = joint[(assignments[:, 0] == 1) & (assignments[:, 2] == 1)].sum() / joint[assignments[:, 0] == 1].sum()
print(f"p(x2 = 1 | x0 = 1) = {conditional[0]:.4f} (Program), {brute:.4f} (brute force)")

# %%
# Most probable completion and sampling
# -------------------------------------
# ``mpe`` fills the missing values with a max-product pass and a top-down pass: it picks the
# best mixture component and the best values under it. For a mixture this is the most
# probable (component, values) pair, which can differ from the most probable values summed over
# the components; the brute-force answer is printed beside it. ``sample`` draws exact samples
# top-down: the frequencies of 20000 samples match the joint.
evidence = np.array([[1.0, np.nan, np.nan]])
completion = program.mpe(evidence)[0]
candidates = assignments[assignments[:, 0] == 1]
best = candidates[np.argmax(brute_force_joint(candidates))]
print(f"MPE given x0 = 1: Program {completion.astype(int)}, brute force {best.astype(int)}")

samples = program.sample(20000, seed=0)
codes = samples.astype(int) @ np.array([4, 2, 1])
frequencies = np.bincount(codes, minlength=8) / len(samples)
print(f"largest gap between sample frequencies and the joint: {np.abs(frequencies - joint).max():.4f}")

fig, ax = plt.subplots(figsize=(6, 3))
labels = ["".join(str(int(v)) for v in x) for x in assignments]
ax.bar(np.arange(8) - 0.2, joint, width=0.4, label="p(x), brute force")
ax.bar(np.arange(8) + 0.2, frequencies, width=0.4, label="20000 samples")
ax.set_xticks(np.arange(8), labels)
ax.set_xlabel("x0 x1 x2")
ax.set_ylabel("probability")
ax.legend()
fig.tight_layout()
fig.savefig(out / "joint_and_samples.png", dpi=100)
plt.close(fig)

# %%
# What goes wrong without decomposability
# ---------------------------------------
# A product whose children share a variable multiplies two factors over X0: it counts X0
# twice. ``check()`` names the product and the shared variable, and the drawing marks it in
# red. Compiled anyway (``check=False``), the circuit's values no longer sum to one over all
# assignments, and its "marginals" are no longer sums of the joint.
leaf = lambda v, p: pc.InputNode(v, pc.Bernoulli([p]), label=f"B(X{v}; {p})")  # noqa: E731
twice = pc.product([leaf(0, 0.9), leaf(0, 0.2), leaf(1, 0.5)], label="X0 twice")
broken = pc.Circuit(pc.mixture([twice, leaf(0, 0.5) * leaf(1, 0.5)], [0.5, 0.5]),
                    variables=pc.Variables(2, names=["X0", "X1"]))
report = broken.check()
print(report)
broken.render(out / "not_decomposable.svg", report=report)
bad = broken.compile(dtype="float64", check=False)
pairs = np.array(list(itertools.product([0, 1], repeat=2)), dtype=float)
print(f"sum of p(x) over the four assignments: {np.exp(bad.log_likelihood(pairs)).sum():.4f}")
marginal = np.exp(bad.log_likelihood(np.array([[np.nan, 1.0]])))[0]
print(f"p(x1 = 1): {marginal:.4f} by marginalizing, "
      f"{np.exp(bad.log_likelihood(pairs[pairs[:, 1] == 1])).sum():.4f} by summing the joint")
