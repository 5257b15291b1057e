"""Numeric extremes: leaf parameters the working dtype cannot evaluate are refused at compile
time, discrete log-probabilities never exceed 0, and training stops with a clear error when an
update or the data make the loss or a parameter non-finite."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.errors import NonFiniteError


def leaf(family):
    return pc.Circuit(pc.InputNode(0, family))


@pytest.mark.parametrize("family, message", [
    (pc.Gaussian([0.0], [1e-39]), "gaussian parameter 'std': 1e-39 is below 2.94e-39, the smallest float32"),
    (pc.Bernoulli([1e-300]), "bernoulli parameter 'p': 1e-300 rounds to 0 in float32"),
    (pc.Bernoulli([1 - 1e-9]), "rounds to 1 in float32"),
    (pc.Categorical([[1e-300, 1 - 1e-300]]), "the probability 1e-300 rounds to 0 in float32"),
    (pc.Binomial(2 ** 40, [0.3]), "binomial n=1099511627776 exceeds 16777216"),
    (pc.Gaussian([1e39], [1.0]), "1e\\+39 exceeds the largest float32"),
])
def test_parameters_float32_cannot_evaluate_are_refused_at_compile(family, message):
    with pytest.raises(ValueError, match=message + ".*compile with dtype='float64'"):
        leaf(family).compile(dtype="float32")


@pytest.mark.parametrize("family, x, expected", [
    (pc.Gaussian([0.0], [1e-39]), 0.0, -math.log(1e-39) - 0.5 * math.log(2 * math.pi)),
    (pc.Bernoulli([1e-300]), 1.0, math.log(1e-300)),
    (pc.Bernoulli([1 - 1e-9]), 0.0, math.log(1e-9)),
])
def test_float64_evaluates_the_same_parameters_exactly(family, x, expected):
    value = leaf(family).compile(dtype="float64").log_likelihood(np.array([[x]]))
    assert value[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("family", [pc.Bernoulli([0.0, 1.0]), pc.Categorical([[0.0, 1.0], [1.0, 0.0]]),
                                    pc.Bernoulli([1e-40, 0.5])])
def test_probabilities_of_exactly_zero_and_one_and_subnormal_ones_still_compile(family):
    x = np.array([[1.0], [0.0]])
    single = leaf(family).compile(dtype="float32").log_likelihood(x)
    double = leaf(family).compile(dtype="float64").log_likelihood(x)
    np.testing.assert_allclose(single, double, rtol=1e-3)


@given(n=st.integers(1, 2 ** 24), p=st.sampled_from([0.0, 1.0]) | st.floats(1e-30, 0.999), fraction=st.floats(0.0, 1.0),
       dtype=st.sampled_from(["float32", "float64"]))
def test_binomial_log_probabilities_never_exceed_zero(n, p, fraction, dtype):
    k = float(round(fraction * n))
    program = leaf(pc.Binomial(n, [p])).compile(dtype=dtype)
    assert program.log_likelihood(np.array([[k]]))[0] <= 0


def test_a_diverging_update_stops_training_with_the_parameter_named():
    x = np.random.default_rng(0).normal(0, 10, size=(200, 4))
    program = pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=0).compile()
    with pytest.raises(NonFiniteError, match="drove the gaussian parameter 'std' to NaN or infinity; lower the "
                                             "learning rate .lr=0.5."), np.errstate(all="ignore"):
        pc.learning.fit(program, x, method="sgd", lr=0.5, epochs=3, batch_size=50, progress=False)


def test_data_the_dtype_cannot_evaluate_stop_training_with_a_reason():
    x = np.random.default_rng(0).normal(size=(100, 4)) * 1e20
    program = pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=0).compile()
    with pytest.raises(NonFiniteError, match=r"loss of epoch 1, batch 1 is .*\|x\| up to .*e\+20.*standardize"), \
            np.errstate(all="ignore"):
        pc.learning.fit(program, x, method="em", epochs=2, batch_size=50, progress=False)


def test_the_same_data_train_in_float64():
    x = np.random.default_rng(0).normal(size=(100, 4)) * 1e20
    program = pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=0).compile(dtype="float64")
    history = pc.learning.fit(program, x, method="em", epochs=2, batch_size=50, progress=False)
    assert all(math.isfinite(v) for v in history["train_ll"])
