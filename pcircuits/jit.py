"""Compiled elementwise kernels: ``exp`` and ``log`` at vector speed on the CPU (optional Numba).

NumPy's float32 ``exp`` and ``log`` cost 1.3-3 ns a value on the project's CPUs and its float64
ones 7-10 ns, ten to fifty times a multiplication; passes whose arithmetic is otherwise a matrix
product (softmax over mixture components, log-sum-exp sums, Bernoulli log-densities) spend most
of their time in them. With Numba installed (``pip install 'pcircuits[fast]'``) this module
compiles branch-free versions (Cody-Waite reduction, a polynomial, the exponent set from bits;
the range limits, ``inf``, ``-inf`` and NaN handled as IEEE does) that the compiler vectorizes
to AVX2, and :class:`pcircuits.backend.Backend` uses them for ``exp`` and ``log`` of host arrays.

These are primitives, not passes: every pass keeps its one definition and calls
``backend.exp`` / ``backend.log``, which fall back to NumPy's (or CuPy's) ufuncs without Numba,
with ``PCIRCUITS_JIT=0``, and for non-contiguous arrays. The scalar functions (``exp32``,
``exp64``, ``log32``, ``log64``) are also callable from other compiled kernels.

Accuracy: within 1.5 ulps of the exact result over the whole range (at most 1.002 measured; tested against
``np.exp``/``np.log`` in float64 references), including subnormal results and arguments.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

__all__ = ["available", "takes", "exp", "log", "kernel"]


_AVAILABLE = os.environ.get("PCIRCUITS_JIT", "1") != "0" and importlib.util.find_spec("numba") is not None


def available() -> bool:
    """True when Numba is installed and ``PCIRCUITS_JIT`` is not ``"0"``."""
    return _AVAILABLE


def takes(backend, *arrays) -> bool:
    """Whether compiled loops run for these arrays on ``backend``: :func:`available`, a host
    backend, NumPy arrays (not a stand-in's), C-contiguous, all float32 or all float64. Passes
    run their NumPy (CuPy) definitions otherwise."""
    if not (_AVAILABLE and backend.on_host):
        return False
    dtype = arrays[0].dtype
    if dtype != np.float32 and dtype != np.float64:
        return False
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


#: Compiler flags: fused multiply-adds only. Reassociation would fold the rounding trick
#: ``(y + 2^52 1.5) - 2^52 1.5`` away, and "no NaN" / "no inf" would drop the IEEE special cases.
#: A kernel with a reduction may add ``"reassoc"`` for itself (``kernel(fastmath=...)``) when it
#: calls no scalar function of this module.
FASTMATH = frozenset({"contract"})


class LazyKernel:
    """A function compiled by ``numba.njit`` on its first call, so that importing pcircuits does not
    import Numba (0.2 s) and a process that never calls a kernel never compiles one. Kernels may
    call each other and the scalar functions of this module (``jit.exp32``, ...)."""

    def __init__(self, function, settings: dict):
        self.function = function
        self.settings = settings
        self._dispatcher = None
        functools.update_wrapper(self, function)

    @property
    def dispatcher(self):
        if self._dispatcher is None:
            _compiled()
            import numba
            self._dispatcher = numba.njit(**self.settings)(self.function)
        return self._dispatcher

    def __call__(self, *args):
        return self.dispatcher(*args)


def kernel(function=None, **options):
    """Declare a compiled kernel: ``numba.njit`` with this module's flags (``nogil`` so host threads
    run kernels at once; cached on disk so a new process does not compile again), compiled on first
    call. Call it only when :func:`available`; keep a NumPy version beside it for when not."""
    settings = dict(fastmath=set(FASTMATH), nogil=True, cache=True, error_model="numpy", boundscheck=False)
    settings.update(options)
    if function is None:
        return lambda f: LazyKernel(f, settings)
    return LazyKernel(function, settings)


@functools.lru_cache(maxsize=None)
def _compiled():
    """The module of compiled kernels; importing it imports Numba and lets Numba type lazy kernels."""
    import numba
    from numba.extending import typeof_impl

    @typeof_impl.register(LazyKernel)
    def _typeof_lazy_kernel(value, context):
        return numba.typeof(value.dispatcher)

    from . import _jit_kernels
    return _jit_kernels


def __getattr__(name: str):
    if name in ("exp32", "exp64", "log32", "log64", "exp_of", "log_of"):
        return getattr(_compiled(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The compiled loops by (function name, dtype), looked up once (the lazy kernel's call costs more
#: than a small array's loop).
_DISPATCHERS = {}


def _apply(name: str, ufunc, a, out):
    dtype = getattr(a, "dtype", None)
    if (not _AVAILABLE or dtype not in (np.float32, np.float64) or type(a) is not np.ndarray or not a.flags.c_contiguous
            or (out is not None and (type(out) is not np.ndarray or out.dtype != a.dtype
                                     or out.shape != a.shape or not out.flags.c_contiguous))):
        return ufunc(a) if out is None else ufunc(a, out=out)
    if out is None:
        out = np.empty_like(a)
    loop = _DISPATCHERS.get((name, dtype))
    if loop is None:
        loop = _DISPATCHERS[name, dtype] = _compiled().LOOPS[name, dtype].dispatcher
    loop(a.reshape(-1), out.reshape(-1))  # flat views: one compiled signature per dtype, whatever the shape
    return out


def exp(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.exp(a, out=out)`` through the compiled kernel where it applies (a C-contiguous float32
    or float64 NumPy array, ``out`` the same or None, Numba available), else ``np.exp``."""
    return _apply("exp", np.exp, a, out)


def log(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.log(a, out=out)`` through the compiled kernel where it applies, else ``np.log``."""
    return _apply("log", np.log, a, out)
