"""Leaf families: parameter holders for the units of an input node, with their vectorized math."""
from .base import FAMILIES, LeafFamily, family_from_parameters
from .discrete import Bernoulli, Binomial, Categorical, Indicator
from .gaussian import Gaussian
from .vae import VAE

__all__ = ["LeafFamily", "FAMILIES", "family_from_parameters",
           "Indicator", "Bernoulli", "Categorical", "Binomial", "Gaussian", "VAE"]
