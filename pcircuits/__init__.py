"""pcircuits: probabilistic circuits with explicit nodes, validity reports and a tensor program.

Build circuits from nodes (or with :mod:`pcircuits.builders`), check and draw them, and lower
them with ``circuit.compile()`` to a Program that evaluates, learns, completes and samples.
"""
from .scope import Scope, Variables
from .distributions import VAE, Bernoulli, Binomial, Categorical, Gaussian, Indicator, LeafFamily
from .nodes import InputNode, Node, ProductNode, SumNode, SumWeights, WeightedSum, mixture, product
from .circuit import Circuit
from .validity import InvalidCircuitError, ValidityReport, Violation, check
from .layerize import layerize
from .program import Program
from .backend import to_numpy
from . import builders, datasets, learning, tasks

__version__ = "0.1.0"

__all__ = [
    "Scope", "Variables",
    "LeafFamily", "Indicator", "Bernoulli", "Categorical", "Binomial", "Gaussian", "VAE",
    "Node", "InputNode", "ProductNode", "SumNode", "SumWeights", "WeightedSum", "product", "mixture",
    "Circuit", "check", "ValidityReport", "Violation", "InvalidCircuitError",
    "layerize", "Program", "to_numpy", "builders", "datasets", "learning", "tasks",
]
