"""The DCGMM instances A-G of the paper's appendix (Gepperth, Table V) as :class:`~pcircuits.dcgmm.Stack` presets."""
from __future__ import annotations

from ..dcgmm import CGMM, Classifier, Folding, MaxPooling, Stack

__all__ = ["dcgmm", "DCGMM_INSTANCES"]

#: Table V: each instance as its layers, bottom to top ("*" marks per-position parameters).
DCGMM_INSTANCES = {
    "A": "F(28,1)-G(49)",
    "B": "F(8,2)-G(49)-F(11,1)-G(49)",
    "C": "F(8,1)-G(49)-P(2,2)-G(49)*",
    "D": "F(3,1)-G(25)-P(2,2)-F(4,1)-G(25)-P(2,2)-F(5,5)-G(49)",
    "E": "F(3,1)-G(25)-F(4,2)-G(25)-F(12,1)-G(49)",
    "F": "F(3,1)-G(25)-F(4,2)-G(25)-F(4,2)-G(25)-F(5,1)-G(49)",
    "G": "F(3,1)-G(25)-P(2,2)+pad-F(3,1)-G(25)-P(2,2)+pad-F(3,1)-G(25)-P(2,2)+pad-F(2,1)-G(49)",
}


def _layers(configuration: str):
    layers = []
    for token in configuration.split("-"):
        kind, rest = token[0], token[2:]
        args, _, suffix = rest.partition(")")
        numbers = [int(v) for v in args.split(",")]
        if kind == "F":
            layers.append(Folding(*numbers))
        elif kind == "P":
            layers.append(MaxPooling(*numbers, pad=suffix == "+pad"))
        else:
            layers.append(CGMM(numbers[0], shared=suffix != "*"))
    return layers


def dcgmm(instance: str = "E", image_shape=(28, 28), channels: int = 1, *, num_classes: int | None = None,
          classifier_inputs: int = 2, shared: bool | None = None, backend="numpy", dtype: str = "float32",
          seed: int = 0) -> Stack:
    """One of the seven DCGMM instances of the paper's Table V.

    Parameters
    ----------
    instance : {"A", "B", "C", "D", "E", "F", "G"}
    image_shape : (height, width)
        The presets' folding sizes fit 28x28 images (MNIST, Fashion-MNIST).
    channels : int
        Image channels (1 grey, 3 colour).
    num_classes : int, optional
        Add a classifier ``C(num_classes)`` on top (Section V-I).
    classifier_inputs : int
        How many of the highest cGMM layers feed the classifier (the paper: 2).
    shared : bool, optional
        Force parameter sharing on (True) or off (False) in every cGMM layer; default as in
        Table V, whose parameter counts share all layers except the top layer of instance C.
    backend, dtype, seed
        Passed to :class:`~pcircuits.dcgmm.Stack`.

    Returns
    -------
    Stack

    Notes
    -----
    Table V counts the centroid entries (``Stack.num_means()``). Instance G reaches its count
    (16375) only when its pooling layers round up (``P(2,2)`` maps 11x11 to 6x6), as the
    paper's code does; ``MaxPooling(pad=True)`` does that.
    """
    key = str(instance).upper()
    if key not in DCGMM_INSTANCES:
        raise ValueError(f"dcgmm: instance must be one of {sorted(DCGMM_INSTANCES)}, got {instance!r}")
    layers = _layers(DCGMM_INSTANCES[key])
    if shared is not None:
        for layer in layers:
            if isinstance(layer, CGMM):
                layer.shared = bool(shared)
    if num_classes is not None:
        cgmm_count = sum(isinstance(layer, CGMM) for layer in layers)
        layers.append(Classifier(num_classes, num_inputs=min(classifier_inputs, cgmm_count)))
    height, width = (int(v) for v in image_shape)
    return Stack(layers, (height, width, int(channels)), backend=backend, dtype=dtype, seed=seed)
