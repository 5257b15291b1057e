"""Parameter dicts: stacking networks, copies for checkpoints, loading, and network files.

A network's parameters are a flat dict of named arrays (``"0.weight"``, ``"0.bias"``, ...),
each with a leading network axis. These functions keep them plain: no pickle, no wrapper
objects, so the same dict goes to :class:`pcircuits.optim.Adam`, into a checkpoint
(:func:`pcircuits.learning.checkpoint.write_checkpoint`) or into a leaf family's arrays.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..backend import Backend, array_module, get_backend, to_numpy
from ..errors import CheckpointError
from .layers import Layer, layer_from_config

__all__ = ["concatenate_params", "split_params", "numpy_params", "load_params", "save_network", "load_network",
           "SavedNetwork", "FILE_FORMAT", "FILE_VERSION"]

#: Format name and version written into network files.
FILE_FORMAT = "pcircuits.nn"
FILE_VERSION = 1


def concatenate_params(param_dicts) -> dict:
    """Stack several networks' parameters of one architecture into one stack (along axis 0).

    Parameters
    ----------
    param_dicts : sequence of dict of str -> array
        Same names in each; arrays of shape ``(L_i, ...)`` with equal trailing shapes.

    Returns
    -------
    dict of str -> array
        Shapes ``(sum(L_i), ...)``: the parameters of ``mlp(sum(L_i), ...)``, networks in order.
    """
    param_dicts = list(param_dicts)
    if not param_dicts:
        raise ValueError("concatenate_params: needs at least one parameter dict")
    names = list(param_dicts[0])
    for position, params in enumerate(param_dicts[1:], start=1):
        if sorted(params) != sorted(names):
            raise ValueError(f"concatenate_params: dict {position} has parameters {sorted(params)}, dict 0 has "
                             f"{sorted(names)}")
        for name in names:
            if tuple(params[name].shape[1:]) != tuple(param_dicts[0][name].shape[1:]):
                raise ValueError(f"concatenate_params: {name!r} has shape {tuple(params[name].shape)} in dict "
                                 f"{position} but {tuple(param_dicts[0][name].shape)} in dict 0 (only the first "
                                 f"axis may differ)")
    xp = array_module(param_dicts[0][names[0]]) if names else np
    return {name: xp.concatenate([params[name] for params in param_dicts], axis=0) for name in names}


def split_params(params: dict, sizes) -> list[dict]:
    """Undo :func:`concatenate_params`: consecutive groups of ``sizes[i]`` networks (views, not copies)."""
    sizes = [int(s) for s in sizes]
    for name, value in params.items():
        if value.shape[0] != sum(sizes):
            raise ValueError(f"split_params: {name!r} stacks {value.shape[0]} networks, sizes add up to {sum(sizes)}")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [{name: value[start:stop] for name, value in params.items()} for start, stop in zip(bounds, bounds[1:])]


def numpy_params(params: dict) -> dict:
    """NumPy copies of the parameters (for a checkpoint or a leaf family's stored arrays)."""
    return {name: np.array(to_numpy(value), copy=True) for name, value in params.items()}


def load_params(network: Layer, arrays: dict, *, backend: str | Backend = "numpy", dtype: str = "float32") -> dict:
    """Checked copies of saved parameter arrays on a backend, ready for ``network.forward``.

    Parameters
    ----------
    network : Layer
        The architecture the arrays belong to.
    arrays : dict of str -> array
        Exactly the names of ``network.param_shapes()``, with those shapes.
    backend, dtype
        As for :meth:`Layer.init` (a Backend brings its own dtype).

    Raises
    ------
    ValueError
        A parameter is missing, unknown, misshapen, or outside its constraint (not finite);
        the message names it and the layer.
    """
    network.check_params(arrays)
    for name, constraint in network.param_constraints().items():
        reason = constraint.violation(to_numpy(arrays[name]))
        if reason is not None:
            raise ValueError(f"load_params: parameter {name!r} is {reason}")
    backend = get_backend(backend, dtype)
    return {name: backend.xp.array(backend.asarray(arrays[name]), copy=True) for name in network.param_shapes()}


class SavedNetwork(NamedTuple):
    """What :func:`load_network` returns."""

    #: The architecture, rebuilt from its config.
    network: Layer
    #: Its parameters on the requested backend.
    params: dict
    #: The optimizer state saved with it (for ``optimizer.load_state``), or None.
    optimizer_state: dict | None
    #: The JSON-ready ``meta`` given to :func:`save_network`.
    meta: dict


def save_network(path, network: Layer, params: dict, *, optimizer=None, meta: dict | None = None):
    """Write a network's architecture, parameters and (optionally) optimizer state to one ``.npz``.

    The file holds plain arrays (``param/<name>``, ``optimizer/<name>``) and a JSON record
    (architecture config, dtype, ``meta``); it is written atomically and read without pickle.

    Parameters
    ----------
    path : str or Path
    network : Layer
    params : dict of str -> array
    optimizer : pcircuits.optim.Optimizer, optional
        Its :meth:`~pcircuits.optim.Optimizer.state` is saved too, so training resumes exactly.
    meta : dict, optional
        JSON-ready data to keep with the network (epoch, settings).
    """
    network.check_params(params)
    arrays = {f"param/{name}": value for name, value in numpy_params(params).items()}
    if optimizer is not None:
        arrays.update({f"optimizer/{name}": value for name, value in optimizer.state().items()})
    record = {"format": FILE_FORMAT, "version": FILE_VERSION, "network": network.config(),
              "has_optimizer": optimizer is not None, "meta": dict(meta or {})}
    try:
        json.dumps(record)
    except TypeError as err:
        raise ValueError(f"save_network: meta must be JSON-ready ({err})") from None
    # Imported here: pcircuits.learning imports the leaf families, which may import this module.
    from ..learning.checkpoint import write_checkpoint
    write_checkpoint(Path(path), arrays, record)


def load_network(path, *, backend: str | Backend = "numpy", dtype: str | None = None) -> SavedNetwork:
    """Read what :func:`save_network` wrote.

    Parameters
    ----------
    path : str or Path
    backend : {"numpy", "cupy"} or Backend
    dtype : {"float32", "float64"}, optional
        Default: the dtype the parameters were saved in.

    Raises
    ------
    CheckpointError
        The file cannot be read or is not a network file of this version.
    ValueError
        The saved parameters do not fit the saved architecture.
    """
    from ..learning.checkpoint import read_checkpoint
    arrays, record = read_checkpoint(path, format_name=FILE_FORMAT, version=FILE_VERSION, who="load_network",
                                     restart="save the network again")
    try:
        network = layer_from_config(record["network"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"load_network: {path} describes no network this version can build ({err})") from None
    saved = {name[len("param/"):]: value for name, value in arrays.items() if name.startswith("param/")}
    if dtype is None:
        dtype = next(iter(saved.values())).dtype.name if saved else "float32"
    params = load_params(network, saved, backend=backend, dtype=dtype)
    optimizer_state = None
    if record.get("has_optimizer"):
        optimizer_state = {name[len("optimizer/"):]: value for name, value in arrays.items()
                           if name.startswith("optimizer/")}
    return SavedNetwork(network, params, optimizer_state, record.get("meta", {}))
