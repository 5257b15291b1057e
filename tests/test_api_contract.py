"""The public API contract of DESIGN.md: every promised name exists and takes the promised arguments."""
import numpy as np

import pcircuits as pc


def test_scopes_and_variables():
    s = pc.Scope([0, 1, 5])
    assert len(s | pc.Scope([2])) == 4 and (s & pc.Scope([1])) == pc.Scope([1]) and s.isdisjoint(pc.Scope([3]))
    assert 5 in s and list(s) == [0, 1, 5]
    assert len(pc.Variables.image(28, 28).scope_of(range(2), range(3))) == 6


def test_leaf_families_and_random_constructors():
    assert pc.Bernoulli([0.2]).num_units == 1
    assert pc.Categorical([[0.5, 0.5]]).num_units == 1
    assert pc.Gaussian([0.0, 1.0], [1.0, 2.0]).num_units == 2
    assert pc.Gaussian(np.zeros((3, 2)), np.ones((3, 2))).num_variables == 2
    assert pc.Binomial(4, [0.5]).num_units == 1
    assert pc.Indicator([0, 1]).num_units == 2
    for family in (pc.Bernoulli, pc.Categorical, pc.Gaussian, pc.Binomial, pc.Indicator):
        assert family.random(3, rng=0).num_units == 3


def test_nodes_circuits_reports_files_and_queries(tmp_path):
    leaves = [pc.InputNode(v, pc.Bernoulli.random(2, rng=v)) for v in range(2)]
    prod = pc.ProductNode(leaves, pattern="elementwise")
    cart = pc.ProductNode(leaves, pattern="cartesian")
    table = pc.ProductNode(leaves, pattern=np.array([[0, 1], [1, 0]]))
    root = pc.SumNode([prod, cart, table], num_units=1, rng=0)
    also = pc.SumNode([prod], weights=[[0.5, 0.5]])
    c = pc.Circuit(root)
    assert pc.Circuit([root, also]).num_roots == 2
    assert (c.num_nodes, c.num_units, c.num_edges, c.num_params) == (6, 13, 24, 12) and c.scope == pc.Scope([0, 1])
    assert c.nodes[-1] is root
    r = c.check()
    assert r.ok and r.violations == []
    assert c.to_networkx().number_of_nodes() == 6 and "digraph" in c.to_dot()
    c.save(tmp_path / "model.pcz")
    assert pc.Circuit.load(tmp_path / "model.pcz").num_nodes == 6
    prog = c.compile(backend="numpy", dtype="float64")
    x = np.array([[0.0, 1.0], [np.nan, 1.0]])
    assert prog.log_likelihood(x).shape == (2,)
    assert not np.isnan(prog.mpe(x)).any()
    assert prog.sample(3, evidence=None, seed=0).shape == (3, 2)
    assert prog.inpaint(x, method="posterior-mean").shape == (2, 2)
    hist = pc.learning.fit(prog, np.array([[0.0, 1.0], [1.0, 1.0]]), method="em", epochs=2, batch_size=128,
                           progress=False, seed=0)
    assert len(hist["train_ll"]) == 2


def test_builders_accept_the_documented_arguments():
    pd = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=2, leaf="gaussian", dense=False)
    rat = pc.builders.rat_spn(8, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, leaf="gaussian", seed=0)
    dcspn = pc.builders.dcspn(4, 4)
    dgcspn = pc.builders.dgcspn(4, 4)
    hclt = pc.builders.hclt(np.random.default_rng(0).integers(0, 3, size=(50, 5)), num_latents=2, leaf="categorical")
    for circuit in (pd, rat, dcspn, dgcspn, hclt):
        assert circuit.check().ok
