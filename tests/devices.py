"""The device backends the agreement tests run on: the strict CPU stand-in everywhere, CuPy where
a GPU is present (``gpu`` marker)."""
from collections import Counter

import numpy as np
import pytest

import pcircuits as pc
from pcircuits.backend import cupy_available

DEVICE_BACKENDS = [
    pytest.param("strict", id="strict"),
    pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not cupy_available(),
                                                                                reason="needs CuPy and a CUDA GPU")]),
]


def assert_device_agrees(reference, device, x, atol: float):
    """``device`` (a Program on a device backend) gives ``reference``'s (NumPy) log-likelihoods,
    max values, weight and unit flows and MPE completions at ``x``."""
    assert np.allclose(pc.to_numpy(device.log_likelihood(x)), reference.log_likelihood(x), atol=atol)
    assert np.allclose(pc.to_numpy(device.forward(x, mode="max")), reference.forward(x, mode="max"), atol=atol)
    reference.forward(x)
    device.forward(x)
    g_ref, g_device = reference.backward(), device.backward()
    assert np.allclose(pc.to_numpy(g_device.log_weights), g_ref.log_weights, atol=atol)
    assert np.allclose(pc.to_numpy(g_device.unit_flows), g_ref.unit_flows, atol=atol)
    assert np.allclose(pc.to_numpy(device.mpe(x)), reference.mpe(x), equal_nan=True)


def transfers_of_every_pass(device, x) -> Counter:
    """Host transfers counted by the strict stand-in while ``device`` (a Program on the strict
    backend) runs a sum forward, a backward, a max forward and a sampling top-down pass at ``x``
    (host data with missing values, moved to the device first)."""
    from pcircuits.strict_device import TRANSFERS, reset_transfers
    x = device.backend.asarray(x)
    reset_transfers()
    device.forward(x, mode="sum")
    device.backward()
    device.forward(x, mode="max")
    device.top_down(x, mode="sample", seed=0)
    return Counter(TRANSFERS)
