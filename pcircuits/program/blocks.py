"""Matrix products over the batch in fixed blocks of rows, so that a row's result never depends on
how many rows are evaluated with it.

A BLAS matrix product ``A @ B`` may add in another order (and so round differently) for another
number of columns of ``B``, and with several threads for another position of a column among
them: on OpenBLAS a float32 product over 4096 columns and the same product over their first 64
differ in the last place. The sum layers therefore multiply their ``(inputs, batch)`` arrays in
blocks of :data:`ROW_BLOCK` columns counted from the first row of the batch (the last block
may be shorter). A batch split into chunks of a multiple of :data:`ROW_BLOCK` rows then runs
exactly the products of the whole batch, column for column, and gives bit-identical results.
On a device (CuPy) the product is one call.
"""
from __future__ import annotations

__all__ = ["ROW_BLOCK", "batch_matmul"]

#: Columns (examples) per block of the sum layers' matrix products.
ROW_BLOCK = 256


def batch_matmul(backend, a, b, out):
    """``out[...] = a @ b`` with the last axis of ``b`` (the batch) multiplied in blocks.

    Parameters
    ----------
    backend : Backend
    a : array, shape (N, M, K)
    b : array, shape (N, K, batch)
    out : array, shape (N, M, batch)

    Returns
    -------
    out
    """
    xp = backend.xp
    batch = b.shape[-1]
    if not backend.on_host or batch <= ROW_BLOCK:
        return xp.matmul(a, b, out=out)
    full = batch - batch % ROW_BLOCK
    # one gemm per block: a (N, 1, M, K) times b viewed as (N, blocks, K, ROW_BLOCK)
    xp.matmul(a[..., None, :, :], _blocks(b, full // ROW_BLOCK), out=_blocks(out, full // ROW_BLOCK))
    if full < batch:
        xp.matmul(a, b[..., full:], out=out[..., full:])
    return out


def _blocks(array, blocks: int):
    """The first ``blocks * ROW_BLOCK`` columns of a (N, rows, batch) host array as a view of
    shape (N, blocks, rows, ROW_BLOCK) (splitting the batch axis never copies; ``reshape`` and
    ``transpose`` cost a microsecond where ``as_strided`` costs ten)."""
    n, rows, _ = array.shape
    return array[..., :blocks * ROW_BLOCK].reshape(n, rows, blocks, ROW_BLOCK).transpose(0, 2, 1, 3)
