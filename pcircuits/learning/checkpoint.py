"""Training checkpoints: named arrays and a JSON record in one ``.npz`` file, never a pickle.

Any trainer (``fit``, a DCGMM stack) writes its state as a dict of named NumPy arrays plus a
JSON-ready ``meta`` dict (format name, version, settings, finished epochs, history). Writing is
atomic: the file is written under a temporary name unique to the writing process and renamed
over the old checkpoint, so a run killed while saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

__all__ = ["write_checkpoint", "read_checkpoint"]


def write_checkpoint(path, arrays: dict, meta: dict):
    """Write ``arrays`` (name -> NumPy array) and ``meta`` (JSON-ready dict) to ``path`` atomically."""
    if "meta" in arrays:
        raise ValueError("write_checkpoint: 'meta' is reserved for the JSON record")
    path = Path(path)
    payload = dict(arrays)
    payload["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_checkpoint(path, *, format_name: str, version: int, who: str = "fit") -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`write_checkpoint`; returns ``(arrays, meta)``.

    Raises
    ------
    CheckpointError
        The file cannot be read, has no JSON record, or is not a ``format_name`` checkpoint of
        this ``version``. The message says how to start over.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except Exception as err:
        raise CheckpointError(f"{who}: checkpoint {path} cannot be read ({err}); delete it or pass "
                              f"resume=False") from None
    if not isinstance(meta, dict) or meta.get("format") != format_name or meta.get("version") != version:
        raise CheckpointError(f"{who}: {path} is not a version-{version} {format_name} checkpoint; delete it or "
                              f"pass resume=False")
    return arrays, meta
