"""Reparameterized leaf samples for the relaxed (differentiable) top-down pass.

A relaxation turns a fixed noise array into one sample of every leaf unit, differentiably in
the leaf parameters and the temperature. The noise is drawn apart from the sample
(:meth:`Relaxation.draw`), so a loss on the samples is a deterministic function of the
parameters once the noise is fixed: that is what finite-difference checks and the comparison
with the exact sampler hold fixed.

=============  ===========================  ======================================================
family         noise per unit               sample
=============  ===========================  ======================================================
gaussian       standard normal, ``(d,)``    ``mean + std * eps`` (exact; ``hard`` changes nothing)
binomial       standard normal, ``(1,)``    Gaussian approximation ``n p + sqrt(n p (1 - p)) eps``
                                            (Lang et al., section 5); ``hard`` rounds it into
                                            ``0 .. n`` with an identity (straight-through) gradient
bernoulli      uniform ``u``, ``(1,)``      relaxed Bernoulli (binary Concrete)
                                            ``sigmoid((logit p + log(1 - u) - log u) / tau)``, the
                                            relaxed probability of a one; ``hard`` takes
                                            ``u < p`` with the relaxed gradient
categorical    Gumbel ``g``, ``(C,)``       Gumbel-softmax ``y = softmax((log p + g) / tau)``
                                            returning the expected category ``sum_k k y_k``;
                                            ``hard`` takes ``argmax(log p + g)`` with the relaxed
                                            gradient
indicator      none                         the indicated value (no parameters)
=============  ===========================  ======================================================

Gradients are with respect to the unconstrained parameters of the families' declared
constraints (means and log standard deviations, logits), the same forms
:meth:`~pcircuits.program.Program.backward` returns. :meth:`Relaxation.exact` is the exact draw
of the same noise (what the exact top-down sampler writes when it is handed fixed noise); for
every family but the binomial it equals the hard relaxed sample.

Relaxations are registered by family name in :data:`RELAXATIONS`; a family without one cannot
be sampled differentiably.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Relaxation", "RELAXATIONS", "relaxation_of"]


def _sigmoid(xp, z):
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


class Relaxation:
    """The reparameterized sample of one leaf family (class-level math over stacked tables).

    ``params`` maps names to backend arrays whose first axis is the unit axis ``U``; ``noise``
    has shape ``(batch, U, width)``; samples have shape ``(batch, U, d)``.
    """

    #: Distribution of the noise: "normal", "uniform", "gumbel" or None (no noise).
    noise_kind: str | None = None

    @staticmethod
    def width(params: dict) -> int:
        """Noise values per unit."""
        return 0

    @classmethod
    def draw(cls, rng, batch: int, params: dict):
        """Noise for ``batch`` samples of every unit, shape (batch, U, width)."""
        shape = (batch, next(iter(params.values())).shape[0], cls.width(params))
        if cls.noise_kind == "normal":
            return rng.normal(shape)
        if cls.noise_kind == "uniform":
            return rng.uniform(shape)
        if cls.noise_kind == "gumbel":
            return rng.gumbel(shape)
        return rng.backend.xp.zeros(shape, dtype=rng.backend.dtype)

    @staticmethod
    def sample(be, params: dict, noise, tau: float, hard: bool):
        """The relaxed sample of every unit, shape (batch, U, d)."""
        raise NotImplementedError

    @staticmethod
    def grad(be, params: dict, noise, tau: float, hard: bool, g):
        """VJP of :meth:`sample` with weights ``g`` (batch, U, d): ``({name: gradient w.r.t. the
        unconstrained parameter, shape of the table}, d/dtau as a 0-d array)``."""
        raise NotImplementedError

    @staticmethod
    def exact(be, params: dict, noise):
        """The exact draw that ``noise`` (rows, width) makes from units ``params`` (rows): (rows, d)."""
        raise NotImplementedError


class GaussianRelaxation(Relaxation):
    noise_kind = "normal"

    @staticmethod
    def width(params):
        return int(params["mean"].shape[1])

    @staticmethod
    def sample(be, params, noise, tau, hard):
        return params["mean"][None] + params["std"][None] * noise

    @staticmethod
    def grad(be, params, noise, tau, hard, g):
        grads = {"mean": g.sum(axis=0), "std": (g * noise).sum(axis=0) * params["std"]}
        return grads, be.xp.zeros((), dtype=be.dtype)

    @staticmethod
    def exact(be, params, noise):
        return params["mean"] + params["std"] * noise


class BinomialRelaxation(Relaxation):
    noise_kind = "normal"

    @staticmethod
    def width(params):
        return 1

    @staticmethod
    def _moments(xp, params):
        n, p = params["n"][:, None], params["p"][:, None]
        return n, p, n * p, xp.sqrt(xp.maximum(n * p * (1 - p), 1e-12))

    @staticmethod
    def sample(be, params, noise, tau, hard):
        xp = be.xp
        n, _, mean, std = BinomialRelaxation._moments(xp, params)
        s = mean[None] + std[None] * noise
        return xp.clip(xp.round(s), 0, n[None]) if hard else s

    @staticmethod
    def grad(be, params, noise, tau, hard, g):
        xp = be.xp
        n, p, _, std = BinomialRelaxation._moments(xp, params)
        # d/dlogit = p (1 - p) d/dp; d mean/dp = n, d std/dp = n (1 - 2p) / (2 std)
        ds_dp = n[None] + noise * (n * (1 - 2 * p) / (2 * std))[None]
        dlogit = (g * ds_dp).sum(axis=0)[:, 0] * (p * (1 - p))[:, 0]
        return {"p": dlogit}, xp.zeros((), dtype=be.dtype)

    @staticmethod
    def exact(be, params, noise):
        raise NotImplementedError("binomial leaves have no exact draw from Gaussian noise (their relaxation "
                                  "is the Gaussian approximation)")


class BernoulliRelaxation(Relaxation):
    noise_kind = "uniform"

    @staticmethod
    def width(params):
        return 1

    @staticmethod
    def _logits(be, params, noise):
        xp = be.xp
        p = xp.clip(params["p"], 1e-12, 1 - 1e-12)[None, :, None]
        u = xp.clip(noise, 1e-12, 1 - 1e-12)
        return xp.log(p) - xp.log1p(-p) + xp.log1p(-u) - be.log(u)

    @staticmethod
    def sample(be, params, noise, tau, hard):
        xp = be.xp
        if hard:
            return (noise < params["p"][None, :, None]).astype(be.dtype)
        return _sigmoid(xp, BernoulliRelaxation._logits(be, params, noise) / tau)

    @staticmethod
    def grad(be, params, noise, tau, hard, g):
        xp = be.xp
        z = BernoulliRelaxation._logits(be, params, noise)
        s = _sigmoid(xp, z / tau)
        dz = g * s * (1 - s) / tau
        return {"p": dz.sum(axis=0)[:, 0]}, -(dz * z).sum() / tau

    @staticmethod
    def exact(be, params, noise):
        return (noise < params["p"][:, None]).astype(be.dtype)


class CategoricalRelaxation(Relaxation):
    noise_kind = "gumbel"

    @staticmethod
    def width(params):
        return int(params["probs"].shape[1])

    @staticmethod
    def _scores(xp, params, noise):
        return xp.log(xp.clip(params["probs"], 1e-30, None))[None] + noise

    @staticmethod
    def _soft(be, z, tau):
        e = z / tau
        e = be.exp(e - e.max(axis=2, keepdims=True))
        return e / e.sum(axis=2, keepdims=True)

    @staticmethod
    def sample(be, params, noise, tau, hard):
        xp = be.xp
        z = CategoricalRelaxation._scores(xp, params, noise)
        if hard:
            return xp.argmax(z, axis=2)[..., None].astype(be.dtype)
        k = xp.arange(z.shape[2], dtype=be.dtype)
        return (CategoricalRelaxation._soft(be, z, tau) * k).sum(axis=2, keepdims=True)

    @staticmethod
    def grad(be, params, noise, tau, hard, g):
        xp = be.xp
        z = CategoricalRelaxation._scores(xp, params, noise)
        y = CategoricalRelaxation._soft(be, z, tau)
        k = xp.arange(z.shape[2], dtype=be.dtype)
        s = (y * k).sum(axis=2, keepdims=True)
        dz = g * y * (k - s) / tau                              # d/d(z / tau) / tau, (B, U, C)
        # the unconstrained logits f enter as log p = f - logsumexp(f); the shift cancels in the softmax
        return {"probs": dz.sum(axis=0)}, -(dz * z).sum() / tau

    @staticmethod
    def exact(be, params, noise):
        xp = be.xp
        return xp.argmax(xp.log(xp.clip(params["probs"], 1e-30, None)) + noise, axis=1)[:, None].astype(be.dtype)


class IndicatorRelaxation(Relaxation):
    noise_kind = None

    @staticmethod
    def sample(be, params, noise, tau, hard):
        return be.xp.broadcast_to(params["value"][None, :, None], (noise.shape[0], noise.shape[1], 1)).astype(be.dtype)

    @staticmethod
    def grad(be, params, noise, tau, hard, g):
        return {}, be.xp.zeros((), dtype=be.dtype)

    @staticmethod
    def exact(be, params, noise):
        return params["value"][:, None].astype(be.dtype)


#: Relaxations by leaf-family name.
RELAXATIONS: dict[str, type[Relaxation]] = {
    "gaussian": GaussianRelaxation, "binomial": BinomialRelaxation, "bernoulli": BernoulliRelaxation,
    "categorical": CategoricalRelaxation, "indicator": IndicatorRelaxation,
}


def relaxation_of(family) -> type[Relaxation]:
    """The relaxation of a leaf family (class or instance); ``TypeError`` names a family without one."""
    name = getattr(family, "name", "")
    if name not in RELAXATIONS:
        raise TypeError(f"leaf family {name or family!r} has no reparameterized sample; families with one: "
                        f"{sorted(RELAXATIONS)}")
    return RELAXATIONS[name]
