"""The settings of one pass that are not data: its semantics and the training-time dropout.

A :class:`PassContext` is handed to every layer of a forward pass; nothing is set on the
Program and reset afterwards, so two passes with different settings cannot leak into each
other (and a pass interrupted by an exception leaves nothing behind).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PassContext", "SUM", "MAX"]

MODES = ("sum", "max")


@dataclass(frozen=True)
class PassContext:
    """How a forward pass evaluates the circuit.

    Attributes
    ----------
    mode : {"sum", "max"}
        Probabilities (marginal inference) or max-product values.
    product_dropout : float
        Each product unit's value is set to 0 (log -inf) with this probability, for every
        example separately (DGC-SPN 5.2; inside fused product-sum layers too).
    leaf_dropout : float
        Each leaf unit's value is set to 1 (log 0) with this probability (libspn-keras' input
        dropout per component); the backward pass gives the dropped units no gradient.
    spare_root_inputs : bool
        Keep the products that feed a root directly out of product dropout (the masks are drawn
        in full either way, so every other unit sees the same mask).
    rng : RandomSource, optional
        Draws the dropout masks; required when a rate is positive.
    """

    mode: str = "sum"
    product_dropout: float = 0.0
    leaf_dropout: float = 0.0
    spare_root_inputs: bool = False
    rng: object = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"PassContext: mode must be one of {MODES}, got {self.mode!r}")
        for name in ("product_dropout", "leaf_dropout"):
            rate = getattr(self, name)
            if not 0 <= rate < 1:
                raise ValueError(f"PassContext: {name} must be in [0, 1), got {rate!r}")
        if (self.product_dropout or self.leaf_dropout) and self.rng is None:
            raise ValueError("PassContext: dropout needs a random source (rng=backend.rng(seed))")

    @property
    def dropout(self) -> bool:
        """Whether the pass drops units."""
        return bool(self.product_dropout or self.leaf_dropout)


SUM = PassContext("sum")
MAX = PassContext("max")
