"""Input checking: what data a compiled circuit accepts, refused with a message before any kernel runs.

The domain of every variable follows from the leaf families over it: a variable under a
discrete family (Bernoulli, Categorical, Binomial, Indicator) takes integers ``0 ..
max_value``; a variable under continuous families only takes any finite real. NaN marks a
missing value everywhere.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_numpy

__all__ = ["InputDomain"]


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

    def prepare(self, x, backend, *, what: str = "x", allow_nan: bool = True):
        """Check and convert data to a backend array of shape (batch, num_variables).

        Refuses, with a message naming the problem: wrong number of variables, non-numeric
        dtype, infinite values, non-integer or out-of-range values of discrete variables.
        Arrays of more than two dimensions (images) are flattened per example. A device array
        already in the backend's dtype and shape is checked where it lies (one synchronization,
        no copy); only a bad one is copied to the host, to name the problem.
        """
        if (not backend.on_host and isinstance(x, backend.xp.ndarray) and x.dtype == backend.dtype
                and x.ndim == 2 and x.shape[1] == self.num_variables):
            if not self._has_problems_on_device(x, backend, allow_nan):
                return x
            x = to_numpy(x)
        if not isinstance(x, np.ndarray):
            if hasattr(x, "get") and callable(x.get):                             # a device array
                x = to_numpy(x)
            elif hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):       # another DLPack producer
                x = np.from_dlpack(x)
            else:
                x = np.asarray(x)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise TypeError(f"{what} must be a numeric array, got dtype {x.dtype}")
        if x.ndim == 1:
            raise ValueError(f"{what} must have shape (batch, {self.num_variables}); got a 1-D array of "
                             f"length {x.shape[0]} (use x[None] for a single example)")
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.num_variables:
            raise ValueError(f"{what} has {x.shape[1]} variables per example, the circuit has {self.num_variables}")
        x = x.astype(np.float64, copy=False)
        nan = np.isnan(x)
        if nan.any() and not allow_nan:
            raise ValueError(f"{what} must not contain NaN here")
        if np.isinf(x).any():
            r, c = np.argwhere(np.isinf(x))[0]
            raise ValueError(f"{what} holds an infinite value at example {r}, variable {c}; use NaN for missing")
        d = self.discrete
        if d.any():
            xd = np.where(nan[:, d], 0, x[:, d])
            bad = (xd != np.round(xd)) | (xd < 0) | (xd > self.max_values[d][None, :])
            if bad.any():
                r, c = np.argwhere(bad)[0]
                var = int(np.flatnonzero(d)[c])
                raise ValueError(f"{what}[{r}, {var}] = {x[r, var]:g} is outside the domain of variable {var} "
                                 f"(integers 0..{int(self.max_values[var])})")
        return backend.asarray(x)

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
