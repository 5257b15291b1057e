"""The compiled Program and its passes (forward, backward, top-down)."""
from .context import PassContext
from .program import Gradients, Program

__all__ = ["Program", "Gradients", "PassContext"]
