"""Goodness of fit of drawn assignments against a distribution over enumerated assignments."""
import numpy as np
import scipy.stats

#: Smallest expected count of a cell of the chi-square test: the statistic follows its
#: chi-square law only when every cell expects about this many draws or more.
MIN_EXPECTED = 5


def chi_square_pvalue(samples, worlds, probs) -> float:
    """The chi-square p-value of the draws ``samples`` (n, V) against the probabilities ``probs``
    (W,) of the assignments ``worlds`` (W, V); a draw on a zero-probability assignment fails.

    The least probable assignments are pooled into one cell, the smallest first, until that cell
    expects at least :data:`MIN_EXPECTED` draws: a pooled cell expecting fewer (say 2.5 draws)
    has a far heavier tail than the chi-square law gives it, and fails a correct sampler about
    one time in 400 at the 1e-4 level instead of one in 10,000.
    """
    index = {tuple(w): i for i, w in enumerate(worlds)}
    counts = np.bincount([index[tuple(s)] for s in samples], minlength=len(worlds))
    expected = probs / probs.sum() * len(samples)
    assert counts[expected == 0].sum() == 0, "a sample fell on a zero-probability assignment"
    order = np.argsort(expected)
    pooled = np.cumsum(expected[order])
    # the pool takes every cell up to the first at which its expectation reaches the minimum
    size = int(np.searchsorted(pooled, MIN_EXPECTED)) + 1
    if size >= len(order):
        return 1.0
    pool, rest = order[:size], order[size:]
    observed = np.append(counts[rest], counts[pool].sum())
    predicted = np.append(expected[rest], expected[pool].sum())
    return scipy.stats.chisquare(observed, predicted).pvalue
