"""Scope algebra laws and Variables naming, checked against Python sets."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcircuits import Scope, Variables

id_sets = st.frozensets(st.integers(0, 300), max_size=40)
scopes = id_sets.map(Scope)


@given(scopes, scopes)
def test_union_is_commutative(a, b):
    assert a | b == b | a


@given(scopes, scopes, scopes)
def test_union_is_associative(a, b, c):
    assert (a | b) | c == a | (b | c) == a.union(b, c)


@given(scopes, scopes)
def test_intersection_is_commutative(a, b):
    assert a & b == b & a == a.intersection(b)


@given(scopes, scopes, scopes)
def test_intersection_is_associative(a, b, c):
    assert (a & b) & c == a & (b & c)


@given(scopes, scopes, scopes)
def test_intersection_distributes_over_union(a, b, c):
    assert a & (b | c) == (a & b) | (a & c)
    assert a | (b & c) == (a | b) & (a | c)


@given(scopes, scopes, scopes)
def test_difference_follows_de_morgan(a, b, c):
    assert a - (b | c) == (a - b) & (a - c)
    assert a - (b & c) == (a - b) | (a - c)


@given(scopes, scopes)
def test_symmetric_difference_is_union_minus_intersection(a, b):
    assert a ^ b == (a | b) - (a & b)


@given(id_sets, id_sets)
def test_operations_match_python_sets(a, b):
    sa, sb = Scope(a), Scope(b)
    assert set(sa | sb) == a | b
    assert set(sa & sb) == a & b
    assert set(sa - sb) == a - b
    assert sa.isdisjoint(sb) == a.isdisjoint(b)
    assert (sa <= sb) == (a <= b) and (sa < sb) == (a < b)
    assert (sa >= sb) == (a >= b) and (sa > sb) == (a > b)


@given(id_sets)
def test_len_counts_the_variables(a):
    assert len(Scope(a)) == len(a)
    assert bool(Scope(a)) == bool(a)


@given(id_sets)
def test_iteration_is_in_increasing_order(a):
    assert list(Scope(a)) == sorted(a)
    assert Scope(a).to_array().tolist() == sorted(a)
    assert Scope(a).to_array().dtype == np.int64


@given(id_sets, st.integers(-5, 310))
def test_membership_matches_the_set(a, v):
    assert (v in Scope(a)) == (v in a)


def test_membership_of_non_integers_is_false():
    assert "1" not in Scope([1])
    assert 1.0 not in Scope([1])
    assert True not in Scope([1])


@given(id_sets)
def test_equal_sets_give_equal_hashes(a):
    reordered = Scope(sorted(a, reverse=True))
    assert Scope(a) == reordered and hash(Scope(a)) == hash(reordered)
    assert Scope(a) == set(a) and Scope(a) == frozenset(a)
    assert len({Scope(a), reordered}) == 1


@given(id_sets)
def test_bits_round_trip(a):
    s = Scope(a)
    assert Scope.from_bits(s.bits) == s
    assert s.bits == sum(1 << v for v in a)


@given(st.frozensets(st.integers(0, 300), min_size=1))
def test_min_and_max_are_the_extreme_ids(a):
    assert Scope(a).min() == min(a) and Scope(a).max() == max(a)


def test_min_of_empty_scope_raises():
    with pytest.raises(ValueError, match="empty scope"):
        Scope().min()
    with pytest.raises(ValueError, match="empty scope"):
        Scope().max()


@given(st.integers(0, 100), st.integers(0, 100))
def test_range_is_the_half_open_interval(start, length):
    assert Scope.range(start, start + length) == set(range(start, start + length))


def test_a_single_int_is_a_one_variable_scope():
    assert Scope(7) == {7} and Scope(np.int64(3)) == {3} and Scope(Scope([1, 2])) == {1, 2}


@pytest.mark.parametrize("bad, error, message", [
    ([-1], ValueError, "non-negative"),
    ([1.5], TypeError, "must be ints"),
    ([True], TypeError, "must be ints"),
    (["a"], TypeError, "must be ints"),
])
def test_bad_variable_ids_are_refused(bad, error, message):
    with pytest.raises(error, match=message):
        Scope(bad)


@pytest.mark.parametrize("call, message", [
    (lambda: Scope.from_bits(-1), "non-negative int"),
    (lambda: Scope.range(3, 1), "start <= stop"),
])
def test_bad_constructor_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_scopes_are_immutable():
    with pytest.raises(AttributeError, match="immutable"):
        Scope([1]).extra = 1


def test_repr_abbreviates_runs():
    assert repr(Scope([0, 1, 2, 3, 7])) == "Scope({0..3, 7})"
    assert repr(Scope()) == "Scope({})"


# ---- Variables -------------------------------------------------------------------------------
def test_default_names_are_x_and_index():
    assert Variables(3).names() == ["x0", "x1", "x2"]


def test_given_names_are_used():
    assert Variables(2, names=["a", "b"]).name(1) == "b"


@given(st.integers(1, 6), st.integers(1, 6))
def test_image_variables_are_named_by_row_and_column(h, w):
    variables = Variables.image(h, w)
    assert len(variables) == h * w
    assert variables.name(variables.index(h - 1, w - 1)) == f"x[{h - 1},{w - 1}]"
    assert variables.names()[:1] == ["x[0,0]"]


def test_image_channels_are_last():
    variables = Variables.image(2, 2, 3)
    assert variables.name(4) == "x[0,1,1]"
    assert variables.index(1, 0, 2) == 8


@st.composite
def rectangles(draw):
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    r0 = draw(st.integers(0, h - 1))
    r1 = draw(st.integers(r0 + 1, h))
    c0 = draw(st.integers(0, w - 1))
    c1 = draw(st.integers(c0 + 1, w))
    return h, w, r0, r1, c0, c1


@given(rectangles())
def test_scope_of_a_rectangle_matches_brute_force(rect):
    h, w, r0, r1, c0, c1 = rect
    expected = {r * w + c for r in range(r0, r1) for c in range(c0, c1)}
    variables = Variables.image(h, w)
    assert variables.scope_of(slice(r0, r1), slice(c0, c1)) == expected
    assert variables.scope_of(range(r0, r1), list(range(c0, c1))) == expected


@given(rectangles(), st.integers(1, 3))
def test_scope_of_a_rectangle_covers_all_channels(rect, channels):
    h, w, r0, r1, c0, c1 = rect
    expected = {(r * w + c) * channels + ch for r in range(r0, r1) for c in range(c0, c1) for ch in range(channels)}
    assert Variables.image(h, w, channels).scope_of(slice(r0, r1), slice(c0, c1)) == expected


def test_scope_of_one_channel():
    assert Variables.image(2, 2, 3).scope_of(0, 1, channels=2) == {5}


@given(rectangles())
def test_format_scope_writes_rectangles_as_ranges(rect):
    h, w, r0, r1, c0, c1 = rect
    variables = Variables.image(h, w)
    text = variables.format_scope(variables.scope_of(slice(r0, r1), slice(c0, c1)))
    if (r1 - r0) * (c1 - c0) > 1:
        rows = f"{r0}" if r1 - r0 == 1 else f"{r0}..{r1 - 1}"
        cols = f"{c0}" if c1 - c0 == 1 else f"{c0}..{c1 - 1}"
        assert text == f"x[{rows}, {cols}]"
    else:
        assert text == "{" + f"x[{r0},{c0}]" + "}"


def test_format_scope_names_small_scopes_and_abbreviates_large_ones():
    variables = Variables(20)
    assert variables.format_scope(Scope([1, 2])) == "{x1, x2}"
    assert variables.format_scope(Scope()) == "{}"
    long = variables.format_scope(Scope(range(0, 20, 2)))
    assert long == "{x0, x2, x4, ... (10 vars), x14, x16, x18}"


def test_format_scope_of_unknown_variables_falls_back_to_ids():
    assert Variables(2).format_scope(Scope([0, 5])) == "Scope({0, 5})"


@pytest.mark.parametrize("call, error, message", [
    (lambda: Variables(-1), ValueError, "non-negative int"),
    (lambda: Variables(3, names=["a"]), ValueError, "1 names for 3 variables"),
    (lambda: Variables(5, shape=(2, 2)), ValueError, "holds 4 variables, not 5"),
    (lambda: Variables.image(0, 3), ValueError, "height must be a positive int"),
    (lambda: Variables(3).scope_of(0, 0), ValueError, "no image shape"),
    (lambda: Variables(3).name(3), IndexError, "no variable 3"),
    (lambda: Variables.image(2, 2).scope_of([2], 0), IndexError, "rows"),
    (lambda: Variables.image(2, 2).scope_of(0, 0, channels=0), ValueError, "no channel axis"),
    (lambda: Variables.image(2, 2).index(0, 0, 1), ValueError, "needs 2 coordinates"),
])
def test_bad_variables_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_variables_scope_is_everything():
    assert Variables.image(2, 3).scope == set(range(6))


def test_variables_equality_compares_names_and_shape():
    assert Variables.image(2, 2) == Variables.image(2, 2)
    assert Variables(4) != Variables.image(2, 2)
    assert Variables(2, names=["a", "b"]) != Variables(2)
