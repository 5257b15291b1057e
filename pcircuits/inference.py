"""Queries on a compiled Program: likelihoods, marginals, conditionals, MPE, sampling, inpainting.

Every query checks its whole input (see :meth:`Program.prepare`) and its arguments before any
kernel runs, and returns arrays of the backend it ran on (NumPy or CuPy); convert with
:func:`pcircuits.backend.to_numpy`.

Any number of rows runs in bounded memory: the rows are processed in chunks whose working memory
stays within ``program.memory_budget`` bytes (:data:`DEFAULT_MEMORY_BUDGET` unless set), or of
``batch_size`` rows when given. Each row is computed independently, and chunks of more than
:data:`~pcircuits.program.blocks.ROW_BLOCK` rows are rounded down to a multiple of it, the block
in which the sum layers multiply (see :mod:`pcircuits.program.blocks`): chunked results are then
bit-identical to one big batch (on NumPy; with chunks of fewer rows, which only a tiny
``batch_size`` or memory budget gives, up to the last place of the matrix products). Sampling
draws its random numbers per block of :data:`SAMPLE_BLOCK` rows (block ``k`` from
``numpy.random.PCG64(seed).jumped(k)``, see :mod:`pcircuits.program.streams`), so samples do
not depend on the chunking either.
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy
from .program.blocks import ROW_BLOCK
from .program.streams import StreamRandomSource

__all__ = ["log_likelihood", "log_conditional", "mpe", "sample", "inpaint", "leaf_posteriors",
           "DEFAULT_MEMORY_BUDGET", "SAMPLE_BLOCK", "chunk_rows"]

#: Working memory of one chunk of a query, in bytes (``program.memory_budget`` overrides it).
DEFAULT_MEMORY_BUDGET = 256 << 20
#: Rows per random stream of :func:`sample` (its chunks are a multiple of it).
SAMPLE_BLOCK = 64


def chunk_rows(program, query: str = "forward", batch_size: int | None = None) -> int:
    """Rows per chunk of a query: ``batch_size`` when given, else what fits ``program.memory_budget``,
    rounded down to a multiple of :data:`~pcircuits.program.blocks.ROW_BLOCK` when larger.

    Parameters
    ----------
    query : {"forward", "posterior", "top_down"}
        The pass the query runs (see :meth:`Program.bytes_per_row`).
    batch_size : int, optional
    """
    if batch_size is not None:
        rows = _batch_size(batch_size)
    else:
        budget = getattr(program, "memory_budget", DEFAULT_MEMORY_BUDGET)
        rows = max(1, int(budget // program.bytes_per_row(query)))
    return rows - rows % ROW_BLOCK if rows > ROW_BLOCK else rows


def _batch_size(batch_size) -> int:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive int or None, got {type(batch_size).__name__} {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return int(batch_size)


class _Rows:
    """A query's input, checked completely up front and converted chunk by chunk.

    With one chunk the input is converted once; with several, every chunk is checked first
    (so a bad last row is refused before any work) and converted again when its turn comes,
    so only one chunk is ever held in the backend's dtype.
    """

    def __init__(self, program, x, *, what: str = "x", query: str = "forward", batch_size=None):
        self.program = program
        self.what = what
        self.rows = chunk_rows(program, query, batch_size)
        self.x = program.domain.coerce(x, what=what)
        self.n = int(self.x.shape[0])
        self.whole = program.prepare(self.x, what=what) if self.n <= self.rows else None
        if self.whole is None:
            for part in self.slices():
                program.prepare(self.x[part], what=what, offset=part.start)

    def slices(self, progress: bool = False, description: str = "") -> list[slice]:
        starts = range(0, self.n, self.rows)
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=description, unit="chunk", leave=False)
        return [slice(s, min(s + self.rows, self.n)) for s in starts]

    def chunk(self, part: slice):
        if self.whole is not None:
            return self.whole[part]
        return self.program.prepare(self.x[part], what=self.what, offset=part.start)


def _squeeze(program, out):
    return out[:, 0] if program.num_outputs == 1 else out


def _root(program, root, n: int, who: str):
    """``root`` checked: an output index, or one per example (shape (n,))."""
    last = program.num_outputs - 1
    if isinstance(root, (bool, np.bool_)):
        raise TypeError(f"{who}: root must be an int in 0..{last} or an array of them, got {root!r}")
    if isinstance(root, (int, np.integer)):
        if not 0 <= root <= last:
            raise ValueError(f"{who}: root must be in 0..{last} (the circuit has {program.num_outputs} output(s)), "
                             f"got {root}")
        return int(root)
    array = np.asarray(root)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{who}: root must be an int in 0..{last} or an array of them, got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"{who}: root must be an int or one per example, shape ({n},); got shape {array.shape}")
    if n and (array.min() < 0 or array.max() > last):
        raise ValueError(f"{who}: root must be in 0..{last}; got values from {array.min()} to {array.max()}")
    return array.astype(np.int64)


def _root_part(root, part: slice):
    return root if isinstance(root, int) else root[part]


def _refuse_impossible(program, root, part: slice, who: str, what: str = "evidence"):
    """Refuse rows whose evidence has probability 0 (read from the last forward pass's root values)."""
    xp = program.backend.xp
    if isinstance(root, int):
        values = program.values[int(program.output_slots[root])]
    else:
        slots = program.output_slots[np.broadcast_to(np.asarray(root), (part.stop - part.start,))]
        values = program.values[program.backend.index(slots), xp.arange(part.stop - part.start)]
    impossible = xp.isneginf(values)
    if bool(impossible.any()):
        row = int(to_numpy(xp.argmax(impossible))) + part.start
        raise ValueError(f"{who}: the {what} of example {row} has probability 0 under the circuit, so nothing can be "
                         f"conditioned on it; remove the example or the impossible values")


def log_likelihood(program, x, *, batch_size: int | None = None, progress: bool = False, client=None,
                   partitions: int | None = None):
    """Log-probability of each example; NaN entries are marginalized.

    A row with every variable missing has log-probability exactly 0 on a circuit compiled with
    its validity checked (``compile(check=True)``, the default).

    Parameters
    ----------
    x : array, shape (batch, num_variables)
        With ``client``, also the path of a ``.npy`` file (read on the workers, a block at a
        time), a list of ``.npz`` shards or a dask array.
    batch_size : int, optional
        Rows per chunk (default: from ``program.memory_budget``); the result does not depend on it.
    progress : bool
        A progress bar over the chunks (over the partitions with ``client``).
    client : dask.distributed.Client or "local", optional
        Evaluate the partitions of ``x`` on the client's workers (``"local"``: a LocalCluster on
        this machine); the result equals the single-process one.
    partitions : int, optional
        How many partitions ``x`` is split into with ``client`` (default: twice the number of
        workers).

    Returns
    -------
    array, shape (batch,) or (batch, num_outputs) for several roots
    """
    if client is not None:
        from .learning.distributed import log_likelihood_on_client
        rows = chunk_rows(program, "forward", batch_size)
        out = log_likelihood_on_client(program, x, batch_size=rows, client=client, partitions=partitions,
                                       progress=progress)
        return _squeeze(program, program.backend.asarray(out))
    rows = _Rows(program, x, query="forward", batch_size=batch_size)
    be, xp = program.backend, program.backend.xp
    out = xp.empty((rows.n, program.num_outputs), dtype=be.dtype)
    used = program.domain.used_index
    used = None if used is None else be.index(used)
    for part in rows.slices(progress, "log-likelihood"):
        xb = rows.chunk(part)
        values = program._forward(xb, "sum", cache=False)
        if getattr(program, "checked", False) and getattr(program, "inputs_missing", True):
            nothing = xp.isnan(xb if used is None else xb[:, used]).all(axis=1)
            values = xp.where(nothing[:, None], 0, values)
        out[part] = values
    return _squeeze(program, out)


def log_conditional(program, x_query, x_evidence, *, batch_size: int | None = None):
    """``log p(query | evidence)`` per example.

    Parameters
    ----------
    x_query : array, shape (batch, num_variables)
        Values of the query variables, NaN elsewhere.
    x_evidence : array, shape (batch, num_variables)
        Values of the evidence variables, NaN elsewhere. A variable may not be in both.
    batch_size : int, optional
        Rows per chunk (default: from ``program.memory_budget``).

    Returns
    -------
    array, shape (batch,) or (batch, num_outputs)
        ``-inf`` where the query has probability 0 given the evidence.

    Raises
    ------
    ValueError
        The shapes differ, a variable is in both, or an example's evidence has probability 0
        (the conditional is then undefined).
    """
    queries = _Rows(program, x_query, what="x_query", query="forward", batch_size=batch_size)
    evidence = _Rows(program, x_evidence, what="x_evidence", query="forward", batch_size=queries.rows)
    if queries.x.shape != evidence.x.shape:
        raise ValueError(f"x_query has shape {queries.x.shape} but x_evidence has shape {evidence.x.shape}")
    be, xp = program.backend, program.backend.xp
    for part in queries.slices():
        both = ~xp.isnan(queries.chunk(part)) & ~xp.isnan(evidence.chunk(part))
        if bool(both.any()):
            r, c = (int(v) for v in to_numpy(xp.argwhere(both)[0]))
            raise ValueError(f"variable {c} of example {r + part.start} is both a query and an evidence variable")
    out = xp.empty((queries.n, program.num_outputs), dtype=be.dtype)
    for part in queries.slices():
        q, e = queries.chunk(part), evidence.chunk(part)
        marginal = program._forward(e, "sum", cache=False)
        if bool(xp.isneginf(marginal).any()):
            row = int(to_numpy(xp.argwhere(xp.isneginf(marginal))[0, 0])) + part.start
            raise ValueError(f"log_conditional: the evidence of example {row} has probability 0 under the circuit; "
                             f"p(query | evidence) is undefined there")
        out[part] = program._forward(xp.where(xp.isnan(q), e, q), "sum", cache=False) - marginal
    return _squeeze(program, out)


def mpe(program, x, *, root=0, batch_size: int | None = None):
    """Fill the NaNs of ``x`` with the (approximate) most probable completion (max-product + Viterbi).

    Parameters
    ----------
    x : array, shape (batch, num_variables)
    root : int or array of int, shape (batch,)
        The output unit to complete under (per example).
    batch_size : int, optional
        Rows per chunk (default: from ``program.memory_budget``).

    Raises
    ------
    ValueError
        An example's evidence has probability 0 (no completion has positive probability).
    """
    rows = _Rows(program, x, query="top_down", batch_size=batch_size)
    root = _root(program, root, rows.n, "mpe")
    out = program.backend.xp.empty((rows.n, program.num_variables), dtype=program.backend.dtype)
    for part in rows.slices():
        out[part] = program._top_down(rows.chunk(part), "argmax", root=_root_part(root, part))
        _refuse_impossible(program, _root_part(root, part), part, "mpe")
    return out


def sample(program, num_samples: int | None = None, evidence=None, *, seed=0, root=0,
           batch_size: int | None = None):
    """Draw samples; with ``evidence`` (NaN where free) each row is drawn from ``p(free | observed)``.

    Rows are drawn in chunks sized from ``program.memory_budget`` (or of ``batch_size`` rows),
    a multiple of :data:`SAMPLE_BLOCK` rows; every block of :data:`SAMPLE_BLOCK` rows draws its
    random numbers from its own stream, block ``k`` from ``numpy.random.PCG64(seed).jumped(k)``
    (``seed`` an int or None; a Generator spawns the seed), so the samples of a seed do not
    depend on the chunks or on how many are drawn (see :mod:`pcircuits.program.streams`). Circuits with conditional
    (neural) leaves draw one block per pass.

    Parameters
    ----------
    num_samples : int, optional
        How many samples (default: the rows of ``evidence``).
    evidence : array, shape (num_samples, num_variables), optional
    seed : int, None or numpy.random.Generator
    root : int or array of int, shape (num_samples,)
    batch_size : int, optional
        Rows per chunk (default: from ``program.memory_budget``), rounded down to a multiple
        of :data:`SAMPLE_BLOCK` (at least one block).

    Raises
    ------
    ValueError
        ``num_samples`` is not a non-negative int, disagrees with ``evidence``, or an example's
        evidence has probability 0.
    """
    if num_samples is not None:
        if isinstance(num_samples, (bool, np.bool_)) or not isinstance(num_samples, (int, np.integer)) \
                or num_samples < 0:
            raise ValueError(f"sample: num_samples must be a non-negative int, got {num_samples!r}")
        num_samples = int(num_samples)
    elif evidence is None:
        raise ValueError("sample: give num_samples or evidence")
    conditional = any(layer.family.conditional for layer in program.input_layers)
    if conditional:
        chunk = SAMPLE_BLOCK
    else:
        chunk = max(SAMPLE_BLOCK, chunk_rows(program, "top_down", batch_size) // SAMPLE_BLOCK * SAMPLE_BLOCK)
    rows = None if evidence is None else _Rows(program, evidence, what="evidence", query="top_down",
                                               batch_size=chunk)
    n = num_samples if rows is None else rows.n
    if rows is not None and num_samples is not None and num_samples != n:
        raise ValueError(f"sample: evidence has {n} rows but num_samples={num_samples}")
    root = _root(program, root, n, "sample")
    be, xp = program.backend, program.backend.xp
    streams = _Streams(seed)
    out = xp.empty((n, program.num_variables), dtype=be.dtype)
    for start in range(0, n, chunk):
        part = slice(start, min(start + chunk, n))
        if rows is None:
            block = xp.full((part.stop - part.start, program.num_variables), np.nan, dtype=be.dtype)
        else:
            block = rows.chunk(part)
        generators = [streams.next() for _ in range(0, part.stop - part.start, SAMPLE_BLOCK)]
        source = generators[0] if conditional else StreamRandomSource(be, generators, SAMPLE_BLOCK)
        out[part] = program._top_down(block, "sample", seed=source, root=_root_part(root, part))
        if rows is not None:
            _refuse_impossible(program, _root_part(root, part), part, "sample")
    return out


class _Streams:
    """Independent random streams, one per block: block ``k`` draws from the seed's ``PCG64``
    jumped ``k`` times, ``np.random.PCG64(seed).jumped(k)`` (for a Generator, from a sequence
    spawned from it). Jumped PCG64 streams do not overlap; each is made by advancing the seed's
    state, not from a SeedSequence of its own (which cost about 20 times as much per block)."""

    def __init__(self, seed):
        if isinstance(seed, np.random.Generator):
            sequence = seed.spawn(1)[0].bit_generator.seed_seq
        else:
            if isinstance(seed, (bool, np.bool_)) or not (seed is None or isinstance(seed, (int, np.integer))):
                raise TypeError(f"sample: seed must be an int, None or a numpy Generator, got {type(seed).__name__}")
            if seed is not None and seed < 0:
                raise ValueError(f"sample: seed must be non-negative, got {seed}")
            sequence = np.random.SeedSequence(None if seed is None else int(seed))
        self.state = _PCG64State(sequence.generate_state(4, np.uint64))
        self.count = 0

    def next(self) -> np.random.Generator:
        bits = np.random.PCG64(self.state)
        bits.advance(_PCG64_JUMP * self.count)
        self.count += 1
        return np.random.Generator(bits)


#: The distance of one ``PCG64.jumped``: (golden ratio - 1) * 2**128 draws, rounded to odd.
_PCG64_JUMP = 0x9e3779b97f4a7c15f39cc0605cedc835


class _PCG64State(np.random.bit_generator.ISeedSequence):
    """Seeds a ``PCG64`` with the state words a SeedSequence generated once."""

    def __init__(self, words: np.ndarray):
        self.words = words

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        return self.words


def leaf_posteriors(program, x, *, root=0, batch_size: int | None = None):
    """Posterior probability of every input unit being in the induced tree, shape (num_units, batch).

    Rows of non-input units hold their flows too; input units' rows are the quantities used
    by posterior-mean inpainting. The rows are processed in chunks like every query, so only
    the result (``num_units x batch``) grows with the batch.

    Parameters
    ----------
    x : array, shape (batch, num_variables)
    root : int or array of int, shape (batch,)
    batch_size : int, optional
        Rows per chunk (default: from ``program.memory_budget``).
    """
    rows = _Rows(program, x, query="posterior", batch_size=batch_size)
    root = _root(program, root, rows.n, "leaf_posteriors")
    out = None
    for part in rows.slices():
        flows = _posteriors(program, rows.chunk(part), _root_part(root, part))
        if out is None:
            out = program.backend.xp.empty((flows.shape[0], rows.n), dtype=flows.dtype)
        out[:, part] = flows
    if out is None:
        out = program.backend.xp.empty((program.num_units, 0), dtype=program.backend.dtype)
    return out


def _posteriors(program, x, root):
    program._forward(x, "sum", cache=True)
    grad_root = np.zeros((x.shape[0], program.num_outputs))
    grad_root[np.arange(x.shape[0]), root] = 1
    return program.backward(grad_root, leaves=False).unit_flows


def inpaint(program, x, *, method: str = "posterior-mean", root=0, batch_size: int | None = None):
    """Complete the NaNs of ``x``.

    ``"mpe"`` uses the Viterbi completion; ``"posterior-mean"`` sets each missing variable to
    ``sum_u P(u | evidence) * mean_u`` over the leaf units ``u`` of that variable, the expected
    value under the posterior (DGC-SPN section 5.1).

    Parameters
    ----------
    x : array, shape (batch, num_variables)
    method : {"posterior-mean", "mpe"}
    root : int or array of int, shape (batch,)
    batch_size : int, optional
        Rows per chunk (default: from ``program.memory_budget``).

    Raises
    ------
    ValueError
        An example's evidence has probability 0 (its posterior is undefined).
    """
    if method == "mpe":
        return mpe(program, x, root=root, batch_size=batch_size)
    if method != "posterior-mean":
        raise ValueError(f"inpaint: method must be 'mpe' or 'posterior-mean', got {method!r}")
    rows = _Rows(program, x, query="posterior", batch_size=batch_size)
    root = _root(program, root, rows.n, "inpaint")
    be, xp = program.backend, program.backend.xp
    out = xp.empty((rows.n, program.num_variables), dtype=be.dtype)
    for part in rows.slices():
        xb = rows.chunk(part)
        flows = _posteriors(program, xb, _root_part(root, part))
        _refuse_impossible(program, _root_part(root, part), part, "inpaint")
        out[part] = _posterior_mean(program, xb, flows)
    return out


def _posterior_mean(program, xb, flows):
    """``xb`` with every NaN replaced by its posterior mean under the unit ``flows``."""
    be, xp = program.backend, program.backend.xp
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
