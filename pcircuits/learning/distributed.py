"""Data-parallel training and evaluation on a Dask cluster.

The data set is split once into partitions that stay on the workers; the client keeps the
Program and the learner, and every step

1. sends the current parameters (weights and leaf tables) once, and only when they changed
   since the last step (full-batch EM changes them at the end of an epoch, online EM and the
   optimizers after every batch),
2. lets each worker compute :meth:`Learner.statistics <pcircuits.learning.Learner.statistics>`
   on the examples of the batch that live in its partitions, with a Program and a learner that
   the worker process builds once per run (the circuit travels as the bytes of its ``.pcz``
   file, never as a pickle of live objects),
3. adds the statistics up in a tree of :meth:`Learner.combine` tasks on the workers, and
4. updates the client's learner, exactly as a single-process step does.

The batches are ``fit``'s usual ones (epoch ``e`` visits the permutation
``default_rng([seed, e]).permutation(n)`` in slices of ``batch_size``), whatever the number of
workers or partitions. Statistics are sums over examples, so a deterministic learner reaches
the single-process parameters up to the order of floating-point additions: soft EM (full-batch
and online), and Adam or SGD without dropout. Randomness of the other learners is drawn per
partition: dropout masks and the noise of stochastic (VAE) leaves from
``default_rng([seed, epoch, step, partition])``, hard EM's random ties from each worker
learner's own seed; their runs are reproducible for a fixed number of partitions, but differ
from the single-process run and from runs with other partitionings.

Partitions are made by tasks that slice an array or read a file, never by ``client.scatter``,
so the scheduler can make them again: a worker that dies costs a rerun of its tasks, and the
result is the one of an uninterrupted run.

A memory-mapped ``.npy`` file is read a batch at a time on the workers (the mapping is closed
after each read), so training and evaluation over a file several times larger than the
workers' memory run in bounded memory.
"""
from __future__ import annotations

import hashlib
import resource
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from ..errors import OptionalDependencyError

__all__ = ["client_session", "resolve_client", "circuit_bytes", "evaluate_on_client", "log_likelihood_on_client",
           "DataPartitions",
           "DistributedEpochs", "ArrayPartition", "NpyPartition", "peak_worker_memory"]

#: Compiled Programs of :func:`evaluate_on_client`, by circuit digest, backend and dtype.
_WORKER_PROGRAMS: dict = {}
#: Program and learner of each training run on this worker process, by run token (newest last).
_WORKER_RUNS: dict = {}
#: How many training runs a worker process keeps compiled.
_KEPT_RUNS = 2


# ---- the client ---------------------------------------------------------------------------
def _client_class():
    try:
        from dask.distributed import Client
    except ImportError as error:
        raise OptionalDependencyError("client= needs Dask: pip install 'pcircuits[distributed]'") from error
    return Client


def resolve_client(client):
    """Check ``client``: a ``dask.distributed.Client`` or ``"local"`` (returned as is)."""
    Client = _client_class()
    if isinstance(client, str):
        if client != "local":
            raise ValueError(f"client must be a dask.distributed.Client or \"local\", got {client!r}")
        return client
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client or \"local\", got {type(client).__name__}")
    return client


@contextmanager
def client_session(client):
    """A context with a ``dask.distributed.Client`` for ``client``, or None for None.

    ``"local"`` starts a ``LocalCluster`` of processes with one thread each on this machine and
    closes it (and its client) when the context ends; a given client is used and left open.
    """
    if client is None:
        yield None
        return
    client = resolve_client(client)
    if not isinstance(client, str):
        yield client
        return
    from dask.distributed import Client, LocalCluster
    with LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as local:
        yield local


def _num_workers(client) -> int:
    return max(1, len(client.scheduler_info()["workers"]))


def circuit_bytes(program) -> bytes:
    """The bytes of the ``.pcz`` file of ``program``'s circuit with its current parameters."""
    from ..serialization import save
    with tempfile.TemporaryDirectory() as folder:
        return save(program.sync_to_circuit(), Path(folder) / "circuit.pcz").read_bytes()


def _load_program(blob: bytes, backend: str, dtype: str):
    from ..serialization import load
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "circuit.pcz"
        path.write_bytes(blob)
        return load(path).compile(backend=backend, dtype=dtype)


def _tree_sum(client, futures: list, combine, *args):
    """``combine(*args, a, b)`` over ``futures`` in a binary tree of tasks; the root's future."""
    while len(futures) > 1:
        futures = [client.submit(combine, *args, *futures[i:i + 2], pure=False) if i + 1 < len(futures)
                   else futures[i] for i in range(0, len(futures), 2)]
    return futures[0]


# ---- evaluation ---------------------------------------------------------------------------
def _worker_program(blob: bytes, backend: str, dtype: str):
    key = (hashlib.sha256(blob).hexdigest(), backend, dtype)
    if key not in _WORKER_PROGRAMS:
        _WORKER_PROGRAMS[key] = _load_program(blob, backend, dtype)
    return _WORKER_PROGRAMS[key]


def _partition_sums(sums, blob, backend, dtype, partition, objective, batch_size) -> tuple:
    program = _worker_program(blob, backend, dtype)
    total = None
    for x, labels in partition.blocks(batch_size):
        part = sums(program, x, labels, objective, batch_size)
        total = part if total is None else _add(total, part)
    return total


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def evaluate_on_client(sums, program, data, labels, *, objective: str, batch_size: int, client,
                       partitions: int | None = None) -> tuple:
    """``sums(program, x, labels, objective, batch_size)`` over partitions on ``client``'s workers, added up.

    Parameters
    ----------
    sums : callable
        Returns a tuple of numbers for a block of examples (a module-level function, so that
        workers import it by name).
    data : array, shape (n, num_variables), path of a ``.npy`` file, list of ``.npz`` shards or dask array
    labels : array of int, shape (n,), optional
    client : dask.distributed.Client or "local"
    partitions : int, optional
        How many partitions an array or ``.npy`` file is split into (default: twice the number
        of workers).

    Returns
    -------
    tuple
        The element-wise sums over the partitions, added in a tree on the workers.
    """
    with client_session(client) as session:
        parts = DataPartitions(session, data, labels, program.num_variables, partitions=partitions)
        blob = session.submit(_identity, circuit_bytes(program), pure=False)
        backend, dtype = program.backend.name, program.backend.dtype.name
        futures = [session.submit(_partition_sums, sums, blob, backend, dtype, part, objective, batch_size,
                                  pure=False) for part in parts.futures]
        return _tree_sum(session, futures, _add).result()


def _partition_log_likelihoods(blob, backend, dtype, partition, batch_size) -> np.ndarray:
    program = _worker_program(blob, backend, dtype)
    parts = [to_numpy(program.log_likelihood(x, batch_size=batch_size)).reshape(len(x), -1)
             for x, _ in partition.blocks(batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, program.num_outputs))


def log_likelihood_on_client(program, data, *, batch_size: int, client, partitions: int | None = None,
                             progress: bool = False) -> np.ndarray:
    """Log-probability of every example of a collection, computed where its partitions live.

    Each worker evaluates its partitions ``batch_size`` rows at a time with a Program it
    compiles once from the circuit's ``.pcz`` bytes; only the per-example results travel back.

    Parameters
    ----------
    data : array, shape (n, num_variables), path of a ``.npy`` file, list of ``.npz`` shards or dask array
    batch_size : int
        Rows per block on the workers.
    client : dask.distributed.Client or "local"
    partitions : int, optional
        How many partitions an array or ``.npy`` file is split into (default: twice the number
        of workers).
    progress : bool
        A progress bar over the finished partitions.

    Returns
    -------
    ndarray, shape (n, num_outputs)
        In the order of ``data``'s rows.
    """
    with client_session(client) as session:
        parts = DataPartitions(session, data, None, program.num_variables, partitions=partitions)
        blob = session.submit(_identity, circuit_bytes(program), pure=False)
        backend, dtype = program.backend.name, program.backend.dtype.name
        futures = [session.submit(_partition_log_likelihoods, blob, backend, dtype, part, batch_size, pure=False)
                   for part in parts.futures]
        if progress:
            from dask.distributed import as_completed
            from tqdm.auto import tqdm
            for _ in tqdm(as_completed(futures), total=len(futures), desc="log-likelihood", unit="partition",
                          leave=False):
                pass
        return np.concatenate(session.gather(futures))


def _identity(value):
    return value


# ---- partitions ---------------------------------------------------------------------------
class ArrayPartition:
    """A partition held in a worker's memory.

    Parameters
    ----------
    x : array, shape (size, ...)
    labels : array of int, shape (size,), optional
    """

    def __init__(self, x, labels=None):
        self.x = np.ascontiguousarray(x).reshape(len(x), -1)
        self.labels = labels

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    def rows(self, index: np.ndarray):
        """Examples ``index`` (local positions) and their labels."""
        return self.x[index], None if self.labels is None else self.labels[index]

    def blocks(self, batch_size: int):
        """The examples in storage order, ``batch_size`` at a time, with their labels."""
        for lo in range(0, self.size, batch_size):
            yield self.x[lo:lo + batch_size], None if self.labels is None else self.labels[lo:lo + batch_size]


class NpyPartition:
    """Rows ``start:stop`` of a ``.npy`` file, read from the file when used (nothing is held).

    Each read maps the file and closes the mapping afterwards, so the pages read do not stay
    in the worker's resident memory.
    """

    def __init__(self, path: str, start: int, stop: int, labels=None):
        self.path, self.start, self.stop, self.labels = path, int(start), int(stop), labels

    @property
    def size(self) -> int:
        return self.stop - self.start

    def _labels(self, index):
        return None if self.labels is None else self.labels[index]

    def rows(self, index: np.ndarray):
        mapped = np.load(self.path, mmap_mode="r")
        x = np.array(mapped[self.start + np.asarray(index)])
        del mapped
        return x.reshape(len(x), -1), self._labels(index)

    def blocks(self, batch_size: int):
        for lo in range(0, self.size, batch_size):
            hi = min(lo + batch_size, self.size)
            mapped = np.load(self.path, mmap_mode="r")
            x = np.array(mapped[self.start + lo:self.start + hi])
            del mapped
            yield x.reshape(len(x), -1), self._labels(slice(lo, hi))


def _array_partition(x, labels):
    return ArrayPartition(x, labels)


def _npz_partition(path: str, labels):
    with np.load(path) as shard:
        return ArrayPartition(_shard_array(shard, path), labels)


def _shard_array(shard, path):
    names = list(shard.files)
    name = "x" if "x" in names else names[0] if len(names) == 1 else None
    if name is None:
        raise ValueError(f"the shard {path} holds {names}; it needs an array named 'x' (or a single array)")
    return shard[name]


def _npz_shape(path: str) -> tuple:
    """The shape of a shard's data array, from its header (nothing is loaded)."""
    with np.load(path) as shard:
        name = "x" if "x" in shard.files else shard.files[0] if len(shard.files) == 1 else None
        if name is None:
            raise ValueError(f"the shard {path} holds {shard.files}; it needs an array named 'x' (or a single array)")
        with shard.zip.open(name + ".npy") as member:
            version = np.lib.format.read_magic(member)
            read = {(1, 0): np.lib.format.read_array_header_1_0,
                    (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"the shard {path} stores {name!r} in .npy format version {version}; save it again")
            shape, _, _ = read(member)
    return tuple(shape)


def _is_dask_array(data) -> bool:
    return type(data).__module__.startswith("dask.array")


class DataPartitions:
    """A data set split into partitions that live on a Dask cluster's workers.

    Parameters
    ----------
    client : dask.distributed.Client
    data : array, shape (n, ...); path of a ``.npy`` file or a ``numpy.memmap`` of one; list of
        ``.npz`` shard paths (each with an array ``"x"``, or a single array); or a dask array
        Rows are examples; more dimensions are flattened per example.
    labels : array of int, shape (n,), optional
        Labels of all rows (in the order of the shards' rows for shards).
    num_variables : int
        What each example must have.
    partitions : int, optional
        How many partitions an array or ``.npy`` file is split into (default: twice the number
        of workers); shards and dask arrays keep theirs (one per shard, per chunk of rows).
    align : int
        Split arrays and ``.npy`` files on multiples of ``align`` rows (``fit`` aligns on its
        batch size, so that blocks of a batch fill every partition but the last and the
        Programs on the workers see one batch shape).

    Attributes
    ----------
    n : int
    bounds : ndarray of int, shape (num_partitions + 1,)
        Partition ``p`` holds the examples ``bounds[p]:bounds[p + 1]``.
    futures : list of Future
        One per partition: its :class:`ArrayPartition` or :class:`NpyPartition`.
    """

    def __init__(self, client, data, labels, num_variables: int, *, partitions: int | None = None, align: int = 1):
        self.client, self.num_variables = client, int(num_variables)
        if partitions is not None and (isinstance(partitions, bool) or not isinstance(partitions, (int, np.integer))
                                       or partitions < 1):
            raise ValueError(f"partitions must be a positive int, got {partitions!r}")
        wanted = partitions or 2 * _num_workers(client)
        self.labels = None if labels is None else np.asarray(labels)
        if isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, Path)) for p in data):
            self.kind, self.paths = "shards", [str(Path(p).resolve()) for p in data]
            shapes = [_npz_shape(path) for path in self.paths]
            self._check_shape((sum(s[0] for s in shapes),) + shapes[0][1:])
            self.bounds = np.cumsum([0] + [s[0] for s in shapes])
            self.futures = [client.submit(_npz_partition, path, self._label_slice(p), pure=False)
                            for p, path in enumerate(self.paths)]
        elif isinstance(data, (str, Path)) or (isinstance(data, np.memmap) and _whole_npy(data)):
            path = str(Path(data if isinstance(data, (str, Path)) else data.filename).resolve())
            mapped = np.load(path, mmap_mode="r")
            if mapped.ndim > 1 and not mapped.flags.c_contiguous:
                raise ValueError(f"the .npy file {path} is stored in Fortran order; save it in C order")
            self.kind, self.path = "npy", path
            self._check_shape(mapped.shape)
            self.bounds = _even_bounds(mapped.shape[0], wanted, align)
            self.futures = [client.submit(_npy_partition, path, lo, hi, self._label_slice(p), pure=False)
                            for p, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:]))]
        elif _is_dask_array(data):
            import dask
            self.kind, self.array = "dask", data
            self._check_shape(data.shape)
            data = data.rechunk({axis: -1 for axis in range(1, data.ndim)})
            blocks = data.to_delayed().reshape(-1)
            self.bounds = np.cumsum([0] + list(data.chunks[0]))
            self.futures = client.compute([dask.delayed(_array_partition)(block, self._label_slice(p))
                                           for p, block in enumerate(blocks)])
        else:
            array = np.asarray(data)
            self.kind, self.array = "array", array
            self._check_shape(array.shape)
            self.bounds = _even_bounds(array.shape[0], wanted, align)
            self.futures = [client.submit(_array_partition, array[lo:hi], self._label_slice(p), pure=False)
                            for p, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:]))]
        self.n = int(self.bounds[-1])

    def _check_shape(self, shape: tuple):
        if len(shape) < 2:
            raise ValueError(f"data must have shape (n, {self.num_variables}); got shape {tuple(shape)}")
        per_example = int(np.prod(shape[1:]))
        if per_example != self.num_variables:
            raise ValueError(f"data has {per_example} variables per example, the circuit has "
                             f"{self.num_variables}")
        if self.labels is not None and len(self.labels) != shape[0]:
            raise ValueError(f"labels has {len(self.labels)} entries, the data has {shape[0]} examples")

    def _label_slice(self, p: int):
        return None if self.labels is None else self.labels[self.bounds[p]:self.bounds[p + 1]]

    def locate(self, index: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``(partition, local positions)`` of the examples ``index``, each group in ``index``'s order."""
        index = np.asarray(index)
        owner = np.searchsorted(self.bounds, index, side="right") - 1
        return [(int(p), index[owner == p] - self.bounds[p]) for p in np.unique(owner)]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Examples ``start:stop`` read on the client, shape (stop - start, num_variables)."""
        if self.kind == "npy":
            x = np.load(self.path, mmap_mode="r")[start:stop]
        elif self.kind == "shards":
            pieces = []
            for path, lo, hi in zip(self.paths, self.bounds[:-1], self.bounds[1:]):
                if hi > start and lo < stop:
                    with np.load(path) as shard:
                        pieces.append(_shard_array(shard, path)[max(start, lo) - lo:min(stop, hi) - lo])
            x = np.concatenate([p.reshape(len(p), -1) for p in pieces])
        elif self.kind == "dask":
            x = self.array[start:stop].compute()
        else:
            x = self.array[start:stop]
        return np.asarray(x).reshape(stop - start, -1)

    def fingerprint(self, digest, dtype):
        """Feed the data, as rows of ``dtype``, into ``digest`` (as ``fit`` hashes in-memory data)."""
        dtype = np.dtype(dtype)
        digest.update(repr(((self.n, self.num_variables), str(dtype))).encode())
        rows = max(1, (1 << 24) // (dtype.itemsize * self.num_variables))
        for start in range(0, self.n, rows):
            digest.update(np.ascontiguousarray(self.rows(start, min(start + rows, self.n)), dtype=dtype).tobytes())


def _whole_npy(data: np.memmap) -> bool:
    """Whether a memmap is a whole ``.npy`` file as ``numpy.load(mmap_mode=...)`` opens it."""
    filename = getattr(data, "filename", None)
    if filename is None or not str(filename).endswith(".npy"):
        return False
    whole = np.load(filename, mmap_mode="r")
    return whole.shape == data.shape and whole.dtype == data.dtype and whole.offset == data.offset


def _even_bounds(n: int, parts: int, align: int = 1) -> np.ndarray:
    """Bounds of about ``parts`` partitions of ``n`` rows, on multiples of ``align`` (except ``n``)."""
    blocks = -(-n // align)
    bounds = np.linspace(0, blocks, min(parts, max(blocks, 1)) + 1).round().astype(np.int64) * align
    return np.unique(np.minimum(bounds, n))


def _npy_partition(path: str, start: int, stop: int, labels):
    return NpyPartition(path, start, stop, labels)


# ---- training -----------------------------------------------------------------------------
class _WorkerRun:
    """A worker's Program and learner of one training run, and the parameter version they hold."""

    def __init__(self, spec: dict):
        from .learner import make_learner
        self.program = _load_program(spec["circuit"], spec["backend"], spec["dtype"])
        self.learner = make_learner(spec["method"], self.program, spec["options"])
        self.version = None

    def use(self, parameters: dict):
        """Load ``parameters`` unless they are the ones already loaded."""
        if parameters["version"] == self.version:
            return
        program = self.program
        be = program.backend
        log_weights = parameters["log_weights"]
        program.set_weights(be.asarray(parameters["weights"]), None if log_weights is None else be.asarray(log_weights))
        for key, table in parameters["leaves"].items():
            program.leaf_tables[key] = {name: be.asarray(value) for name, value in table.items()}
        self.version = parameters["version"]


def _worker_run(spec: dict) -> _WorkerRun:
    token = spec["token"]
    if token not in _WORKER_RUNS:
        while len(_WORKER_RUNS) >= _KEPT_RUNS:
            _WORKER_RUNS.pop(next(iter(_WORKER_RUNS)))
        _WORKER_RUNS[token] = _WorkerRun(spec)
    return _WORKER_RUNS[token]


def _host_arrays(value):
    """``value`` with every backend array copied to a NumPy array (nested dicts kept)."""
    if isinstance(value, dict):
        return {k: _host_arrays(v) for k, v in value.items()}
    if hasattr(value, "shape") and not isinstance(value, np.ndarray) and not np.isscalar(value):
        return to_numpy(value)
    return value


def _backend_arrays(be, value):
    """``value`` with every NumPy array moved to backend ``be``."""
    if isinstance(value, dict):
        return {k: _backend_arrays(be, v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return be.xp.asarray(value)
    return value


def _batch_statistics(spec, parameters, partition, index, seed):
    run = _worker_run(spec)
    run.use(parameters)
    x, labels = partition.rows(index)
    rng = run.program.backend.rng(np.random.default_rng(seed))
    return _host_arrays(run.learner.statistics(x, labels, rng=rng))


def _epoch_statistics(spec, parameters, partition, batch_size, seed):
    run = _worker_run(spec)
    run.use(parameters)
    rng = run.program.backend.rng(np.random.default_rng(seed))
    total = None
    for x, labels in partition.blocks(batch_size):
        stats = run.learner.statistics(x, labels, rng=rng)
        total = stats if total is None else run.learner.combine(total, stats)
    return _host_arrays(total)


def _combine_statistics(spec, a, b):
    return _worker_run(spec).learner.combine(a, b)


def _parameters(program) -> dict:
    """Copies of the Program's weights, log-weights and leaf tables as NumPy arrays.

    The log-weights are left out (None) when they are the logarithms of the weights, which the
    workers then take themselves (EM); a log-softmax (the gradient learners) sends both.
    """
    weights, log_weights = np.array(to_numpy(program.weights)), np.array(to_numpy(program.log_weights))
    with np.errstate(divide="ignore"):
        if np.array_equal(np.log(weights), log_weights):
            log_weights = None
    return {"weights": weights, "log_weights": log_weights,
            "leaves": {key: {name: np.array(to_numpy(value)) for name, value in table.items()}
                       for key, table in program.leaf_tables.items()}}


def _same_parameters(a: dict, b: dict) -> bool:
    if not np.array_equal(a["weights"], b["weights"]) or (a["log_weights"] is None) != (b["log_weights"] is None):
        return False
    if a["log_weights"] is not None and not np.array_equal(a["log_weights"], b["log_weights"]):
        return False
    return a["leaves"].keys() == b["leaves"].keys() and all(
        table.keys() == b["leaves"][key].keys() and all(np.array_equal(v, b["leaves"][key][k]) for k, v in table.items())
        for key, table in a["leaves"].items())


class DistributedEpochs:
    """The epochs of a ``fit`` run whose batches are computed on a Dask cluster.

    Parameters
    ----------
    client : dask.distributed.Client
    program : Program
        The client's Program (the learner updates it).
    partitions : DataPartitions
    method : str
    options : dict
        ``fit``'s options that the learners read (sent to the workers once).

    Attributes
    ----------
    broadcasts : int
        How many times parameters were sent (at most once per step).
    bytes_broadcast, bytes_reduced : int
        Bytes of the parameters sent and of the combined statistics received, summed.
    """

    def __init__(self, client, program, partitions: DataPartitions, method: str, options: dict):
        self.client, self.program, self.partitions = client, program, partitions
        spec = {"token": uuid.uuid4().hex, "circuit": circuit_bytes(program), "backend": program.backend.name,
                "dtype": program.backend.dtype.name, "method": method, "options": options}
        self.spec = client.submit(_identity, spec, pure=False)
        self.seed = int(options["seed"])
        self._sent, self._future, self._version = None, None, 0
        self.broadcasts, self.bytes_broadcast, self.bytes_reduced = 0, 0, 0

    def parameters(self):
        """A future of the current parameters, sent again only if they changed."""
        current = _parameters(self.program)
        if self._sent is None or not _same_parameters(current, self._sent):
            self._version += 1
            self._sent = current
            self._future = self.client.submit(_identity, dict(current, version=self._version), pure=False)
            self.broadcasts += 1
            self.bytes_broadcast += _nbytes(current)
        return self._future

    def statistics(self, index: np.ndarray, epoch: int, step: int) -> dict:
        """The combined statistics of the examples ``index`` (one batch), computed on the workers."""
        parameters = self.parameters()
        futures = [self.client.submit(_batch_statistics, self.spec, parameters, self.partitions.futures[p], local,
                                      (self.seed, epoch, step, p), pure=False)
                   for p, local in self.partitions.locate(index)]
        return self._gather(futures)

    def epoch_statistics(self, batch_size: int, epoch: int) -> dict:
        """The combined statistics of all examples under the current parameters (one task per partition)."""
        parameters = self.parameters()
        futures = [self.client.submit(_epoch_statistics, self.spec, parameters, part, batch_size,
                                      (self.seed, epoch, p), pure=False)
                   for p, part in enumerate(self.partitions.futures)]
        return self._gather(futures)

    def _gather(self, futures: list) -> dict:
        stats = _tree_sum(self.client, futures, _combine_statistics, self.spec).result()
        self.bytes_reduced += _nbytes(stats)
        be = self.program.backend
        return stats if be.on_host else _backend_arrays(be, stats)


def _nbytes(value) -> int:
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return int(value.nbytes) if isinstance(value, np.ndarray) else 0


def peak_worker_memory(client) -> dict:
    """The peak resident memory of each worker process so far, in bytes, by worker address."""
    return client.run(_peak_memory)


def _peak_memory() -> int:
    """This process's peak resident memory: ``VmHWM`` on Linux (``ru_maxrss`` there keeps the
    peak of the process that forked this one), ``ru_maxrss`` elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)
