"""Learning: EM (soft, hard, hard with unweighted sum inputs; full-batch or online), Adam/SGD on
log-space parameters with dropout and generative or discriminative objectives, sample-based
objectives through differentiable sampling (MMD, adversarial, probabilistic auto-encoding), leaf
initialization, and ``fit`` with progress, history and resumable checkpoints.

Every method is a learner registered by name (:data:`LEARNERS`) that follows one protocol
(:class:`Learner`: statistics of a batch, combine, update, epoch hooks, state); ``fit`` looks it
up and drives it. See ``docs/learning.md``.
"""
from .learner import LEARNERS, Learner, make_learner, register_learner
from .em import EM
from .gradient import SGD, Adam, GradientLearner
from .sampling import (ConstantTemperature, ExponentialTemperature, LearnedTemperature, LinearTemperature,
                       SampleLearner, Temperature, make_temperature)
from .fit import METHODS, History, TrainingRun, evaluate, fit
from .init import (equidistant_gaussian_leaves, equidistant_means, init_gaussian_leaves, kmeans_means,
                   quantile_gaussian_leaves, quantile_means, quantile_stds, set_gaussian_leaves)
from .objectives import (AdversarialCritic, LearnedKernelMMD, check_labels, cross_entropy, median_bandwidth, mmd,
                         negative_log_likelihood, reconstruction_error)
from .weights import WeightRows, additive_smoothing

__all__ = ["fit", "evaluate", "History", "TrainingRun", "METHODS", "LEARNERS", "Learner", "register_learner",
           "make_learner", "EM", "GradientLearner", "Adam", "SGD", "SampleLearner", "Temperature",
           "ConstantTemperature", "ExponentialTemperature", "LinearTemperature", "LearnedTemperature",
           "make_temperature", "mmd", "median_bandwidth", "LearnedKernelMMD", "AdversarialCritic", "reconstruction_error", "WeightRows", "additive_smoothing",
           "negative_log_likelihood", "cross_entropy", "check_labels", "quantile_means", "quantile_stds",
           "equidistant_means", "kmeans_means", "set_gaussian_leaves", "init_gaussian_leaves",
           "quantile_gaussian_leaves", "equidistant_gaussian_leaves"]
