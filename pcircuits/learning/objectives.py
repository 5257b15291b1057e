"""Training objectives, and the checks of class labels.

*Likelihood objectives* take the root log-values of a batch, shape ``(batch, num_outputs)``, and
return the mean loss together with ``grad_root``, the gradient of that mean loss with respect
to the root log-values, which :meth:`Program.backward` turns into gradients of every parameter.

*Sample objectives* (Lang et al. 2022, 4.1) take samples of the circuit, shape ``(batch,
num_variables)``, from its relaxed top-down pass (:meth:`Program.sample_relaxed`) and return the
loss together with its gradient with respect to the samples, which
:meth:`Program.backward_relaxed` turns into gradients of every parameter:

* :func:`mmd`: the unbiased kernel two-sample distance ``MMD^2`` (Gretton et al. 2012) with a sum
  of Gaussian kernels (given bandwidths, or the median heuristic);
  :class:`LearnedKernelMMD` is its adversarially learned kernel variant (MMD-GAN, Li et al.
  2017): the Gaussian kernels act on the features of a network trained to maximize the MMD;
* :class:`AdversarialCritic`: a critic network from :mod:`pcircuits.nn` and the GAN min-max
  (critic steps on data against samples, then the circuit's non-saturating loss
  ``-log D(sample)``);
* :func:`reconstruction_error`: the probabilistic auto-encoder's loss, binary cross-entropy
  summed over the variables (or squared error) between a reconstruction and its target.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy

__all__ = ["Objective", "OBJECTIVES", "SAMPLE_OBJECTIVES", "check_labels", "negative_log_likelihood",
           "cross_entropy", "SampleObjective", "mmd", "median_bandwidth", "LearnedKernelMMD", "AdversarialCritic",
           "reconstruction_error"]

OBJECTIVES = ("nll", "cross-entropy")
#: Objectives on samples of the circuit (trained through its relaxed top-down pass).
SAMPLE_OBJECTIVES = ("mmd", "adversarial", "pae")


@dataclass
class Objective:
    """The value of an objective on one batch.

    Attributes
    ----------
    loss : float
        Mean loss over the examples it is defined for (see ``counted``).
    grad_root : backend array, shape (batch, num_outputs)
        d(mean loss) / d(root log-values).
    counted : int
        Examples in the mean (cross-entropy leaves out examples whose roots are all -inf,
        which product dropout can cause).
    correct : int or None
        Examples whose largest root is their label's (None without labels or with one root).
    """

    loss: float
    grad_root: object
    counted: int
    correct: int | None


def check_labels(labels, num_examples: int, num_outputs: int, *, what: str = "labels") -> np.ndarray:
    """Validate class labels (the root of each example) and return them as int64.

    Raises ``ValueError`` naming the problem: wrong shape, non-integer values, values outside
    ``0 .. num_outputs - 1``.
    """
    y = np.asarray(to_numpy(labels))
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{what} must be an integer array, got dtype {y.dtype}")
    if y.shape != (num_examples,):
        raise ValueError(f"{what} must have shape ({num_examples},), one per example; got {y.shape}")
    if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
        raise ValueError(f"{what} must be integers (class / root indices)")
    if num_examples and (y.min() < 0 or y.max() >= num_outputs):
        raise ValueError(f"{what} must lie in 0..{num_outputs - 1} (the circuit has {num_outputs} root outputs), "
                         f"got values from {y.min():g} to {y.max():g}")
    return y.astype(np.int64)


def negative_log_likelihood(backend, root_values, labels=None) -> Objective:
    """Mean negative log-likelihood ``-1/B sum_b log p_{y_b}(x_b)``.

    Parameters
    ----------
    root_values : backend array, shape (batch, num_outputs)
    labels : backend int array, shape (batch,), optional
        Which root models each example (class-conditional circuits); required when there is
        more than one root output.
    """
    xp = backend.xp
    batch, num_outputs = root_values.shape
    grad_root = xp.zeros(root_values.shape, dtype=backend.dtype)
    rows = xp.arange(batch)
    if labels is None:
        if num_outputs != 1:
            raise ValueError(f"negative_log_likelihood: the circuit has {num_outputs} root outputs; pass labels "
                             f"(the root of each example)")
        chosen = root_values[:, 0]
        grad_root[:, 0] = -1.0 / batch
        correct = None
    else:
        chosen = root_values[rows, labels]
        grad_root[rows, labels] = -1.0 / batch
        correct = int((xp.argmax(root_values, axis=1) == labels).sum()) if num_outputs > 1 else None
    return Objective(-float(chosen.sum()) / batch, grad_root, batch, correct)


def cross_entropy(backend, root_values, labels) -> Objective:
    """Mean cross-entropy of ``softmax(root log-values)`` against the labels (one root per class).

    ``grad_root = (softmax - onehot) / B``. Examples whose roots are all -inf (every path cut by
    product dropout) have no defined class distribution: they get no gradient and are left out
    of the mean, as are examples whose label root alone is -inf (an infinite loss) from the
    reported loss.
    """
    xp = backend.xp
    batch, num_outputs = root_values.shape
    if num_outputs < 2:
        raise ValueError(f"cross_entropy: needs one root per class (at least 2 root outputs), got {num_outputs}")
    top = root_values.max(axis=1, keepdims=True)
    defined = xp.isfinite(top[:, 0])
    top = xp.where(xp.isfinite(top), top, 0)
    shifted = root_values - top
    with np.errstate(divide="ignore", invalid="ignore"):
        log_normalizer = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_normalizer
    rows = xp.arange(batch)
    per_example = -log_p[rows, labels]
    counted = int(defined.sum())
    scale = 1.0 / max(counted, 1)
    grad_root = xp.where(defined[:, None], xp.exp(log_p), 0).astype(backend.dtype)
    grad_root[rows, labels] -= defined.astype(backend.dtype)
    grad_root *= scale
    finite = defined & xp.isfinite(per_example)
    loss = float(xp.where(finite, per_example, 0).sum()) / max(int(finite.sum()), 1)
    correct = int((xp.argmax(root_values, axis=1) == labels).sum())
    return Objective(loss, grad_root, counted, correct)


# ---- objectives on samples ----------------------------------------------------------------------

@dataclass
class SampleObjective:
    """The value of a sample objective.

    Attributes
    ----------
    loss : float
    grad : backend array, shape (batch, num_variables)
        d(loss) / d(samples).
    """

    loss: float
    grad: object


def _check_samples(name: str, samples, data):
    if samples.ndim != 2 or data.ndim != 2 or samples.shape[1] != data.shape[1]:
        raise ValueError(f"{name}: samples and data must be (n, D) and (m, D) arrays with the same D, got "
                         f"{tuple(samples.shape)} and {tuple(data.shape)}")
    if samples.shape[0] < 2 or data.shape[0] < 2:
        raise ValueError(f"{name}: the unbiased estimator needs at least 2 samples and 2 data points, got "
                         f"{samples.shape[0]} and {data.shape[0]}")


def _squared_distances(xp, a, b):
    d = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * (a @ b.T)
    return xp.maximum(d, 0)


def median_bandwidth(backend, samples, data) -> float:
    """The median heuristic: the median distance between distinct points of the pooled set."""
    xp = backend.xp
    pooled = xp.concatenate([samples, data], axis=0)
    d = _squared_distances(xp, pooled, pooled)
    n = pooled.shape[0]
    upper = d[xp.asarray(np.triu_indices(n, 1)[0]), xp.asarray(np.triu_indices(n, 1)[1])]
    return max(float(xp.sqrt(xp.median(upper))), 1e-12)


def mmd(backend, samples, data, *, bandwidths=None) -> SampleObjective:
    """Unbiased ``MMD^2`` between samples and data with a sum of Gaussian kernels.

    ``k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))``; ``MMD^2 = mean_{i != j} k(x_i, x_j) +
    mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)`` (Gretton et al. 2012, eq. 3), which
    can be slightly negative when the two sets come from one distribution.

    Parameters
    ----------
    samples : backend array, shape (n, D)
    data : backend array, shape (m, D)
    bandwidths : sequence of float, optional
        The kernel widths ``s``; default: one, the median heuristic (:func:`median_bandwidth`),
        taken as a constant.

    Returns
    -------
    SampleObjective
        The loss and its gradient with respect to ``samples``.
    """
    xp = backend.xp
    _check_samples("mmd", samples, data)
    if bandwidths is None:
        bandwidths = (median_bandwidth(backend, samples, data),)
    widths = [float(s) for s in np.atleast_1d(np.asarray(bandwidths, dtype=np.float64))]
    if not widths or any(not np.isfinite(s) or s <= 0 for s in widths):
        raise ValueError(f"mmd: bandwidths must be positive and finite, got {bandwidths!r}")
    n, m = samples.shape[0], data.shape[0]
    dxx = _squared_distances(xp, samples, samples)
    dyy = _squared_distances(xp, data, data)
    dxy = _squared_distances(xp, samples, data)
    kxx = kyy = kxy = 0
    wxx = wxy = 0
    for s in widths:
        ex, ey, exy = xp.exp(-dxx / (2 * s * s)), xp.exp(-dyy / (2 * s * s)), xp.exp(-dxy / (2 * s * s))
        kxx, kyy, kxy = kxx + ex, kyy + ey, kxy + exy
        wxx, wxy = wxx + ex / (s * s), wxy + exy / (s * s)
    k = len(widths)
    loss = (float(kxx.sum()) - k * n) / (n * (n - 1)) + (float(kyy.sum()) - k * m) / (m * (m - 1)) \
        - 2 * float(kxy.sum()) / (n * m)
    # d k_s(a, b) / da = -k_s(a, b) (a - b) / s^2; the diagonal terms have a - b = 0
    grad = -2.0 / (n * (n - 1)) * (samples * wxx.sum(axis=1)[:, None] - wxx @ samples) \
        + 2.0 / (n * m) * (samples * wxy.sum(axis=1)[:, None] - wxy @ data)
    return SampleObjective(loss, grad.astype(samples.dtype, copy=False))


class LearnedKernelMMD:
    """MMD with an adversarially learned kernel (MMD-GAN, Li et al. 2017; Lang et al. 4.1).

    ``k(a, b) = sum_s exp(-|f(a) - f(b)|^2 / (2 s^2))`` with ``f`` a perceptron from
    :mod:`pcircuits.nn`; :meth:`train_step` takes one Adam step of ``f`` up the MMD between data
    and samples, :meth:`loss` is the circuit's loss (the MMD) with its gradient with respect to
    the samples.

    Parameters
    ----------
    num_variables : int
    hidden : sequence of int
        Hidden sizes of ``f`` (LeakyReLU(0.2) between the layers).
    features : int
        The feature dimension.
    lr : float
        The feature network's Adam learning rate (betas 0.5, 0.999).
    bandwidths : sequence of float, optional
        Kernel widths in feature space (default: the median heuristic).
    backend, seed
        Where the network lives and how it is initialized.
    """

    def __init__(self, num_variables: int, *, hidden=(64,), features: int = 16, lr: float = 1e-3, bandwidths=None,
                 backend=None, seed=0):
        from .. import nn
        from ..backend import get_backend
        from ..optim import Adam
        be = get_backend(backend or "numpy")
        self.backend = be
        self.bandwidths = bandwidths
        self.network = nn.mlp(1, [int(num_variables), *hidden, int(features)], activation=nn.LeakyReLU(0.2))
        self.params = self.network.init(seed, backend=be, dtype=be.dtype.name)
        self.optimizer = Adam(self.params, lr=lr, betas=(0.5, 0.999))

    def _features(self, x):
        out, cache = self.network.forward(self.params, x)
        return out[0], cache

    def loss(self, samples, data) -> SampleObjective:
        """``MMD^2`` between the features of samples and data, with its gradient w.r.t. the samples."""
        fs, cache = self._features(samples)
        fd, _ = self._features(data)
        value = mmd(self.backend, fs, fd, bandwidths=self.bandwidths)
        _, grad = self.network.backward(self.params, cache, value.grad[None], input_grad=True)
        return SampleObjective(value.loss, grad)

    def train_step(self, data, samples) -> float:
        """One Adam step of the feature network up the MMD; returns the MMD before the step."""
        fs, cache_s = self._features(samples)
        fd, cache_d = self._features(data)
        forward = mmd(self.backend, fs, fd, bandwidths=self.bandwidths)
        swapped = mmd(self.backend, fd, fs, bandwidths=self.bandwidths)     # the estimator is symmetric
        grads_s, _ = self.network.backward(self.params, cache_s, -forward.grad[None], input_grad=False)
        grads_d, _ = self.network.backward(self.params, cache_d, -swapped.grad[None], input_grad=False)
        self.optimizer.step({k: grads_s[k] + grads_d[k] for k in grads_s})
        return forward.loss

    def state(self) -> dict:
        out = {f"kernel/{k}": v for k, v in self.params.items()}
        out.update({f"kernel-optimizer/{k}": v for k, v in self.optimizer.state().items()})
        return out

    def load_state(self, arrays: dict):
        for k, v in self.params.items():
            v[...] = self.backend.asarray(arrays[f"kernel/{k}"], dtype=v.dtype)
        self.optimizer.load_state({k[len("kernel-optimizer/"):]: v for k, v in arrays.items()
                                   if k.startswith("kernel-optimizer/")})


class AdversarialCritic:
    """A critic network and its optimizer for the GAN objective (Goodfellow et al. 2014).

    The critic ``D`` is a perceptron from :mod:`pcircuits.nn` on ``(batch, D)`` inputs with one
    logit out. :meth:`train_step` makes one step on ``log D(data) + log(1 - D(samples))``;
    :meth:`generator_loss` is the circuit's non-saturating loss ``mean(-log D(samples))`` with
    its gradient with respect to the samples.

    Parameters
    ----------
    num_variables : int
    hidden : sequence of int
        Hidden layer sizes (LeakyReLU(0.2) between them).
    lr : float
        The critic's Adam learning rate (betas 0.5, 0.999 as in DCGAN).
    backend : Backend
    seed : int
        Initializes the critic's weights.
    network : Sequential, optional
        A ready critic architecture ``(batch, D) -> (1, batch, 1)`` instead of the perceptron.
    """

    def __init__(self, num_variables: int, *, hidden=(64, 64), lr: float = 2e-4, backend=None, seed=0,
                 network=None):
        from .. import nn
        from ..backend import get_backend
        from ..optim import Adam
        be = get_backend(backend or "numpy")
        self.backend = be
        self.network = network if network is not None else nn.mlp(1, [int(num_variables), *hidden, 1],
                                                                   activation=nn.LeakyReLU(0.2))
        self.params = self.network.init(seed, backend=be, dtype=be.dtype.name)
        self.optimizer = Adam(self.params, lr=lr, betas=(0.5, 0.999))

    def logits(self, x):
        """The critic's logits, shape (batch,), and the forward cache."""
        out, cache = self.network.forward(self.params, x)
        return out[0, :, 0], cache

    def train_step(self, data, samples) -> float:
        """One Adam step of the critic on data (target 1) against samples (target 0); its loss."""
        from ..nn import binary_cross_entropy_with_logits
        xp = self.backend.xp
        x = xp.concatenate([data, samples], axis=0)
        target = xp.concatenate([xp.ones(data.shape[0], dtype=x.dtype), xp.zeros(samples.shape[0], dtype=x.dtype)])
        out, cache = self.network.forward(self.params, x)
        loss, grad = binary_cross_entropy_with_logits(out, target[None, :, None])
        grads, _ = self.network.backward(self.params, cache, grad, input_grad=False)
        self.optimizer.step(grads)
        return loss

    def generator_loss(self, samples) -> SampleObjective:
        """``mean(-log D(samples))`` and its gradient with respect to the samples."""
        from ..nn import binary_cross_entropy_with_logits
        out, cache = self.network.forward(self.params, samples)
        loss, grad = binary_cross_entropy_with_logits(out, self.backend.xp.ones_like(out))
        _, grad_x = self.network.backward(self.params, cache, grad, input_grad=True)
        return SampleObjective(loss, grad_x)

    def state(self) -> dict:
        out = {f"critic/{k}": v for k, v in self.params.items()}
        out.update({f"critic-optimizer/{k}": v for k, v in self.optimizer.state().items()})
        return out

    def load_state(self, arrays: dict):
        for k, v in self.params.items():
            v[...] = self.backend.asarray(arrays[f"critic/{k}"], dtype=v.dtype)
        self.optimizer.load_state({k[len("critic-optimizer/"):]: v for k, v in arrays.items()
                                   if k.startswith("critic-optimizer/")})


def reconstruction_error(backend, reconstruction, target, *, kind: str = "bce", scale: float = 1.0,
                         eps: float = 1e-6) -> SampleObjective:
    """The auto-encoder's reconstruction loss, summed over variables, mean over examples.

    Parameters
    ----------
    reconstruction, target : backend arrays, shape (batch, D)
    kind : {"bce", "mse"}
        ``"bce"``: binary cross-entropy of ``target / scale`` under ``reconstruction / scale``
        clipped into ``[eps, 1 - eps]`` (Lang et al.'s unit for images in [0, 1]); ``"mse"``:
        squared error.
    scale : float
        The largest value (255 for 8-bit pixels under binomial leaves).
    """
    xp = backend.xp
    if kind not in ("bce", "mse"):
        raise ValueError(f"reconstruction_error: kind must be 'bce' or 'mse', got {kind!r}")
    if tuple(reconstruction.shape) != tuple(target.shape) or reconstruction.ndim != 2:
        raise ValueError(f"reconstruction_error: reconstruction {tuple(reconstruction.shape)} and target "
                         f"{tuple(target.shape)} must be equal (batch, D) shapes")
    batch = reconstruction.shape[0]
    if kind == "mse":
        diff = reconstruction - target
        return SampleObjective(float((diff * diff).sum()) / batch, 2 * diff / batch)
    p = reconstruction / scale
    inside = (p > eps) & (p < 1 - eps)
    p = xp.clip(p, eps, 1 - eps)
    t = target / scale
    loss = -float((t * xp.log(p) + (1 - t) * xp.log1p(-p)).sum()) / batch
    grad = xp.where(inside, (p - t) / (p * (1 - p)), 0) / (scale * batch)
    return SampleObjective(loss, grad.astype(reconstruction.dtype, copy=False))
