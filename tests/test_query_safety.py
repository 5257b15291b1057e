"""Queries check every input and argument first, and run any number of rows in bounded memory.

Malformed inputs (scalars, complex numbers, dates, values too large for the dtype) and arguments
(``num_samples``, ``batch_size``, ``root``) are refused with a message; masked entries are
missing values; empty batches give empty results; evidence of probability zero is refused
where nothing can be conditioned on it. Chunked queries equal one big batch (up to the rounding of
matrix products; MPE exactly), their working memory follows ``program.memory_budget``, and :meth:`Program.bytes_per_row` bounds what a row takes.
"""
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc


def traced_peak(run, program=None):
    """``run()``'s result and the peak of the memory traced while it ran, in bytes; ``program``'s
    work buffers are released inside the traced region."""
    tracemalloc.start()
    try:
        result = run()
        if program is not None:
            program.release_buffers()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture(scope="module")
def program():
    return pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, seed=0).compile(dtype="float32")


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(0).normal(size=(50, 16))
    x[::3, 8:] = np.nan
    return x


def impossible_program():
    """x0 is never 1; x1 is a fair coin."""
    never = pc.InputNode(0, pc.Bernoulli([0.0]))
    coin = pc.InputNode(1, pc.Bernoulli([0.5]))
    return pc.Circuit(pc.ProductNode([never, coin])).compile(dtype="float64")


# ---- inputs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("x, error, message", [
    (np.float64(1.0), ValueError, "got a scalar"),
    (np.zeros((2, 16), dtype=complex), TypeError, "complex dtype"),
    (np.zeros((2, 16), dtype="timedelta64[s]"), TypeError, "dates or time spans"),
    (np.zeros((2, 16), dtype="datetime64[D]"), TypeError, "dates or time spans"),
    (np.full((2, 16), "a"), TypeError, "must be a numeric array"),
    (np.full((2, 16), 1e39), ValueError, r"\[0, 0\] = 1e\+39 is too large for float32"),
])
def test_malformed_inputs_are_refused_by_every_query(program, x, error, message):
    for query in (program.log_likelihood, program.mpe, program.inpaint, lambda x: program.sample(evidence=x)):
        with pytest.raises(error, match=message):
            query(x)


def test_values_too_large_for_float32_pass_in_float64():
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=2, seed=0).compile(dtype="float64")
    assert np.isfinite(program.log_likelihood(np.full((1, 16), 1e39))).all()


def _breaks_a_rule(x, discrete, max_values, largest, allow_nan):
    """The input rules stated entry by entry: NaN only where missing values are allowed; else
    finite, at most ``largest`` in size, and an integer ``0 .. max_value`` where discrete."""
    for value, is_discrete, top in zip(x.ravel(), np.tile(discrete, len(x)), np.tile(max_values, len(x))):
        if np.isnan(value):
            if not allow_nan:
                return True
        elif not np.isfinite(value) or abs(value) > largest or (
                is_discrete and (value != round(value) or not 0 <= value <= top)):
            return True
    return False


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["bernoulli", "categorical", "gaussian"]), min_size=1, max_size=3),
       st.sampled_from(["float32", "float64"]), st.booleans(), st.data())
def test_prepare_accepts_exactly_the_inputs_that_break_no_rule(families, dtype, allow_nan, data):
    leaves = {"bernoulli": lambda v: pc.Bernoulli([0.3]), "categorical": lambda v: pc.Categorical([[0.2, 0.3, 0.5]]),
              "gaussian": lambda v: pc.Gaussian([0.0], [1.0])}
    circuit = pc.Circuit(pc.ProductNode([pc.InputNode(v, leaves[f](v)) for v, f in enumerate(families)]))
    program = circuit.compile(dtype=dtype)
    values = st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, np.nan, np.inf, -np.inf, 1e39, -1e300, 2.5e38])
    x = np.array(data.draw(st.lists(st.lists(values, min_size=len(families), max_size=len(families)),
                                    min_size=1, max_size=3)))
    bad = _breaks_a_rule(x, program.domain.discrete, program.domain.max_values, np.finfo(dtype).max, allow_nan)
    if bad:
        with pytest.raises(ValueError):
            program.prepare(x, allow_nan=allow_nan)
    else:
        np.testing.assert_array_equal(program.prepare(x, allow_nan=allow_nan), x.astype(dtype))


def test_a_bad_row_in_a_late_chunk_is_refused_before_any_work(program, data):
    x = np.repeat(data, 20, axis=0)
    x[-1, 3] = np.inf
    with pytest.raises(ValueError, match=f"infinite value at example {len(x) - 1}, variable 3"):
        program.log_likelihood(x, batch_size=16)


def test_masked_entries_are_missing_values(program, data):
    values = np.nan_to_num(data, nan=123.0)
    masked = np.ma.masked_array(values, mask=np.isnan(data))
    np.testing.assert_array_equal(program.log_likelihood(masked), program.log_likelihood(data))
    np.testing.assert_array_equal(program.inpaint(masked), program.inpaint(data))


@pytest.mark.parametrize("num_samples", [2.7, True, -1, "3"])
def test_num_samples_must_be_a_non_negative_int(program, num_samples):
    with pytest.raises(ValueError, match="num_samples must be a non-negative int"):
        program.sample(num_samples)


def test_num_samples_may_be_a_numpy_int(program):
    assert program.sample(np.int64(3)).shape == (3, 16)


@pytest.mark.parametrize("batch_size, error", [(True, TypeError), (2.5, TypeError), (0, ValueError)])
def test_batch_size_must_be_a_positive_int(program, data, batch_size, error):
    for query in (program.log_likelihood, program.mpe, program.inpaint):
        with pytest.raises(error, match="batch_size must be"):
            query(data, batch_size=batch_size)


@pytest.mark.parametrize("root, error", [(-1, ValueError), (1, ValueError), (True, TypeError), (0.0, TypeError)])
def test_root_must_name_an_output(program, data, root, error):
    queries = (lambda: program.mpe(data, root=root), lambda: program.inpaint(data, root=root),
               lambda: program.inpaint(data, method="mpe", root=root), lambda: program.sample(3, root=root),
               lambda: program.leaf_posteriors(data, root=root))
    for query in queries:
        with pytest.raises(error, match="root must be"):
            query()


def test_a_root_per_example_must_have_one_entry_per_row(program, data):
    with pytest.raises(ValueError, match=r"one per example, shape \(50,\)"):
        program.mpe(data, root=np.zeros(3, dtype=int))


# ---- empty batches and impossible evidence ----------------------------------------------------
def test_empty_batches_give_empty_results(program):
    empty = np.zeros((0, 16))
    assert program.log_likelihood(empty).shape == (0,)
    assert program.log_conditional(empty, empty).shape == (0,)
    assert program.mpe(empty).shape == (0, 16)
    assert program.inpaint(empty).shape == (0, 16)
    assert program.inpaint(empty, method="mpe").shape == (0, 16)
    assert program.sample(0).shape == (0, 16)
    assert program.sample(evidence=empty).shape == (0, 16)


@pytest.mark.parametrize("query", ["mpe", "inpaint", "sample", "log_conditional"])
def test_evidence_of_probability_zero_is_refused(query):
    program = impossible_program()
    evidence = np.array([[0.0, np.nan], [1.0, np.nan]])
    calls = {"mpe": lambda: program.mpe(evidence), "inpaint": lambda: program.inpaint(evidence),
             "sample": lambda: program.sample(evidence=evidence, seed=0),
             "log_conditional": lambda: program.log_conditional(np.array([[np.nan, 1.0]] * 2), evidence)}
    with pytest.raises(ValueError, match="example 1 has probability 0"):
        calls[query]()


def test_a_query_of_probability_zero_given_the_evidence_is_minus_infinity():
    program = impossible_program()
    value = program.log_conditional(np.array([[1.0, np.nan]]), np.array([[np.nan, 0.0]]))
    assert value.tolist() == [-np.inf]


@pytest.mark.parametrize("builder", [
    lambda: pc.builders.poon_domingos(8, 8, delta=2, num_sums=4, num_leaves=3, seed=0),
    lambda: pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, leaf="binomial",
                                      leaf_params={"n": 4}, seed=1),
    lambda: pc.builders.rat_spn(12, depth=2, num_repetitions=3, num_sums=4, num_leaves=3, seed=2),
])
def test_the_all_missing_marginal_is_exactly_zero_in_float32(builder):
    program = builder().compile(dtype="float32")
    nothing = np.full((3, program.num_variables), np.nan)
    assert program.log_likelihood(nothing).tolist() == [0.0, 0.0, 0.0]


# ---- chunks and memory -------------------------------------------------------------------------
def chunk_queries(program, data, copies: int):
    """The chunkable queries on ``copies`` copies of ``data``, each a function of its options."""
    x = np.repeat(data, copies, axis=0)
    query = np.where(np.isnan(x), x, np.nan)
    query[:, 0] = 0.5
    evidence = np.where(np.isnan(x), np.nan, x)
    evidence[:, 0] = np.nan
    return len(x), [lambda **o: program.log_likelihood(x, **o), lambda **o: program.inpaint(x, **o),
                    lambda **o: program.log_conditional(query, evidence, **o), lambda **o: program.mpe(x, **o)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunks_of_whole_row_blocks_equal_one_batch_bit_for_bit(data, dtype):
    block = pc.program.blocks.ROW_BLOCK
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=8, num_leaves=4, seed=0).compile(dtype=dtype)
    program.memory_budget = 1 << 30
    n, queries = chunk_queries(program, data, 5 * block // len(data) + 1)
    assert pc.inference.chunk_rows(program, "posterior") > n
    for run in queries:
        whole = run()
        for batch_size in (block, 3 * block, 3 * block + 100):
            np.testing.assert_array_equal(run(batch_size=batch_size), whole)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunks_smaller_than_a_row_block_equal_one_batch_up_to_rounding(data, dtype):
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, seed=0).compile(dtype=dtype)
    n, (likelihood, inpaint, conditional, mpe) = chunk_queries(program, data, 4)
    np.testing.assert_array_equal(mpe(batch_size=7), mpe(batch_size=n))
    rounding = 1e-6 if dtype == "float32" else 1e-13
    for run in (likelihood, inpaint, conditional):
        np.testing.assert_allclose(run(batch_size=7), run(batch_size=n), rtol=rounding, atol=rounding)


def test_chunks_larger_than_a_row_block_are_whole_row_blocks(program):
    block = pc.program.blocks.ROW_BLOCK
    assert pc.inference.chunk_rows(program, "forward", batch_size=3 * block + 100) == 3 * block
    assert pc.inference.chunk_rows(program, "forward", batch_size=block - 1) == block - 1


def test_the_memory_budget_sets_the_chunks(program, data):
    block = pc.program.blocks.ROW_BLOCK
    x = np.repeat(data, 6, axis=0)
    whole = program.log_likelihood(x)
    small = pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=2, seed=0).compile(dtype="float32")
    small.memory_budget = (2 * block + 3) * small.bytes_per_row("forward")
    assert pc.inference.chunk_rows(small, "forward") == 2 * block
    small.memory_budget = 130 * small.bytes_per_row("forward")
    assert pc.inference.chunk_rows(small, "forward") == 130
    np.testing.assert_allclose(small.log_likelihood(x), whole, rtol=1e-6)


def test_samples_of_a_seed_do_not_depend_on_how_many_are_drawn(program):
    block = pc.inference.SAMPLE_BLOCK
    many = program.sample(3 * block + 5, seed=3)
    np.testing.assert_array_equal(many[:2 * block], program.sample(2 * block, seed=3))
    assert not np.array_equal(many[:5], many[3 * block:])


@pytest.mark.parametrize("seed", [0, 7, 2**40])
def test_sample_block_k_draws_from_the_seeds_pcg64_jumped_k_times(seed):
    streams = pc.inference._Streams(seed)
    for k in range(4):
        expected = np.random.Generator(np.random.PCG64(seed).jumped(k)).random(5)
        np.testing.assert_array_equal(streams.next().random(5), expected)


def test_a_generator_seed_gives_new_streams_on_every_call(program):
    rng = np.random.default_rng(5)
    first = program.sample(2 * pc.inference.SAMPLE_BLOCK, seed=rng)
    assert not np.array_equal(first, program.sample(2 * pc.inference.SAMPLE_BLOCK, seed=rng))


@pytest.mark.parametrize("conditioned", [False, True])
def test_samples_of_a_seed_do_not_depend_on_the_chunks(program, conditioned):
    block = pc.inference.SAMPLE_BLOCK
    n = 10 * block + 7
    evidence = None
    if conditioned:
        evidence = program.sample(n, seed=0).astype(np.float64)
        evidence[:, ::2] = np.nan
    whole = program.sample(n, evidence, seed=4)
    for batch_size in (block, 3 * block, 3 * block + 5):
        np.testing.assert_array_equal(program.sample(n, evidence, seed=4, batch_size=batch_size), whole)


def test_sample_chunks_are_sized_from_the_memory_budget(program, monkeypatch):
    budget = 128 * program.bytes_per_row("top_down")
    monkeypatch.setattr(program, "memory_budget", budget)
    program.sample(10, seed=0)
    program.release_buffers()
    out, peak = traced_peak(lambda: program.sample(4096, seed=0), program)
    assert peak - out.nbytes <= budget


def test_sampling_from_a_generator_is_reproducible(program):
    a = program.sample(10, seed=np.random.default_rng(7))
    b = program.sample(10, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("builder", [
    lambda: pc.builders.poon_domingos(8, 8, delta=2, num_sums=4, num_leaves=3, seed=0),
    lambda: pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, num_leaves=4, leaf="categorical",
                                      leaf_params={"num_categories": 5}, seed=1),
    lambda: pc.builders.rat_spn(12, depth=2, num_repetitions=3, num_sums=4, num_leaves=3, seed=2),
])
@pytest.mark.parametrize("query, run", [
    ("forward", lambda p, x: p.log_likelihood(x, batch_size=len(x))),
    ("posterior", lambda p, x: p.inpaint(x, batch_size=len(x))),
    ("top_down", lambda p, x: p.mpe(x, batch_size=len(x))),
    ("top_down", lambda p, x: p.sample(evidence=x, seed=0)),
])
def test_bytes_per_row_bounds_the_working_memory(builder, query, run):
    program = builder().compile(dtype="float32")
    rows = 512
    x = program.sample(rows, seed=0).astype(np.float64)
    x[:, ::2] = np.nan
    run(program, x[:8])
    program.release_buffers()
    _, peak = traced_peak(lambda: run(program, x))
    output = rows * program.num_variables * 8
    assert peak - output <= rows * program.bytes_per_row(query)


def test_many_rows_run_in_the_memory_budget(program, monkeypatch):
    """50,000 rows would take ~400 MB of work arrays in one batch; the budget holds them to 16 MB."""
    monkeypatch.setattr(program, "memory_budget", 16 << 20)
    x = np.random.default_rng(1).normal(size=(50_000, 16)).astype(np.float32)
    program.log_likelihood(x[:10])
    program.release_buffers()
    _, peak = traced_peak(lambda: program.log_likelihood(x), program)
    assert peak < (16 << 20) + 50_000 * 4 + (4 << 20)
    assert 50_000 * program.bytes_per_row("forward") > 4 * peak


def test_leaf_posteriors_in_chunks_equal_one_batch(data):
    block = pc.program.blocks.ROW_BLOCK
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=8, num_leaves=4, seed=0).compile(dtype="float32")
    program.memory_budget = 1 << 30
    x = np.repeat(data, 5 * block // len(data) + 1, axis=0)
    whole = program.leaf_posteriors(x)
    assert whole.shape == (program.num_units, len(x))
    np.testing.assert_array_equal(program.leaf_posteriors(x, batch_size=2 * block), whole)


def test_leaf_posteriors_work_in_the_memory_budget(program, monkeypatch):
    monkeypatch.setattr(program, "memory_budget", 8 << 20)
    x = np.random.default_rng(1).normal(size=(20_000, 16)).astype(np.float32)
    program.leaf_posteriors(x[:10])
    program.release_buffers()
    out, peak = traced_peak(lambda: program.leaf_posteriors(x), program)
    assert peak < out.nbytes + (8 << 20) + x.nbytes + (4 << 20)
    assert 20_000 * program.bytes_per_row("posterior") > 4 * (peak - out.nbytes)


def test_preparing_many_rows_takes_bounded_memory_beyond_the_result(program):
    """Checking converts to float64; done for all rows at once it would take ~5x the data."""
    x = np.random.default_rng(2).normal(size=(1_000_000, 16)).astype(np.float32)
    prepared, peak = traced_peak(lambda: program.prepare(x))
    np.testing.assert_array_equal(prepared, x)
    assert peak - prepared.nbytes < 4 * (16 << 20)   # blocks of 16 MB of float64 (CHECK_BYTES)
