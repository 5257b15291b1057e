"""Discrete leaf families: Indicator, Bernoulli, Categorical, Binomial.

Each class is a parameter holder (one row per unit) and carries the vectorized math the
Program runs over the stacked rows of all units of the family. In the math functions
``params`` maps names to backend arrays whose first axis is the unit axis ``U``; ``x`` has
shape ``(batch, U, 1)`` and NaN marks a missing (marginalized) value. Gradients are taken with
respect to the unconstrained forms of the declared constraints (logits), which is what Adam
updates; EM clips every update into the constraints.
"""
from __future__ import annotations

import numpy as np

from .. import jit
from ..constraints import simplex, unit_interval
from .base import LeafFamily, as_float_array, make_rng

__all__ = ["Indicator", "Bernoulli", "Categorical", "Binomial"]


def _observed(xp, x):
    """(mask of observed entries, x with missing entries replaced by 0)."""
    observed = ~xp.isnan(x)
    return observed, xp.where(observed, x, 0)


def _lookup(be, table, xt, variables, out, missing: bool) -> None:
    """``out[u, b] = table[u, x]`` for the unit-major inputs of univariate discrete units.

    ``table`` (U, M + 1) holds the log-probability of every value ``0 .. M - 1`` and 0 in its
    last column, which missing values read. The integer codes of all variables are made once
    (``(num_variables, batch)``, a few rows), then one block of units at a time gathers its
    variables' codes, offsets them to its rows of the table and looks up. With Numba, one
    compiled loop per block looks up straight from the inputs (:mod:`._discrete_kernels`).
    """
    if jit.takes(be, table, xt, out) and variables.flags.c_contiguous:
        from ._discrete_kernels import lookup

        def compiled(lo, hi):
            lookup(table[lo:hi], xt, variables[lo:hi], out[lo:hi])
        be.blocks(out.shape[0], out.shape[1], compiled, wide=True)
        return
    xp = be.xp
    width = table.shape[1]
    flat = table.ravel()
    offsets = xp.arange(0, table.shape[0] * width, width, dtype=np.int64)[:, None]
    # continuous variables' values may not fit an integer: their codes are never read
    with np.errstate(invalid="ignore"):
        codes_t = (xp.where(xp.isnan(xt), width - 1, xt) if missing else xt).astype(np.int64)

    def block(lo, hi):
        codes = xp.take(codes_t, variables[lo:hi, 0], axis=0)
        codes += offsets[lo:hi]
        be.take_rows(flat, codes, out[lo:hi])
    be.blocks(out.shape[0], out.shape[1], block)


def _weighted_sums(be, xt, variables, g, missing: bool):
    """Per unit ``(sum_b g x, sum_b g)`` over the observed inputs, shape (U,) each."""
    xp = be.xp
    units = g.shape[0]
    gx = xp.empty(units, dtype=g.dtype)
    gs = xp.empty(units, dtype=g.dtype)

    def block(lo, hi):
        x = xp.take(xt, variables[lo:hi, 0], axis=0)
        gu = g[lo:hi]
        if missing:
            observed = ~xp.isnan(x)
            xp.putmask(x, ~observed, 0)
            gu = xp.where(observed, gu, 0)
        gx[lo:hi] = xp.einsum("ub,ub->u", gu, x)
        gs[lo:hi] = gu.sum(axis=1)
    be.blocks(units, g.shape[1], block)
    return gx, gs


def _no_input_grad(be, g, inputs: bool):
    return be.xp.zeros((g.shape[0], 1, g.shape[1]), dtype=g.dtype) if inputs else None


class Indicator(LeafFamily):
    """Indicator leaves: unit ``u`` is 1 when the variable equals ``value[u]``, else 0.

    Parameters
    ----------
    value : array_like of int, shape (num_units,)
    num_categories : int, optional
        Size of the variable's domain (inferred as ``max(value) + 1`` if not given).
    """

    name = "indicator"
    param_names = ("value",)

    def __init__(self, value, num_categories: int | None = None):
        arr = as_float_array(value, "Indicator: value", 1)
        if np.any(arr < 0) or np.any(arr != np.round(arr)):
            raise ValueError(f"Indicator: values must be non-negative integers, got {arr.tolist()[:8]}")
        self.value = arr.astype(np.int64)
        top = int(self.value.max()) + 1
        if num_categories is None:
            num_categories = max(top, 2)
        if not isinstance(num_categories, (int, np.integer)) or num_categories < top:
            raise ValueError(f"Indicator: num_categories={num_categories!r} is smaller than the largest value + 1 = {top}")
        self.num_categories = int(num_categories)

    def config(self):
        return {"num_categories": self.num_categories}

    def max_value(self):
        return self.num_categories - 1

    @classmethod
    def all_values(cls, num_categories: int) -> "Indicator":
        """One indicator per value ``0 .. num_categories - 1``."""
        return cls(np.arange(num_categories), num_categories=num_categories)

    @classmethod
    def random(cls, num_units: int, num_categories: int = 2, rng=None) -> "Indicator":
        return cls(make_rng(rng).integers(0, num_categories, size=num_units), num_categories=num_categories)

    # ---- math -------------------------------------------------------------------------
    @staticmethod
    def log_prob(be, params, x):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        hit = x0 == params["value"][None, :].astype(x.dtype)
        return xp.where(observed & ~hit, -xp.inf, 0.0).astype(x.dtype)

    @staticmethod
    def grad(be, params, x, g):
        return {}, be.xp.zeros_like(x)

    @classmethod
    def log_prob_units(cls, be, params, xt, variables, out, *, missing=True):
        xp = be.xp
        value = params["value"][:, None].astype(out.dtype)

        def block(lo, hi):
            x = xp.take(xt, variables[lo:hi, 0], axis=0)
            hit = x == value[lo:hi]
            if missing:
                hit |= xp.isnan(x)
            out[lo:hi] = xp.where(hit, 0.0, -xp.inf)
        be.blocks(out.shape[0], out.shape[1], block)

    @classmethod
    def grad_units(cls, be, params, xt, variables, g, *, inputs=True, missing=True):
        return {}, _no_input_grad(be, g, inputs)

    @staticmethod
    def mode(be, params):
        return params["value"][:, None].astype(be.dtype)

    mean = mode

    @staticmethod
    def sample(be, params, rng):
        return params["value"][:, None].astype(be.dtype)

    @staticmethod
    def em_statistics(be, params, x, flows):
        return {}

    @staticmethod
    def em_update(params, stats, **settings):
        return dict(params)


class Bernoulli(LeafFamily):
    """Bernoulli leaves: ``P(x = 1) = p[u]``.

    Parameters
    ----------
    p : array_like, shape (num_units,)
        Success probabilities in ``[0, 1]``.
    """

    name = "bernoulli"
    param_names = ("p",)
    constraints = {"p": unit_interval}

    def __init__(self, p):
        arr = as_float_array(p, "Bernoulli: p", 1)
        if np.any(arr < 0) or np.any(arr > 1):
            raise ValueError(f"Bernoulli: p must lie in [0, 1], got values from {arr.min()} to {arr.max()}")
        self.p = arr

    def max_value(self):
        return 1

    @classmethod
    def random(cls, num_units: int, rng=None) -> "Bernoulli":
        return cls(make_rng(rng).uniform(0.05, 0.95, size=num_units))

    # ---- math -------------------------------------------------------------------------
    @staticmethod
    def log_prob(be, params, x):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        p = params["p"][None, :]
        with np.errstate(divide="ignore"):
            lp = xp.where(x0 > 0.5, xp.log(p), xp.log1p(-p))
        return xp.where(observed, lp, 0.0).astype(x.dtype)

    @staticmethod
    def grad(be, params, x, g):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        p = params["p"][None, :]
        # d/dlogit log p(x) = x - p
        dlogit = xp.where(observed, g * (x0 - p), 0.0).sum(axis=0)
        return {"p": dlogit}, xp.zeros_like(x)

    @classmethod
    def log_prob_units(cls, be, params, xt, variables, out, *, missing=True):
        xp = be.xp
        p = params["p"]
        table = xp.empty((p.shape[0], 3), dtype=out.dtype)       # log(1 - p), log p, 0 (missing)
        with np.errstate(divide="ignore"):
            xp.log1p(-p, out=table[:, 0])
            xp.log(p, out=table[:, 1])
        table[:, 2] = 0
        _lookup(be, table, xt, variables, out, missing)

    @classmethod
    def grad_units(cls, be, params, xt, variables, g, *, inputs=True, missing=True):
        ones, count = _weighted_sums(be, xt, variables, g, missing)
        return {"p": ones - params["p"] * count}, _no_input_grad(be, g, inputs)

    @staticmethod
    def mode(be, params):
        return (params["p"] > 0.5).astype(be.dtype)[:, None]

    @staticmethod
    def mean(be, params):
        return params["p"].astype(be.dtype)[:, None]

    @staticmethod
    def sample(be, params, rng):
        u = rng.uniform(params["p"].shape)
        return (u < params["p"]).astype(be.dtype)[:, None]

    @staticmethod
    def em_statistics(be, params, x, flows):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        w = xp.where(observed, flows, 0.0)
        return {"count": w.sum(axis=0), "ones": (w * x0).sum(axis=0)}

    @staticmethod
    def em_update(params, stats, *, eps=1e-2, **settings):
        # the ratio of two separately rounded sums can leave [0, 1] by an ulp
        return {"p": ((stats["ones"] + eps) / (stats["count"] + 2 * eps)).clip(0.0, 1.0)}


class Categorical(LeafFamily):
    """Categorical leaves over ``K`` categories ``0, 1, ..., K-1``.

    Parameters
    ----------
    probs : array_like, shape (num_units, num_categories)
        Non-negative rows that sum to 1.
    """

    name = "categorical"
    param_names = ("probs",)
    constraints = {"probs": simplex}

    def __init__(self, probs):
        arr = as_float_array(probs, "Categorical: probs", 2)
        if arr.shape[1] < 1:
            raise ValueError(f"Categorical: probs needs at least one category, got shape {arr.shape}")
        if np.any(arr < 0):
            raise ValueError("Categorical: probs must be non-negative")
        sums = arr.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-6):
            bad = int(np.argmax(np.abs(sums - 1)))
            raise ValueError(f"Categorical: each row of probs must sum to 1; row {bad} sums to {sums[bad]:.6g}")
        self.probs = arr

    @property
    def num_categories(self) -> int:
        return int(self.probs.shape[1])

    def max_value(self):
        return self.num_categories - 1

    @classmethod
    def random(cls, num_units: int, num_categories: int = 2, rng=None) -> "Categorical":
        return cls(make_rng(rng).dirichlet(np.ones(num_categories), size=num_units))

    # ---- math -------------------------------------------------------------------------
    @staticmethod
    def log_prob(be, params, x):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        probs = params["probs"]
        units = xp.arange(probs.shape[0])[None, :]
        with np.errstate(divide="ignore"):
            lp = be.log(probs[units, x0.astype(np.int64)])
        return xp.where(observed, lp, 0.0).astype(x.dtype)

    @staticmethod
    def grad(be, params, x, g):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        probs = params["probs"]
        num_units, num_categories = probs.shape
        gw = xp.where(observed, g, 0.0)
        # d/dlogits_k log p(x) = [x == k] - p_k
        counts = xp.zeros((num_units, num_categories), dtype=probs.dtype)
        flat = (xp.arange(num_units)[None, :] * num_categories + x0.astype(np.int64)).ravel()
        counts = xp.bincount(flat, weights=gw.ravel(), minlength=num_units * num_categories)
        counts = counts.reshape(num_units, num_categories).astype(probs.dtype)
        return {"probs": counts - gw.sum(axis=0)[:, None] * probs}, xp.zeros_like(x)

    @classmethod
    def log_prob_units(cls, be, params, xt, variables, out, *, missing=True):
        xp = be.xp
        probs = params["probs"]
        table = xp.empty((probs.shape[0], probs.shape[1] + 1), dtype=out.dtype)    # log probs, 0 (missing)
        with np.errstate(divide="ignore"):
            xp.log(probs, out=table[:, :-1])
        table[:, -1] = 0
        _lookup(be, table, xt, variables, out, missing)

    @classmethod
    def grad_units(cls, be, params, xt, variables, g, *, inputs=True, missing=True):
        xp = be.xp
        probs = params["probs"]
        num_units, num_categories = probs.shape
        width = num_categories + 1                  # the last column collects the missing values
        counts = xp.empty((num_units, width), dtype=probs.dtype)

        def block(lo, hi):
            x = xp.take(xt, variables[lo:hi, 0], axis=0)
            if missing:
                xp.putmask(x, xp.isnan(x), num_categories)
            codes = x.astype(np.int64)
            codes += (xp.arange(hi - lo, dtype=np.int64) * width)[:, None]
            counts[lo:hi] = xp.bincount(codes.ravel(), weights=g[lo:hi].ravel(),
                                        minlength=(hi - lo) * width).reshape(hi - lo, width)
        be.blocks(num_units, g.shape[1], block)
        # d/dlogits_k log p(x) = [x == k] - p_k, summed over the observed inputs
        observed = counts[:, :num_categories]
        return {"probs": observed - observed.sum(axis=1, keepdims=True) * probs}, _no_input_grad(be, g, inputs)

    @staticmethod
    def mode(be, params):
        return be.xp.argmax(params["probs"], axis=1).astype(be.dtype)[:, None]

    @staticmethod
    def mean(be, params):
        k = be.xp.arange(params["probs"].shape[1], dtype=be.dtype)
        return (params["probs"] @ k).astype(be.dtype)[:, None]

    @staticmethod
    def sample(be, params, rng):
        xp = be.xp
        cdf = xp.cumsum(params["probs"], axis=1)
        u = rng.uniform((cdf.shape[0], 1)) * cdf[:, -1:]
        k = (u >= cdf).sum(axis=1)
        return xp.minimum(k, cdf.shape[1] - 1).astype(be.dtype)[:, None]

    @staticmethod
    def em_statistics(be, params, x, flows):
        xp = be.xp
        observed, x0 = _observed(xp, x[..., 0])
        num_units, num_categories = params["probs"].shape
        w = xp.where(observed, flows, 0.0)
        flat = (xp.arange(num_units)[None, :] * num_categories + x0.astype(np.int64)).ravel()
        counts = xp.bincount(flat, weights=w.ravel(), minlength=num_units * num_categories)
        return {"counts": counts.reshape(num_units, num_categories)}

    @staticmethod
    def em_update(params, stats, *, eps=1e-2, **settings):
        c = stats["counts"] + eps
        return {"probs": c / c.sum(axis=1, keepdims=True)}


class Binomial(LeafFamily):
    """Binomial leaves: counts ``0, 1, ..., n`` with success probability ``p[u]``.

    Parameters
    ----------
    n : int
        Number of trials (shared by all units), for example 255 for 8-bit pixels.
    p : array_like, shape (num_units,)
    """

    name = "binomial"
    param_names = ("p",)
    constraints = {"p": unit_interval}

    def __init__(self, n: int, p):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"Binomial: n must be a positive int, got {n!r}")
        arr = as_float_array(p, "Binomial: p", 1)
        if np.any(arr < 0) or np.any(arr > 1):
            raise ValueError(f"Binomial: p must lie in [0, 1], got values from {arr.min()} to {arr.max()}")
        self.n = int(n)
        self.p = arr

    def config(self):
        return {"n": self.n}

    def max_value(self):
        return self.n

    def table_arrays(self):
        return {"p": self.p, "n": np.full(self.num_units, float(self.n))}

    @classmethod
    def from_parameters(cls, arrays, config):
        return cls(config["n"], arrays["p"])

    @classmethod
    def dtype_problems(cls, table: dict, dtype) -> list[str]:
        """Also: ``n`` must be an integer the dtype holds exactly (``2**24`` in float32), or the
        log binomial coefficients lose all precision."""
        problems = super().dtype_problems(table, dtype)
        largest = 2 ** (np.finfo(dtype).nmant + 1)
        n = np.asarray(table.get("n", ()), dtype=np.float64)
        if n.size and n.max() > largest:
            problems.append(f"binomial n={int(n.max())} exceeds {largest}, the largest count "
                            f"{np.dtype(dtype).name} holds exactly; its log-probabilities would be wrong")
        return problems

    @classmethod
    def random(cls, num_units: int, n: int = 255, rng=None) -> "Binomial":
        return cls(n, make_rng(rng).uniform(0.05, 0.95, size=num_units))

    # ---- math (params carry "n" as a per-unit array next to "p") -----------------------
    @staticmethod
    def log_prob(be, params, x):
        xp = be.xp
        observed, k = _observed(xp, x[..., 0])
        n = params["n"][None, :].astype(x.dtype)
        p = params["p"][None, :]
        log_choose = be.gammaln(n + 1) - be.gammaln(k + 1) - be.gammaln(n - k + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = log_choose + xp.where(k > 0, k * xp.log(p), 0.0) + xp.where(n - k > 0, (n - k) * xp.log1p(-p), 0.0)
        # a probability is at most 1: rounding of the log coefficients must not make it more
        return xp.minimum(xp.where(observed, lp, 0.0), 0.0).astype(x.dtype)

    @staticmethod
    def grad(be, params, x, g):
        xp = be.xp
        observed, k = _observed(xp, x[..., 0])
        n = params["n"][None, :]
        p = params["p"][None, :]
        dlogit = xp.where(observed, g * (k - n * p), 0.0).sum(axis=0)
        return {"p": dlogit}, xp.zeros_like(x)

    @classmethod
    def log_prob_units(cls, be, params, xt, variables, out, *, missing=True):
        xp = be.xp
        n = params["n"][:, None].astype(out.dtype)
        p = params["p"][:, None]
        with np.errstate(divide="ignore"):
            log_p, log_q = xp.log(p).astype(out.dtype), xp.log1p(-p).astype(out.dtype)
        log_n = be.gammaln(n + 1)

        def block(lo, hi):
            with np.errstate(invalid="ignore"):         # 0 * log 0, masked below
                _block(lo, hi)

        def _block(lo, hi):
            k = xp.take(xt, variables[lo:hi, 0], axis=0)
            observed = None
            if missing:
                observed = ~xp.isnan(k)
                xp.putmask(k, ~observed, 0)
            rest = n[lo:hi] - k
            o = out[lo:hi]
            xp.subtract(log_n[lo:hi], be.gammaln(k + 1), out=o)
            o -= be.gammaln(rest + 1)
            # 0 * log 0 is 0 here: a term only counts where its count is positive
            o += xp.where(k > 0, k * log_p[lo:hi], 0)
            o += xp.where(rest > 0, rest * log_q[lo:hi], 0)
            # a probability is at most 1: rounding of the log coefficients must not make it more
            xp.minimum(o, 0, out=o)
            if observed is not None:
                xp.putmask(o, ~observed, 0)
        be.blocks(out.shape[0], out.shape[1], block)

    @classmethod
    def grad_units(cls, be, params, xt, variables, g, *, inputs=True, missing=True):
        successes, count = _weighted_sums(be, xt, variables, g, missing)
        return {"p": successes - params["n"] * params["p"] * count}, _no_input_grad(be, g, inputs)

    @staticmethod
    def mode(be, params):
        return be.xp.floor((params["n"] + 1) * params["p"]).clip(0, params["n"]).astype(be.dtype)[:, None]

    @staticmethod
    def mean(be, params):
        return (params["n"] * params["p"]).astype(be.dtype)[:, None]

    @staticmethod
    def sample(be, params, rng):
        return rng.binomial(params["n"], params["p"])[:, None]

    @staticmethod
    def em_statistics(be, params, x, flows):
        xp = be.xp
        observed, k = _observed(xp, x[..., 0])
        w = xp.where(observed, flows, 0.0)
        return {"count": w.sum(axis=0), "successes": (w * k).sum(axis=0)}

    @staticmethod
    def em_update(params, stats, *, eps=1e-2, **settings):
        # successes and count * n are rounded separately: their ratio can exceed 1 by an ulp,
        # and log1p(-p) of such a p is NaN
        p = (stats["successes"] + eps) / (stats["count"] * params["n"] + 2 * eps)
        return {"p": p.clip(0.0, 1.0), "n": params["n"]}


