"""The strict device stand-in refuses what CuPy refuses and counts what crosses to the host."""
import numpy as np
import pytest

from pcircuits.backend import Backend, to_numpy
from pcircuits.strict_device import TRANSFERS, StrictArray, reset_transfers

xp = Backend("strict", "float64").xp


def device(values):
    return xp.asarray(np.asarray(values, dtype=np.float64))


def test_implicit_conversion_to_numpy_is_refused():
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(device([1.0, 2.0]))


def test_explicit_copies_reach_the_host():
    a = device([1.0, 2.0])
    assert isinstance(a.get(), np.ndarray) and isinstance(to_numpy(a), np.ndarray)
    assert np.array_equal(xp.asnumpy(a), [1.0, 2.0])


@pytest.mark.parametrize("operation", [
    lambda a, h: a + h,
    lambda a, h: np.exp(a) * h,
    lambda a, h: xp.concatenate([a, h]),
    lambda a, h: np.concatenate([a, h]),
    lambda a, h: xp.take(a, h.astype(np.int64)),
    lambda a, h: a[h.astype(np.int64)],
    lambda a, h: a.__setitem__(slice(None), h),
    lambda a, h: xp.maximum(a, h, out=a),
])
def test_host_arrays_never_mix_with_device_arrays(operation):
    with pytest.raises(TypeError, match="NumPy array reached"):
        operation(device([0.0, 1.0]), np.array([0.0, 1.0]))


def test_scalars_and_python_numbers_mix_freely():
    a = device([0.0, 1.0])
    assert np.array_equal((a * 2.0 + np.float64(1.0)).get(), [1.0, 3.0])


def test_functions_cupy_lacks_are_absent():
    for name in ("errstate", "vectorize", "frompyfunc", "testing"):
        with pytest.raises(AttributeError, match="CuPy has no attribute"):
            getattr(xp, name)


def test_results_of_every_route_stay_on_the_device():
    a = device([[3.0, 1.0], [2.0, 5.0]])
    results = [a + 1, np.log(a), xp.sort(a, axis=1), np.sum(a, axis=0), a.max(axis=1), a.T, a[0], a.reshape(4),
               xp.where(a > 2, a, 0.0), xp.add.reduce(a, axis=0)]
    assert all(isinstance(r, StrictArray) for r in results)
    assert isinstance(a, xp.ndarray)


def test_scalar_pulls_and_host_copies_are_counted():
    reset_transfers()
    a = device([1.5, 2.5])
    float(a[0]), int(a[1]), bool(a[0] > 1), a.sum().item(), a.tolist(), a.get()
    assert TRANSFERS == {"scalar": 5, "copy": 1}


def test_in_place_updates_write_through():
    a = device([1.0, 2.0, 3.0])
    a[xp.asarray(np.array([0, 0, 2]))] += 1.0
    np.add.at(a, xp.asarray(np.array([1, 1])), 1.0)
    a[:1] *= 10.0
    assert np.array_equal(a.get(), [20.0, 4.0, 4.0])
