"""Array-module selection: the same pass code runs on NumPy and on CuPy.

A :class:`Backend` bundles the array module (``numpy`` or ``cupy``), the special functions
the leaf math needs, a random generator, conversions and the scatter operations whose NumPy and
CuPy spellings differ. Everything in ``program/`` and ``distributions/`` gets its arrays through
one of these objects and never imports CuPy itself. ``"strict"`` is NumPy behind CuPy's rules
(:mod:`pcircuits.strict_device`), for testing the GPU path on machines without a GPU.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from . import jit
from .errors import OptionalDependencyError

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["Backend", "get_backend", "to_numpy", "array_module", "cupy_available", "host_threads"]

#: Elements of one block of a blocked host pass: 32K float32 values (128 KB) per array, so the
#: few arrays a block's chain of operations touches stay in the core's cache.
BLOCK_ELEMENTS = 1 << 15

#: Elements of one block of a *wide* blocked host pass (``blocks(..., wide=True)``): 256K values
#: (1 MB of float32). The dense circuits' passes (Gaussian leaf layers, product layers, fused
#: sum layers) run one array's chain of operations per block, or a node's products and matrix
#: products: wider blocks fit the shared cache and take eight times fewer Python calls per value,
#: which is what lets two host threads share the work (on 2 cores the RAT-SPN leaf layer runs in
#: 0.45x the time of 128 KB blocks).
WIDE_BLOCK_ELEMENTS = 1 << 18

#: Smallest array (bytes) whose ``Backend.exp`` / ``Backend.log`` runs the compiled kernel: a
#: kernel call costs about 1 us more than a ufunc call, which the kernel's speed repays from about
#: 2K float32 or 1K float64 values on.
KERNEL_MIN_BYTES = 8192

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def host_threads() -> int:
    """Threads that blocked host passes spread their blocks over: ``PCIRCUITS_NUM_THREADS``, else
    ``OMP_NUM_THREADS``, else the CPUs this process may run on."""
    for name in ("PCIRCUITS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != threads:
            from concurrent.futures import ThreadPoolExecutor  # here: with logging, 6 ms for every process
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pcircuits-blocks")
        return _pool


class Backend:
    """One array module with its helpers.

    Parameters
    ----------
    name : {"numpy", "cupy", "strict"}
        ``"strict"`` runs on the CPU with CuPy's rules enforced (tests only).
    dtype : {"float32", "float64"}
        The floating dtype of values, flows and parameters.
    """

    def __init__(self, name: str = "numpy", dtype: str = "float32"):
        if name not in ("numpy", "cupy", "strict"):
            raise ValueError(f"backend must be 'numpy', 'cupy' or 'strict', got {name!r}")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.name = name
        self.dtype = np.dtype(dtype)
        if name == "numpy":
            self.xp = np
        elif name == "strict":
            from . import strict_device
            self.xp = strict_device.strict_module
        else:
            try:
                import cupy
                import cupyx.scipy.special as cupy_special
            except ImportError as err:
                raise OptionalDependencyError("backend='cupy' needs CuPy: pip install 'pcircuits[gpu]'") from err
            try:
                cupy.cuda.runtime.getDeviceCount()
            except Exception as err:
                raise RuntimeError(f"backend='cupy' needs a CUDA GPU: {err}") from err
            self.xp = cupy
            self.gammaln = cupy_special.gammaln
            self.logsumexp = cupy_special.logsumexp

    def __getattr__(self, name: str):
        """``gammaln`` and ``logsumexp`` of a host backend: SciPy's, imported on first use (importing
        scipy.special costs a process 0.1-0.2 s, which circuits without binomial leaves never need)."""
        if name not in ("gammaln", "logsumexp") or self.__dict__.get("name") not in ("numpy", "strict"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        import scipy.special

        self.gammaln = scipy.special.gammaln
        if self.name == "numpy":
            self.logsumexp = scipy.special.logsumexp
        else:
            from . import strict_device
            self.logsumexp = lambda *args, **kwargs: strict_device.call_on_host(scipy.special.logsumexp, *args,
                                                                                **kwargs)
        return getattr(self, name)

    @property
    def on_host(self) -> bool:
        """True when arrays live in host memory as NumPy arrays (NumPy-only routines allowed)."""
        return self.name == "numpy"

    def maybe_any(self, mask) -> bool:
        """False only when ``mask`` is certainly all False: asks the array on the host; on a device,
        where asking costs a synchronization, answers True so the caller takes its branch-free path."""
        return bool(mask.any()) if self.on_host else True

    def asarray(self, a, dtype=None):
        """Move/convert ``a`` (NumPy, CuPy or any DLPack producer) onto this backend."""
        dtype = self.dtype if dtype is None else dtype
        if self.name == "cupy" and not isinstance(a, (np.ndarray, list, tuple, float, int)) \
                and hasattr(a, "__dlpack__") and not isinstance(a, self.xp.ndarray):
            a = self.xp.from_dlpack(a)
        return self.xp.asarray(a, dtype=dtype)

    def index(self, a):
        """An int64 index array on this backend."""
        return self.xp.asarray(a, dtype=np.int64)

    def matmul_add(self, a, b, out) -> None:
        """``out += a @ b`` for matrices ``a`` (m, k), ``b`` (k, n) and ``out`` (m, n).

        On the host, for a C-contiguous ``out``, one BLAS ``gemm`` with ``beta = 1`` accumulates
        into ``out`` directly (no temporary for the product, no second pass to add it); ``out.T``
        is the Fortran-ordered result ``b.T @ a.T`` that BLAS updates in place, and ``a``, ``b``
        in either order are read in place.
        """
        if self.on_host and out.flags.c_contiguous and out.dtype in (np.float32, np.float64) and out.size:
            from scipy.linalg import blas  # on first use: importing scipy.linalg costs every process 30 ms
            gemm = blas.get_blas_funcs("gemm", dtype=out.dtype)
            left, trans_left = (b, 1) if b.flags.f_contiguous and not b.flags.c_contiguous else (b.T, 0)
            right, trans_right = (a, 1) if a.flags.f_contiguous and not a.flags.c_contiguous else (a.T, 0)
            gemm(1.0, left, right, beta=1.0, c=out.T, trans_a=trans_left, trans_b=trans_right, overwrite_c=True)
        else:
            out += a @ b

    def exp(self, a, out=None):
        """Elementwise ``exp``: on the host the compiled kernel of :mod:`pcircuits.jit` (about twice
        NumPy's speed, within 1.5 ulps) where Numba is installed and ``a`` has at least
        :data:`KERNEL_MIN_BYTES`, else the array module's ufunc."""
        if self.on_host and getattr(a, "nbytes", 0) >= KERNEL_MIN_BYTES:
            return jit.exp(a, out)
        return self.xp.exp(a, out=out)

    def log(self, a, out=None):
        """Elementwise ``log``, like :meth:`exp`."""
        if self.on_host and getattr(a, "nbytes", 0) >= KERNEL_MIN_BYTES:
            return jit.log(a, out)
        return self.xp.log(a, out=out)

    def rng(self, seed) -> "RandomSource":
        return RandomSource(self, seed)

    def scatter_add(self, dst, index, values) -> None:
        """Unbuffered ``dst[index] += values`` along the first axis; repeated indices accumulate."""
        if self.name == "cupy":
            import cupyx
            cupyx.scatter_add(dst, index, values)
        else:
            self.xp.add.at(dst, index, values)

    def scatter_max(self, dst, index, values) -> None:
        """Unbuffered ``dst[index] = maximum(dst[index], values)``; repeated indices take the largest."""
        if self.name == "cupy":
            import cupyx
            cupyx.scatter_max(dst, index, values)
        else:
            self.xp.maximum.at(dst, index, values)

    def take_rows(self, a, rows, out) -> None:
        """``out[...] = a[rows]`` along the first axis (``rows`` of any shape), for ``rows`` known to be
        in range.

        NumPy's ``take`` with ``out`` copies through a temporary buffer unless it is told how to
        treat out-of-range indices (then it writes straight into ``out``, half the memory
        traffic); CuPy's ``take`` writes into ``out`` directly and has no such option.
        """
        if self.on_host:
            a.take(rows, axis=0, out=out, mode="clip")
        else:
            self.xp.take(a, rows, axis=0, out=out)

    def blocks(self, num_rows: int, row_size: int, work, *, wide: bool = False) -> None:
        """Run ``work(lo, hi)`` over row blocks ``[lo, hi)`` of ``num_rows`` rows of ``row_size`` elements.

        On the host the rows are cut into cache-sized blocks (:data:`BLOCK_ELEMENTS`, or
        :data:`WIDE_BLOCK_ELEMENTS` with ``wide``) so that a chain of elementwise operations on
        one block reads and writes main memory once, and the blocks are shared among
        :func:`host_threads` threads (NumPy's loops release the GIL); ``work`` must write
        disjoint rows. On a device it is one call over all rows (the device runs each operation
        in parallel already).
        """
        if num_rows == 0:
            return
        step = max(1, (WIDE_BLOCK_ELEMENTS if wide else BLOCK_ELEMENTS) // max(1, row_size))
        if not self.on_host or num_rows <= step:
            work(0, num_rows)
            return
        starts = list(range(0, num_rows, step))
        threads = min(host_threads(), len(starts))

        def run(chunk):
            for lo in chunk:
                work(lo, min(lo + step, num_rows))
        if threads == 1:
            run(starts)
            return
        share = -(-len(starts) // threads)
        list(_thread_pool(threads).map(run, [starts[i:i + share] for i in range(0, len(starts), share)]))

    def synchronize(self):
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, {self.dtype.name!r})"


class RandomSource:
    """A seeded random generator on a backend (NumPy Generator or CuPy's)."""

    def __init__(self, backend: Backend, seed):
        self.backend = backend
        if backend.name == "numpy":
            self._gen = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        elif backend.name == "strict":
            from .strict_device import StrictGenerator
            self._gen = StrictGenerator(seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed))
        else:
            import cupy
            if isinstance(seed, np.random.Generator):
                seed = int(seed.integers(2**62))
            self._gen = cupy.random.default_rng(seed)

    def uniform64(self, shape):
        """Float64 uniform draws in [0, 1): the numbers :meth:`uniform` and :meth:`gumbel` transform."""
        return self._gen.random(shape, dtype=np.float64)

    def normal64(self, shape):
        """Float64 standard normal draws: the numbers :meth:`normal` converts."""
        return self._gen.standard_normal(shape, dtype=np.float64)

    def uniform(self, shape):
        return self.uniform64(shape).astype(self.backend.dtype, copy=False)

    def bernoulli_mask(self, shape, rate: float):
        """Booleans that are True with probability ``rate`` (dropout masks; single precision
        draws, which is all a rate needs and twice as fast)."""
        return self._gen.random(shape, dtype=np.float32) < rate

    def normal(self, shape):
        return self.normal64(shape).astype(self.backend.dtype, copy=False)

    def gumbel(self, shape):
        return self.gumbel_of(self.uniform64(shape))

    def gumbel_of(self, u):
        """Standard Gumbel noise in the backend's precision of float64 uniform draws ``u``."""
        xp = self.backend.xp
        return (-xp.log(-xp.log(xp.clip(u, 1e-300, 1.0)))).astype(self.backend.dtype, copy=False)

    def gumbel_fast(self, shape, out=None):
        """Standard Gumbel noise in the backend's precision: ``-log(e)`` of standard exponential
        draws ``e`` (one logarithm instead of :meth:`gumbel`'s two, in place; another stream).
        ``out``: an array of that shape and dtype to fill (on NumPy; elsewhere a new array)."""
        xp = self.backend.xp
        dtype = self.backend.dtype
        if out is not None and self.backend.on_host:
            e = self._gen.standard_exponential(dtype=dtype, out=out)
        else:
            e = self._gen.standard_exponential(shape, dtype=dtype)
        xp.maximum(e, float(np.finfo(dtype).tiny), out=e)
        xp.log(e, out=e)
        xp.negative(e, out=e)
        return e

    def binomial(self, n, p):
        xp = self.backend.xp
        n = xp.asarray(n).astype(np.int64)
        p = xp.clip(xp.asarray(p, dtype=np.float64), 0.0, 1.0)
        return self.binomial_counts(n, p).astype(self.backend.dtype)

    def binomial_counts(self, n, p):
        """Binomial draws as integers for int64 trials ``n`` and float64 probabilities ``p`` in
        [0, 1], taken as they are (what :meth:`binomial` draws after converting its arguments)."""
        return self._gen.binomial(n, p)


_BACKENDS: dict[tuple[str, str], Backend] = {}


def get_backend(name: str | Backend = "numpy", dtype: str = "float32") -> Backend:
    """The (cached) backend for an array-module name and dtype."""
    if isinstance(name, Backend):
        return name
    key = (name, np.dtype(dtype).name)
    if key not in _BACKENDS:
        _BACKENDS[key] = Backend(name, dtype)
    return _BACKENDS[key]


def to_numpy(a) -> np.ndarray:
    """A NumPy copy of any backend array (no-op for NumPy arrays)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)


def array_module(a):
    """The array module of ``a``: ``numpy`` for NumPy arrays and scalars, ``cupy`` for CuPy arrays,
    the strict stand-in's module for its arrays."""
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    module = type(a).__module__
    if module.split(".")[0] == "cupy":
        import cupy
        return cupy
    if module == "pcircuits.strict_device":
        from .strict_device import strict_module
        return strict_module
    return np


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
