"""The compiled loop of the discrete leaves' table look-up (:func:`pcircuits.distributions.discrete._lookup`),
imported on first use: importing this module imports Numba."""
from .. import jit


@jit.kernel
def lookup(table, xt, variables, out):
    """``out[u, b] = table[u, x]`` with ``x = xt[variables[u, 0], b]`` as an integer, the table's
    last column where ``x`` is NaN (missing); in one pass, without the integer codes' array.
    Codes outside the table (never met: the inputs are checked) read its first or last column."""
    units, batch = out.shape
    last = table.shape[1] - 1
    for u in range(units):
        source, row, target = xt[variables[u, 0]], table[u], out[u]
        for b in range(batch):
            x = source[b]
            code = last if x != x else min(max(int(x), 0), last)
            target[b] = row[code]
