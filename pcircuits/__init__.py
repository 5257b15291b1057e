"""pcircuits: probabilistic circuits with explicit nodes, validity reports and a tensor program.

Build circuits from nodes (or with :mod:`pcircuits.builders`), check and draw them, and lower
them with ``circuit.compile()`` to a Program that evaluates, learns, completes and samples.

The subpackages :mod:`~pcircuits.builders`, :mod:`~pcircuits.datasets`, :mod:`~pcircuits.learning`
and :mod:`~pcircuits.tasks` are imported on first use (``pc.learning``), so that a process that
only loads and evaluates circuits does not import them.
"""
from .scope import Scope, Variables
from .distributions import VAE, Bernoulli, Binomial, Categorical, Gaussian, Indicator, LeafFamily
from .nodes import InputNode, Node, ProductNode, SumNode, SumWeights, WeightedSum, mixture, product
from .circuit import Circuit
from .validity import InvalidCircuitError, ValidityReport, Violation, check
from .layerize import layerize
from .program import Program
from .backend import to_numpy

__version__ = "0.1.0"

#: Subpackages imported by their first use as attributes of the package.
_SUBPACKAGES = ("builders", "datasets", "learning", "tasks")

__all__ = [
    "Scope", "Variables",
    "LeafFamily", "Indicator", "Bernoulli", "Categorical", "Binomial", "Gaussian", "VAE",
    "Node", "InputNode", "ProductNode", "SumNode", "SumWeights", "WeightedSum", "product", "mixture",
    "Circuit", "check", "ValidityReport", "Violation", "InvalidCircuitError",
    "layerize", "Program", "to_numpy", "builders", "datasets", "learning", "tasks",
]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_SUBPACKAGES))
