"""Gaussian leaves: univariate, or diagonal multivariate over several variables."""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import backend as backend_module, jit
from ..constraints import positive, real
from .base import LeafFamily, as_float_array, make_rng

__all__ = ["Gaussian"]

_LOG_2PI = math.log(2 * math.pi)


@functools.lru_cache(maxsize=None)
def _kernels():
    """The module of compiled loops (:mod:`pcircuits.distributions._gaussian_kernels`), imported on the
    first compiled pass so that importing pcircuits does not import Numba."""
    from . import _gaussian_kernels
    return _gaussian_kernels


#: Values of a compiled pass from which it is split among the host threads. The loops take 0.1 to
#: 0.3 ns a value; waking a second thread costs about 0.1 ms, which halving the work repays from
#: about 2M values on (a RAT-SPN leaf layer at batch 512: 26M, a PD one: 1.6M).
SPLIT_VALUES = 1 << 21


def _split(be, num_rows: int, num_values: int, work) -> None:
    """Run ``work(lo, hi)`` over ``num_rows`` rows holding ``num_values`` values in all: one call below
    :data:`SPLIT_VALUES`, else one contiguous share of the rows per host thread (the compiled loops
    release the GIL)."""
    pieces = min(num_rows, backend_module.host_threads()) if num_values >= SPLIT_VALUES else 1
    if pieces <= 1:
        work(0, num_rows)
        return
    share = -(-num_rows // pieces)
    be.blocks(pieces, backend_module.WIDE_BLOCK_ELEMENTS, lambda lo, hi: work(lo * share, min(hi * share, num_rows)),
              wide=True)


def log_density_units_numpy(be, xt, variables, mean, scale, const, out, missing: bool) -> None:
    """NumPy definition of the leaf log-densities of :meth:`Gaussian.log_prob_units`.

    Parameters
    ----------
    be : Backend
    xt : array, shape (num_variables, B)
    variables : int64 array, shape (U, d)
    mean, scale, const : arrays, shape (U, d)
        Means, ``sqrt(1/2) / std`` and ``-log(std) - log(2 pi) / 2``.
    out : array, shape (U, B)
        Receives ``sum_j const - ((x - mean) scale)^2`` over the unit's ``d`` variables, a term
        that is NaN (a missing ``x``) taken as 0 where ``missing``.
    missing : bool
        False promises that ``xt`` has no NaN.
    """
    xp = be.xp
    mean, scale, const = mean[:, :, None], scale[:, :, None], const[:, :, None]
    univariate = variables.shape[1] == 1

    def block(lo, hi):
        o = out[lo:hi]
        if univariate:
            t = o[:, None, :]
            be.take_rows(xt, variables[lo:hi, 0], o)
        else:
            t = xt.take(variables[lo:hi], axis=0)                         # (u, d, B)
        t -= mean[lo:hi]
        t *= scale[lo:hi]
        xp.square(t, out=t)
        xp.subtract(const[lo:hi], t, out=t)
        if missing:
            xp.putmask(t, xp.isnan(t), 0)
        if not univariate:
            t.sum(axis=1, out=o)
    be.blocks(out.shape[0], out.shape[1] * variables.shape[1], block, wide=True)


def grad_units_numpy(be, xt, variables, mean, inv_std, g, grad_mean, grad_log_std, grad_x, missing: bool) -> None:
    """NumPy definition of the gradients of :meth:`Gaussian.grad_units`.

    Parameters
    ----------
    be : Backend
    xt : array, shape (num_variables, B)
    variables : int64 array, shape (U, d)
    mean, inv_std : arrays, shape (U, d)
        Means and ``1 / std``.
    g : array, shape (U, B)
        Weights of the units' log-densities.
    grad_mean, grad_log_std : arrays, shape (U, d)
        Receive the gradients with respect to ``mean`` and ``log(std)``.
    grad_x : array, shape (U, d, B), or None
        Receives the gradient with respect to the inputs (None: not wanted).
    missing : bool
        False promises that ``xt`` has no NaN.
    """
    xp = be.xp
    units, d = variables.shape
    batch = g.shape[1]
    mean = mean[:, :, None]

    def block(lo, hi):
        z = xt.take(variables[lo:hi], axis=0)                             # (u, d, B)
        z -= mean[lo:hi]
        z *= inv_std[lo:hi, :, None]
        gu = g[lo:hi, None, :]
        spec = "udb,uxb->ud"                                                # sums over the batch as dot
        if missing:                                                         # products with the flows
            observed = ~xp.isnan(z)
            xp.putmask(z, ~observed, 0)
            gu = xp.where(observed, gu, 0)
            spec = "udb,udb->ud"
        grad_mean[lo:hi] = xp.einsum(spec, z, gu) * inv_std[lo:hi]
        if grad_x is not None:
            xp.multiply(z, gu * -inv_std[lo:hi, :, None], out=grad_x[lo:hi])
        xp.square(z, out=z)
        grad_log_std[lo:hi] = xp.einsum(spec, z, gu) - gu.sum(axis=2)
    be.blocks(units, batch * d, block, wide=True)


class Gaussian(LeafFamily):
    """Gaussian leaves with diagonal covariance.

    Parameters
    ----------
    mean : array_like, shape (num_units,) or (num_units, d)
        Means; a 2-D array makes each unit a diagonal Gaussian over ``d`` variables.
    std : array_like, same shape as ``mean`` (or broadcastable to it)
        Positive standard deviations.

    Notes
    -----
    In the math, a missing (NaN) coordinate is marginalized by leaving it out of the sum over
    dimensions, which is exact for a diagonal covariance.
    Gradients are taken with respect to ``mean`` and ``log(std)`` (the unconstrained forms of
    the declared constraints); ``std`` has the floor ``min_std`` of the learner.
    """

    name = "gaussian"
    param_names = ("mean", "std")
    constraints = {"mean": real, "std": positive(floor="min_std")}
    discrete = False
    multivariate = True

    def __init__(self, mean, std=1.0):
        mean = as_float_array(mean, "Gaussian: mean", (1, 2))
        std = as_float_array(std, "Gaussian: std", (0, 1, 2))
        try:
            std = np.broadcast_to(std, mean.shape).copy()
        except ValueError:
            raise ValueError(f"Gaussian: std of shape {std.shape} does not fit mean of shape {mean.shape}") from None
        if np.any(std <= 0):
            raise ValueError(f"Gaussian: std must be positive, got minimum {std.min()}")
        self.multivariate = mean.ndim == 2
        self.mean = mean
        self.std = std

    @property
    def num_variables(self) -> int:
        return int(self.mean.shape[1]) if self.mean.ndim == 2 else 1

    def shape_problems(self):
        problems = super().shape_problems()
        if not problems and np.shape(self.mean) != np.shape(self.std):
            problems.append(f"mean has shape {np.shape(self.mean)} but std has shape {np.shape(self.std)}")
        return problems

    def table_arrays(self):
        return {"mean": self.mean.reshape(self.num_units, -1), "std": self.std.reshape(self.num_units, -1)}

    @classmethod
    def random(cls, num_units: int, num_variables: int | None = None, rng=None,
               mean_scale: float = 1.0) -> "Gaussian":
        """Means from N(0, mean_scale^2), standard deviations uniform in [0.5, 1.5]."""
        gen = make_rng(rng)
        shape = (num_units,) if num_variables is None else (num_units, num_variables)
        return cls(gen.normal(0.0, mean_scale, size=shape), gen.uniform(0.5, 1.5, size=shape))

    # ---- math: params["mean"], params["std"] have shape (U, d); x has shape (B, U, d) --
    @staticmethod
    def log_prob(be, params, x):
        xp = be.xp
        inv_std = 1.0 / params["std"]
        const = -xp.log(params["std"]) - 0.5 * _LOG_2PI
        z = x - params["mean"][None]
        z *= inv_std[None]
        z *= z
        z *= -0.5
        z += const[None]
        missing = xp.isnan(x)
        if be.maybe_any(missing):
            xp.putmask(z, missing, 0)
        return z[:, :, 0] if z.shape[2] == 1 else z.sum(axis=2)

    @staticmethod
    def grad(be, params, x, g):
        xp = be.xp
        inv_std = (1.0 / params["std"])[None]
        z = (x - params["mean"][None]) * inv_std
        gw = g[..., None]
        missing = xp.isnan(x)
        has_missing = be.maybe_any(missing)
        if has_missing:
            xp.putmask(z, missing, 0)
        gz = gw * z
        grad_mean = (gz * inv_std).sum(axis=0)
        grad_log_std = (gz * z).sum(axis=0) - (xp.where(missing, 0.0, gw) if has_missing else gw).sum(axis=0)
        grad_x = -gz * inv_std
        return {"mean": grad_mean, "std": grad_log_std}, grad_x

    @classmethod
    def log_prob_units(cls, be, params, xt, variables, out, *, missing=True):
        """Compiled where :func:`pcircuits.jit.takes` allows, else :func:`log_density_units_numpy`."""
        std = params["std"]
        scale = math.sqrt(0.5) / std                                   # -0.5 z^2 = -(scaled z)^2
        const = -be.xp.log(std) - 0.5 * _LOG_2PI
        mean = params["mean"]
        if not jit.takes(be, xt, out, mean, scale, const) or not variables.flags.c_contiguous:
            log_density_units_numpy(be, xt, variables, mean, scale, const, out, missing)
            return
        loop = _kernels().log_density_units.dispatcher
        zero = out.dtype.type(0)
        _split(be, out.shape[0], out.size * variables.shape[1],
               lambda lo, hi: loop(xt, variables[lo:hi], mean[lo:hi], scale[lo:hi], const[lo:hi], out[lo:hi],
                                   bool(missing), zero))

    @classmethod
    def grad_units(cls, be, params, xt, variables, g, *, inputs=True, missing=True):
        """Compiled where :func:`pcircuits.jit.takes` allows, else :func:`grad_units_numpy`."""
        units, d = variables.shape
        batch = g.shape[1]
        inv_std = 1.0 / params["std"]
        mean = params["mean"]
        grad_mean = be.xp.empty((units, d), dtype=g.dtype)
        grad_log_std = be.xp.empty((units, d), dtype=g.dtype)
        grad_x = be.xp.empty((units, d, batch), dtype=g.dtype) if inputs else None
        if not jit.takes(be, g, xt, mean, inv_std) or not variables.flags.c_contiguous:
            grad_units_numpy(be, xt, variables, mean, inv_std, g, grad_mean, grad_log_std, grad_x, missing)
        else:
            loop = _kernels().grad_units.dispatcher
            zero = g.dtype.type(0)
            _split(be, units, g.size * d,
                   lambda lo, hi: loop(xt, variables[lo:hi], mean[lo:hi], inv_std[lo:hi], g[lo:hi], grad_mean[lo:hi],
                                       grad_log_std[lo:hi], None if grad_x is None else grad_x[lo:hi], bool(missing),
                                       zero))
        return {"mean": grad_mean, "std": grad_log_std}, grad_x

    @staticmethod
    def mode(be, params):
        return params["mean"].astype(be.dtype)

    mean = mode

    @staticmethod
    def sample(be, params, rng):
        return (params["mean"] + params["std"] * rng.normal(params["mean"].shape)).astype(be.dtype)

    @staticmethod
    def em_statistics(be, params, x, flows):
        xp = be.xp
        observed = ~xp.isnan(x)
        x0 = xp.where(observed, x, 0)
        w = xp.where(observed, flows[..., None], 0.0)
        return {"count": w.sum(axis=0), "sum_x": (w * x0).sum(axis=0), "sum_xx": (w * x0 * x0).sum(axis=0)}

    @staticmethod
    def em_update(params, stats, *, eps=1e-2, **settings):
        count = stats["count"]
        safe = count + eps
        mean = (stats["sum_x"] + eps * params["mean"]) / safe
        var = (stats["sum_xx"] - 2 * mean * stats["sum_x"] + mean * mean * count + eps * params["std"] ** 2) / safe
        return {"mean": mean, "std": var.clip(0, None) ** 0.5}
