"""Parameter constraints: the domains of learnable parameters and their unconstrained forms.

A leaf family (or a network layer, or a DCGMM layer) declares the constraint of each learnable
parameter once, in its ``constraints`` table; everything generic reads that table:

* gradient learners optimize the *unconstrained* form (:meth:`Constraint.to_unconstrained`,
  :meth:`Constraint.from_unconstrained`) and keep it inside the admissible range with
  :meth:`Constraint.clamp` (a floor of a positive parameter);
* EM clips every M-step result into the domain with :meth:`Constraint.clip` (the ratio of two
  separately rounded sums can leave ``[0, 1]`` by an ulp);
* validity checks and file loading ask :meth:`Constraint.violation` for a one-line reason.

A floor may be given as the name of a learner setting (``positive(floor="min_std")``); a
learner resolves it with :meth:`Constraint.resolve` from its own settings, so ``fit(...,
min_std=...)`` reaches every family that declares such a floor without naming any of them.

The available constraints are registered by name in :data:`CONSTRAINTS` (``real``,
``positive``, ``interval``, ``unit_interval``, ``simplex``); :func:`constraint` builds one by
name.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["Constraint", "Real", "Positive", "Interval", "UnitInterval", "Simplex", "CONSTRAINTS", "constraint",
           "real", "positive", "unit_interval", "simplex", "interval"]

#: Smallest probability mapped to a finite logit.
_TINY = 1e-12


def _range(value: np.ndarray) -> tuple:
    """The smallest and the largest value: NaN when any value is NaN, so that every bound test
    fails; ``(inf, -inf)`` for no values, so that every one passes."""
    if value.size == 0:
        return np.inf, -np.inf
    return value.min(), value.max()


class Constraint:
    """The domain of one parameter array and a bijection from the real numbers onto it.

    Subclasses set ``name`` and implement the transforms. Constraints are immutable values:
    two with the same settings compare equal.
    """

    name: str = ""

    def to_unconstrained(self, xp, value):
        """The unconstrained (real-valued) form of ``value``."""
        raise NotImplementedError(f"{type(self).__name__}.to_unconstrained")

    def from_unconstrained(self, xp, free):
        """The constrained value of an unconstrained array (inverse of :meth:`to_unconstrained`)."""
        raise NotImplementedError(f"{type(self).__name__}.from_unconstrained")

    def clamp(self, xp, free):
        """``free`` limited to where :meth:`from_unconstrained` gives an admissible value."""
        return free

    def clip(self, xp, value):
        """``value`` limited elementwise to the domain's bounds."""
        return value

    def violation(self, value) -> str | None:
        """Why ``value`` (a NumPy array) is outside the domain, or None when it is inside."""
        low, high = _range(np.asarray(value))
        return None if -np.inf < low and high < np.inf else "not finite"

    def resolve(self, settings: dict) -> "Constraint":
        """The constraint with every setting-named bound replaced by its value in ``settings``."""
        return self

    def dtype_problem(self, value, dtype) -> str | None:
        """Why ``value`` (float64, inside the domain) cannot be computed with in ``dtype``, or None.

        The base rule: every finite value fits the dtype's range. Subclasses add what their
        log-probabilities need (a positive value must not round to 0, a probability strictly
        inside its interval must stay strictly inside).
        """
        if np.dtype(dtype) == np.float64:
            return None                 # the values' own precision: every finite one fits
        value = np.asarray(value, dtype=np.float64)
        info = np.finfo(dtype)
        finite = value[np.isfinite(value)]
        huge = finite[np.abs(finite) > info.max]
        if huge.size:
            return f"{huge[0]:g} exceeds the largest {np.dtype(dtype).name} number ({info.max:.3g})"
        return None

    def _key(self) -> tuple:
        return ()

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        args = ", ".join(repr(k) for k in self._key())
        return f"{self.name}({args})" if args else self.name


class Real(Constraint):
    """Any finite real number (means, network weights); the identity transform."""

    name = "real"

    def to_unconstrained(self, xp, value):
        return value

    def from_unconstrained(self, xp, free):
        return free


class Positive(Constraint):
    """Numbers ``>= floor`` (``> 0`` without a floor): standard deviations, rates.

    Parameters
    ----------
    floor : float or str
        Lower bound; a string names the learner setting that holds it (``"min_std"``).

    The unconstrained form is ``log(value)``; :meth:`clamp` keeps it at or above ``log(floor)``.
    """

    name = "positive"

    def __init__(self, floor: float | str = 0.0):
        if not isinstance(floor, str):
            floor = float(floor)
            if not (math.isfinite(floor) and floor >= 0):
                raise ValueError(f"positive: floor must be a non-negative number, got {floor!r}")
        self.floor = floor

    def _key(self):
        return (self.floor,) if self.floor else ()

    def resolve(self, settings: dict) -> "Positive":
        if not isinstance(self.floor, str):
            return self
        if self.floor not in settings:
            raise ValueError(f"positive: the floor names the setting {self.floor!r}, which the learner does not have")
        return Positive(settings[self.floor])

    def _numeric_floor(self) -> float:
        if isinstance(self.floor, str):
            raise ValueError(f"positive: floor {self.floor!r} is unresolved; call resolve(settings) first")
        return self.floor

    def to_unconstrained(self, xp, value):
        return xp.log(value)

    def from_unconstrained(self, xp, free):
        return xp.exp(free)

    def clamp(self, xp, free):
        floor = self._numeric_floor()
        return xp.maximum(free, np.log(floor)) if floor > 0 else free

    def clip(self, xp, value):
        floor = self._numeric_floor()
        return xp.maximum(value, floor) if floor > 0 else value

    def violation(self, value):
        low, high = _range(np.asarray(value))
        if not (low > 0 and high < np.inf):
            return "not positive and finite"
        return None

    def dtype_problem(self, value, dtype):
        value = np.asarray(value, dtype=np.float64)
        smallest = 1.0 / float(np.finfo(dtype).max)
        small = value[(value > 0) & (value < smallest)]
        if small.size:
            return (f"{small[0]:g} is below {smallest:.3g}, the smallest {np.dtype(dtype).name} number whose "
                    f"reciprocal is finite; its log-density would not be finite")
        return super().dtype_problem(value, dtype)


class Interval(Constraint):
    """Numbers in ``[lower, upper]``; the unconstrained form is the scaled logit.

    Values at the bounds map to large finite logits (``lower`` and ``upper`` are approached
    within a relative ``1e-12``).
    """

    name = "interval"

    def __init__(self, lower: float, upper: float):
        lower, upper = float(lower), float(upper)
        if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
            raise ValueError(f"interval: needs finite lower < upper, got {lower!r}, {upper!r}")
        self.lower, self.upper = lower, upper

    def _key(self):
        return (self.lower, self.upper)

    def _unit(self, xp, value):
        if self.lower == 0.0 and self.upper == 1.0:
            return value
        return (value - self.lower) / (self.upper - self.lower)

    def to_unconstrained(self, xp, value):
        p = xp.clip(self._unit(xp, value), _TINY, 1 - _TINY)
        return xp.log(p) - xp.log1p(-p)

    def from_unconstrained(self, xp, free):
        p = 1.0 / (1.0 + xp.exp(-free))
        if self.lower == 0.0 and self.upper == 1.0:
            return p
        return self.lower + (self.upper - self.lower) * p

    def clip(self, xp, value):
        return value.clip(self.lower, self.upper)

    def violation(self, value):
        low, high = _range(np.asarray(value))
        if not (low >= self.lower and high <= self.upper):  # finite bounds
            return f"outside [{self.lower:g}, {self.upper:g}]"
        return None

    def dtype_problem(self, value, dtype):
        if np.dtype(dtype) == np.float64:
            return None                 # nothing rounds onto a bound in the values' own precision
        value = np.asarray(value, dtype=np.float64)
        name = np.dtype(dtype).name
        cast = value.astype(dtype)
        near_lower = value[(value > self.lower) & (cast <= self.lower)]
        if near_lower.size:
            return (f"{near_lower[0]:g} rounds to {self.lower:g} in {name}; its log-probability would not be "
                    f"finite")
        near_upper = value[(value < self.upper) & (cast >= self.upper)]
        if near_upper.size:
            return (f"{near_upper[0]!r} rounds to {self.upper:g} in {name}; the log-probability of the other "
                    f"outcome would not be finite")
        return super().dtype_problem(value, dtype)


class UnitInterval(Interval):
    """Probabilities in ``[0, 1]``; the unconstrained form is the logit."""

    name = "unit_interval"

    def __init__(self):
        super().__init__(0.0, 1.0)

    def _key(self):
        return ()


class Simplex(Constraint):
    """Non-negative rows (along the last axis) that sum to 1; the unconstrained form is ``log``.

    ``from_unconstrained`` is the row-wise softmax, so any real logits give a distribution.
    """

    name = "simplex"

    def __init__(self, atol: float = 1e-6):
        self.atol = float(atol)

    def _key(self):
        return (self.atol,) if self.atol != 1e-6 else ()

    def to_unconstrained(self, xp, value):
        return xp.log(xp.clip(value, _TINY, None))

    def from_unconstrained(self, xp, free):
        z = free - free.max(axis=-1, keepdims=True)
        e = xp.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def clip(self, xp, value):
        return value.clip(0.0, 1.0)

    def dtype_problem(self, value, dtype):
        if np.dtype(dtype) == np.float64:
            return None                 # nothing rounds to 0 in the values' own precision
        value = np.asarray(value, dtype=np.float64)
        small = value[(value > 0) & (value.astype(dtype) == 0)]
        if small.size:
            return (f"the probability {small[0]:g} rounds to 0 in {np.dtype(dtype).name}; its log-probability "
                    f"would not be finite")
        return super().dtype_problem(value, dtype)

    def violation(self, value):
        value = np.asarray(value)
        low, high = _range(value)
        if not (low >= 0 and high < np.inf):
            return "negative or not finite"
        if not np.allclose(value.sum(axis=-1), 1.0, atol=self.atol):
            return "rows do not sum to 1"
        return None


#: The constraint kinds by name.
CONSTRAINTS: dict[str, type[Constraint]] = {
    cls.name: cls for cls in (Real, Positive, Interval, UnitInterval, Simplex)}


def constraint(name: str, *args, **kwargs) -> Constraint:
    """The constraint registered as ``name``, built with the given settings.

    >>> constraint("positive", floor=0.01)
    positive(0.01)
    """
    if name not in CONSTRAINTS:
        raise ValueError(f"unknown constraint {name!r}; known: {sorted(CONSTRAINTS)}")
    return CONSTRAINTS[name](*args, **kwargs)


real = Real()
unit_interval = UnitInterval()
simplex = Simplex()


def positive(floor: float | str = 0.0) -> Positive:
    """Positive numbers, at or above ``floor`` (a number, or the name of a learner setting)."""
    return Positive(floor)


def interval(lower: float, upper: float) -> Interval:
    """Numbers in ``[lower, upper]``."""
    return Interval(lower, upper)
