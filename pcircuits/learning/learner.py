"""The learner protocol that :func:`~pcircuits.learning.fit` drives, and the registry of learners.

A learner turns batches into parameter updates in two steps, so that the first can run
anywhere (a worker process holding a partition of the data) and the second once:

``statistics(x, labels, rng=...)``
    What one batch says: EM's expected counts, or a gradient. Returns a dict that always holds
    ``"count"`` (examples), ``"loss_sum"`` (the summed training loss of those examples, before
    the update: the negative log-likelihood for EM) and ``"correct"`` (examples whose largest
    root is their label, or None).
``combine(a, b)``
    Two batches' statistics as one (sums of counts, example-weighted means of gradients), so
    that statistics of partitions reduce in a tree to those of the whole batch.
``update(stats)``
    Change the parameters (EM's M-step, or an optimizer step).
``start_epoch(epoch)`` / ``end_epoch()``
    Schedules (learning-rate decay) and epoch-level updates (full-batch EM's M-step);
    ``updates_per_batch`` says whether ``update`` changes the parameters or only adds up.
``state()`` / ``load_state(arrays)``
    Everything that a resumed run needs besides the Program's parameters, as named arrays.
``settings()``
    The JSON-ready settings that decide the run (a checkpoint records them).

Learners are registered by method name with :func:`register_learner`; :func:`make_learner`
builds one from ``fit``'s options, each learner reading the options it knows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..arguments import Anything, Argument, Boolean, Number

__all__ = ["Learner", "LearnerEntry", "LEARNERS", "PARAMETER_OPTIONS", "register_learner", "make_learner"]

#: Options of every learner that says which parameters change and how far.
PARAMETER_OPTIONS = {
    "freeze_leaves": Argument(Anything("bool or set of str"), "Keep those leaves fixed: True for all, family names\n"
                              "(DGC-SPN's generative setup keeps its Gaussians fixed) or ``\"family.parameter\"``\n"
                              "(its authors' classifier keeps ``\"gaussian.std\"`` at 1)."),
    "learn_leaves": Argument(Boolean(), "False is the same as ``freeze_leaves=True``."),
    "freeze_weights": Argument(Boolean(), "Keep the sum weights fixed."),
    "min_std": Argument(Number(0, closed="right"), "Floor of every parameter declared ``positive(floor=\"min_std\")``\n"
                        "(Gaussian standard deviations), for EM and gradient methods."),
}


class Learner:
    """Base class of the learners: the protocol, with the batch step that composes it."""

    #: The objectives this learner can optimize.
    objectives: tuple[str, ...] = ("nll",)

    @property
    def updates_per_batch(self) -> bool:
        """Whether :meth:`update` changes the parameters. False when it only adds up statistics
        until :meth:`end_epoch` (full-batch EM), so that an epoch's batches may be computed
        together, in any grouping."""
        return True

    def start_epoch(self, epoch: int):
        """Called before the first batch of epoch ``epoch`` (counted from 0)."""

    def statistics(self, x, labels=None, *, rng=None) -> dict:
        raise NotImplementedError

    def combine(self, a: dict, b: dict) -> dict:
        raise NotImplementedError

    def update(self, stats: dict):
        raise NotImplementedError

    def end_epoch(self):
        """Called after the last batch of an epoch."""

    def state(self) -> dict:
        return {}

    def load_state(self, arrays: dict):
        """Restore what :meth:`state` returned."""

    def settings(self) -> dict:
        return {}

    def step(self, x, labels=None, *, rng=None) -> dict:
        """One batch: its statistics, then the update. Returns the statistics."""
        stats = self.statistics(x, labels, rng=rng)
        self.update(stats)
        return stats


@dataclass(frozen=True)
class LearnerEntry:
    """A registered learning method.

    Attributes
    ----------
    make : callable
        ``make(program, options) -> Learner``; ``options`` holds every ``fit`` option by name.
    objectives : tuple of str
        The objectives it optimizes (the first is its default without labels).
    description : str
        One line for listings (the CLI's ``--help``).
    family : {"em", "gradient", "sampling"}
        What kind of update it makes: EM's (whose online rate is a step size in (0, 1]), a
        gradient step (whose rate is a learning rate), or a sample-based objective's.
    """

    make: Callable
    objectives: tuple
    description: str
    family: str


#: The learning methods by name (``fit(method=...)``).
LEARNERS: dict[str, LearnerEntry] = {}


LEARNER_FAMILIES = ("em", "gradient", "sampling")


def register_learner(name: str, make: Callable, *, family: str, objectives=("nll",), description: str = ""):
    """Make ``fit(method=name)`` build its learner with ``make(program, options)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_learner: name must be a non-empty string, got {name!r}")
    if family not in LEARNER_FAMILIES:
        raise ValueError(f"register_learner: family must be one of {LEARNER_FAMILIES}, got {family!r}")
    LEARNERS[name] = LearnerEntry(make, tuple(objectives), description, family)


def make_learner(method: str, program, options: dict) -> Learner:
    """The learner of ``method`` for ``program``, configured from ``fit``'s ``options``."""
    if method not in LEARNERS:
        raise ValueError(f"fit: method must be one of {tuple(LEARNERS)}, got {method!r}")
    return LEARNERS[method].make(program, options)
