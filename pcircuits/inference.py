"""Queries on a compiled Program: likelihoods, marginals, conditionals, MPE, sampling, inpainting.

Every query checks its input (see :meth:`Program.prepare`) before any kernel runs and returns
arrays of the backend it ran on (NumPy or CuPy); convert with :func:`pcircuits.backend.to_numpy`.
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy

__all__ = ["log_likelihood", "log_conditional", "mpe", "sample", "inpaint", "leaf_posteriors"]


def _squeeze(program, out):
    return out[:, 0] if program.num_outputs == 1 else out


def _batches(num: int, batch_size: int | None, progress: bool, what: str):
    if batch_size is None or batch_size >= num:
        return [slice(0, num)]
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    starts = range(0, num, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=what, unit="batch", leave=False)
    return [slice(s, s + batch_size) for s in starts]


def log_likelihood(program, x, *, batch_size: int | None = None, progress: bool = False):
    """Log-probability of each example; NaN entries are marginalized.

    Returns
    -------
    array, shape (batch,) or (batch, num_outputs) for several roots
    """
    x = program.prepare(x)
    xp = program.backend.xp
    parts = [program._forward(x[s], "sum", cache=False) for s in _batches(x.shape[0], batch_size, progress,
                                                                          "log-likelihood")]
    return _squeeze(program, xp.concatenate(parts, axis=0))


def log_conditional(program, x_query, x_evidence):
    """``log p(query | evidence)`` per example.

    Parameters
    ----------
    x_query : array, shape (batch, num_variables)
        Values of the query variables, NaN elsewhere.
    x_evidence : array, shape (batch, num_variables)
        Values of the evidence variables, NaN elsewhere. A variable may not be in both.
    """
    q = program.prepare(x_query, what="x_query")
    e = program.prepare(x_evidence, what="x_evidence")
    if q.shape != e.shape:
        raise ValueError(f"x_query has shape {q.shape} but x_evidence has shape {e.shape}")
    xp = program.backend.xp
    both = ~xp.isnan(q) & ~xp.isnan(e)
    if bool(both.any()):
        r, c = (int(v) for v in to_numpy(xp.argwhere(both)[0]))
        raise ValueError(f"variable {c} of example {r} is both a query and an evidence variable")
    joint = xp.where(xp.isnan(q), e, q)
    return _squeeze(program, program._forward(joint, "sum", cache=False) - program._forward(e, "sum", cache=False))


def mpe(program, x, *, root=0):
    """Fill the NaNs of ``x`` with the (approximate) most probable completion (max-product + Viterbi)."""
    return program.top_down(x, "argmax", root=root)


def sample(program, num_samples: int | None = None, evidence=None, *, seed=0, root=0):
    """Draw samples; with ``evidence`` (NaN where free) each row is drawn from ``p(free | observed)``."""
    if evidence is None:
        if num_samples is None or num_samples < 1:
            raise ValueError(f"sample: num_samples must be a positive int, got {num_samples!r}")
        evidence = np.full((int(num_samples), program.num_variables), np.nan)
    elif num_samples is not None and np.shape(evidence)[0] != num_samples:
        raise ValueError(f"sample: evidence has {np.shape(evidence)[0]} rows but num_samples={num_samples}")
    return program.top_down(evidence, "sample", seed=seed, root=root)


def leaf_posteriors(program, x, *, root=0):
    """Posterior probability of every input unit being in the induced tree, shape (num_units, batch).

    Rows of non-input units hold their flows too; input units' rows are the quantities used
    by posterior-mean inpainting.
    """
    x = program.prepare(x)
    program._forward(x, "sum", cache=True)
    grad_root = np.zeros((x.shape[0], program.num_outputs))
    grad_root[:, root] = 1
    return program.backward(grad_root, leaves=False).unit_flows


def inpaint(program, x, *, method: str = "posterior-mean", root=0):
    """Complete the NaNs of ``x``.

    ``"mpe"`` uses the Viterbi completion; ``"posterior-mean"`` sets each missing variable to
    ``sum_u P(u | evidence) * mean_u`` over the leaf units ``u`` of that variable, the expected
    value under the posterior (DGC-SPN section 5.1).
    """
    if method == "mpe":
        return mpe(program, x, root=root)
    if method != "posterior-mean":
        raise ValueError(f"inpaint: method must be 'mpe' or 'posterior-mean', got {method!r}")
    be, xp = program.backend, program.backend.xp
    xb = program.prepare(x)
    flows = leaf_posteriors(program, xb, root=root)
    batch = xb.shape[0]
    numerator = xp.zeros((program.num_variables, batch), dtype=be.dtype)
    denominator = xp.zeros((program.num_variables, batch), dtype=be.dtype)
    for layer in program.input_layers:
        f = flows[layer.start:layer.stop]                                  # (U, B)
        params = layer.params(program.leaf_tables[layer.table_key])
        if layer.family.conditional:                                       # (U, d, B): given the evidence
            means = layer.family.conditional_mean(be, params, layer.gather_inputs(xb)).transpose(1, 2, 0)
        else:
            means = layer.family.mean(be, params)[:, :, None]              # (U, d, 1)
        d = means.shape[1]
        layer.input_scatter.add(numerator, (means * f[:, None, :]).reshape(-1, batch))
        layer.input_scatter.add(denominator, xp.repeat(f[:, None, :], d, axis=1).reshape(-1, batch))
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = (numerator / denominator).T
    return xp.where(xp.isnan(xb), estimate, xb)
