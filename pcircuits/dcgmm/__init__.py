"""Deep convolutional Gaussian mixture models (Gepperth, "A new perspective on probabilistic image
modeling", the DCGMM).

A DCGMM is a stack of layers, each with a forward mode (activities) and a backward mode (control
signals for sampling): folding ``F(f, s)`` (half-convolution), max-pooling ``P(f, s)``,
convolutional Gaussian mixtures ``G(K)`` and a classifier ``C(S)``. Every cGMM layer is a
Gaussian mixture over the channel vectors at each position, trained on its own loss; the stack as
a whole is not one circuit, but one cGMM layer at one position is (see :func:`cgmm_circuit`).

>>> import numpy as np
>>> from pcircuits.dcgmm import CGMM, Folding, Stack
>>> stack = Stack([Folding(4, 2), CGMM(9), Folding(3, 1), CGMM(4)], image_shape=(8, 8))
>>> stack.notation
'F(4,2)-G(9)-F(3,1)-G(4)'
>>> x = np.random.default_rng(0).random((32, 8, 8, 1))
>>> history = stack.fit(x, epochs=2, batch_size=16, progress=False)
>>> sorted(k for k in history if k.startswith("loss"))
['loss_L2', 'loss_L4']

See ``docs/dcgmm.md``.
"""
from .circuit import cgmm_circuit
from .layers import CGMM, Annealing, Classifier, Folding, Layer, MaxPooling
from .stack import Stack

__all__ = ["Stack", "Layer", "Folding", "MaxPooling", "CGMM", "Classifier", "Annealing", "cgmm_circuit"]
