"""The compiled loops of the Gaussian leaf passes (:mod:`pcircuits.distributions.gaussian`), imported on
first use: importing this module imports Numba. Each computes what its NumPy definition in
``gaussian.py`` computes, expression for expression, with the batch axis innermost so that the
compiler vectorizes it.
"""
from .. import jit


@jit.kernel
def log_density_units(xt, variables, mean, scale, const, out, missing, zero):
    """``out[u, b] = sum_j (const[u, j] - ((xt[variables[u, j], b] - mean[u, j]) scale[u, j])^2)``,
    a term that is NaN taken as ``zero`` (0 of ``out``'s dtype) with ``missing``; the sum over
    ``j`` in order."""
    units, batch = out.shape
    d = variables.shape[1]
    for u in range(units):
        row = out[u]
        for j in range(d):
            source = xt[variables[u, j]]
            m, s, c = mean[u, j], scale[u, j], const[u, j]
            for b in range(batch):
                z = (source[b] - m) * s
                term = c - z * z
                if missing:
                    term = term if term == term else zero
                row[b] = term if j == 0 else row[b] + term


@jit.kernel(fastmath={"contract", "reassoc"})
def grad_units(xt, variables, mean, inv_std, g, grad_mean, grad_log_std, grad_x, missing, zero):
    """With ``z = (xt[variables[u, j], b] - mean[u, j]) inv_std[u, j]`` and ``w = g[u, b]`` (both
    taken as ``zero`` where ``z`` is NaN, with ``missing``): ``grad_mean[u, j]`` the sum over ``b`` of
    ``z w`` times ``inv_std[u, j]``, ``grad_log_std[u, j]`` that of ``z^2 w - w``, and ``grad_x[u, j, b]
    = z (w (-inv_std[u, j]))`` (None: not wanted). The sums are reassociated (vector lanes)."""
    units, batch = g.shape
    d = variables.shape[1]
    for u in range(units):
        weights = g[u]
        for j in range(d):
            source = xt[variables[u, j]]
            m, s = mean[u, j], inv_std[u, j]
            first, second, total = zero, zero, zero
            for b in range(batch):
                z = (source[b] - m) * s
                w = weights[b]
                if missing:
                    observed = z == z
                    z = z if observed else zero
                    w = w if observed else zero
                first += z * w
                second += z * z * w
                total += w
                if grad_x is not None:
                    grad_x[u, j, b] = z * (w * -s)
            grad_mean[u, j] = first * s
            grad_log_std[u, j] = second - total
