"""Input checking: what data a compiled circuit accepts, refused with a message before any kernel runs.

The domain of every variable follows from the leaf families over it: a variable under a
discrete family (Bernoulli, Categorical, Binomial, Indicator) takes integers ``0 ..
max_value``; a variable under continuous families only takes any finite real. NaN marks a
missing value everywhere.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_numpy

__all__ = ["InputDomain", "CHECK_BYTES"]

#: dtype kinds of real numbers: bool, signed and unsigned integers, floats.
_REAL_KINDS = "biuf"
#: Rows are checked in blocks of this many bytes of float64 (:meth:`InputDomain.prepare`).
CHECK_BYTES = 16 << 20


class InputDomain:
    """The admissible values of every variable of a circuit.

    Attributes
    ----------
    num_variables : int
    discrete : ndarray of bool, shape (num_variables,)
        Variables under at least one discrete family.
    max_values : ndarray, shape (num_variables,)
        Largest admissible value (``inf`` for continuous variables).
    used : ndarray of bool, shape (num_variables,)
        Variables that some leaf reads.
    """

    def __init__(self, num_variables: int, input_specs):
        discrete = np.zeros(num_variables, dtype=bool)
        max_values = np.full(num_variables, np.inf)
        used = np.zeros(num_variables, dtype=bool)
        for spec in input_specs:
            for node in spec.nodes:
                v = np.asarray(node.variables)
                used[v] = True
                m = node.family.max_value()
                if m is not None:
                    discrete[v] = True
                    max_values[v] = np.minimum(max_values[v], m)
        self.num_variables = num_variables
        self.discrete, self.max_values, self.used = discrete, max_values, used
        self._any_discrete, self._all_discrete = bool(discrete.any()), bool(discrete.all())
        self._continuous = ~discrete
        #: Per backend dtype, the bounds of every variable's admissible values (:meth:`_admissible`).
        self._bounds = {}
        #: Indices of the variables some leaf reads (all of them: None).
        self.used_index = None if used.all() else np.flatnonzero(used)

    def coerce(self, x, *, what: str = "x"):
        """``x`` as a host or device array of shape (batch, num_variables), its values unconverted.

        Refuses scalars, 1-D arrays, arrays of the wrong width and dtypes that are not real
        numbers (objects, strings, complex numbers, dates and time spans). Arrays of more than
        two dimensions (images) are flattened per example; a NumPy masked array stays masked
        (:meth:`prepare` treats its masked entries as missing).
        """
        if not isinstance(x, np.ndarray):
            if hasattr(x, "get") and callable(x.get) and hasattr(x, "dtype"):     # a device array
                if x.ndim == 2 and x.shape[1] == self.num_variables and x.dtype.kind in _REAL_KINDS:
                    return x
                x = to_numpy(x)
            elif hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):       # another DLPack producer
                x = np.from_dlpack(x)
            else:
                try:
                    x = np.asarray(x)
                except (TypeError, ValueError) as err:
                    raise TypeError(f"{what} must be a numeric array ({err})") from None
        kind = x.dtype.kind
        if kind == "c":
            raise TypeError(f"{what} has complex dtype {x.dtype}; a circuit's variables are real numbers (pass "
                            f"x.real if the imaginary parts are zero)")
        if kind in "mM":
            raise TypeError(f"{what} has dtype {x.dtype} (dates or time spans); convert it to numbers first, "
                            f"e.g. x / np.timedelta64(1, 's')")
        if kind not in _REAL_KINDS:
            raise TypeError(f"{what} must be a numeric array, got dtype {x.dtype}")
        if x.ndim == 0:
            raise ValueError(f"{what} must have shape (batch, {self.num_variables}); got a scalar")
        if x.ndim == 1:
            raise ValueError(f"{what} must have shape (batch, {self.num_variables}); got a 1-D array of "
                             f"length {x.shape[0]} (use x[None] for a single example)")
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.num_variables:
            raise ValueError(f"{what} has {x.shape[1]} variables per example, the circuit has {self.num_variables}")
        return x

    def prepare(self, x, backend, *, what: str = "x", allow_nan: bool = True, offset: int = 0):
        """Check and convert data to a backend array of shape (batch, num_variables).

        Refuses, with a message naming the problem (see :meth:`coerce`): wrong shape or dtype,
        infinite values, values too large for the backend's dtype, non-integer or out-of-range
        values of discrete variables. Masked entries of a NumPy masked array are missing
        values (NaN). A device array already in the backend's dtype and shape is checked where
        it lies (one synchronization, no copy); only a bad one is copied to the host, to name
        the problem. ``offset`` is added to the example numbers in messages (for chunks).

        Rows are checked in blocks of at most :data:`CHECK_BYTES` bytes of float64 and written
        into one array of the backend's dtype, so checking takes a bounded amount of memory
        beyond the input and the result, whatever the number of rows.
        """
        if (not backend.on_host and isinstance(x, backend.xp.ndarray) and x.dtype == backend.dtype
                and x.ndim == 2 and x.shape[1] == self.num_variables):
            if not self._has_problems_on_device(x, backend, allow_nan):
                return x
            x = to_numpy(x)
        x = self.coerce(x, what=what)
        if not isinstance(x, np.ndarray):
            x = to_numpy(x)
        n = x.shape[0]
        rows = max(1, CHECK_BYTES // (8 * max(1, self.num_variables)))
        if n <= rows:
            return backend.asarray(self._checked(x, backend, what, allow_nan, offset))
        out = np.empty((n, self.num_variables), dtype=backend.dtype)
        for start in range(0, n, rows):
            out[start:start + rows] = self._checked(x[start:start + rows], backend, what, allow_nan, offset + start)
        return backend.asarray(out)

    def _checked(self, x: np.ndarray, backend, what: str, allow_nan: bool, offset: int) -> np.ndarray:
        """Host rows ``x`` as float64 (masked entries NaN), every rule of :meth:`prepare` checked.

        Floating rows no wider than the backend's dtype, over continuous variables only, with every
        entry finite break no rule: they are returned at once, as a copy in the backend's dtype
        (one pass to check, one to copy, instead of two conversions and four checks)."""
        if isinstance(x, np.ma.MaskedArray):
            x = x.astype(np.float64).filled(np.nan)
        if (x.dtype.kind == "f" and x.dtype.itemsize <= backend.dtype.itemsize and not self._any_discrete
                and np.isfinite(x).all()):
            return x.astype(backend.dtype)
        x = x.astype(np.float64, copy=False)
        if self._admissible(x, backend.dtype, allow_nan):
            return x
        nan = np.isnan(x)
        if nan.any() and not allow_nan:
            r, c = np.argwhere(nan)[0]
            raise ValueError(f"{what} must not contain missing values (NaN or masked) here; example {r + offset}, "
                             f"variable {c} is missing")
        if np.isinf(x).any():
            r, c = np.argwhere(np.isinf(x))[0]
            raise ValueError(f"{what} holds an infinite value at example {r + offset}, variable {c}; use NaN for "
                             f"missing")
        largest = float(np.finfo(backend.dtype).max)
        with np.errstate(invalid="ignore"):
            huge = np.abs(x) > largest
        if huge.any():
            r, c = np.argwhere(huge)[0]
            raise ValueError(f"{what}[{r + offset}, {c}] = {x[r, c]:g} is too large for {backend.dtype.name} "
                             f"(largest {largest:.3g}); compile with dtype='float64' or rescale the data")
        d = self.discrete
        if d.any():
            xd = np.where(nan[:, d], 0, x[:, d])
            bad = (xd != np.round(xd)) | (xd < 0) | (xd > self.max_values[d][None, :])
            if bad.any():
                r, c = np.argwhere(bad)[0]
                var = int(np.flatnonzero(d)[c])
                raise ValueError(f"{what}[{r + offset}, {var}] = {x[r, var]:g} is outside the domain of variable "
                                 f"{var} (integers 0..{int(self.max_values[var])})")
        return x

    def _admissible(self, x: np.ndarray, dtype, allow_nan: bool) -> bool:
        """Whether the float64 rows ``x`` break no rule of :meth:`prepare` for a backend of ``dtype``
        (False may also mean "not decided here": the caller then runs the checks that name the
        problem). Every entry lies within its variable's bounds (``0 .. max_value`` for a discrete
        variable, the dtype's finite range for a continuous one; NaN and infinities lie outside)
        and is an integer where the variable is discrete, or is missing with ``allow_nan``: a
        handful of elementwise operations instead of the dozen of those checks."""
        bounds = self._bounds.get(dtype)
        if bounds is None:
            largest = float(np.finfo(dtype).max)
            fits = not self._any_discrete or float(self.max_values[self.discrete].max()) <= largest
            bounds = self._bounds[dtype] = (np.where(self.discrete, 0.0, -largest),
                                            np.where(self.discrete, self.max_values, largest)) if fits else None
        if bounds is None:
            return False
        ok = x >= bounds[0]
        ok &= x <= bounds[1]
        if self._any_discrete:
            integer = x == np.rint(x)
            if not self._all_discrete:
                integer |= self._continuous
            ok &= integer
        if ok.all():
            return True
        return allow_nan and bool((ok | np.isnan(x)).all())

    def _has_problems_on_device(self, x, backend, allow_nan: bool) -> bool:
        """Whether a device array breaks any rule :meth:`prepare` checks (one synchronization)."""
        xp = backend.xp
        nan = xp.isnan(x)
        bad = xp.isinf(x).any()
        if not allow_nan:
            bad = bad | nan.any()
        if self.discrete.any():
            columns = backend.index(np.flatnonzero(self.discrete))
            xd = xp.where(nan[:, columns], 0, x[:, columns])
            limits = backend.asarray(self.max_values[self.discrete])
            bad = bad | ((xd != xp.round(xd)) | (xd < 0) | (xd > limits[None, :])).any()
        return bool(bad)
