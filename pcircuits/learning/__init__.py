"""Learning: EM (soft, hard, unweighted-hard; full-batch or online), Adam/SGD on log-space
parameters with dropout and discriminative objectives, leaf initialization, and ``fit``."""
from .em import EM
from .fit import METHODS, History, fit
from .gradient import GradientLearner
from .init import equidistant_means, kmeans_means, quantile_means, set_gaussian_leaves
from .weights import WeightRows

__all__ = ["fit", "History", "METHODS", "EM", "GradientLearner", "WeightRows", "quantile_means",
           "equidistant_means", "kmeans_means", "set_gaussian_leaves"]
