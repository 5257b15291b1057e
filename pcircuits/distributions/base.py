"""The leaf-family protocol: a parameter holder for all units of one input node.

A family object holds the parameters of ``num_units`` leaf distributions of one kind (for
example ``num_units`` Gaussians over one pixel). Two input nodes that hold the same family
object share (tie) those parameters. The executable math (log-probabilities, modes,
sampling, EM statistics) is written as class-level functions over *stacked* parameter tables
so that the Program evaluates all leaves of a family, across all input nodes, in one call.

The protocol a family implements (see :class:`LeafFamily`):

* ``constraints``: the constraint of every learnable parameter (:mod:`pcircuits.constraints`).
  Gradient learners optimize the unconstrained forms it defines, EM clips its updates into it,
  and validity checks report values outside it; no family writes these conversions itself.
* ``log_prob(be, params, x)`` and ``grad(be, params, x, g)``: log-densities of all units and
  their vector-Jacobian product (gradients with respect to the *unconstrained* parameters and
  the inputs);
* ``mode(be, params)``, ``mean(be, params)``, ``sample(be, params, rng)``: what the top-down
  pass writes into the missing variables;
* ``em_statistics(be, params, x, flows)`` and ``em_update(params, stats, *, eps, **settings)``
  when ``supports_em`` (sufficient statistics weighted by the leaf flows, and the M-step).

The Program's leaf layers call the *unit-major* forms, which work in the value array's own
``(units, batch)`` layout and read the inputs from ``xt`` (shape ``(num_variables, batch)``):

* ``log_prob_units(be, params, xt, variables, out, *, missing)`` writes the log-densities
  into ``out`` (U, batch);
* ``grad_units(be, params, xt, variables, g, *, inputs, missing)`` returns the parameter
  gradients and, only when ``inputs``, the input gradients of shape (U, d, batch).

``missing`` is False when the batch has no missing value (the NaN handling is then skipped).
Their defaults transpose to ``log_prob`` and ``grad``; the built-in families override them with
passes that go over each block of units once (:meth:`pcircuits.backend.Backend.blocks`).

Neural leaves (:class:`~pcircuits.distributions.vae.VAE`) extend it in three ways, each
switched on by a class flag so that the other families keep the plain protocol:

* ``layer_settings()``: plain settings (an activation name, a number of samples) that every
  unit of one layer shares. They are part of the parameter-table key and are handed to the math
  inside ``params`` next to the arrays.
* ``stochastic``: ``log_prob`` is a Monte Carlo bound. The Program draws the noise once per
  forward pass with ``draw_noise(be, params, batch, rng)`` (from the pass's random source,
  or from seed 0 when the pass has none, so evaluations are repeatable) and hands the same
  noise to ``log_prob(..., noise=)`` and ``grad(..., noise=)``; a forward pass that a backward
  pass follows calls ``log_prob_and_state`` instead and hands its state to ``grad(..., state=)``.
* ``conditional``: the value a unit writes into missing variables depends on the observed ones
  (a VAE encodes them). The Program then calls ``conditional_mode``, ``conditional_mean`` and
  ``conditional_sample`` with the unit's inputs of shape (batch, U, d).
"""
from __future__ import annotations

import numpy as np

from ..constraints import Constraint

__all__ = ["LeafFamily", "FAMILIES", "family_from_parameters"]

#: Registry of leaf families by name, filled by ``LeafFamily.__init_subclass__``.
FAMILIES: dict[str, type["LeafFamily"]] = {}


class LeafFamily:
    """Base class of the leaf families.

    Subclasses set ``name``, ``param_names`` and ``constraints``, validate their arrays in
    ``__init__`` and implement the class-level math used by the Program (see the module
    docstring for the protocol).
    """

    name: str = ""
    param_names: tuple[str, ...] = ()
    #: The constraint of every learnable parameter, by name; parameters not listed are fixed
    #: (an indicator's values, a binomial's number of trials).
    constraints: dict[str, Constraint] = {}
    #: True for families over a discrete domain (counts, categories, binary).
    discrete: bool = True
    #: True when ``em_statistics`` / ``em_update`` give the family's M-step.
    supports_em: bool = True
    #: True when ``log_prob`` is the exact log-density; False for a lower bound (a VAE's
    #: ELBO), which makes every circuit value over such leaves a bound too.
    exact: bool = True
    #: True when ``log_prob`` and ``grad`` take the ``noise`` that ``draw_noise`` returns.
    stochastic: bool = False
    #: True when the top-down values depend on the observed part of a unit's variables.
    conditional: bool = False
    #: True when one unit can be a distribution over several variables.
    multivariate: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            FAMILIES[cls.name] = cls

    # ---- holder API -------------------------------------------------------------------
    @property
    def num_units(self) -> int:
        return int(getattr(self, self.param_names[0]).shape[0])

    @property
    def num_variables(self) -> int:
        """How many variables each unit is a distribution over (1 for univariate leaves)."""
        return 1

    @property
    def num_params(self) -> int:
        """Number of free parameters stored (array sizes; counts are not parameters)."""
        return int(sum(np.size(getattr(self, n)) for n in self.trainable_names))

    @property
    def trainable_names(self) -> tuple[str, ...]:
        """The learnable parameters: those with a constraint."""
        return tuple(self.constraints)

    def parameters(self) -> dict[str, np.ndarray]:
        """The parameter arrays by name (the arrays themselves, not copies)."""
        return {n: getattr(self, n) for n in self.param_names}

    def table_arrays(self) -> dict[str, np.ndarray]:
        """Arrays the Program stacks into the family's parameter table (one row per unit)."""
        return self.parameters()

    def max_value(self) -> int | None:
        """Largest admissible value of a discrete family's variable (None: continuous)."""
        return None

    def config(self) -> dict:
        """Non-array settings needed to rebuild the family (JSON-serializable)."""
        return {}

    def layer_settings(self) -> tuple:
        """Settings the math needs besides the arrays, as sorted ``(name, value)`` pairs; units
        with different settings never share a layer."""
        return ()

    @classmethod
    def from_parameters(cls, arrays: dict, config: dict) -> "LeafFamily":
        return cls(*(arrays[n] for n in cls.param_names), **config)

    def copy(self) -> "LeafFamily":
        return type(self).from_parameters({k: np.array(v, copy=True) for k, v in self.parameters().items()},
                                          self.config())

    def shape_problems(self) -> list[str]:
        """Reasons the stored arrays no longer fit together (after a user edited them)."""
        problems = []
        units = np.shape(getattr(self, self.param_names[0]))[:1]
        for n in self.param_names:
            a = getattr(self, n)
            if not isinstance(a, np.ndarray):
                problems.append(f"parameter {n!r} is a {type(a).__name__}, not an ndarray")
            elif a.shape[:1] != units:
                problems.append(f"parameter {n!r} has shape {a.shape}, expected {units[0] if units else '?'} units first")
        return problems

    def value_problems(self) -> list[str]:
        """Reasons the stored parameter values are not a valid distribution (outside a constraint)."""
        problems = []
        for name, constraint in self.constraints.items():
            reason = constraint.violation(getattr(self, name))
            if reason is not None:
                problems.append(f"{name} {reason}")
        return problems

    # ---- parameter transforms, from the declared constraints -----------------------------
    @classmethod
    def to_unconstrained(cls, xp, params: dict) -> dict:
        """The unconstrained form of every learnable parameter of a table (what gradients refer to)."""
        return {name: c.to_unconstrained(xp, params[name]) for name, c in cls.constraints.items()}

    @classmethod
    def from_unconstrained(cls, xp, params: dict, free: dict) -> dict:
        """The constrained parameters from unconstrained ones (the entries of ``free``)."""
        return {name: cls.constraints[name].from_unconstrained(xp, value) for name, value in free.items()}

    @classmethod
    def dtype_problems(cls, table: dict, dtype) -> list[str]:
        """Why a stacked parameter table (float64) cannot be computed with in ``dtype``.

        Each declared constraint says what its log-probabilities need (see
        :meth:`pcircuits.constraints.Constraint.dtype_problem`); a family with other settings
        in its table (a Binomial's ``n``) adds its own rules. Empty when the table is fine.
        """
        problems = []
        for name, rule in cls.constraints.items():
            if name in table:
                reason = rule.dtype_problem(table[name], dtype)
                if reason is not None:
                    problems.append(f"{cls.name} parameter {name!r}: {reason}")
        return problems

    # ---- the math the Program runs (class level, over stacked parameter tables) ---------
    # ``params`` maps names to backend arrays whose first axis is the unit axis ``U``; ``x`` has
    # shape ``(batch, U, d)`` and NaN marks a missing (marginalized) value.
    @staticmethod
    def log_prob(be, params: dict, x):
        """Log-density of every unit at its inputs, shape (batch, U); a missing value adds 0."""
        raise NotImplementedError

    @staticmethod
    def grad(be, params: dict, x, g):
        """VJP of :meth:`log_prob` with weights ``g`` (batch, U): ``({name: d/d unconstrained
        parameter, shape of the table}, d/dx of shape (batch, U, d))``."""
        raise NotImplementedError

    @classmethod
    def log_prob_units(cls, be, params: dict, xt, variables, out, *, missing: bool = True) -> None:
        """Write the log-density of every unit at its inputs into ``out`` (U, batch).

        ``xt`` (num_variables, batch) holds the inputs variable-major, ``variables`` (U, d) the
        variables of every unit; ``missing`` False promises that ``xt`` has no NaN.
        """
        out[...] = cls.log_prob(be, params, xt[variables].transpose(2, 0, 1)).T

    @classmethod
    def grad_units(cls, be, params: dict, xt, variables, g, *, inputs: bool = True, missing: bool = True):
        """VJP of :meth:`log_prob_units` with weights ``g`` (U, batch): ``({name: d/d unconstrained
        parameter}, d/dx of shape (U, d, batch), or None unless ``inputs``)``."""
        grads, grad_x = cls.grad(be, params, xt[variables].transpose(2, 0, 1), g.T)
        return grads, (grad_x.transpose(1, 2, 0) if inputs else None)

    @staticmethod
    def mode(be, params: dict):
        """Most probable value of every unit, shape (U, d)."""
        raise NotImplementedError

    @staticmethod
    def mean(be, params: dict):
        """Expected value of every unit, shape (U, d) (posterior-mean inpainting)."""
        raise NotImplementedError

    @staticmethod
    def sample(be, params: dict, rng):
        """One draw from every unit, shape (U, d)."""
        raise NotImplementedError

    @classmethod
    def draw_noise(cls, be, params: dict, batch: int, rng):
        """The random numbers one forward pass of a ``stochastic`` family uses."""
        return None

    @classmethod
    def conditional_mode(cls, be, params: dict, x):
        """Most probable value of every unit given its observed inputs ``x`` (batch, U, d):
        shape (batch, U, d). Unconditional families ignore ``x``."""
        return be.xp.broadcast_to(cls.mode(be, params)[None], x.shape)

    @classmethod
    def conditional_mean(cls, be, params: dict, x):
        """Expected value of every unit given its observed inputs, shape (batch, U, d)."""
        return be.xp.broadcast_to(cls.mean(be, params)[None], x.shape)

    @classmethod
    def conditional_sample(cls, be, params: dict, x, rng):
        """One draw from every unit given its observed inputs, shape (batch, U, d)."""
        return be.xp.broadcast_to(cls.sample(be, params, rng)[None], x.shape)

    @staticmethod
    def em_statistics(be, params: dict, x, flows) -> dict:
        """Sufficient statistics of every unit, weighted by its flows (batch, U), summed over the batch."""
        raise NotImplementedError

    @staticmethod
    def em_update(params: dict, stats: dict, *, eps: float = 1e-2, **settings) -> dict:
        """The M-step: new parameters from summed statistics, with pseudo-count ``eps`` towards
        the current ones (EM then clips them into the declared constraints)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_units={self.num_units})"


def family_from_parameters(name: str, arrays: dict, config: dict) -> LeafFamily:
    """Rebuild a family from its registry name, arrays and config (used by load)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown leaf family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name].from_parameters(arrays, config)


def as_float_array(value, what: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """Convert to a float64 array of the given rank, refusing non-numeric and non-finite data."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be numeric, got {type(value).__name__}") from None
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in ndims:
        raise ValueError(f"{what} must have {' or '.join(map(str, ndims))} dimension(s), got shape {arr.shape}")
    if arr.ndim and arr.shape[0] == 0:
        raise ValueError(f"{what} needs at least one unit, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    return arr


def make_rng(rng) -> np.random.Generator:
    """A NumPy Generator from a seed, a Generator, or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
