"""VAE leaves: the bound against a textbook oracle, exact zeros for missing superpixels, gradients
by finite differences through a circuit, queries, training, files, drawings and the poster's sizes."""
import numpy as np
import pytest

import pcircuits as pc
from devices import DEVICE_BACKENDS
from leaf_contracts import CONTRACTS
from pcircuits.learning import fit

VARIANTS = [("bernoulli", 1, 1), ("bernoulli", 1, 3), ("binomial", 3, 1), ("gaussian", 1, 2)]


def _family(pixel, trials, samples, units=2, d=3, seed=0):
    return pc.VAE.random(units, d, rng=seed, latent_dim=2, hidden=4, pixel=pixel, trials=trials, num_samples=samples)


def _data(pixel, trials, shape, seed=0, missing=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) if pixel == "gaussian" else rng.integers(0, trials + 1, size=shape).astype(float)
    x[rng.random(shape) < missing] = np.nan
    return x


def _two_superpixel_circuit(pixel, trials, samples):
    """A sum over the cartesian product of two VAE nodes over 3 variables each."""
    left = pc.InputNode([0, 1, 2], _family(pixel, trials, samples, seed=1))
    right = pc.InputNode([3, 4, 5], _family(pixel, trials, samples, seed=2))
    root = pc.SumNode([pc.ProductNode([left, right], "cartesian")], num_units=1, rng=0)
    return pc.Circuit(root)


@pytest.mark.parametrize("pixel, trials, samples", VARIANTS)
def test_a_lone_vae_node_computes_the_textbook_bound(pixel, trials, samples):
    family = _family(pixel, trials, samples, units=3, d=4)
    node = pc.InputNode(range(4), family)
    program = pc.Circuit(pc.SumNode([node], num_units=1, rng=0)).compile(dtype="float64")
    x = _data(pixel, trials, (7, 4))
    program.forward(x)
    got = program.values[:3].T
    want = CONTRACTS["vae"].oracle(family, np.where(np.isnan(x), 0, x), ~np.isnan(x))
    assert np.allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pixel, trials, samples", VARIANTS)
def test_a_fully_missing_superpixel_contributes_exactly_zero(pixel, trials, samples):
    family = _family(pixel, trials, samples, units=2)
    program = pc.Circuit(pc.SumNode([pc.InputNode([0, 1, 2], family)], num_units=1, rng=0)).compile(dtype="float64")
    program.forward(np.full((3, 3), np.nan))
    assert np.array_equal(program.values[:2], np.zeros((2, 3)))
    both = _two_superpixel_circuit(pixel, trials, samples).compile(dtype="float64")
    assert np.array_equal(both.log_likelihood(np.full((2, 6), np.nan)), np.zeros(2))


@pytest.mark.parametrize("pixel, trials, samples", VARIANTS)
def test_leaf_gradients_through_a_circuit_match_finite_differences(pixel, trials, samples):
    program = _two_superpixel_circuit(pixel, trials, samples).compile(dtype="float64")
    x = _data(pixel, trials, (4, 6), seed=3)
    rng = np.random.default_rng(5)
    grad_root = rng.normal(size=(4, 1))

    def objective():
        return float((program.forward(x)[:, 0] * grad_root[:, 0]).sum())

    objective()
    grads = program.backward(grad_root, leaves=True).leaves
    (key,) = program.leaf_tables
    table = program.leaf_tables[key]
    for name in pc.VAE.param_names:
        array = table[name]
        for index in [tuple(rng.integers(0, s) for s in array.shape) for _ in range(3)]:
            old = array[index]
            array[index] = old + 1e-6
            up = objective()
            array[index] = old - 1e-6
            down = objective()
            array[index] = old
            numeric = (up - down) / 2e-6
            assert np.isclose(grads[key][name][index], numeric, rtol=1e-5, atol=1e-7), (name, index)


def test_input_gradients_of_gaussian_pixels_match_finite_differences():
    program = _two_superpixel_circuit("gaussian", 1, 2).compile(dtype="float64")
    x = _data("gaussian", 1, (3, 6), seed=4)
    program.forward(x)
    got = program.backward(inputs=True, leaves=False).inputs
    for b, v in [(0, 0), (1, 4), (2, 5), (0, 3)]:
        if np.isnan(x[b, v]):
            continue
        up, down = x.copy(), x.copy()
        up[b, v] += 1e-6
        down[b, v] -= 1e-6
        numeric = (program.log_likelihood(up)[b] - program.log_likelihood(down)[b]) / 2e-6
        assert np.isclose(got[b, v], numeric, rtol=1e-5, atol=1e-7)


def test_a_circuit_with_vae_leaves_says_it_computes_a_bound():
    assert not _two_superpixel_circuit("bernoulli", 1, 1).compile().exact
    assert pc.builders.rat_spn(4, depth=1, num_repetitions=1, num_sums=2, num_leaves=2, seed=0).compile().exact


def test_evaluations_are_repeatable_and_training_noise_comes_from_the_pass_random_source():
    program = _two_superpixel_circuit("bernoulli", 1, 1).compile(dtype="float64")
    x = _data("bernoulli", 1, (6, 6))
    assert np.array_equal(program.log_likelihood(x), program.log_likelihood(x))
    from pcircuits.program.context import PassContext
    a = program._forward(program.prepare(x), PassContext("sum", rng=program.backend.rng(1))).copy()
    b = program._forward(program.prepare(x), PassContext("sum", rng=program.backend.rng(2))).copy()
    assert not np.array_equal(a, b)


def test_completions_fill_only_the_missing_pixels_with_values_of_the_pixel_domain():
    program = _two_superpixel_circuit("bernoulli", 1, 1).compile(dtype="float64")
    x = _data("bernoulli", 1, (8, 6), missing=0.4)
    x[0] = np.nan
    observed = ~np.isnan(x)
    for completion in (program.mpe(x), program.sample(evidence=x, seed=0)):
        assert np.array_equal(completion[observed], x[observed])
        assert set(np.unique(completion)) <= {0.0, 1.0}
    mean = program.inpaint(x)
    assert np.array_equal(mean[observed], x[observed])
    assert np.all((mean >= 0) & (mean <= 1))
    samples = program.sample(200, seed=1)
    assert samples.shape == (200, 6) and set(np.unique(samples)) <= {0.0, 1.0}


def test_posterior_mean_inpainting_depends_on_the_observed_pixels_of_the_superpixel():
    program = _two_superpixel_circuit("gaussian", 1, 1).compile(dtype="float64")
    x = np.full((2, 6), np.nan)
    x[0, 0], x[1, 0] = -3.0, 3.0
    filled = program.inpaint(x)
    assert not np.allclose(filled[0, 1:3], filled[1, 1:3])


def test_em_refuses_vae_leaves_and_names_the_alternative():
    program = _two_superpixel_circuit("bernoulli", 1, 1).compile()
    with pytest.raises(ValueError, match="vae leaves have no EM update.*adam"):
        fit(program, _data("bernoulli", 1, (8, 6), missing=0), method="em", epochs=1, progress=False)


def test_adam_training_lowers_the_loss_and_resumes_bit_for_bit(tmp_path):
    x = (np.random.default_rng(0).random((64, 16)) < 0.3).astype(float)

    def run(epochs, checkpoint):
        circuit = pc.builders.vae_spn(4, 4, superpixel=2, latent_dim=2, hidden=4, seed=0)
        program = circuit.compile(dtype="float64")
        history = fit(program, x, method="adam", lr=0.02, epochs=epochs, batch_size=16, progress=False, seed=1,
                      checkpoint=checkpoint)
        return program, history

    straight, history = run(4, None)
    assert history["train_loss"][-1] < history["train_loss"][0]
    run(2, tmp_path / "c.npz")
    resumed, _ = run(4, tmp_path / "c.npz")
    for key, table in straight.leaf_tables.items():
        for name, value in table.items():
            assert np.array_equal(value, resumed.leaf_tables[key][name]), name


def test_save_and_load_round_trip_is_bit_identical(tmp_path):
    circuit = pc.builders.vae_spn(4, 4, superpixel=2, pixel="binomial", trials=7, num_samples=2, seed=3)
    circuit.save(tmp_path / "m.pcz")
    loaded = pc.Circuit.load(tmp_path / "m.pcz")
    x = np.random.default_rng(0).integers(0, 8, size=(5, 16)).astype(float)
    assert np.array_equal(circuit.compile(dtype="float64").log_likelihood(x),
                          loaded.compile(dtype="float64").log_likelihood(x))
    for a, b in zip(circuit.nodes, loaded.nodes):
        if isinstance(a, pc.InputNode):
            assert a.family.config() == b.family.config()
            for name, value in a.family.parameters().items():
                assert np.array_equal(value, b.family.parameters()[name])


def test_a_vae_leaf_is_drawn_as_its_own_leaf_kind(tmp_path):
    circuit = pc.builders.vae_spn(4, 4, superpixel=2, latent_dim=3, seed=0)
    assert "VAE d=4, latent 3, bernoulli" in circuit.to_dot()
    circuit.render(tmp_path / "vae.svg")
    assert (tmp_path / "vae.svg").stat().st_size > 0


@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
def test_device_passes_agree_with_numpy(backend):
    circuit = _two_superpixel_circuit("bernoulli", 1, 2)
    x = _data("bernoulli", 1, (5, 6))
    reference = circuit.compile(dtype="float64")
    device = circuit.compile(backend=backend, dtype="float64")
    assert np.allclose(reference.log_likelihood(x), pc.to_numpy(device.log_likelihood(x)), rtol=1e-10)
    reference.forward(x)
    device.forward(device.prepare(x))
    want, got = reference.backward().leaves, device.backward().leaves
    for key, grads in want.items():
        for name, value in grads.items():
            assert np.allclose(value, pc.to_numpy(got[key][name]), rtol=1e-9, atol=1e-12)


# ---- the builder's sizes: the poster's columns and its formulas -----------------------------

def _unit_counts(circuit):
    counts = {"input": 0, "product": 0, "sum": 0}
    for node in circuit.nodes:
        counts[node.kind] += node.num_units
    return counts


def test_mnist_with_vae_leaves_has_the_posters_sizes():
    counts = _unit_counts(pc.builders.vae_spn(28, 28, superpixel=(4, 4), num_sums=2, leaves_per_superpixel=2))
    # the poster counts the root region with K = 2 units; the circuit's root is one unit
    assert (counts["input"], counts["sum"] + 1, counts["product"]) == (98, 1470, 12544)


def test_mnist_vanilla_spn_has_the_posters_sizes():
    counts = _unit_counts(pc.builders.vae_spn(28, 28, superpixel=(4, 4), num_sums=2, leaves_per_superpixel=2,
                                              leaf="bernoulli"))
    assert (counts["input"], counts["sum"] + 1, counts["product"]) == (1568, 9702, 51744)


@pytest.mark.parametrize("height, width, superpixel, K, G", [(8, 12, (4, 4), 2, 2), (6, 6, (2, 3), 3, 1),
                                                             (9, 6, (3, 2), 2, 3), (4, 4, (4, 4), 2, 2)])
@pytest.mark.parametrize("leaf", ["vae", "bernoulli"])
def test_the_builder_follows_the_posters_formulas_on_other_grids(height, width, superpixel, K, G, leaf):
    circuit = pc.builders.vae_spn(height, width, superpixel=superpixel, num_sums=K, leaves_per_superpixel=G,
                                  leaf=leaf, hidden=2)
    circuit.check()
    counts = _unit_counts(circuit)
    size = pc.builders.vae_spn_size(height, width, superpixel=superpixel, num_sums=K, leaves_per_superpixel=G,
                                    leaf=leaf)
    single_cell = height == superpixel[0] and width == superpixel[1]
    root_correction = 0 if single_cell and leaf == "vae" else K - 1
    assert counts["input"] == size["leaf_units"]
    assert counts["product"] == size["product_units"]
    assert counts["sum"] + root_correction == size["sum_units"] + (1 if single_cell and leaf == "vae" else 0)


def test_the_builder_refuses_images_that_are_not_whole_superpixels():
    with pytest.raises(ValueError, match="not a whole number of 4x4 superpixels"):
        pc.builders.vae_spn(10, 8)


@pytest.mark.parametrize("pixel, trials, samples", [("bernoulli", 1, 1), ("gaussian", 1, 3)])
def test_running_the_units_in_blocks_changes_no_value_or_gradient(pixel, trials, samples, monkeypatch):
    from pcircuits.distributions import vae
    program = pc.Circuit(pc.SumNode([pc.InputNode(range(3), _family(pixel, trials, samples, units=5))],
                                    num_units=1, rng=0)).compile(dtype="float64")
    x = _data(pixel, trials, (6, 3), seed=2)

    def run():
        values = program.forward(x).copy()
        gradients = program.backward(inputs=True)
        return values, {k: v.copy() for k, v in next(iter(gradients.leaves.values())).items()}, gradients.inputs.copy()

    whole = run()
    monkeypatch.setattr(vae, "_BLOCK_ELEMENTS", 1)                 # one unit per block
    layer = program.input_layers[0]
    assert len(pc.VAE._blocks(program.backend, layer.params(program.leaf_tables[layer.table_key]), 6, samples)) == 5
    blocked = run()
    assert np.allclose(whole[0], blocked[0], rtol=1e-12)
    for name in whole[1]:
        assert np.allclose(whole[1][name], blocked[1][name], rtol=1e-12, atol=1e-14), name
    assert np.allclose(whole[2], blocked[2], rtol=1e-12, atol=1e-14)
