"""Sample-based learning (Lang et al. 2022): train a circuit for the quality of its samples.

Every step draws relaxed samples (:meth:`Program.sample_relaxed`), scores them with a sample
objective of :mod:`pcircuits.learning.objectives`, and carries the objective's gradient with
respect to the samples back into the sum weights, the leaf parameters and (when learned) the
temperature with :meth:`Program.backward_relaxed`; Adam (or SGD) updates them in the same
log-space forms as :class:`~pcircuits.learning.GradientLearner`. Optionally the mean negative
log-likelihood is added with weight ``ll_weight``.

Methods (``fit(method=...)``):

``"mmd"``
    Unbiased ``MMD^2`` between ``num_samples`` relaxed samples and the batch (Gaussian kernels
    with ``bandwidths``, default the median heuristic); with ``learned_kernel`` (hidden sizes)
    the kernels act on the features of a network that ``critic_steps`` steps per circuit step
    train up the MMD (:class:`~pcircuits.learning.objectives.LearnedKernelMMD`).
``"adversarial"``
    ``critic_steps`` steps of a critic network (:class:`~pcircuits.learning.objectives.AdversarialCritic`)
    on the batch against the samples, then the circuit's step on ``-log D(samples)``.
``"pae"``
    Probabilistic auto-encoding over a circuit on ``(x, z)``, ``z`` the ``latent`` variables:
    encode ``z* = MPE of z given x``, reconstruct by relaxed sampling of ``x`` given ``z*``,
    loss = reconstruction error (binary cross-entropy summed over the variables, or squared
    error).

Temperature schedules (``temperature=``; epoch ``e`` from 0 of ``E``):

=============================  =========================================================
``0.5`` (a number)             constant
``"exponential"``              ``max(0.5, exp(-e / E))`` (Jang et al. 2017's annealing, as Lang
                               et al. use it: from 1 down to 0.5)
``"linear"``                   from 1 at the first epoch to 0.1 at the last, linearly
``"learned"``                  ``log tau`` trained jointly by its own Adam (start 1, floor 0.01)
a :class:`Temperature`         e.g. ``ExponentialTemperature(start=2, end=0.2, rate=0.1)``
=============================  =========================================================
"""
from __future__ import annotations

import math

import numpy as np

from ..arguments import Anything, Argument, Boolean, Integer, Number, Options
from ..backend import to_numpy
from ..optim import make_optimizer
from ..program.relaxed import RelaxedNoise
from .em import prepared
from .gradient import GradientLearner
from .learner import register_learner
from .objectives import SAMPLE_OBJECTIVES, AdversarialCritic, LearnedKernelMMD, mmd, reconstruction_error

__all__ = ["SampleLearner", "Temperature", "ConstantTemperature", "ExponentialTemperature", "LinearTemperature",
           "LearnedTemperature", "make_temperature", "SAMPLING_OPTIONS", "TEMPERATURE_SCHEDULES"]

TEMPERATURE_SCHEDULES = ("exponential", "linear", "learned")


class Temperature:
    """A temperature schedule: ``value(epoch)`` for epochs counted from 0."""

    learned = False

    def value(self, epoch: int) -> float:
        raise NotImplementedError

    def settings(self) -> dict:
        return {"schedule": type(self).__name__, **vars(self)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class ConstantTemperature(Temperature):
    def __init__(self, tau: float):
        self.tau = _positive_temperature(tau)

    def value(self, epoch):
        return self.tau


class ExponentialTemperature(Temperature):
    """``max(end, start * exp(-rate * epoch))``."""

    def __init__(self, start: float = 1.0, end: float = 0.5, rate: float = 0.1):
        self.start, self.end = _positive_temperature(start), _positive_temperature(end)
        self.rate = float(rate)

    def value(self, epoch):
        return max(self.end, self.start * math.exp(-self.rate * epoch))


class LinearTemperature(Temperature):
    """From ``start`` at epoch 0 to ``end`` at epoch ``epochs - 1``, linearly (then ``end``)."""

    def __init__(self, start: float = 1.0, end: float = 0.1, epochs: int = 10):
        self.start, self.end = _positive_temperature(start), _positive_temperature(end)
        self.epochs = int(epochs)

    def value(self, epoch):
        fraction = min(1.0, epoch / max(self.epochs - 1, 1))
        return self.start + (self.end - self.start) * fraction


class LearnedTemperature(Temperature):
    """``log tau`` is a parameter trained with the circuit (by its own Adam), kept >= ``floor``."""

    learned = True

    def __init__(self, start: float = 1.0, floor: float = 1e-2):
        self.start, self.floor = _positive_temperature(start), _positive_temperature(floor)

    def value(self, epoch):
        return self.start


def _positive_temperature(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating, np.integer)) or not 0 < tau < np.inf:
        raise ValueError(f"temperature must be a positive finite number, got {tau!r}")
    return float(tau)


def make_temperature(spec, epochs: int = 10) -> Temperature:
    """The schedule of a ``temperature`` option: a number, a schedule name or a :class:`Temperature`."""
    if isinstance(spec, Temperature):
        return spec
    if spec == "exponential":
        return ExponentialTemperature(1.0, 0.5, 1.0 / max(int(epochs), 1))
    if spec == "linear":
        return LinearTemperature(1.0, 0.1, epochs)
    if spec == "learned":
        return LearnedTemperature()
    if isinstance(spec, str):
        raise ValueError(f"temperature must be a positive number, one of {TEMPERATURE_SCHEDULES} or a Temperature, "
                         f"got {spec!r}")
    return ConstantTemperature(spec)


class _TemperatureRule(Anything):
    type_name = "float, str or Temperature"

    def accepts(self, value) -> bool:
        try:
            make_temperature(value)
        except (ValueError, TypeError):
            return False
        return True

    def describe(self) -> str:
        return f"a positive number, one of {TEMPERATURE_SCHEDULES} or a Temperature"


#: The options of the sample-based methods (``fit(method="mmd" | "adversarial" | "pae", ...)``).
SAMPLING_OPTIONS = {
    "temperature": Argument(_TemperatureRule(), "Gumbel-softmax temperature: a constant, ``\"exponential\"``,\n"
                            "``\"linear\"``, ``\"learned\"`` or a ``Temperature`` schedule."),
    "hard": Argument(Boolean(), "Straight-through samples (one-hot choices forward, soft gradients)."),
    "num_samples": Argument(Integer(2), "Relaxed samples per step (default: the batch size).", optional=True),
    "ll_weight": Argument(Number(0), "Weight of the mean negative log-likelihood added to the sample objective."),
    "bandwidths": Argument(Anything("sequence of float"), "MMD kernel widths (default: the median heuristic).",
                           optional=True),
    "learned_kernel": Argument(Anything("sequence of int"), "MMD: hidden sizes of a feature network whose features\n"
                               "the kernels compare, trained up the MMD (MMD-GAN); None: the data.",
                               optional=True),
    "critic_hidden": Argument(Anything("sequence of int"), "Hidden sizes of the adversarial critic."),
    "critic_lr": Argument(Number(0, closed="right"), "The critic's (or learned kernel's) Adam learning rate."),
    "critic_steps": Argument(Integer(1), "Critic (or learned kernel) steps per circuit step."),
    "latent": Argument(Anything("sequence of int"), "PAE: the latent variables z of the circuit over (x, z).",
                       optional=True),
    "reconstruction": Argument(Options("bce", "mse"), "PAE: binary cross-entropy summed over variables, or\n"
                               "squared error."),
}


class SampleLearner(GradientLearner):
    """Adam (or SGD) on a sample objective through the relaxed top-down pass.

    Parameters
    ----------
    program : Program
    objective : {"mmd", "adversarial", "pae"}
    temperature : float, str or Temperature
        See the module docstring.
    epochs : int
        The run's length (for the annealed schedules).
    hard : bool
        Straight-through samples.
    num_samples : int, optional
        Relaxed samples per step (mmd, adversarial); default the batch size.
    ll_weight : float
        Weight of the mean negative log-likelihood added to the loss.
    bandwidths : sequence of float, optional
        MMD kernel widths; default the median heuristic.
    learned_kernel : sequence of int, optional
        MMD: hidden sizes of the learned kernel's feature network (:class:`LearnedKernelMMD`).
    critic_hidden, critic_lr, critic_steps, critic_seed
        The adversarial critic (see :class:`AdversarialCritic`); ``critic_lr``,
        ``critic_steps`` and ``critic_seed`` also set the learned kernel's training.
    latent : sequence of int
        PAE: the latent variables.
    reconstruction : {"bce", "mse"}
        PAE: the reconstruction error.
    **options
        Of :class:`GradientLearner` (``lr``, ``optimizer``, ``freeze_leaves``, ``min_std``, ...).
    """

    objectives = SAMPLE_OBJECTIVES

    def __init__(self, program, *, objective: str = "mmd", temperature=1.0, epochs: int = 10, hard: bool = False,
                 num_samples: int | None = None, ll_weight: float = 0.0, bandwidths=None, learned_kernel=None,
                 critic_hidden=(64, 64),
                 critic_lr: float = 2e-4, critic_steps: int = 1, critic_seed: int = 0, latent=None,
                 reconstruction: str = "bce", **options):
        if objective not in SAMPLE_OBJECTIVES:
            raise ValueError(f"SampleLearner: objective must be one of {SAMPLE_OBJECTIVES}, got {objective!r}")
        super().__init__(program, objective="nll", **options)
        self.sample_objective = objective
        self.schedule = make_temperature(temperature, epochs)
        self.tau = self.schedule.value(0)
        self.hard, self.num_samples, self.ll_weight = bool(hard), num_samples, float(ll_weight)
        self.bandwidths = None if bandwidths is None else tuple(float(b) for b in np.atleast_1d(bandwidths))
        self.reconstruction = reconstruction
        be = program.backend
        self.log_temperature = None
        if self.schedule.learned:
            self.log_temperature = {"log_temperature": be.asarray([math.log(self.tau)])}
            self.temperature_optimizer = make_optimizer("adam", self.log_temperature, lr=self.lr)
        self.critic = None
        if objective == "adversarial":
            self.critic = AdversarialCritic(program.num_variables, hidden=tuple(critic_hidden), lr=critic_lr,
                                            backend=be, seed=critic_seed)
        self.kernel = None
        if objective == "mmd" and learned_kernel is not None:
            self.kernel = LearnedKernelMMD(program.num_variables, hidden=tuple(learned_kernel), lr=critic_lr,
                                           bandwidths=self.bandwidths, backend=be, seed=critic_seed)
        self.critic_steps = int(critic_steps)
        self.latent = None
        if objective == "pae":
            self._set_latent(latent)

    def _set_latent(self, latent):
        program = self.program
        if latent is None or len(latent) == 0:
            raise ValueError("SampleLearner: the pae objective needs latent=[variables of z]")
        z = np.unique(np.asarray(latent, dtype=np.int64))
        if z.min() < 0 or z.max() >= program.num_variables:
            raise ValueError(f"SampleLearner: latent variables must lie in 0..{program.num_variables - 1}")
        observed = np.setdiff1d(np.arange(program.num_variables), z)
        if len(observed) == 0:
            raise ValueError("SampleLearner: every variable is latent; pae needs observed variables x")
        be = program.backend
        self.latent, self.observed = be.index(z), be.index(observed)
        limits = program.domain.max_values[observed]
        self.scale = float(limits.max()) if np.all(np.isfinite(limits)) else 1.0

    # ---- the learner protocol -------------------------------------------------------------
    def start_epoch(self, epoch: int):
        super().start_epoch(epoch)
        if not self.schedule.learned:
            self.tau = self.schedule.value(epoch)

    def statistics(self, x, labels=None, *, rng=None) -> dict:
        """A batch's sample-objective loss and gradients (the critic steps first, for adversarial)."""
        program = self.program
        be, xp = program.backend, program.backend.xp
        x = prepared(program, x)
        batch = int(x.shape[0])
        if rng is None:
            if self._default_rng is None:
                self._default_rng = be.rng(None)
            rng = self._default_rng
        if self.sample_objective == "pae":
            value = self._auto_encoding(x, rng)
        else:
            if bool(xp.isnan(x).any()):
                raise ValueError(f"SampleLearner: the {self.sample_objective} objective compares samples with "
                                 f"complete data; the batch has missing values")
            noise = RelaxedNoise.draw(program, self.num_samples or batch, rng, reuse=True)
            samples = program.sample_relaxed(temperature=self.tau, hard=self.hard, noise=noise)
            if self.sample_objective == "mmd" and self.kernel is not None:
                for _ in range(self.critic_steps):
                    self.kernel.train_step(x, samples)
                value = self.kernel.loss(samples, x)
            elif self.sample_objective == "mmd":
                value = mmd(be, samples, x, bandwidths=self.bandwidths)
            else:
                for _ in range(self.critic_steps):
                    self.critic.train_step(x, samples)
                value = self.critic.generator_loss(samples)
        relaxed = program.backward_relaxed(value.grad, temperature=self.log_temperature is not None)
        grads = {}
        if "weights" in self.theta:
            grads["weights"] = self.rows.logit_gradient(relaxed.log_weights, program.weights)
        for i, key in enumerate(self.leaf_keys):
            for name, grad in relaxed.leaves.get(key, {}).items():
                if f"leaves/{i}/{name}" in self.theta:
                    grads[f"leaves/{i}/{name}"] = grad
        for name, value_ in self.theta.items():
            if name not in grads:
                grads[name] = xp.zeros_like(value_)
        loss = value.loss
        if self.ll_weight > 0:
            nll, ll_grads, _, _ = self._loss_and_gradients(x, None, rng=rng, train=True)
            loss += self.ll_weight * nll
            for name, grad in ll_grads.items():
                grads[name] = grads[name] + self.ll_weight * grad
        stats = {"grads": grads, "loss": loss, "loss_sum": loss * batch, "count": batch, "correct": None}
        if self.log_temperature is not None:
            stats["temperature_grad"] = relaxed.temperature * self.tau
        return stats

    def encode(self, x):
        """PAE's code ``z* = argmax_z p(z | x)`` (MPE), shape (batch, num_latent). It is an
        argmax: no gradient flows through it."""
        evidence = x.copy()
        evidence[:, self.latent] = self.program.backend.xp.nan
        return self.program.mpe(evidence)[:, self.latent]

    def _auto_encoding(self, x, rng):
        program = self.program
        xp = program.backend.xp
        code = self.encode(x)
        given = xp.full(x.shape, xp.nan, dtype=x.dtype)
        given[:, self.latent] = code
        noise = RelaxedNoise.draw(program, int(x.shape[0]), rng, reuse=True)
        recon = program.sample_relaxed(temperature=self.tau, hard=self.hard, evidence=given, noise=noise)
        target = x[:, self.observed]
        if bool(xp.isnan(target).any()):
            raise ValueError("SampleLearner: the pae objective needs the observed variables complete")
        value = reconstruction_error(program.backend, recon[:, self.observed], target, kind=self.reconstruction,
                                     scale=self.scale)
        grad = xp.zeros(x.shape, dtype=program.backend.dtype)
        grad[:, self.observed] = value.grad
        value.grad = grad
        return value

    def combine(self, a: dict, b: dict) -> dict:
        """Example-weighted means of the two batches' gradients (the objective's own batch
        statistic, e.g. MMD between a batch and its samples, is not a sum over examples: the
        combination is the mean of the halves' gradients, not the whole batch's)."""
        out = super().combine(a, b)
        if "temperature_grad" in a:
            total = a["count"] + b["count"]
            out["temperature_grad"] = (a["count"] * a["temperature_grad"] + b["count"] * b["temperature_grad"]) / total
        return out

    def update(self, stats: dict):
        super().update(stats)
        if self.log_temperature is not None:
            xp = self.program.backend.xp
            self.temperature_optimizer.step({"log_temperature": xp.full(1, stats["temperature_grad"],
                                                                        dtype=self.program.backend.dtype)})
            log_tau = self.log_temperature["log_temperature"]
            log_tau[...] = xp.maximum(log_tau, math.log(self.schedule.floor))
            self.tau = float(xp.exp(log_tau[0]))

    def settings(self) -> dict:
        out = super().settings()
        out.update({"objective": self.sample_objective, "temperature": self.schedule.settings(), "hard": self.hard,
                    "num_samples": self.num_samples, "ll_weight": self.ll_weight,
                    "bandwidths": None if self.bandwidths is None else list(self.bandwidths),
                    "learned_kernel": self.kernel is not None,
                    "reconstruction": self.reconstruction,
                    "latent": None if self.latent is None else [int(v) for v in to_numpy(self.latent)]})
        return out

    def state(self) -> dict:
        out = super().state()
        if self.log_temperature is not None:
            out["temperature/log_temperature"] = self.log_temperature["log_temperature"].copy()
            out.update({f"temperature-optimizer/{k}": v for k, v in self.temperature_optimizer.state().items()})
        if self.critic is not None:
            out.update(self.critic.state())
        if self.kernel is not None:
            out.update(self.kernel.state())
        return out

    def load_state(self, arrays: dict):
        super().load_state(arrays)
        if self.log_temperature is not None:
            be = self.program.backend
            self.log_temperature["log_temperature"][...] = be.asarray(arrays["temperature/log_temperature"])
            self.temperature_optimizer.load_state({k[len("temperature-optimizer/"):]: v for k, v in arrays.items()
                                                   if k.startswith("temperature-optimizer/")})
            self.tau = float(be.xp.exp(self.log_temperature["log_temperature"][0]))
        if self.critic is not None:
            self.critic.load_state(arrays)
        if self.kernel is not None:
            self.kernel.load_state(arrays)


def _sample_learner(objective: str):
    def make(program, options: dict) -> SampleLearner:
        return SampleLearner(program, objective=objective, temperature=options["temperature"],
                             epochs=options["epochs"], hard=options["hard"], num_samples=options["num_samples"],
                             ll_weight=options["ll_weight"], bandwidths=options["bandwidths"],
                             learned_kernel=options["learned_kernel"],
                             critic_hidden=options["critic_hidden"], critic_lr=options["critic_lr"],
                             critic_steps=options["critic_steps"], critic_seed=options["seed"],
                             latent=options["latent"], reconstruction=options["reconstruction"],
                             lr=options["lr"], lr_decay=options["lr_decay"], betas=options["optimizer_betas"],
                             learn_leaves=options["learn_leaves"], freeze_leaves=options["freeze_leaves"],
                             freeze_weights=options["freeze_weights"], min_std=options["min_std"])
    return make


register_learner("mmd", _sample_learner("mmd"), family="sampling", objectives=("mmd",),
                 description="Adam on the MMD between relaxed samples and data (differentiable sampling)")
register_learner("adversarial", _sample_learner("adversarial"), family="sampling", objectives=("adversarial",),
                 description="GAN training of the circuit against a critic network (differentiable sampling)")
register_learner("pae", _sample_learner("pae"), family="sampling", objectives=("pae",),
                 description="probabilistic auto-encoding over (x, z): MPE encoding, relaxed-sample decoding")
