"""Shared test configuration: hypothesis profiles, the ``gpu`` and ``data`` markers, data paths.

* Hypothesis profiles: ``default`` (no deadline, 50 examples per property) and ``ci`` (no
  deadline, 20 examples), picked by ``HYPOTHESIS_PROFILE`` or, when unset, ``ci`` if ``CI`` is
  set in the environment.
* Tests marked ``gpu`` are skipped with a reason when CuPy or a CUDA device is missing.
* The ``shared_data`` fixture locates the benchmark data sets in ``../shared/data`` (or in
  ``PCIRCUITS_DATA``) and skips the test with a reason when they are absent; tests that use it
  are marked ``data`` automatically.
* With Numba installed, the compiled kernels are loaded (or, with a cold cache, compiled) once
  before the first test, so that no test's time holds that one-time cost of the process; SciPy's
  special functions, which a host backend imports on their first use (0.1 s), are loaded then too.
* The objects alive once the session has started (pytest's, Hypothesis's, NumPy's, Numba's:
  some 200,000) are frozen out of the garbage collector's reach, so that a full collection in a
  test scans what the tests allocate (milliseconds), not the process's module state (75 ms with
  Numba's kernels loaded, 43 ms without).
"""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("default", deadline=None, max_examples=50,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", deadline=None, max_examples=20, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

#: Where the shared benchmark data sets live (override with PCIRCUITS_DATA).
SHARED_DATA = Path(os.environ.get("PCIRCUITS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_sessionstart(session):
    """Warm up the compiled kernels and SciPy's special functions, then freeze the objects alive
    at that point (see above)."""
    from pcircuits.backend import get_backend
    get_backend("numpy", "float64").gammaln
    _warm_up_compiled_kernels()
    gc.collect()
    gc.freeze()


def _warm_up_compiled_kernels():
    """Run the compiled kernels of a fused, a small dense and a scalar circuit's forward and
    backward passes (without and with the inputs' gradients) in both precisions once. A process's first pass through them imports Numba
    and loads them from its cache (0.6 s), or compiles them (seconds); else that lands in
    whichever test runs first."""
    from pcircuits import jit
    if not jit.available():
        return
    import numpy as np
    import pcircuits as pc
    from pcircuits.builders import figure1_spn
    rng = np.random.default_rng(0)
    fused = pc.builders.poon_domingos(4, 4, delta=2, num_sums=3, leaf="gaussian", seed=0)
    pair = pc.ProductNode([pc.InputNode(0, pc.Bernoulli([0.9, 0.2])), pc.InputNode(1, pc.Bernoulli([0.3, 0.6]))])
    dense = pc.Circuit(pc.SumNode([pc.SumNode([pair], weights=[[0.4, 0.6], [0.5, 0.5]])], weights=[[0.3, 0.7]]))
    for circuit, x in [(fused, rng.normal(size=(512, 16))), (dense, rng.integers(0, 2, (4, 2))),
                       (figure1_spn(), rng.integers(0, 2, (4096, 4)))]:
        for dtype in ("float32", "float64"):
            program = circuit.compile(dtype=dtype)
            program.forward(x)
            program.backward()
            program.backward(inputs=True)
    for dtype in (np.float32, np.float64):
        jit.log(jit.exp(np.zeros(4096, dtype=dtype)))


def _gpu_available() -> bool:
    from pcircuits.backend import cupy_available
    return cupy_available()


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if gpu_items and not _gpu_available():
        skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU (pip install 'pcircuits[gpu]')")
        for item in gpu_items:
            item.add_marker(skip)
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


class SharedData:
    """The shared data folder; ``shared_data("mnist.npz")`` gives a file's path or skips."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, name: str) -> Path:
        file = self.path / name
        if not file.is_file():
            pytest.skip(f"data set {name} is not in {self.path} (see ../shared/data/README)")
        return file

    def __truediv__(self, name: str) -> Path:
        return self(name)


@pytest.fixture
def shared_data() -> SharedData:
    """The shared data folder (``../shared/data``); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent (set PCIRCUITS_DATA to point at it)")
    return SharedData(SHARED_DATA)
