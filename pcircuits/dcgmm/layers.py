"""The layers of a deep convolutional Gaussian mixture model (Gepperth, DCGMM, section III).

Every layer maps an activity tensor of shape ``(batch, height, width, channels)`` forward and a
control signal of the same shape backward (sampling mode). Shapes follow Table VI of the paper:

=================  ===================  ===================  ==========
layer              height               width                channels
=================  ===================  ===================  ==========
``Folding(f, s)``  ``1 + (H' - f)//s``  ``1 + (W' - f)//s``  ``f*f*C'``
``MaxPooling``     ``1 + (H' - f)//s``  ``1 + (W' - f)//s``  ``C'``
``CGMM(K)``        ``H'``               ``W'``               ``K``
``Classifier(S)``  1                    1                    ``S``
=================  ===================  ===================  ==========

(``MaxPooling(pad=True)`` rounds up instead, with the border windows cut at the edge.)
Loops in this module run over kernel offsets (at most ``f*f``) or, in the cGMM forward pass, over
blocks of thousands of rows; never over single examples or positions.
"""
from __future__ import annotations

import math

import numpy as np

from . import _kernels

__all__ = ["Layer", "Folding", "MaxPooling", "CGMM", "Classifier", "Annealing"]

_LOG_2PI = math.log(2.0 * math.pi)


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return int(value)


class Layer:
    """A DCGMM layer: forward (activities) and backward (control signals) modes.

    Attributes
    ----------
    input_shape, output_shape : tuple of int
        ``(height, width, channels)``, set by :meth:`build` when a :class:`~pcircuits.dcgmm.Stack`
        is made.
    name : str
        ``"L<index>"`` in the stack (the data are ``L0``), as in the paper's figures.
    """

    trainable = False
    input_shape: tuple
    output_shape: tuple

    def __init__(self):
        self.backend = None
        self.name = type(self).__name__

    @property
    def notation(self) -> str:
        """The paper's notation, for example ``F(3,1)``."""
        raise NotImplementedError

    def shape_problem(self, input_shape: tuple) -> str | None:
        """Why this layer cannot take an input of ``input_shape`` (None when it can)."""
        return None

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        raise NotImplementedError

    def build(self, input_shape: tuple, backend, rng: np.random.Generator):
        """Fix the input shape, make the parameters on ``backend``."""
        self.backend = backend
        self.input_shape = tuple(int(v) for v in input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)

    def forward(self, x):
        """Activities: ``x`` of shape ``(batch, *input_shape)`` to ``(batch, *output_shape)``."""
        raise NotImplementedError

    def backward(self, control, rng, **options):
        """Control signal for the layer below: ``(batch, *output_shape)`` to ``(batch, *input_shape)``."""
        raise NotImplementedError

    def vjp(self, x, grad_output):
        """The vector-Jacobian product of :meth:`forward` at ``x`` (used by sharpening)."""
        raise NotImplementedError(f"{self.notation} has no input gradient")

    def parameters(self) -> dict:
        """The trainable arrays by name (empty for parameter-free layers)."""
        return {}

    def num_means(self) -> int:
        """Number of centroid entries (the paper's Table V counts these)."""
        return 0

    def __repr__(self) -> str:
        return self.notation


class _Window(Layer):
    """Shared bookkeeping of layers that slide an ``f x f`` window with a stride."""

    pad = False

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = _positive_int(kernel_size, f"{type(self).__name__}: kernel_size")
        self.stride = _positive_int(stride, f"{type(self).__name__}: stride")

    @property
    def notation(self) -> str:
        letter = "F" if isinstance(self, Folding) else "P"
        return f"{letter}({self.kernel_size},{self.stride})"

    def shape_problem(self, input_shape):
        h, w, _ = input_shape
        if not self.pad and (self.kernel_size > h or self.kernel_size > w):
            return (f"{self.notation} needs an input of at least {self.kernel_size}x{self.kernel_size} "
                    f"positions, got {h}x{w}")
        return None

    def _positions(self, size: int) -> int:
        span = max(size - self.kernel_size, 0)
        steps = -(-span // self.stride) if self.pad else span // self.stride
        return 1 + steps

    def _offset_slices(self, a: int, b: int, out_h: int, out_w: int):
        s = self.stride
        return slice(a, a + s * (out_h - 1) + 1, s), slice(b, b + s * (out_w - 1) + 1, s)

    def _coverage(self):
        """How many windows contain each input position, shape (H', W')."""
        h, w, _ = self.input_shape
        out_h, out_w, _ = self.output_shape
        f = self.kernel_size
        count = np.zeros((h + f, w + f))
        for a in range(f):
            for b in range(f):
                rows, cols = self._offset_slices(a, b, out_h, out_w)
                count[rows, cols] += 1
        return count[:h, :w]


class Folding(_Window):
    """Folding ``F(f, stride)``: the half-convolution that stacks each ``f x f`` patch into channels.

    Forward (III-E, eq. 9): ``A[h, w, c] = A'[h*s + c // (f C'), w*s + (c // C') % f, c % C']``,
    a pure remap. Backward: each input entry receives the mean of the control values of all
    patch entries it was copied to (entries in no patch receive 0).

    Parameters
    ----------
    kernel_size : int
        Patch side ``f``.
    stride : int
        Step ``s`` between patches.
    """

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        f = self.kernel_size
        return self._positions(h), self._positions(w), f * f * c

    def build(self, input_shape, backend, rng):
        super().build(input_shape, backend, rng)
        count = self._coverage()[:, :, None]
        self._inverse_count = backend.asarray(np.where(count > 0, 1.0 / np.maximum(count, 1), 0.0))

    def forward(self, x):
        xp = self.backend.xp
        n = x.shape[0]
        out_h, out_w, _ = self.output_shape
        c = self.input_shape[2]
        f = self.kernel_size
        out = xp.empty((n, out_h, out_w, f, f, c), dtype=x.dtype)
        for a in range(f):
            for b in range(f):
                rows, cols = self._offset_slices(a, b, out_h, out_w)
                out[:, :, :, a, b, :] = x[:, rows, cols, :]
        return out.reshape(n, out_h, out_w, f * f * c)

    def _scatter(self, values):
        xp = self.backend.xp
        n = values.shape[0]
        h, w, c = self.input_shape
        out_h, out_w, _ = self.output_shape
        f = self.kernel_size
        values = values.reshape(n, out_h, out_w, f, f, c)
        out = xp.zeros((n, h + f, w + f, c), dtype=values.dtype)
        for a in range(f):
            for b in range(f):
                rows, cols = self._offset_slices(a, b, out_h, out_w)
                out[:, rows, cols, :] += values[:, :, :, a, b, :]
        return out[:, :h, :w, :]

    def backward(self, control, rng=None, **options):
        return self._scatter(control) * self._inverse_count

    def vjp(self, x, grad_output):
        return self._scatter(grad_output)


class MaxPooling(_Window):
    """Max-pooling ``P(f, stride)`` over each channel; upsampling in backward mode (III-D).

    Backward: every input position takes the mean control of the windows that contain it; a
    position in no window (the last rows/columns when ``(H' - f)`` is not a multiple of the
    stride) copies the control of the nearest window.

    Parameters
    ----------
    kernel_size, stride : int
    pad : bool
        Round the output size up and cut the border windows at the edge (the paper's code pads
        pooling this way; instance G of Table V needs it).
    """

    def __init__(self, kernel_size: int, stride: int, *, pad: bool = False):
        super().__init__(kernel_size, stride)
        self.pad = bool(pad)

    @property
    def notation(self) -> str:
        return super().notation + ("+pad" if self.pad else "")

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        return self._positions(h), self._positions(w), c

    def build(self, input_shape, backend, rng):
        super().build(input_shape, backend, rng)
        count = self._coverage()
        out_h, out_w, _ = self.output_shape
        s = self.stride
        self._nearest_rows = backend.index(np.minimum(np.arange(self.input_shape[0]) // s, out_h - 1))
        self._nearest_cols = backend.index(np.minimum(np.arange(self.input_shape[1]) // s, out_w - 1))
        self._covered = backend.asarray((count > 0)[:, :, None], dtype=bool)
        self._inverse_count = backend.asarray(np.where(count > 0, 1.0 / np.maximum(count, 1), 0.0)[:, :, None])

    def _padded(self, x, fill):
        xp = self.backend.xp
        h, w, c = self.input_shape
        f = self.kernel_size
        out = xp.full((x.shape[0], h + f, w + f, c), fill, dtype=x.dtype)
        out[:, :h, :w, :] = x
        return out

    def forward(self, x):
        xp = self.backend.xp
        out_h, out_w, _ = self.output_shape
        padded = self._padded(x, -np.inf)
        result = None
        for a in range(self.kernel_size):
            for b in range(self.kernel_size):
                rows, cols = self._offset_slices(a, b, out_h, out_w)
                part = padded[:, rows, cols, :]
                result = part.copy() if result is None else xp.maximum(result, part)
        return result

    def backward(self, control, rng=None, **options):
        xp = self.backend.xp
        h, w, c = self.input_shape
        out_h, out_w, _ = self.output_shape
        total = xp.zeros((control.shape[0], h + self.kernel_size, w + self.kernel_size, c), dtype=control.dtype)
        for a in range(self.kernel_size):
            for b in range(self.kernel_size):
                rows, cols = self._offset_slices(a, b, out_h, out_w)
                total[:, rows, cols, :] += control
        mean = total[:, :h, :w, :] * self._inverse_count
        nearest = control[:, self._nearest_rows][:, :, self._nearest_cols]
        return xp.where(self._covered, mean, nearest)

    def vjp(self, x, grad_output):
        """Each window's gradient goes to its (first) maximal entry."""
        xp = self.backend.xp
        h, w, c = self.input_shape
        out_h, out_w, _ = self.output_shape
        padded = self._padded(x, -np.inf)
        y = self.forward(x)
        grad = xp.zeros_like(padded)
        unassigned = xp.ones(y.shape, dtype=bool)
        for a in range(self.kernel_size):
            for b in range(self.kernel_size):
                rows, cols = self._offset_slices(a, b, out_h, out_w)
                hit = unassigned & (padded[:, rows, cols, :] == y)
                grad[:, rows, cols, :] += xp.where(hit, grad_output, 0.0)
                unassigned &= ~hit
        return grad[:, :h, :w, :]


class Annealing:
    """The annealing schedule of a cGMM layer's loss (Gepperth & Pfülb 2021, used by DCGMM III-G).

    Components sit on a torus grid (``sqrt(K) x sqrt(K)`` when ``K`` is a square, a ring of ``K``
    otherwise). The trained objective replaces each component's log-score by its average over
    the grid with a Gaussian kernel of width ``sigma`` and takes the maximum over components:
    early in training every component is pulled along with its grid neighbours, which avoids
    dead components; as ``sigma`` falls to ``sigma_min`` the objective becomes the plain
    max-component log-likelihood of eq. (8).

    ``sigma`` starts at ``0.25 sqrt(2K)`` and is multiplied by ``gamma = 0.9`` whenever the
    objective stops improving: the mean objective is taken over periods of ``period = 20``
    steps; after the second period, if the last period improved the mean by less than
    ``delta = 0.05`` times the improvement since the first period (or worsened it by less than
    twice that), ``sigma`` shrinks. The whole state is a few numbers (checkpointed).
    """

    def __init__(self, num_components: int, *, sigma0: float | None = None, sigma_min: float = 0.01,
                 gamma: float = 0.9, delta: float = 0.05, period: int = 20):
        self.num_components = num_components
        self.sigma = 0.25 * math.sqrt(2 * num_components) if sigma0 is None else float(sigma0)
        self.sigma_min, self.gamma, self.delta, self.period = float(sigma_min), float(gamma), float(delta), int(period)
        self.iteration, self.running, self.first, self.last = 0, 0.0, 0.0, 0.0
        n = math.isqrt(num_components)
        if n * n == num_components:
            coords = np.stack(np.divmod(np.arange(num_components), n), axis=1).astype(float)
            side = np.array([n, n], dtype=float)
        else:
            coords = np.arange(num_components, dtype=float)[:, None]
            side = np.array([num_components], dtype=float)
        diff = np.abs(coords[:, None, :] - coords[None, :, :])
        diff = np.minimum(diff, side - diff)
        self._distance2 = (diff ** 2).sum(-1)

    def kernel(self) -> np.ndarray | None:
        """The row-normalized smoothing matrix ``G[k, j]`` (None once it is the identity)."""
        g = np.exp(-self._distance2 / (2.0 * self.sigma ** 2))
        g /= g.sum(1, keepdims=True)
        if np.max(g - np.eye(self.num_components)) < 1e-12:
            return None
        return g

    def add(self, objective: float) -> bool:
        """Record one step's mean objective; True when ``sigma`` changed."""
        in_period = self.iteration % self.period
        if in_period == 0:
            self.running = 0.0
        self.running += (objective - self.running) / (in_period + 1)
        self.iteration += 1
        if in_period != self.period - 1:
            return False
        finished = self.iteration // self.period
        if finished == 1:
            self.first = self.last = self.running
            return False
        if finished == 2:
            self.last = self.running
            return False
        total = self.last - self.first
        ratio = (self.running - self.last) / total if total != 0 else 0.0
        self.last = self.running
        if -2 * self.delta < ratio < self.delta and self.sigma > self.sigma_min:
            self.sigma = max(self.sigma * self.gamma, self.sigma_min)
            return True
        return False

    def state(self) -> dict:
        return {"sigma": self.sigma, "iteration": self.iteration, "running": self.running, "first": self.first,
                "last": self.last}

    def load_state(self, state: dict):
        self.sigma = float(state["sigma"])
        self.iteration = int(state["iteration"])
        self.running, self.first, self.last = float(state["running"]), float(state["first"]), float(state["last"])


class CGMM(Layer):
    """Convolutional Gaussian mixture layer ``G(K)`` with diagonal covariances (III-C).

    At each position ``(h, w)`` the channel vector ``x`` (``d = C'`` entries) is modelled by
    ``p(x) = sum_k pi_k N(x; mu_k, diag(1 / D_k^2))``; the activities are the responsibilities
    ``gamma_k(x)`` (eq. 4, 7). Parameters are shared by all positions (default) or independent
    per position. The weights are ``pi = softmax(logits)``; ``D`` are precisions (inverse
    standard deviations), clipped to ``(0, max_precision]``.

    Training (III-G, the paper's SGD of Gepperth & Pfülb 2021): each layer maximizes its own
    objective, the annealed max-component log-likelihood (eq. 8 with the smoothing of
    :class:`Annealing`), by plain gradient ascent with step ``learning_rate`` times a factor per
    parameter (:attr:`rates`: means 1, precisions 0.5, weights 0). The weights thus stay uniform
    by default, as in the paper's code; set ``rates["logits"]`` to learn them. The objective is the
    mean over examples and positions (per-position parameters: the mean over examples at each
    position). Means start uniform in ``[-0.01, 0.01]``, precisions at
    ``max_precision = sqrt(20)``, weights uniform.

    Backward mode: at each position a component is drawn from the control signal (or
    uniformly at the top of a stack), optionally restricted to the ``top_s`` largest entries,
    and the output is its mean plus its standard deviation divided by ``divisor`` times
    Gaussian noise.

    Parameters
    ----------
    num_components : int
        ``K``.
    shared : bool
        One parameter set for all positions (True) or one per position.
    learning_rate : float
    max_precision : float
    """

    trainable = True
    #: Factors of ``learning_rate`` per parameter. The weights' factor is 0 (kept uniform), the
    #: paper's code's default: learned weights lowered DCGMM-E's Fashion-MNIST outlier AUC from
    #: 77.1 to 63.8 (MNIST 91.4 to 92.1; docs/results.md).
    rates = {"logits": 0.0, "means": 1.0, "precisions": 0.5}
    #: Up to this input dimension the forward pass shifts the log-scores by the layer's bound
    #: instead of each row's maximum (:meth:`_forward_small`): for small ``d`` the passes over the
    #: ``K`` scores of each row, not the products, are the work, and the maximum over rows of ``K``
    #: entries is the slowest of them. Over hundreds of inputs the log-scores lie hundreds of nats
    #: below the bound, and most rows would have to be redone.
    bounded_dim = 64
    #: Rows (example-positions) per block of the forward pass on the host: wide inputs (blocks of
    #: features ``[x^2, x, 1]`` that stay in the cache) and small inputs (blocks that bound the
    #: memory of the squares; each costs a dozen calls, so they are large).
    block_rows = 2048
    bounded_block_rows = 1 << 17
    #: A row whose terms ``exp(s - C)`` sum to less than this (its best component lies more than
    #: 69 nats below the bound ``C``) is recomputed with its own maximum; above it, a term that
    #: falls into the subnormal range changes its responsibility by less than ``2^-50``.
    min_bounded_sum = 2.0 ** -100

    def __init__(self, num_components: int, *, shared: bool = True, learning_rate: float = 0.05,
                 max_precision: float = math.sqrt(20.0), min_precision: float = 1e-3, init_range: float = 0.01):
        super().__init__()
        self.num_components = _positive_int(num_components, "CGMM: num_components")
        self.shared = bool(shared)
        if not learning_rate > 0:
            raise ValueError(f"CGMM: learning_rate must be positive, got {learning_rate!r}")
        if not 0 < min_precision < max_precision:
            raise ValueError(f"CGMM: need 0 < min_precision < max_precision, got {min_precision}, {max_precision}")
        self.learning_rate = float(learning_rate)
        self.max_precision, self.min_precision = float(max_precision), float(min_precision)
        self.init_range = float(init_range)
        self.annealing = Annealing(self.num_components)
        self._kernel_sigma = None
        self._kernel = None
        self._buffers = None

    @property
    def notation(self) -> str:
        return f"G({self.num_components})" + ("" if self.shared else "*")

    def compute_output_shape(self, input_shape):
        h, w, _ = input_shape
        return h, w, self.num_components

    @property
    def num_positions(self) -> int:
        return self.input_shape[0] * self.input_shape[1]

    @property
    def dim(self) -> int:
        return self.input_shape[2]

    def build(self, input_shape, backend, rng):
        super().build(input_shape, backend, rng)
        sets = 1 if self.shared else self.num_positions
        k, d = self.num_components, self.dim
        self.logits = backend.asarray(np.zeros((sets, k)))
        self.means = backend.asarray(rng.uniform(-self.init_range, self.init_range, (sets, k, d)))
        self.precisions = backend.asarray(np.full((sets, k, d), self.max_precision))
        self._buffers = None

    def parameters(self):
        return {"logits": self.logits, "means": self.means, "precisions": self.precisions}

    def set_parameters(self, **arrays):
        """Replace parameters (NumPy or backend arrays of the current shapes)."""
        for name, value in arrays.items():
            old = getattr(self, name)
            value = self.backend.asarray(value)
            if value.shape != old.shape:
                raise ValueError(f"CGMM.set_parameters: {name} must have shape {old.shape}, got {value.shape}")
            setattr(self, name, value)

    def num_means(self) -> int:
        return int(np.prod(self.means.shape))

    # ---- densities -----------------------------------------------------------------------
    def weights(self):
        """Mixture weights ``pi``, shape (sets, K)."""
        xp = self.backend.xp
        z = self.logits - self.logits.max(-1, keepdims=True)
        e = xp.exp(z)
        return e / e.sum(-1, keepdims=True)

    def _terms(self):
        """The per-component tables of the log-density: (quadratic, linear, constant, per-dim constant)."""
        xp = self.backend.xp
        prec2 = self.precisions ** 2
        quadratic = -0.5 * prec2                                         # (sets, K, d)
        linear = prec2 * self.means
        per_dim = xp.log(self.precisions) - 0.5 * _LOG_2PI - 0.5 * prec2 * self.means ** 2
        log_pi = xp.log(self.weights())
        return quadratic, linear, per_dim, log_pi

    def _table(self):
        """The log-density as one linear map of the features ``[x^2, x, 1]``: shape (sets, 2d + 1, K),
        rows ``-D^2 / 2``, ``D^2 mu`` and the constant ``log pi + sum_d (log D - log(2 pi) / 2 - D^2 mu^2 / 2)``."""
        xp = self.backend.xp
        quadratic, linear, per_dim, log_pi = self._terms()
        constant = (per_dim.sum(-1) + log_pi)[:, None, :]
        return xp.concatenate([quadratic.transpose(0, 2, 1), linear.transpose(0, 2, 1), constant], axis=1)

    def _flat(self, x):
        n = x.shape[0]
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.name} {self.notation}: expected inputs of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        return x.reshape(n, self.num_positions, self.dim)

    def log_scores(self, x):
        """``log(pi_k N_k(x_hw))`` at every position, shape (batch, positions, K).

        NaN entries of ``x`` are marginalized (left out of the diagonal Gaussian).
        """
        be, xp = self.backend, self.backend.xp
        flat = self._flat(x)
        n, p, d = flat.shape
        missing = xp.isnan(flat)
        has_missing = be.maybe_any(missing)
        if self.shared and not has_missing:
            rows = flat.reshape(n * p, d)
            dtype = xp.result_type(rows.dtype, self.means.dtype)
            scores = xp.empty((n * p, self.num_components), dtype=dtype)
            return self._scores_into(rows, self._score_tables(dtype), scores).reshape(n, p, -1)
        quadratic, linear, per_dim, log_pi = self._terms()
        if has_missing:
            observed = (~missing).astype(flat.dtype)
            flat = xp.where(missing, 0.0, flat)
        if self.shared:
            rows = flat.reshape(n * p, d)
            scores = (rows * rows) @ quadratic[0].T
            scores += rows @ linear[0].T
            scores += observed.reshape(n * p, d) @ per_dim[0].T
            scores += log_pi[0]
            return scores.reshape(n, p, -1)
        by_position = flat.transpose(1, 0, 2)                                   # (P, N, d)
        scores = xp.matmul(by_position * by_position, quadratic.transpose(0, 2, 1))
        scores += xp.matmul(by_position, linear.transpose(0, 2, 1))
        if has_missing:
            scores += xp.matmul(observed.transpose(1, 0, 2), per_dim.transpose(0, 2, 1))
        else:
            scores += per_dim.sum(-1)[:, None, :]
        scores += log_pi[:, None, :]
        return scores.transpose(1, 0, 2)

    def responsibilities(self, scores, *, overwrite: bool = False):
        """Softmax of log-scores over the components (the activities, eq. 4); ``overwrite``
        computes it in the memory of ``scores``.

        Shared layers of up to :attr:`bounded_dim` inputs shift the scores by the layer's bound
        (:meth:`bound`) as the forward pass does, unless ``overwrite``; otherwise each row is
        shifted by its maximum.
        """
        if overwrite or not self.shared or self.dim > self.bounded_dim:
            return self._softmax_by_maximum(scores, overwrite)
        xp = self.backend.xp
        flat = scores.reshape(-1, self.num_components)
        out = xp.empty_like(flat)
        sums = xp.empty(flat.shape[0], dtype=flat.dtype)

        def exact(index):
            return self._softmax_by_maximum(flat if index is None else flat[index], index is not None)
        self._bounded_softmax(flat, out, sums, exact, shift=self.bound().astype(flat.dtype))
        return out.reshape(scores.shape)

    def _softmax_by_maximum(self, scores, overwrite: bool):
        """Softmax over the last axis with each row shifted by its maximum."""
        xp = self.backend.xp
        if overwrite:
            e = scores
            e -= scores.max(-1, keepdims=True)
        else:
            e = scores - scores.max(-1, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(-1, keepdims=True)
        return e

    def bound(self):
        """``C = max_k (log pi_k + sum_d log D_kd) - d log(2 pi) / 2`` (shared parameters), a 0-d
        array: no log-score exceeds it, since each Gaussian density is at most its normalizer."""
        xp = self.backend.xp
        return (xp.log(self.precisions[0]).sum(-1) + xp.log(self.weights()[0])).max() - 0.5 * self.dim * _LOG_2PI

    def _compiled(self, dtype) -> bool:
        """Whether :meth:`_bounded_softmax` runs the compiled kernel (host arrays, Numba)."""
        return self.backend.on_host and _kernels.compiled(dtype)

    def _bounded_softmax(self, scores, out, sums, exact, *, shift=None):
        """Softmax over the rows of ``scores - shift`` (R, K) into ``out``, for scores that do not
        exceed ``shift`` (default 0: scores already shifted by the layer's :meth:`bound`), so
        that ``exp`` needs no maximum per row; ``sums`` (R,) is work space.

        Rows whose terms ``exp(scores - shift)`` sum to less than :attr:`min_bounded_sum` take
        ``exact(index)`` instead, their responsibilities with their own maximum; ``index``
        selects them on the host, and is None on a device, where every row is computed and the
        low ones are taken from that (no synchronization).

        Where :meth:`_compiled` holds (``scores`` not ``out``, both C-contiguous), one compiled
        kernel (:func:`pcircuits.dcgmm._kernels.bounded_softmax`) makes each row's terms, their
        sum and the scaled row; otherwise (no Numba, ``PCIRCUITS_JIT=0``, a device) the same
        steps run as array operations: ``exp``, the row sums as a matrix-vector product, one
        division. ``scores`` may be ``out`` there.
        """
        be, xp = self.backend, self.backend.xp
        if (self._compiled(out.dtype) and scores is not out and scores.dtype == out.dtype
                and scores.flags.c_contiguous and out.flags.c_contiguous):
            if _kernels.bounded_softmax(scores, 0.0 if shift is None else shift, out, sums, self.min_bounded_sum):
                index = np.flatnonzero(sums < self.min_bounded_sum)
                out[index] = exact(index)
            return out
        if shift is None:
            xp.exp(scores, out=out)
        else:
            xp.exp(xp.subtract(scores, shift, out=out), out=out)
        xp.matmul(out, xp.ones(self.num_components, dtype=out.dtype), out=sums)
        low = sums < self.min_bounded_sum
        if be.maybe_any(low):
            if be.on_host:
                index = xp.flatnonzero(low)
                out[index] = exact(index)
                sums[index] = 1.0
            else:
                out[...] = xp.where(low[:, None], exact(None), out)
                sums[...] = xp.where(low, 1.0, sums)
        xp.divide(out, sums[:, None], out=out)
        return out

    def forward(self, x):
        n = x.shape[0]
        h, w, k = self.output_shape
        flat = self._flat(x)
        if not self.shared or self.backend.maybe_any(self.backend.xp.isnan(flat)):
            return self.responsibilities(self.log_scores(x), overwrite=True).reshape(n, h, w, k)
        rows = flat.reshape(n * self.num_positions, self.dim)
        fused = self._forward_small if self.dim <= self.bounded_dim else self._forward_wide
        return fused(rows).reshape(n, h, w, k)

    def _blocks(self, num_rows: int, block_rows: int | None = None) -> int:
        """Rows per block of a forward pass: ``block_rows`` (default :attr:`block_rows`) on the
        host, all rows at once on a device."""
        return min(block_rows or self.block_rows, num_rows) if self.backend.on_host else num_rows

    def _score_tables(self, dtype, *, bounded: bool = False):
        """Shared parameters as the tables of ``log(pi_k N_k(x)) = x^2 @ Q + x @ L + c``: ``Q = -D^2 / 2``
        (d, K), ``L = D^2 mu`` (d, K) (transposed views of the parameter arrays) and ``c`` (1, K), in
        ``dtype``.

        ``bounded`` subtracts the layer's :meth:`bound` from ``c``.
        """
        quadratic, linear, per_dim, log_pi = self._terms()
        constant = per_dim[0].sum(-1) + log_pi[0]
        if bounded:
            constant = constant - self.bound()
        return tuple(a.astype(dtype, copy=False) for a in (quadratic[0].T, linear[0].T, constant[None, :]))

    def _scores_into(self, rows, tables, out, squares=None, ones=None):
        """``x^2 @ Q + x @ L + c`` (:meth:`_score_tables`) of rows (R, d) into ``out`` (R, K): the
        first product is written, the second and the constants (a rank-one product of a column of
        ``ones`` (R, 1) with ``c``) are accumulated into it by BLAS (:meth:`Backend.matmul_add`).
        ``squares`` (R, d) and ``ones`` are made here unless given."""
        be, xp = self.backend, self.backend.xp
        quadratic, linear, constant = tables
        if squares is None:
            squares = xp.empty(rows.shape, dtype=out.dtype)
        if ones is None:
            ones = xp.ones((rows.shape[0], 1), dtype=out.dtype)
        xp.multiply(rows, rows, out=squares)
        xp.matmul(squares, quadratic, out=out)
        be.matmul_add(rows, linear, out)
        be.matmul_add(ones, constant, out)
        return out

    def _forward_small(self, rows):
        """Responsibilities of complete rows (R, d), d small.

        The log-scores less the layer's :meth:`bound` ``C`` never exceed 0, so ``exp`` needs no
        maximum per row: per block, the shifted scores are made (:meth:`_scores_into`) in the
        output, or in a work buffer where the compiled kernel reads them, and turned into
        responsibilities by :meth:`_bounded_softmax` (which recomputes rows far below the
        bound with their own maximum).
        """
        xp = self.backend.xp
        num_rows, d = rows.shape
        k = self.num_components
        tables = self._score_tables(rows.dtype, bounded=True)
        block = self._blocks(num_rows, self.bounded_block_rows)
        squares, ones, shifted, sums = self._work_buffers(block, rows.dtype)
        out = xp.empty((num_rows, k), dtype=rows.dtype)
        for start in range(0, num_rows, block):
            stop = min(start + block, num_rows)
            size = stop - start
            part, s = rows[start:stop], out[start:stop]
            scores = s if shifted is None else shifted[:size]
            self._scores_into(part, tables, scores, squares[:size], ones[:size])
            self._bounded_softmax(scores, s, sums[:size],
                                  lambda index, part=part: self._exact_rows(part if index is None else part[index], tables))
        return out

    def _work_buffers(self, block: int, dtype):
        """The buffers of :meth:`_forward_small` for blocks of ``block`` rows: squares (block, d),
        a column of ones (block, 1), the shifted scores (block, K) where the compiled kernel
        reads them (else None: they are made in the output) and the row sums (block,); made once
        per block size and data type and reused (fresh host memory costs a page fault per page on
        first use)."""
        key = (block, np.dtype(dtype), self._compiled(dtype))
        if self._buffers is None or self._buffers[0] != key:
            xp = self.backend.xp
            shifted = xp.empty((block, self.num_components), dtype=dtype) if key[2] else None
            self._buffers = (key, (xp.empty((block, self.dim), dtype=dtype), xp.ones((block, 1), dtype=dtype),
                                   shifted, xp.empty(block, dtype=dtype)))
        return self._buffers[1]

    def _exact_rows(self, rows, tables):
        """Responsibilities of rows (R, d), each shifted by its own maximum."""
        xp = self.backend.xp
        scores = self._scores_into(rows, tables, xp.empty((rows.shape[0], self.num_components), dtype=rows.dtype))
        return self._softmax_by_maximum(scores, overwrite=True)

    def _forward_wide(self, rows):
        """Responsibilities of complete rows (R, d), d large: per block, one product of the
        features ``[x^2, x, 1]`` with the table, softmax over ``K`` in place in the output."""
        xp = self.backend.xp
        num_rows, d = rows.shape
        table = self._table()[0]                                                    # (2d+1, K)
        block = self._blocks(num_rows)
        features = xp.empty((block, 2 * d + 1), dtype=rows.dtype)
        features[:, 2 * d] = 1.0
        top = xp.empty((block, 1), dtype=rows.dtype)
        out = xp.empty((num_rows, self.num_components), dtype=rows.dtype)
        for start in range(0, num_rows, block):
            stop = min(start + block, num_rows)
            part, f, s, m = rows[start:stop], features[:stop - start], out[start:stop], top[:stop - start]
            xp.multiply(part, part, out=f[:, :d])
            f[:, d:2 * d] = part
            xp.matmul(f, table, out=s)
            xp.max(s, axis=1, keepdims=True, out=m)
            xp.subtract(s, m, out=s)
            xp.exp(s, out=s)
            xp.sum(s, axis=1, keepdims=True, out=m)
            xp.divide(s, m, out=s)
        return out

    def log_likelihood(self, x, *, kind: str = "exact"):
        """Per-position log-likelihood, shape (batch, positions).

        ``kind="exact"``: ``log sum_k pi_k N_k``; ``"max-component"``: ``max_k log(pi_k N_k)``
        (eq. 8 before the mean over positions).
        """
        scores = self.log_scores(x)
        if kind == "max-component":
            return scores.max(-1)
        if kind != "exact":
            raise ValueError(f"CGMM.log_likelihood: kind must be 'exact' or 'max-component', got {kind!r}")
        return self.backend.logsumexp(scores, axis=-1)

    # ---- training ------------------------------------------------------------------------
    def _smoothing(self):
        if self._kernel_sigma != self.annealing.sigma:
            g = self.annealing.kernel()
            self._kernel = None if g is None else self.backend.asarray(g)
            self._kernel_sigma = self.annealing.sigma
        return self._kernel

    def objective_and_gradients(self, x, scores=None) -> tuple[float, dict]:
        """The annealed max-component objective (to maximize) and its gradients.

        Parameters
        ----------
        x : array, shape ``(batch, *input_shape)``
        scores : array, shape (batch, positions, K), optional
            ``log_scores(x)`` when already computed.

        Returns
        -------
        objective : float
            Mean over examples and positions of ``max_k sum_j G[k, j] log(pi_j N_j(x))``.
        gradients : dict
            ``logits``, ``means``, ``precisions``: the gradient of the objective (for
            per-position parameters, of the mean over examples at each position).
        """
        xp = self.backend.xp
        flat = self._flat(x)
        n, p, d = flat.shape
        k = self.num_components
        if scores is None:
            scores = self.log_scores(x)
        kernel = self._smoothing()
        smoothed = scores if kernel is None else scores @ kernel.T
        winner = smoothed.argmax(-1)                                                # (N, P)
        objective = float(xp.take_along_axis(smoothed, winner[..., None], -1).mean())
        if kernel is None:
            weight = (xp.arange(k) == winner[..., None]).astype(scores.dtype)
        else:
            weight = kernel[winner]                                                 # (N, P, K)
        weight = weight / (n if not self.shared else n * p)
        if self.shared:
            rows = flat.reshape(n * p, d)
            weight = weight.reshape(n * p, k)
            total = weight.sum(0)[None]                                             # (1, K)
            first = (weight.T @ rows)[None]                                         # (1, K, d)
            second = (weight.T @ (rows * rows))[None]
        else:
            by_position = flat.transpose(1, 0, 2)                                   # (P, N, d)
            weight = weight.transpose(1, 0, 2)                                      # (P, N, K)
            total = weight.sum(1)                                                   # (P, K)
            first = xp.matmul(weight.transpose(0, 2, 1), by_position)               # (P, K, d)
            second = xp.matmul(weight.transpose(0, 2, 1), by_position * by_position)
        mu, prec = self.means, self.precisions
        weights = self.weights()
        grads = {
            "logits": total - weights * total.sum(-1, keepdims=True),
            "means": prec ** 2 * (first - mu * total[..., None]),
            "precisions": total[..., None] / prec - prec * (second - 2 * mu * first + mu ** 2 * total[..., None]),
        }
        return objective, grads

    def apply_gradients(self, grads: dict):
        """One ascent step on the objective; precisions are clipped to their range."""
        xp = self.backend.xp
        for name, grad in grads.items():
            setattr(self, name, getattr(self, name) + self.learning_rate * self.rates[name] * grad)
        self.precisions = xp.clip(self.precisions, self.min_precision, self.max_precision)

    def input_gradient(self, x):
        """Per-example max-component objective (mean over positions, eq. 8) and its gradient
        with respect to ``x`` (used by sharpening).

        Returns
        -------
        objective : array, shape (batch,)
        gradient : array, shape ``(batch, *input_shape)``
        """
        xp = self.backend.xp
        flat = self._flat(x)
        n, p, d = flat.shape
        scores = self.log_scores(x)
        winner = scores.argmax(-1)                                                  # (N, P)
        objective = xp.take_along_axis(scores, winner[..., None], -1)[..., 0].mean(-1)
        if self.shared:
            mu, prec = self.means[0][winner], self.precisions[0][winner]            # (N, P, d)
        else:
            positions = xp.arange(p)[None, :]
            mu, prec = self.means[positions, winner], self.precisions[positions, winner]
        gradient = -(prec ** 2) * (flat - mu) / p
        return objective, gradient.reshape(x.shape)

    # ---- sampling ------------------------------------------------------------------------
    def backward(self, control, rng, *, top_s: int | None = None, divisor: float = 1.0, **options):
        """Draw one component per position from ``control`` (None: uniform) and sample it.

        Parameters
        ----------
        control : array, shape (batch, H, W, K), or None
            Non-negative prior weights over the components at every position.
        rng : RandomSource
        top_s : int, optional
            Keep only the ``top_s`` largest control values at each position.
        divisor : float
            Divide the components' standard deviations by this (``inf``: output the means).
        """
        be, xp = self.backend, self.backend.xp
        h, w, k = self.output_shape
        p, d = self.num_positions, self.dim
        if control is None:
            raise ValueError("CGMM.backward: needs a control signal (pass ones for a uniform choice)")
        n = control.shape[0]
        prior = xp.maximum(control.reshape(n, p, k), 0.0)
        if top_s is not None and top_s < k:
            threshold = xp.sort(prior, axis=-1)[..., k - top_s][..., None]
            prior = xp.where(prior >= threshold, prior, 0.0)
        total = prior.sum(-1, keepdims=True)
        prior = xp.where(total > 0, prior / xp.where(total > 0, total, 1.0), 1.0 / k)
        cumulative = xp.cumsum(prior, axis=-1)
        u = rng.uniform((n, p, 1)) * cumulative[..., -1:]
        choice = xp.minimum((cumulative < u).sum(-1), k - 1)                        # (N, P)
        if self.shared:
            mu, prec = self.means[0][choice], self.precisions[0][choice]
        else:
            positions = xp.arange(p)[None, :]
            mu, prec = self.means[positions, choice], self.precisions[positions, choice]
        out = mu
        if divisor != math.inf:
            out = mu + rng.normal((n, p, d)) / (prec * divisor)
        return out.reshape(n, *self.input_shape).astype(be.dtype, copy=False)


class Classifier(Layer):
    """Linear softmax classifier ``C(S)`` on the responsibilities of the highest cGMM layers (III-F).

    Trained by SGD on its own cross-entropy loss; nothing is back-propagated into the cGMM
    layers. Backward mode inverts the softmax approximately:
    ``T' = W^T (log T - b + c)`` restricted to the layer below, with ``c`` making every entry
    positive (``T`` is a one-hot class, clipped away from 0).

    Parameters
    ----------
    num_classes : int
        ``S``.
    num_inputs : int
        How many of the highest cGMM layers feed it (the paper's DCGMM-B classifier uses 2).
    learning_rate : float
    """

    trainable = True

    def __init__(self, num_classes: int, *, num_inputs: int = 1, learning_rate: float = 0.05):
        super().__init__()
        self.num_classes = _positive_int(num_classes, "Classifier: num_classes")
        self.num_inputs = _positive_int(num_inputs, "Classifier: num_inputs")
        self.learning_rate = float(learning_rate)
        self.source_shapes: list = []

    @property
    def notation(self) -> str:
        return f"C({self.num_classes})"

    def compute_output_shape(self, input_shape):
        return 1, 1, self.num_classes

    def build(self, input_shape, backend, rng, source_shapes=None):
        super().build(input_shape, backend, rng)
        self.source_shapes = list(source_shapes or [input_shape])
        features = sum(int(np.prod(s)) for s in self.source_shapes)
        self.weight = backend.asarray(np.zeros((features, self.num_classes)))
        self.bias = backend.asarray(np.zeros(self.num_classes))

    def parameters(self):
        return {"weight": self.weight, "bias": self.bias}

    def set_parameters(self, **arrays):
        for name, value in arrays.items():
            setattr(self, name, self.backend.asarray(value))

    def features(self, sources):
        """Concatenated flattened activities of the source layers, shape (batch, features)."""
        xp = self.backend.xp
        return xp.concatenate([s.reshape(s.shape[0], -1) for s in sources], axis=1)

    def logits(self, sources):
        return self.features(sources) @ self.weight + self.bias

    def forward(self, sources):
        """Class probabilities, shape (batch, 1, 1, S), from the list of source activities."""
        xp = self.backend.xp
        z = self.logits(sources)
        e = xp.exp(z - z.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).reshape(-1, 1, 1, self.num_classes)

    def loss_and_gradients(self, sources, labels) -> tuple[float, int, dict]:
        """Mean cross-entropy, number of correct predictions, and gradients of the loss."""
        xp = self.backend.xp
        features = self.features(sources)
        z = features @ self.weight + self.bias
        z = z - z.max(-1, keepdims=True)
        log_p = z - xp.log(xp.exp(z).sum(-1, keepdims=True))
        n = features.shape[0]
        rows = xp.arange(n)
        loss = float(-log_p[rows, labels].mean())
        correct = int((log_p.argmax(-1) == labels).sum())
        delta = xp.exp(log_p)
        delta[rows, labels] -= 1.0
        delta /= n
        return loss, correct, {"weight": features.T @ delta, "bias": delta.sum(0)}

    def apply_gradients(self, grads: dict):
        self.weight = self.weight - self.learning_rate * grads["weight"]
        self.bias = self.bias - self.learning_rate * grads["bias"]

    def backward(self, control, rng=None, **options):
        """Control for the layer below from class probabilities ``control`` (batch, 1, 1, S)."""
        xp = self.backend.xp
        n = control.shape[0]
        t = xp.log(xp.clip(control.reshape(n, self.num_classes), 1e-6, 1.0)) - self.bias
        below = int(np.prod(self.source_shapes[-1]))
        raw = t @ self.weight[-below:].T                                            # (N, features of layer below)
        raw = raw - raw.min(-1, keepdims=True) + 1e-6
        return raw.reshape(n, *self.source_shapes[-1])
