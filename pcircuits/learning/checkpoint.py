"""Training checkpoints: named arrays and a JSON record in one ``.npz`` file, never a pickle.

Any trainer (``fit``, a DCGMM stack, a network) writes its state as a dict of named NumPy arrays
plus a JSON-ready ``meta`` dict (format name, version, settings, finished epochs, history).

Writing is atomic (:func:`pcircuits.atomic.atomic_write`): a unique temporary file beside the
checkpoint, fsynced and renamed over it, so a run killed while saving leaves the previous
checkpoint intact and two runs never share a temporary file.

Reading treats the file as untrusted, like a model file (:mod:`pcircuits.archive`): sizes are
checked against ``max_bytes`` before anything is read, duplicate or non-array members and
object dtypes are refused, and every problem raises one :class:`~pcircuits.errors.CheckpointError`
that names the file, the problem and how to start over. What the arrays must hold is checked
by the reader that knows (``fit`` validates shapes, finiteness and parameter domains).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..archive import ARCHIVE_ERRORS, ArchiveProblem, entry_infos, read_entry
from ..atomic import atomic_write
from ..backend import to_numpy
from ..errors import CheckpointError

__all__ = ["write_checkpoint", "read_checkpoint", "CheckpointContent", "data_digest", "DEFAULT_MAX_BYTES"]

#: Most bytes a checkpoint's entries may unpack to (``read_checkpoint(max_bytes=...)`` raises it).
DEFAULT_MAX_BYTES = 1 << 32
#: Most dimensions of a checkpoint array.
_MAX_DIMS = 8
#: The JSON record may take at most ``max_bytes // _RECORD_SHARE`` bytes (parsed JSON is larger).
_RECORD_SHARE = 16


def write_checkpoint(path, arrays: dict, meta: dict):
    """Write ``arrays`` (name -> NumPy array) and ``meta`` (JSON-ready dict) to ``path`` atomically."""
    if "meta" in arrays:
        raise ValueError("write_checkpoint: 'meta' is reserved for the JSON record")
    payload = dict(arrays)
    payload["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(Path(path), lambda handle: np.savez(handle, **payload))


def read_checkpoint(path, *, format_name: str, version: int, who: str = "fit", restart: str = "pass resume=False",
                    max_bytes: int = DEFAULT_MAX_BYTES, arrays: bool = True) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`write_checkpoint`; returns ``(arrays, meta)``.

    Parameters
    ----------
    path : str or Path
    format_name, version : the format the caller reads
    who : str
        The caller's name, first in messages.
    restart : str
        How the caller starts over, last in messages.
    max_bytes : int
        Most bytes the entries may unpack to, all together.
    arrays : bool
        False reads only the JSON record (the arrays dict is then empty).

    Raises
    ------
    CheckpointError
        The file cannot be read, is damaged, exceeds ``max_bytes``, has no JSON record, or is not
        a ``format_name`` checkpoint of this ``version``.
    """
    def refuse(problem: str):
        return CheckpointError(f"{who}: checkpoint {path} cannot be read ({problem}); delete it or {restart}")

    try:
        archive = zipfile.ZipFile(path)
    except ARCHIVE_ERRORS as err:
        raise refuse(f"not a readable zip archive: {str(err)[:120]}") from None
    try:
        with archive:
            infos = entry_infos(archive, max_bytes, "a checkpoint")
            if "meta" not in infos:
                raise ArchiveProblem("it has no 'meta' record")
            record = infos.pop("meta")
            if record.file_size > max_bytes // _RECORD_SHARE:
                raise ArchiveProblem(f"its record unpacks to {record.file_size} bytes, more than max_bytes // "
                                     f"{_RECORD_SHARE}")
            raw = read_entry(archive, record, "meta")
            read = infos if arrays else {}
            arrays = {name: read_entry(archive, info, name, max_dims=_MAX_DIMS) for name, info in read.items()}
    except ArchiveProblem as err:
        raise refuse(str(err)) from None
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise refuse(f"its record must be a 1-D uint8 array, got {raw.dtype} {raw.shape}")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise refuse(f"its record is not valid JSON: {str(err)[:120]}") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name or meta.get("version") != version:
        raise CheckpointError(f"{who}: {path} is not a version-{version} {format_name} checkpoint; delete it or "
                              f"{restart}")
    return arrays, meta


class CheckpointContent:
    """The checks every reader of a checkpoint's content shares; each problem is one
    :class:`~pcircuits.errors.CheckpointError` that names the file and how to start over.

    Parameters
    ----------
    who : str
        The reader's name, first in messages (``"fit"``, ``"Stack.fit"``).
    path : str or Path
    """

    def __init__(self, who: str, path):
        self.who, self.path = who, path

    def error(self, problem: str, prefix: str = "is damaged: ") -> CheckpointError:
        return CheckpointError(f"{self.who}: checkpoint {self.path} {prefix}{problem}; delete it or pass resume=False "
                               f"to start over")

    def record(self, meta: dict) -> tuple[dict, int, dict]:
        """The record's ``config`` object, finished ``epoch`` (an int >= 0) and ``history`` (one
        list of ``epoch`` entries per quantity)."""
        config, epoch, history = meta.get("config"), meta.get("epoch"), meta.get("history")
        if not isinstance(config, dict):
            raise self.error("its record has no 'config' object")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise self.error(f"its record's epoch must be a non-negative int, got {epoch!r}"[:200])
        if not isinstance(history, dict) or not all(isinstance(v, list) and len(v) == epoch for v in history.values()):
            raise self.error(f"its history must hold one list of {epoch} entries per quantity")
        return config, epoch, history

    def array(self, arrays: dict, name: str, shape: tuple) -> np.ndarray:
        """The array ``name``: present, a number type, of ``shape``, finite."""
        if name not in arrays:
            raise self.error(f"the array {name!r} is missing")
        value = arrays[name]
        if value.dtype.kind not in "biuf":
            raise self.error(f"the array {name!r} has dtype {value.dtype}, not a number type")
        if tuple(value.shape) != tuple(shape):
            raise self.error(f"the array {name!r} has shape {tuple(value.shape)}, this run needs {tuple(shape)}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self.error(f"the array {name!r} holds NaN or infinite values")
        return value


def data_digest(*arrays) -> str:
    """A BLAKE2b fingerprint of arrays (host or device; their shapes, dtypes and values; None
    counts as absent), read a block of rows at a time so that no whole copy is made."""
    import hashlib  # here: with OpenSSL's algorithms, 3 ms for every process

    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        digest.update(repr((tuple(array.shape), str(array.dtype))).encode())
        if array.ndim == 0:
            digest.update(to_numpy(array).tobytes())
            continue
        rows = max(1, (1 << 24) // max(1, array[:1].nbytes))
        for start in range(0, len(array), rows):
            digest.update(np.ascontiguousarray(to_numpy(array[start:start + rows])).tobytes())
    return digest.hexdigest()
