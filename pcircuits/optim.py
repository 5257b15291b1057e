"""First-order optimizers over named arrays: Adam and SGD.

One optimizer serves every trainable thing in pcircuits: a Program's log-space weights and
unconstrained leaf parameters (:class:`~pcircuits.learning.GradientLearner`), the stacked
networks of :mod:`pcircuits.nn`, the layers of a DCGMM stack. It knows nothing about what the
arrays mean: it holds a dict of named arrays (NumPy or CuPy), updates them *in place* from a
dict of gradients with the same names, and keeps its own state (moments, step counter) apart
from them, so that a checkpoint saves both as named arrays and a resumed run continues bit for
bit.

>>> params = {"w": np.zeros(3)}
>>> opt = Adam(params, lr=0.1)
>>> opt.step({"w": np.array([1.0, -1.0, 0.0])})
>>> params["w"]            # the same array object, updated in place
array([-0.1,  0.1,  0. ])
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_module, to_numpy

__all__ = ["Optimizer", "Adam", "SGD", "OPTIMIZERS", "make_optimizer"]


class Optimizer:
    """Base class: a learning rate, the parameters by name, and optional update masks.

    Parameters
    ----------
    params : dict of str -> array
        The arrays to optimize; updated in place by :meth:`step` (never replaced).
    lr : float
        Learning rate; may be changed between steps (schedules).
    masks : dict of str -> bool array, optional
        Entries that may change (True); the others are never updated (masked sum weights).
    """

    name = ""

    def __init__(self, params: dict, *, lr: float = 1e-2, masks: dict | None = None):
        if not isinstance(params, dict):
            raise TypeError(f"{type(self).__name__}: params must be a dict of named arrays, got "
                            f"{type(params).__name__}")
        self.params = params
        self.lr = _positive("lr", lr, type(self).__name__)
        self.masks = {k: m for k, m in (masks or {}).items() if m is not None}
        unknown = set(self.masks) - set(params)
        if unknown:
            raise ValueError(f"{type(self).__name__}: masks for unknown parameters {sorted(unknown)}")
        self.t = 0

    def step(self, grads: dict):
        """Update every parameter that has a gradient in ``grads`` (same names and shapes)."""
        unknown = set(grads) - set(self.params)
        if unknown:
            raise ValueError(f"{type(self).__name__}: gradients for unknown parameters {sorted(unknown)}")
        self.t += 1
        self._prepare_step()
        for key, grad in grads.items():
            update = self._update(key, grad)
            mask = self.masks.get(key)
            if mask is not None:
                update = array_module(update).where(mask, update, 0)
            self.params[key] -= update

    def _prepare_step(self):
        """Per-step scalars shared by all parameters (bias corrections)."""

    def _update(self, key: str, grad):
        raise NotImplementedError

    # ---- state for checkpoints ----------------------------------------------------------
    def state(self) -> dict:
        """The optimizer's own state (step counter, moments) as named NumPy arrays."""
        out = {"t": np.array(self.t)}
        for slot, arrays in self._slots().items():
            out.update({f"{slot}/{k}": to_numpy(v).copy() for k, v in arrays.items()})
        return out

    def load_state(self, arrays: dict):
        """Restore what :meth:`state` returned (arrays are moved to the parameters' backend)."""
        if "t" not in arrays:
            raise ValueError(f"{type(self).__name__}: the saved state has no step counter 't'")
        for slot, current in self._slots().items():
            missing = [k for k in self.params if f"{slot}/{k}" not in arrays]
            if missing:
                raise ValueError(f"{type(self).__name__}: the saved state lacks {slot!r} for {missing}")
            for k, param in self.params.items():
                saved = arrays[f"{slot}/{k}"]
                if tuple(saved.shape) != tuple(param.shape):
                    raise ValueError(f"{type(self).__name__}: saved {slot!r} of {k!r} has shape {tuple(saved.shape)}, "
                                     f"the parameter has {tuple(param.shape)}")
                current[k] = array_module(param).array(saved, dtype=param.dtype)
        self.t = int(arrays["t"])

    def _slots(self) -> dict:
        """Per-parameter state arrays by slot name (``{"m": {...}, "v": {...}}``)."""
        return {}


class Adam(Optimizer):
    """Adam (Kingma and Ba 2014), with the bias corrections folded into the step size.

    ``lr * m_hat / (sqrt(v_hat) + eps)`` is computed as ``step * m / (sqrt(v) + eps_hat)``
    with ``step = lr sqrt(1 - b2^t) / (1 - b1^t)`` and ``eps_hat = eps sqrt(1 - b2^t)``:
    two scalars per step instead of two array passes per parameter.

    Parameters
    ----------
    params, lr, masks : see :class:`Optimizer`
    betas : (float, float)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float
        Denominator offset.
    """

    name = "adam"

    def __init__(self, params: dict, *, lr: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-8,
                 masks: dict | None = None):
        super().__init__(params, lr=lr, masks=masks)
        betas = tuple(betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = betas
        self.eps = _positive("eps", eps, "Adam")
        self.m = {k: array_module(v).zeros_like(v) for k, v in params.items()}
        self.v = {k: array_module(v).zeros_like(v) for k, v in params.items()}

    def _prepare_step(self):
        b1, b2 = self.betas
        self._step = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        self._eps_hat = self.eps * math.sqrt(1 - b2 ** self.t)

    def _update(self, key, grad):
        xp = array_module(grad)
        b1, b2 = self.betas
        m, v = self.m[key], self.v[key]
        update = xp.empty_like(grad)
        m *= b1
        xp.multiply(grad, 1 - b1, out=update)
        m += update
        v *= b2
        xp.multiply(grad, grad, out=update)
        update *= 1 - b2
        v += update
        xp.sqrt(v, out=update)
        update += self._eps_hat
        xp.divide(m, update, out=update)
        update *= self._step
        return update

    def _slots(self):
        return {"m": self.m, "v": self.v}


class SGD(Optimizer):
    """Stochastic gradient descent with heavy-ball momentum: ``m <- momentum m + g``, step ``lr m``.

    Parameters
    ----------
    params, lr, masks : see :class:`Optimizer`
    momentum : float
        In [0, 1); 0 is plain SGD.
    """

    name = "sgd"

    def __init__(self, params: dict, *, lr: float = 1e-2, momentum: float = 0.0, masks: dict | None = None):
        super().__init__(params, lr=lr, masks=masks)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.m = {k: array_module(v).zeros_like(v) for k, v in params.items()}

    def _update(self, key, grad):
        xp = array_module(grad)
        m = self.m[key]
        m *= self.momentum
        m += grad
        update = xp.empty_like(grad)
        xp.multiply(m, self.lr, out=update)
        return update

    def _slots(self):
        return {"m": self.m}


#: The optimizers by name.
OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (Adam, SGD)}


def make_optimizer(name: str, params: dict, **options) -> Optimizer:
    """The optimizer registered as ``name`` over ``params`` (options as its class takes them)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, **options)


def _positive(name: str, value, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{owner}: {name} must be a positive number, got {value!r}")
    return float(value)
