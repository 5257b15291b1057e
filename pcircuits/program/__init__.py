"""The compiled Program and its passes (forward, backward, top-down, relaxed top-down)."""
from .context import PassContext
from .program import Gradients, Program
from .relaxed import RelaxedGradients, RelaxedNoise

__all__ = ["Program", "Gradients", "PassContext", "RelaxedNoise", "RelaxedGradients"]
