"""Ready-made architectures: the multi-layer perceptron, stacked over many networks."""
from __future__ import annotations

from collections.abc import Sequence

from .activations import Activation, activation as make_activation
from .layers import INITIALIZERS, Sequential, StackedDense

__all__ = ["mlp"]


def mlp(num_networks: int, sizes: Sequence[int], *, activation: str | Activation = "relu",
        output_activation: str | Activation | None = None, init: str = "glorot_uniform", gain: float = 1.0,
        bias: bool = True) -> Sequential:
    """``L`` independent perceptrons of one architecture, as a :class:`Sequential`.

    Parameters
    ----------
    num_networks : int
        ``L``: 1 for a plain network (a critic), the number of leaf units for a leaf layer.
    sizes : sequence of int
        ``[in_features, hidden_1, ..., out_features]``, at least two entries.
    activation : str or Activation
        Between the dense layers (a name of :data:`~pcircuits.nn.ACTIVATIONS` or a layer such as
        ``LeakyReLU(0.2)``).
    output_activation : str, Activation or None
        After the last dense layer; None leaves the output linear.
    init, gain, bias
        Of every :class:`StackedDense` (see there).

    Returns
    -------
    Sequential
        Dense layers at even positions, so parameters are named ``"0.weight"``, ``"0.bias"``,
        ``"2.weight"``, ...

    >>> encoder = mlp(98, [32, 16, 4])          # 98 encoders 32 -> 16 -> 4, ReLU in between
    >>> sorted(encoder.param_shapes().items())
    [('0.bias', (98, 16)), ('0.weight', (98, 32, 16)), ('2.bias', (98, 4)), ('2.weight', (98, 16, 4))]
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs the input and output size at least, got {sizes!r}")
    if init not in INITIALIZERS:
        raise ValueError(f"mlp: init must be one of {INITIALIZERS}, got {init!r}")
    hidden = make_activation(activation)
    layers = []
    for position, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        if position:
            layers.append(hidden)
        layers.append(StackedDense(num_networks, fan_in, fan_out, bias=bias, init=init, gain=gain))
    if output_activation is not None:
        layers.append(make_activation(output_activation))
    return Sequential(layers)
