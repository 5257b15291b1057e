"""Reading, writing and editing checkpoint files as raw arrays and metadata (for corruption tests)."""
import json

import numpy as np


def read(path):
    """The arrays of a checkpoint file and its decoded ``meta`` record."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return arrays, json.loads(arrays.pop("meta").tobytes())


def write(path, arrays, meta):
    """A checkpoint file of ``arrays`` with ``meta`` encoded as its record."""
    with open(path, "wb") as handle:
        np.savez(handle, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def edited(path, edit):
    """``path`` rewritten after ``edit(arrays, meta)`` changed its contents in place."""
    arrays, meta = read(path)
    edit(arrays, meta)
    write(path, arrays, meta)
    return path
