"""A small, explicit neural-network toolkit: dense layers stacked over many independent networks.

``L`` networks of one architecture run side by side with one batched matmul per layer, which is
what a layer of neural leaves needs (one small VAE per superpixel) and what a single critic or
auto-encoder gets with ``L = 1``. Layers hold no parameter values: :meth:`Layer.init` returns a
flat dict of named arrays (``"0.weight"``, ...), forward returns ``(y, cache)`` and backward the
vector-Jacobian products, written out by hand (no autodiff). The dict trains in place with
:class:`pcircuits.optim.Adam` and saves as plain arrays. NumPy or CuPy, float32 or float64.

>>> import numpy as np
>>> from pcircuits import nn
>>> from pcircuits.optim import Adam
>>> net = nn.mlp(3, [4, 8, 1])                       # 3 networks 4 -> 8 -> 1
>>> params = net.init(seed=0, dtype="float64")
>>> x = np.random.default_rng(0).normal(size=(3, 10, 4))   # each network its own 10 examples
>>> y, cache = net.forward(params, x)
>>> loss, grad_y = nn.mean_squared_error(y, np.zeros_like(y))
>>> grads, _ = net.backward(params, cache, grad_y, input_grad=False)
>>> Adam(params, lr=1e-2).step(grads)                 # updates the arrays in params in place

See ``docs/nn.md``.
"""
from .activations import (ACTIVATIONS, ELU, Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh,
                          activation)
from .layers import INITIALIZERS, LAYERS, Layer, Sequential, StackedDense, layer_from_config
from .losses import binary_cross_entropy_with_logits, mean_squared_error
from .networks import mlp
from .params import (SavedNetwork, concatenate_params, load_network, load_params, numpy_params, save_network,
                     split_params)

__all__ = [
    "Layer", "StackedDense", "Sequential", "LAYERS", "INITIALIZERS", "layer_from_config",
    "Activation", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softplus", "ELU", "Identity", "ACTIVATIONS", "activation",
    "mlp", "mean_squared_error", "binary_cross_entropy_with_logits",
    "concatenate_params", "split_params", "numpy_params", "load_params", "save_network", "load_network",
    "SavedNetwork",
]
