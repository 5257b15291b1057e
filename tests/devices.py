"""The device backends the agreement tests run on: the strict CPU stand-in everywhere, CuPy where
a GPU is present (``gpu`` marker)."""
import pytest

from pcircuits.backend import cupy_available

DEVICE_BACKENDS = [
    pytest.param("strict", id="strict"),
    pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not cupy_available(),
                                                                                reason="needs CuPy and a CUDA GPU")]),
]
