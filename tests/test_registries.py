"""The registries are complete: every registered family, learner, layer kind, node kind,
constraint and optimizer has what the rest of the library and the contract tests need."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from leaf_contracts import CONTRACTS
from pcircuits.constraints import CONSTRAINTS, constraint
from pcircuits.distributions import FAMILIES
from pcircuits.layerize.plan import LAYER_RULES, plan_layers
from pcircuits.learning import LEARNERS, fit
from pcircuits.optim import OPTIMIZERS, make_optimizer
from pcircuits.program.layers import COMPILE_RULES
from strategies import ALL_FAMILIES


def test_every_registered_leaf_family_has_a_test_contract():
    assert set(FAMILIES) <= set(CONTRACTS) | {name for name, f in FAMILIES.items() if not f.exact}
    assert set(CONTRACTS) <= set(FAMILIES)


def test_every_exact_family_with_a_contract_is_drawn_by_the_property_tests():
    assert set(ALL_FAMILIES) == {name for name, f in FAMILIES.items() if f.exact and name in CONTRACTS}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_declares_constraints_for_learnable_parameters_only(name):
    family = FAMILIES[name]
    assert set(family.constraints) <= set(family.param_names)
    assert all(type(c) in CONSTRAINTS.values() for c in family.constraints.values())


@pytest.mark.parametrize("name", sorted(FAMILIES))
@settings(max_examples=5)
@given(data=st.data())
def test_every_familys_unconstrained_form_round_trips(name, data):
    kind = CONTRACTS[name].variable_kind(data.draw)
    family = CONTRACTS[name].make(kind, 3, 1, np.random.default_rng(0))
    table = {k: np.asarray(v, dtype=np.float64) for k, v in family.table_arrays().items()}
    free = FAMILIES[name].to_unconstrained(np, table)
    back = FAMILIES[name].from_unconstrained(np, table, free)
    for key, value in back.items():
        assert np.allclose(value, table[key], atol=1e-9), key


#: Options a learner cannot do without on the registry tests' circuit (6 binary variables).
REQUIRED_OPTIONS = {"pae": {"latent": [5]}}


@pytest.mark.parametrize("method", sorted(LEARNERS))
def test_every_learner_trains_and_resumes_bit_for_bit(method, tmp_path):
    x = np.random.default_rng(0).integers(0, 2, size=(60, 6)).astype(float)

    def run(epochs, checkpoint):
        circuit = pc.builders.rat_spn(6, depth=1, num_repetitions=2, num_sums=2, num_leaves=2, leaf="bernoulli",
                                      seed=0)
        program = circuit.compile(dtype="float64")
        history = fit(program, x, method=method, epochs=epochs, batch_size=16, progress=False, seed=3,
                      checkpoint=checkpoint, **REQUIRED_OPTIONS.get(method, {}))
        return program, history

    straight, history = run(3, None)
    assert np.all(np.isfinite(history["train_loss"]))
    run(2, tmp_path / "c.npz")
    resumed, _ = run(3, tmp_path / "c.npz")
    assert np.array_equal(straight.weights, resumed.weights)
    for key, table in straight.leaf_tables.items():
        for name, value in table.items():
            assert np.array_equal(value, resumed.leaf_tables[key][name])


@pytest.mark.parametrize("method", sorted(m for m, entry in LEARNERS.items() if entry.family != "sampling"))
def test_every_learners_combined_statistics_of_two_halves_equal_those_of_the_batch(method):
    # sample objectives (MMD between a batch and its samples, a critic's loss) are not sums over
    # examples; their combination is tested below
    x = np.random.default_rng(1).integers(0, 2, size=(40, 6)).astype(float)
    circuit = pc.builders.rat_spn(6, depth=1, num_repetitions=2, num_sums=2, num_leaves=2, leaf="bernoulli", seed=0)
    program = circuit.compile(dtype="float64")
    options = dict(pc.learning.fit.__kwdefaults__, method=method, objective="nll", seed=0)
    learner = pc.learning.make_learner(method, program, options)
    whole = learner.statistics(x)
    halves = learner.combine(learner.statistics(x[:15]), learner.statistics(x[15:]))
    assert halves["count"] == whole["count"] and np.isclose(halves["loss_sum"], whole["loss_sum"], rtol=1e-12)
    for key in ("weights", "grads"):
        if key in whole:
            left, right = (whole[key], halves[key]) if key == "weights" else (whole[key]["weights"],
                                                                              halves[key]["weights"])
            assert np.allclose(left, right, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", sorted(m for m, entry in LEARNERS.items() if entry.family == "sampling"))
def test_every_sampling_learners_combined_statistics_are_the_example_weighted_mean(method):
    x = np.random.default_rng(1).integers(0, 2, size=(40, 6)).astype(float)
    circuit = pc.builders.rat_spn(6, depth=1, num_repetitions=2, num_sums=2, num_leaves=2, leaf="bernoulli", seed=0)
    program = circuit.compile(dtype="float64")
    options = dict(pc.learning.fit.__kwdefaults__, method=method, seed=0, **REQUIRED_OPTIONS.get(method, {}))
    learner = pc.learning.make_learner(method, program, options)
    left = learner.statistics(x[:15], rng=program.backend.rng(0))
    right = learner.statistics(x[15:], rng=program.backend.rng(1))
    both = learner.combine(left, right)
    assert both["count"] == 40 and np.isclose(both["loss_sum"], left["loss_sum"] + right["loss_sum"])
    assert np.allclose(both["grads"]["weights"], (15 * left["grads"]["weights"] + 25 * right["grads"]["weights"]) / 40)


def _planning_examples():
    """Circuits that together need every layer kind."""
    leaves = [pc.InputNode(v, pc.Bernoulli.random(2, rng=v)) for v in range(2)]
    masked = pc.SumNode([pc.ProductNode(leaves, pattern="cartesian")], num_units=2,
                        mask=np.array([[True, False, True, True], [False, True, True, True]]), rng=0)
    dense = pc.SumNode([pc.ProductNode(leaves, pattern="elementwise")], num_units=1, rng=0)
    scalar = pc.SumNode([pc.ProductNode([pc.InputNode(v, pc.Bernoulli([0.2 + 0.3 * k])) for v in range(2)])
                         for k in range(2)], rng=0)
    mixture = pc.SumNode([pc.InputNode(0, pc.Bernoulli([p])) for p in (0.2, 0.7)], rng=0)
    return [pc.Circuit(masked), pc.Circuit(dense), pc.Circuit(scalar), pc.Circuit(mixture),
            pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=2, seed=0),
            pc.builders.rat_spn(8, depth=2, num_repetitions=1, num_sums=2, num_leaves=2, seed=0)]


def test_every_layer_kind_has_a_rule_and_a_compile_rule_and_is_planned_by_some_circuit():
    spec_types = set()
    for circuit in _planning_examples():
        spec_types |= {type(spec) for spec in plan_layers(circuit).layers}
        circuit.compile()
    assert spec_types == set(COMPILE_RULES)
    assert len(LAYER_RULES) == len(COMPILE_RULES)


def test_every_node_kind_has_a_codec_a_copy_rule_and_validity_rules():
    from pcircuits.circuit import _COPY_RULES
    from pcircuits.serialization import _CODECS
    from pcircuits.validity import _NODE_RULES, _SHAPE_RULES
    kinds = {"input", "product", "sum"}
    assert set(_CODECS) == set(_COPY_RULES) == set(_NODE_RULES) == set(_SHAPE_RULES) == kinds


@pytest.mark.parametrize("name, args, inside, outside", [
    ("real", (), np.array([-2.0, 0.0, 3.5]), np.array([np.inf])),
    ("positive", (0.1,), np.array([0.2, 1.0, 30.0]), np.array([0.05, -1.0])),
    ("interval", (-1.0, 2.0), np.array([-0.5, 0.0, 1.9]), np.array([-3.0, 2.5])),
    ("unit_interval", (), np.array([0.1, 0.5, 0.9]), np.array([-0.1, 1.2])),
    ("simplex", (), np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([[-0.1, 1.5]])),
])
def test_every_constraint_round_trips_clips_into_its_domain_and_names_violations(name, args, inside, outside):
    c = constraint(name, *args)
    assert np.allclose(c.from_unconstrained(np, c.to_unconstrained(np, inside)), inside)
    assert c.violation(inside) is None
    if name != "real":
        assert c.violation(outside) is not None
        if name != "simplex":
            assert c.violation(c.clip(np, outside)) is None


def test_every_constraint_kind_is_covered_above():
    assert set(CONSTRAINTS) == {"real", "positive", "interval", "unit_interval", "simplex"}


def test_positive_floor_named_by_a_setting_is_resolved_from_the_learners_settings():
    c = constraint("positive", floor="min_std")
    with pytest.raises(ValueError, match="unresolved"):
        c.clamp(np, np.zeros(2))
    resolved = c.resolve({"min_std": 0.5})
    assert np.array_equal(resolved.clamp(np, np.log(np.array([0.1, 2.0]))), np.log(np.array([0.5, 2.0])))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_lowers_a_quadratic_and_resumes_from_its_state(name):
    target = np.array([1.0, -2.0, 3.0])
    params = {"w": np.zeros(3)}
    opt = make_optimizer(name, params, lr=0.05)
    for _ in range(50):
        opt.step({"w": params["w"] - target})
    assert np.sum((params["w"] - target) ** 2) < np.sum(target ** 2) / 2
    copy = {"w": params["w"].copy()}
    other = make_optimizer(name, copy, lr=0.05)
    other.load_state(opt.state())
    opt.step({"w": params["w"] - target})
    other.step({"w": copy["w"] - target})
    assert np.array_equal(params["w"], copy["w"])


def test_optimizer_masks_keep_masked_entries_fixed():
    params = {"w": np.zeros(4)}
    opt = make_optimizer("adam", params, lr=0.1, masks={"w": np.array([True, False, True, False])})
    opt.step({"w": np.ones(4)})
    assert params["w"][1] == 0 and params["w"][3] == 0 and params["w"][0] < 0
