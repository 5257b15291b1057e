"""Evaluation over a data set split into partitions on the workers of a Dask cluster.

The circuit travels to the workers as the bytes of its ``.pcz`` file, and each worker process
compiles it once (a cache keyed by the bytes' digest), not once per task. Each partition's
summed loss, example count and correct predictions come back, and the client adds them up in a
tree, so the result equals the single-process :func:`~pcircuits.learning.evaluate` up to the
order of floating-point additions.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from ..errors import OptionalDependencyError

__all__ = ["circuit_bytes", "evaluate_on_client", "resolve_client"]

_WORKER_PROGRAMS: dict = {}


def resolve_client(client):
    """A ``dask.distributed.Client``: ``client`` itself, or a LocalCluster's for ``"local"``."""
    try:
        from dask.distributed import Client
    except ImportError as error:
        raise OptionalDependencyError("client= needs Dask: pip install 'pcircuits[distributed]'") from error
    if isinstance(client, str):
        if client != "local":
            raise ValueError(f"client must be a dask.distributed.Client or \"local\", got {client!r}")
        return Client(processes=True, threads_per_worker=1)
    if not isinstance(client, Client):
        raise TypeError(f"client must be a dask.distributed.Client or \"local\", got {type(client).__name__}")
    return client


def circuit_bytes(program) -> bytes:
    """The bytes of the ``.pcz`` file of ``program``'s circuit with its current parameters."""
    from ..serialization import save
    with tempfile.TemporaryDirectory() as folder:
        return save(program.sync_to_circuit(), Path(folder) / "circuit.pcz").read_bytes()


def _worker_program(blob: bytes, backend: str, dtype: str):
    key = (hashlib.sha256(blob).hexdigest(), backend, dtype)
    if key not in _WORKER_PROGRAMS:
        from ..serialization import load
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "circuit.pcz"
            path.write_bytes(blob)
            _WORKER_PROGRAMS[key] = load(path).compile(backend=backend, dtype=dtype)
    return _WORKER_PROGRAMS[key]


def _partition_sums(sums, blob, backend, dtype, data, labels, objective, batch_size) -> tuple[float, int, int]:
    return sums(_worker_program(blob, backend, dtype), data, labels, objective, batch_size)


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def evaluate_on_client(sums, program, data, labels, *, objective: str, batch_size: int, client,
                       partitions: int | None = None) -> tuple[float, int, int]:
    """``sums(program, data, labels, objective, batch_size)`` over partitions on ``client``'s workers, added up.

    Parameters
    ----------
    sums : callable
        Returns a tuple of numbers for one partition (a module-level function, so that
        workers import it by name).
    data : array, shape (n, num_variables)
    labels : array of int, shape (n,), optional
    partitions : int, optional
        How many partitions (default: twice the number of workers).

    Returns
    -------
    tuple
        The element-wise sums over the partitions, added in a tree on the workers.
    """
    client = resolve_client(client)
    data = np.asarray(data)
    n = data.shape[0]
    if partitions is None:
        partitions = max(1, 2 * len(client.scheduler_info()["workers"]))
    bounds = np.linspace(0, n, min(partitions, max(n, 1)) + 1).astype(int)
    blob = client.scatter(circuit_bytes(program), broadcast=True)
    backend, dtype = program.backend.name, program.backend.dtype.name
    futures = [client.submit(_partition_sums, sums, blob, backend, dtype, data[lo:hi],
                             None if labels is None else np.asarray(labels)[lo:hi], objective, batch_size, pure=False)
               for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    while len(futures) > 1:
        futures = [client.submit(_add, *futures[i:i + 2]) if i + 1 < len(futures) else futures[i]
                   for i in range(0, len(futures), 2)]
    return futures[0].result()
