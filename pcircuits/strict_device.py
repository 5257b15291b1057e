"""A CPU stand-in for CuPy that enforces CuPy's rules, so GPU-only mistakes fail without a GPU.

``Backend("strict")`` runs every pass on NumPy underneath, but its arrays behave like device
arrays where CuPy differs from NumPy:

* no implicit conversion to NumPy: ``np.asarray(a)`` raises ``TypeError``; ``a.get()``,
  ``xp.asnumpy(a)`` or :func:`pcircuits.to_numpy` copy to the host on purpose;
* host arrays never mix with device arrays: a NumPy array (of one or more dimensions) as an
  operand of an arithmetic operation, a ufunc, an array function or as an index raises
  ``TypeError``; ``xp.asarray`` / ``xp.array`` are the only ways onto the device;
* functions CuPy lacks are absent from the module (``AttributeError``);
* every Python scalar pulled out of a device array (``float(a)``, ``int(a)``, ``bool(a)``,
  ``a.item()``, ``a.tolist()``) and every copy to the host is counted in
  :data:`TRANSFERS`, so tests can assert that the hot passes synchronize with the host only
  where they must.

It exists for the test suite; it is slower than NumPy and never meant for real work.
"""
from __future__ import annotations

import types
from collections import Counter

import numpy as np
import numpy.lib.mixins

__all__ = ["StrictArray", "strict_module", "call_on_host", "StrictGenerator", "TRANSFERS", "reset_transfers"]

#: Device-to-host transfers by kind ("scalar", "copy"), counted since the last reset.
TRANSFERS: Counter = Counter()

#: NumPy functions CuPy does not provide (the ones a numerical code would plausibly reach for).
_MISSING = frozenset({
    "errstate", "seterr", "geterr", "frompyfunc", "vectorize", "piecewise", "apply_over_axes",
    "fromiter", "fromstring", "loadtxt", "genfromtxt", "save", "savez", "load", "memmap",
    "nanpercentile", "nanquantile", "busday_count", "datetime_as_string", "lib", "ma", "rec",
    "char", "polynomial", "emath", "ctypeslib", "testing",
})
#: Functions that move host data onto the device (host arrays allowed as arguments).
_TO_DEVICE = frozenset({"asarray", "array", "asanyarray", "ascontiguousarray"})


def reset_transfers() -> None:
    """Forget the transfers counted so far."""
    TRANSFERS.clear()


def _host_operand_error(where: str) -> TypeError:
    return TypeError(f"strict device: a NumPy array reached {where}; move it onto the device with "
                     "backend.asarray / xp.asarray first (CuPy refuses mixed operands)")


def _unwrap(value, where: str, *, allow_host: bool = False):
    """The NumPy data of device arrays inside ``value`` (lists, tuples, dicts too); host arrays of
    one or more dimensions are refused unless ``allow_host``."""
    if isinstance(value, StrictArray):
        return value._data
    if isinstance(value, np.ndarray) and value.ndim > 0 and not allow_host:
        raise _host_operand_error(where)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, where, allow_host=allow_host) for v in value)
    if isinstance(value, dict):
        return {key: _unwrap(v, where, allow_host=allow_host) for key, v in value.items()}
    return value


def _wrap(value):
    """Device arrays for NumPy results; NumPy scalars become 0-d device arrays, as on CuPy."""
    if isinstance(value, np.ndarray):
        return StrictArray(value)
    if isinstance(value, np.generic):
        return StrictArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class StrictArray(numpy.lib.mixins.NDArrayOperatorsMixin):
    """A device array of the strict stand-in: NumPy data behind CuPy's rules."""

    __slots__ = ("_data",)

    def __init__(self, data: np.ndarray):
        self._data = data

    # ---- refusing implicit host conversion --------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("strict device: implicit conversion to a NumPy array is not allowed; "
                        "use .get(), xp.asnumpy() or pcircuits.to_numpy() (as on CuPy)")

    def get(self) -> np.ndarray:
        """A host copy (counted)."""
        TRANSFERS["copy"] += 1
        return self._data.copy()

    # ---- NumPy protocols -----------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"{ufunc.__name__}.{method}" if method != "__call__" else ufunc.__name__
        result = getattr(ufunc, method)(*_unwrap(inputs, where), **_unwrap(kwargs, where))
        if method == "at":
            return None
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        if func.__name__ in _MISSING:
            raise TypeError(f"strict device: CuPy has no {func.__name__}")
        where = func.__name__
        return _wrap(func(*_unwrap(args, where), **_unwrap(kwargs, where)))

    # ---- indexing ----------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._data[_unwrap(key, "an index")])

    def __setitem__(self, key, value):
        self._data[_unwrap(key, "an index")] = _unwrap(value, "an assignment")

    # ---- scalars out of the device (counted) ---------------------------------------------------
    def _scalar(self, convert):
        TRANSFERS["scalar"] += 1
        return convert(self._data)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __index__(self):
        return self._scalar(lambda d: d.__index__())

    def __bool__(self):
        return self._scalar(bool)

    def item(self, *args):
        return self._scalar(lambda d: d.item(*args))

    def tolist(self):
        return self._scalar(lambda d: d.tolist())

    # ---- everything else: NumPy's attributes, results kept on the device -------------------
    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (_wrap(row) if isinstance(row, np.ndarray) else StrictArray(np.asarray(row)) for row in self._data)

    def __repr__(self):
        return f"strict_device.{self._data!r}"

    def __getattr__(self, name):
        if name.startswith("__"):       # no __array_interface__ or buffer: nothing bypasses __array__
            raise AttributeError(name)
        value = getattr(self._data, name)
        if callable(value):
            def method(*args, **kwargs):
                where = f"ndarray.{name}"
                return _wrap(value(*_unwrap(args, where), **_unwrap(kwargs, where)))
            return method
        return _wrap(value)

    @property
    def T(self):
        return StrictArray(self._data.T)

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def size(self):
        return self._data.size


class _StrictModule(types.ModuleType):
    """The array module of the stand-in: NumPy's namespace, minus what CuPy lacks, with
    results on the device."""

    ndarray = StrictArray

    def __getattr__(self, name):
        if name in _MISSING or name.startswith("_"):
            raise AttributeError(f"strict device: CuPy has no attribute {name!r}")
        value = getattr(np, name)
        if isinstance(value, np.ufunc) or isinstance(value, (type, float, int)) or value is None:
            return value
        if callable(value):
            allow_host = name in _TO_DEVICE

            def function(*args, **kwargs):
                unwrapped_args = _unwrap(args, f"xp.{name}", allow_host=allow_host)
                return _wrap(value(*unwrapped_args, **_unwrap(kwargs, f"xp.{name}", allow_host=allow_host)))
            function.__name__ = name
            return function
        return value

    @staticmethod
    def asnumpy(a) -> np.ndarray:
        """A host copy of a device array (counted), as ``cupy.asnumpy``."""
        return a.get() if isinstance(a, StrictArray) else np.asarray(a)


#: The stand-in array module (``Backend("strict").xp``).
strict_module = _StrictModule("strict_device.xp")


def call_on_host(function, *args, **kwargs):
    """Run a NumPy/SciPy routine on device arrays and keep the result on the device: how a
    device library's own implementation of that routine behaves (e.g. ``cupyx.scipy.special``)."""
    return _wrap(function(*_unwrap(args, function.__name__), **_unwrap(kwargs, function.__name__)))


class StrictGenerator:
    """A NumPy ``Generator`` whose draws land on the strict device (as CuPy's generator's do)."""

    def __init__(self, generator: np.random.Generator):
        self._generator = generator

    def __getattr__(self, name):
        method = getattr(self._generator, name)
        return lambda *args, **kwargs: call_on_host(method, *args, **kwargs)
