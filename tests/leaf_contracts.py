"""What the tests need to know about each leaf family: its contract entry.

The random-circuit strategies (``strategies.py``) and every property test built on them take
their leaf families from :data:`pcircuits.distributions.FAMILIES` through this table, so a
family is covered by the whole property suite (enumeration oracles, gradients by finite
differences, EM, save/load, drawing) as soon as it is registered and has an entry here.
``test_registries.py`` fails for a registered family without one.

An entry says how to draw a variable's domain, how to make random units, how to break the
values (for the validity tests), and gives an independent float64 oracle of the log-density
written from the textbook formula (never by calling the family's own math).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import strategies as st

import pcircuits as pc

__all__ = ["VariableKind", "LeafContract", "CONTRACTS"]


@dataclass(frozen=True)
class VariableKind:
    """The leaf family of one variable and its domain size (None: continuous)."""

    family: str
    domain: int | None
    trials: int | None = None


@dataclass(frozen=True)
class LeafContract:
    """How the tests draw, break and check one leaf family.

    Attributes
    ----------
    variable_kind : callable
        ``variable_kind(draw) -> VariableKind``: a random domain for one variable.
    make : callable
        ``make(kind, num_units, num_variables, rng) -> LeafFamily``.
    oracle : callable
        ``oracle(family, values, observed) -> (batch, num_units)`` log-densities in float64, with
        ``values`` of shape (batch, num_variables) (missing entries replaced by 0) and
        ``observed`` its mask; a missing variable contributes log 1.
    break_values : callable or None
        Makes the family's parameter values invalid in place (None: it has no such values).
    multivariate : bool
        Units may range over several variables (drawn for regions of this family only).
    """

    variable_kind: Callable
    make: Callable
    oracle: Callable
    break_values: Callable | None = None
    multivariate: bool = False


def _integral(values):
    return (values == np.round(values)) & (values >= 0)


def _bernoulli_oracle(family, values, observed):
    v, p = values[:, :1], family.p[None, :]
    with np.errstate(divide="ignore"):
        out = np.where(v == 1, np.log(p), np.where(v == 0, np.log1p(-p), -np.inf))
    return np.where(observed[:, :1], out, 0.0)


def _categorical_oracle(family, values, observed):
    v, probs = values[:, :1], family.probs
    inside = _integral(v) & (v < probs.shape[1])
    index = np.where(inside, v, 0).astype(np.int64)[:, 0]
    with np.errstate(divide="ignore"):
        out = np.where(inside, np.log(probs[:, index].T), -np.inf)
    return np.where(observed[:, :1], out, 0.0)


def _indicator_oracle(family, values, observed):
    out = np.where(values[:, :1] == family.value[None, :], 0.0, -np.inf)
    return np.where(observed[:, :1], out, 0.0)


def _binomial_oracle(family, values, observed):
    n, p, v = family.n, family.p[None, :], values[:, :1]
    inside = _integral(v) & (v <= n)
    k = np.where(inside, v, 0).astype(np.int64)
    log_choose = np.array([[math.lgamma(n + 1) - math.lgamma(c + 1) - math.lgamma(n - c + 1)] for c in k[:, 0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        success = np.where(k > 0, k * np.log(p), 0.0)
        failure = np.where(n - k > 0, (n - k) * np.log1p(-p), 0.0)
    out = np.where(inside, log_choose + success + failure, -np.inf)
    return np.where(observed[:, :1], out, 0.0)


def _gaussian_oracle(family, values, observed):
    mean = np.asarray(family.mean, dtype=np.float64).reshape(family.num_units, -1)
    std = np.asarray(family.std, dtype=np.float64).reshape(family.num_units, -1)
    z = (values[:, None, :] - mean[None]) / std[None]
    per_dim = -0.5 * z * z - np.log(std)[None] - 0.5 * math.log(2 * math.pi)
    return np.where(observed[:, None, :], per_dim, 0.0).sum(axis=2)


def _vae_oracle(family, values, observed):
    """The bound of a lone VAE node (its layer's only units) from the textbook formulas, one unit
    and one example at a time: the noise is the Program's seed-0 draw of shape (U, batch, S, k)."""
    units, batch, k, samples = family.num_units, values.shape[0], family.latent_dim, family.num_samples
    noise = np.random.default_rng(0).standard_normal((units, batch, samples, k))
    act = {"relu": lambda a: np.maximum(a, 0), "tanh": np.tanh}[family.activation]
    scale = 1.0 / family.trials if family.pixel == "binomial" else 1.0
    d = family.num_variables
    out = np.zeros((batch, units))
    for u in range(units):
        for b in range(batch):
            seen = observed[b]
            if not seen.any():
                continue
            enc_in = np.concatenate([np.where(seen, values[b], 0) * scale, seen.astype(float)])
            stats = act(enc_in @ family.encoder_w1[u] + family.encoder_b1[u]) @ family.encoder_w2[u] \
                + family.encoder_b2[u]
            mu, log_sigma = stats[:k], 8 * np.tanh(stats[k:] / 8)
            log_w = []
            for s in range(samples):
                z = mu + np.exp(log_sigma) * noise[u, b, s]
                dec = act(z @ family.decoder_w1[u] + family.decoder_b1[u]) @ family.decoder_w2[u] + family.decoder_b2[u]
                if family.pixel == "gaussian":
                    mean, log_std = dec[:d], 7 * np.tanh(dec[d:] / 7)
                    per_pixel = -0.5 * ((values[b] - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
                else:
                    n = family.trials
                    prob = 1 / (1 + np.exp(-dec))
                    log_choose = np.array([math.lgamma(n + 1) - math.lgamma(v + 1) - math.lgamma(n - v + 1)
                                           for v in np.where(seen, values[b], 0)])
                    per_pixel = log_choose + values[b] * np.log(prob) + (n - values[b]) * np.log1p(-prob)
                recon = per_pixel[seen].sum()
                if samples == 1:
                    kl = 0.5 * np.sum(mu ** 2 + np.exp(2 * log_sigma) - 1 - 2 * log_sigma)
                    log_w.append(recon - kl)
                else:
                    log_prior = -0.5 * np.sum(z ** 2)
                    log_posterior = -0.5 * np.sum(noise[u, b, s] ** 2) - np.sum(log_sigma)
                    log_w.append(recon + log_prior - log_posterior)
            log_w = np.array(log_w)
            out[b, u] = log_w.max() + math.log(np.mean(np.exp(log_w - log_w.max())))
    return out


def _break_p(family):
    family.p = family.p.copy()
    family.p[0] = 1.5


def _break_probs(family):
    family.probs = family.probs * 2.0


def _break_std(family):
    family.std = family.std.copy()
    family.std.flat[0] = -1.0


def _binomial_kind(draw):
    trials = draw(st.integers(1, 3))
    return VariableKind("binomial", trials + 1, trials)


#: The contract of every leaf family the property tests cover.
CONTRACTS: dict[str, LeafContract] = {
    "bernoulli": LeafContract(lambda draw: VariableKind("bernoulli", 2),
                              lambda kind, k, d, rng: pc.Bernoulli.random(k, rng=rng),
                              _bernoulli_oracle, _break_p),
    "categorical": LeafContract(lambda draw: VariableKind("categorical", draw(st.integers(2, 3))),
                                lambda kind, k, d, rng: pc.Categorical.random(k, kind.domain, rng=rng),
                                _categorical_oracle, _break_probs),
    "indicator": LeafContract(lambda draw: VariableKind("indicator", draw(st.integers(2, 3))),
                              lambda kind, k, d, rng: pc.Indicator(rng.integers(0, kind.domain, size=k),
                                                                   num_categories=kind.domain),
                              _indicator_oracle),
    "binomial": LeafContract(_binomial_kind, lambda kind, k, d, rng: pc.Binomial.random(k, n=kind.trials, rng=rng),
                             _binomial_oracle, _break_p),
    "gaussian": LeafContract(lambda draw: VariableKind("gaussian", None),
                             lambda kind, k, d, rng: pc.Gaussian.random(k, None if d == 1 else d, rng=rng),
                             _gaussian_oracle, _break_std, multivariate=True),
    "vae": LeafContract(lambda draw: VariableKind("vae", 2),
                        lambda kind, k, d, rng: pc.VAE.random(k, d, latent_dim=2, hidden=3, rng=rng),
                        _vae_oracle, multivariate=True),
}
