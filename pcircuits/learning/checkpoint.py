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
from ..errors import CheckpointError

__all__ = ["write_checkpoint", "read_checkpoint", "DEFAULT_MAX_BYTES"]

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
