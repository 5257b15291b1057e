"""The layer protocol, dense layers stacked over many independent networks, and ``Sequential``.

A layer is an *architecture*: it holds sizes and settings, never parameter values. Its
parameters live in a plain dict of named arrays that :meth:`Layer.init` creates, so the same
arrays can be trained in place by :class:`pcircuits.optim.Adam`, saved as named arrays, stacked
with other networks' arrays (:func:`~pcircuits.nn.concatenate_params`) or held by a leaf family.

Every layer implements the same methods::

    params = layer.init(seed, backend="numpy", dtype="float32")   # {name: array}
    y, cache = layer.forward(params, x)                           # keeps what backward needs
    grads, grad_x = layer.backward(params, cache, grad_y)         # vector-Jacobian products
    layer.param_shapes(), layer.param_constraints(), layer.config()

Shapes: ``L`` networks (``num_networks``) run side by side, each on its own slice of the batch.
An input is ``(L, batch, in_features)``, or ``(batch, in_features)`` for one input shared by all
``L`` networks; outputs are ``(L, batch, out_features)``. A dense layer's weights are
``(L, in_features, out_features)`` and its biases ``(L, out_features)``, so one batched matmul
computes all ``L`` networks, and the parameters of two stacks of the same architecture
concatenate along axis 0 into one stack.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import jit
from ..backend import Backend, array_module, get_backend
from ..constraints import Constraint, real

__all__ = ["Layer", "StackedDense", "Sequential", "LAYERS", "layer_from_config", "INITIALIZERS"]

#: Layer classes by ``kind`` (the key of :meth:`Layer.config`), filled by ``Layer.__init_subclass__``.
LAYERS: dict[str, type["Layer"]] = {}

#: Weight initializations of :class:`StackedDense` (Glorot and Bengio 2010, eq. 16 and its normal form).
INITIALIZERS = ("glorot_uniform", "glorot_normal")


class _Cache:
    """What a top-level :meth:`Layer.forward` returns as ``cache``: the layer's own cache and the
    output's shape and dtype, against which :meth:`Layer.backward` checks ``grad_y``."""

    __slots__ = ("inner", "shape", "dtype")

    def __init__(self, inner, shape, dtype):
        self.inner, self.shape, self.dtype = inner, shape, dtype


class Layer:
    """Base class of the layers: the protocol, and the argument checks shared by all of them.

    Subclasses set ``kind`` (the registry name) and ``constraints`` (one per parameter name),
    and implement ``_forward`` and ``_backward`` (the passes without checks); layers with
    parameters also implement :meth:`param_shapes` and ``_draw``.
    """

    kind: str = ""
    #: The domain of each parameter (network weights are unconstrained reals).
    constraints: dict[str, Constraint] = {}
    #: Number of stacked networks; None for layers that work with any number (activations).
    num_networks: int | None = None
    #: Feature sizes of input and output; None where the layer keeps the size it is given.
    in_features: int | None = None
    out_features: int | None = None
    #: Whether the layer's cache refers to its output (then the next layer must not overwrite it).
    keeps_output: bool = True
    #: Whether the layer hands its input back as output and ``grad_y`` back as ``grad_x``
    #: (Identity); any other layer returns new arrays, or reuses memory it was given up.
    passes_through: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            LAYERS[cls.kind] = cls

    # ---- parameters ---------------------------------------------------------------------
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter by name (empty for layers without parameters)."""
        return {}

    def param_constraints(self) -> dict[str, Constraint]:
        """The constraint of every parameter by name (what a generic learner reads)."""
        return {name: self.constraints[name] for name in self.param_shapes()}

    @property
    def num_params(self) -> int:
        """Number of scalar parameters over all stacked networks."""
        return int(sum(math.prod(shape) for shape in self.param_shapes().values()))

    def init(self, seed=None, *, backend: str | Backend = "numpy", dtype: str = "float32") -> dict:
        """Fresh parameters drawn from ``seed``.

        Parameters
        ----------
        seed : int, sequence of int, numpy.random.Generator or None
            Values are drawn in float64 by NumPy and then cast, so a seed gives the same
            parameters (up to the cast) on every backend.
        backend : {"numpy", "cupy"} or Backend
        dtype : {"float32", "float64"}
            Ignored when ``backend`` is a Backend (its own dtype is used).

        Returns
        -------
        dict of str -> array
            One array per name of :meth:`param_shapes`, on the backend, in its dtype.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        backend = get_backend(backend, dtype)
        return {name: backend.asarray(value) for name, value in self._draw(rng).items()}

    def _draw(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial values as float64 NumPy arrays, drawn in the order of :meth:`param_shapes`."""
        return {}

    def check_params(self, params: dict, *, where: str = ""):
        """Raise ValueError naming the layer when a parameter is missing, unknown or misshapen."""
        where = where or self._label()
        if not isinstance(params, dict):
            raise TypeError(f"{where}: params must be a dict of named arrays, got {type(params).__name__}")
        shapes = self.param_shapes()
        missing = [name for name in shapes if name not in params]
        unknown = [name for name in params if name not in shapes]
        if missing or unknown:
            problems = [f"{what} {names}" for what, names in (("missing", missing), ("unknown", unknown)) if names]
            raise ValueError(f"{where}: parameters {' and '.join(problems)}; expected {sorted(shapes)}")
        for name, shape in shapes.items():
            got = tuple(getattr(params[name], "shape", ()))
            if got != shape:
                raise ValueError(f"{where}: parameter {name!r} has shape {got}, expected {shape}")

    # ---- passes -------------------------------------------------------------------------
    def forward(self, params: dict, x) -> tuple[Any, Any]:
        """The output for input ``x``, and the cache :meth:`backward` needs.

        Checks ``x`` and ``params`` first and names the layer and the shapes when they do not fit.

        Parameters
        ----------
        params : dict of str -> array
        x : array, shape (L, batch, in_features) or (batch, in_features)
            float32 or float64, the dtype of ``params``; ``(batch, in_features)`` is one input
            shared by all ``L`` networks. ``x`` is never modified.

        Returns
        -------
        y : array, shape (L, batch, out_features)
            (``(batch, features)`` for a layer without networks given a 2-d input.)
        cache : object
            Opaque; pass it to :meth:`backward` unchanged. It holds references, not copies.
        """
        where = self._label()
        self._check_input(x, where)
        self.check_params(params, where=where)
        _check_dtypes(params, x, where)
        y, cache = self._forward(params, x, False)
        return y, _Cache(cache, tuple(y.shape), y.dtype)

    def backward(self, params: dict, cache, grad_y, *, input_grad: bool = True) -> tuple[dict, Any]:
        """Vector-Jacobian products: the gradients of ``sum(grad_y * y)``.

        Parameters
        ----------
        params : dict of str -> array
            The parameters the forward pass used.
        cache : object
            What :meth:`forward` returned with ``y``.
        grad_y : array, shape of ``y``
            The gradient of the loss with respect to the output; never modified.
        input_grad : bool
            False skips the gradient with respect to the input (data needs none; the first
            layer's input-side matmul is then not computed) and returns None for it.

        Returns
        -------
        grads : dict of str -> array
            One gradient per parameter, with the parameter's name and shape.
        grad_x : array, shape of ``x``, or None
        """
        where = self._label()
        if not isinstance(cache, _Cache):
            raise TypeError(f"{where}: cache must be what forward returned, got {type(cache).__name__}")
        if tuple(getattr(grad_y, "shape", ())) != cache.shape or getattr(grad_y, "dtype", None) != cache.dtype:
            raise ValueError(f"{where}: grad_y has shape {tuple(getattr(grad_y, 'shape', ()))} and dtype "
                             f"{getattr(grad_y, 'dtype', None)}, the output had {cache.shape} and {cache.dtype}")
        return self._backward(params, cache.inner, grad_y, input_grad, False)

    def _forward(self, params: dict, x, overwrite: bool) -> tuple[Any, Any]:
        """The pass without checks. ``overwrite``: the caller gives ``x`` up, so its memory
        may hold the output (only :class:`Sequential` passes True, for intermediate arrays)."""
        raise NotImplementedError(f"{type(self).__name__}._forward")

    def _backward(self, params: dict, cache, grad_y, input_grad: bool, overwrite: bool) -> tuple[dict, Any]:
        """The pass without checks. ``overwrite``: the caller gives ``grad_y`` up."""
        raise NotImplementedError(f"{type(self).__name__}._backward")

    # ---- description --------------------------------------------------------------------
    def config(self) -> dict:
        """JSON-ready settings that rebuild the layer with :func:`layer_from_config`."""
        return {"kind": self.kind}

    @classmethod
    def from_config(cls, settings: dict) -> "Layer":
        """The layer with these settings (``config()`` without its ``kind``)."""
        return cls(**settings)

    def _check_input(self, x, where: str):
        """Raise when ``x`` is not a float array of rank 2 or 3 that fits this layer."""
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"{where}: input must be a NumPy or CuPy array, got {type(x).__name__}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: input must be float32 or float64, got {x.dtype}")
        shape = tuple(x.shape)
        features = "features" if self.in_features is None else str(self.in_features)
        networks = "L" if self.num_networks is None else str(self.num_networks)
        ok = len(shape) in (2, 3) and (self.in_features is None or shape[-1] == self.in_features) \
            and (len(shape) == 2 or self.num_networks is None or shape[0] == self.num_networks)
        if not ok:
            raise ValueError(f"{where}: input has shape {shape}, expected ({networks}, batch, {features}) or "
                             f"(batch, {features})")

    def _label(self) -> str:
        """How error messages name the layer."""
        return repr(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class StackedDense(Layer):
    """``L`` independent affine maps ``y[l] = x[l] @ weight[l] + bias[l]``, one batched matmul.

    Parameters
    ----------
    num_networks : int
        ``L``, the number of stacked networks (1 for a plain network).
    in_features, out_features : int
    bias : bool
        False leaves the bias out (the layer then has only ``"weight"``).
    init : {"glorot_uniform", "glorot_normal"}
        Weights drawn independently for every network with variance
        ``gain**2 * 2 / (in_features + out_features)`` (Glorot and Bengio 2010, eq. 16): uniform
        on ``±gain * sqrt(6 / (in_features + out_features))``, or normal. Biases start at 0.
    gain : float
        Scale of the initial weights (``sqrt(2)`` suits ReLU networks).

    Notes
    -----
    Parameters: ``"weight"`` of shape ``(L, in_features, out_features)`` and ``"bias"`` of shape
    ``(L, out_features)``. Forward is ``matmul(x, weight) + bias``; backward is
    ``x^T g`` (weight), the batch sum of ``g`` (bias, computed as a matmul with a row of ones)
    and ``g weight^T`` (input). A shared input ``(batch, in_features)`` broadcasts over the
    networks; its gradient sums over them in one ``(batch, L*out) @ (L*out, in)`` matmul.
    """

    kind = "stacked_dense"
    constraints = {"weight": real, "bias": real}
    keeps_output = False

    def __init__(self, num_networks: int, in_features: int, out_features: int, *, bias: bool = True,
                 init: str = "glorot_uniform", gain: float = 1.0):
        for name, value in (("num_networks", num_networks), ("in_features", in_features),
                            ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"StackedDense: {name} must be a positive integer, got {value!r}")
        if init not in INITIALIZERS:
            raise ValueError(f"StackedDense: init must be one of {INITIALIZERS}, got {init!r}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not (math.isfinite(gain) and gain > 0):
            raise ValueError(f"StackedDense: gain must be a positive number, got {gain!r}")
        self.num_networks = int(num_networks)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.bias = bool(bias)
        self.init_kind = init
        self.gain = float(gain)

    def param_shapes(self):
        shapes = {"weight": (self.num_networks, self.in_features, self.out_features)}
        if self.bias:
            shapes["bias"] = (self.num_networks, self.out_features)
        return shapes

    def _draw(self, rng):
        shape = (self.num_networks, self.in_features, self.out_features)
        variance = self.gain ** 2 * 2.0 / (self.in_features + self.out_features)
        if self.init_kind == "glorot_uniform":
            limit = math.sqrt(3.0 * variance)
            weight = rng.uniform(-limit, limit, size=shape)
        else:
            weight = rng.normal(0.0, math.sqrt(variance), size=shape)
        arrays = {"weight": weight}
        if self.bias:
            arrays["bias"] = np.zeros((self.num_networks, self.out_features))
        return arrays

    def _forward(self, params, x, overwrite):
        xp = array_module(x)
        y = xp.matmul(x, params["weight"])
        if self.bias:
            _add_bias(xp, y, params["bias"])
        return y, x

    def _backward(self, params, cache, grad_y, input_grad, overwrite):
        xp = array_module(grad_y)
        x = cache
        weight = params["weight"]
        grads = {"weight": xp.matmul(xp.swapaxes(x, -1, -2), grad_y)}
        if self.bias:
            # The batch sum as a matmul with a row of ones: many times faster than
            # grad_y.sum(axis=1) when the feature axis is short.
            ones = xp.ones((1, grad_y.shape[1]), dtype=grad_y.dtype)
            grads["bias"] = xp.matmul(ones, grad_y).reshape(self.num_networks, self.out_features)
        if not input_grad:
            return grads, None
        if x.ndim == 3:
            return grads, xp.matmul(grad_y, xp.swapaxes(weight, 1, 2))
        networks, batch, out = grad_y.shape
        stacked_grad = xp.swapaxes(grad_y, 0, 1).reshape(batch, networks * out)
        stacked_weight = xp.swapaxes(weight, 1, 2).reshape(networks * out, self.in_features)
        return grads, xp.matmul(stacked_grad, stacked_weight)

    def config(self):
        return {"kind": self.kind, "num_networks": self.num_networks, "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias, "init": self.init_kind, "gain": self.gain}

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        return f"StackedDense({self.num_networks}, {self.in_features}, {self.out_features}{extra})"


class Sequential(Layer):
    """Layers applied in order; parameters named ``"<position>.<name>"`` (``"0.weight"``).

    Parameters
    ----------
    layers : sequence of Layer
        Consecutive feature sizes must agree, and every layer with a network count must have
        the same one; checked here, naming the two layers that disagree.

    Notes
    -----
    Checks run once, at the Sequential's own ``forward``/``backward``, not at every layer.
    Intermediate arrays that nothing else refers to are handed to the next layer with
    ``overwrite=True`` (an activation after a dense layer works in place, forward and backward);
    the caller's ``x`` and ``grad_y`` are never modified.
    """

    kind = "sequential"

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential: needs at least one layer")
        for position, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {position} is a {type(layer).__name__}, not a Layer")
        self.layers = layers
        sized = [(i, layer) for i, layer in enumerate(layers) if layer.in_features is not None]
        for (i, a), (j, b) in zip(sized, sized[1:]):
            if a.out_features != b.in_features:
                raise ValueError(f"Sequential: layer {i} {a!r} gives {a.out_features} features but layer {j} "
                                 f"{b!r} takes {b.in_features}")
        stacked = [(i, layer) for i, layer in enumerate(layers) if layer.num_networks is not None]
        for (i, a), (j, b) in zip(stacked, stacked[1:]):
            if a.num_networks != b.num_networks:
                raise ValueError(f"Sequential: layer {i} {a!r} stacks {a.num_networks} networks but layer {j} "
                                 f"{b!r} stacks {b.num_networks}")
        self.num_networks = stacked[0][1].num_networks if stacked else None
        self.in_features = sized[0][1].in_features if sized else None
        self.out_features = sized[-1][1].out_features if sized else None
        self.passes_through = all(layer.passes_through for layer in layers)
        self.keeps_output = ([True] + [layer.keeps_output for layer in layers if not layer.passes_through])[-1]
        self._prefixes = [f"{i}." for i in range(len(layers))]
        self._inner_names = [tuple(layer.param_shapes()) for layer in layers]
        self._shapes = {prefix + name: shape for prefix, layer in zip(self._prefixes, layers)
                        for name, shape in layer.param_shapes().items()}

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, position: int) -> Layer:
        return self.layers[position]

    def __iter__(self):
        return iter(self.layers)

    # ---- parameters ---------------------------------------------------------------------
    def param_shapes(self):
        return dict(self._shapes)

    def param_constraints(self):
        return {prefix + name: c for prefix, layer in zip(self._prefixes, self.layers)
                for name, c in layer.param_constraints().items()}

    def _draw(self, rng):
        return {prefix + name: value for prefix, layer in zip(self._prefixes, self.layers)
                for name, value in layer._draw(rng).items()}

    def _layer_params(self, params: dict, position: int) -> dict:
        prefix = self._prefixes[position]
        return {name: params[prefix + name] for name in self._inner_names[position]}

    def check_params(self, params: dict, *, where: str = ""):
        if isinstance(params, dict) and params.keys() == self._shapes.keys() \
                and all(getattr(params[name], "shape", None) == shape for name, shape in self._shapes.items()):
            return
        where = where or "Sequential"
        if not isinstance(params, dict):
            raise TypeError(f"{where}: params must be a dict of named arrays, got {type(params).__name__}")
        unknown = sorted(set(params) - set(self.param_shapes()))
        if unknown:
            raise ValueError(f"{where}: unknown parameters {unknown}; expected {sorted(self.param_shapes())}")
        for i, (prefix, layer) in enumerate(zip(self._prefixes, self.layers)):
            inner = {name[len(prefix):]: value for name, value in params.items() if name.startswith(prefix)}
            layer.check_params(inner, where=f"{where} layer {i} {layer!r}")

    # ---- passes -------------------------------------------------------------------------
    def forward(self, params, x):
        """Run the layers in order (see :meth:`Layer.forward`); errors name the failing layer."""
        self._check_input(x, f"Sequential layer 0 {self.layers[0]!r}")
        self.check_params(params)
        _check_dtypes(params, x, "Sequential")
        y, caches = self._forward(params, x, False)
        return y, _Cache(caches, tuple(y.shape), y.dtype)

    def _forward(self, params, x, overwrite):
        caches = []
        fused = False
        for i, layer in enumerate(self.layers):
            if fused:               # the ReLU after a dense layer ran with its bias: it caches its output
                y, cache, fused = x, x, False
            elif (isinstance(layer, StackedDense) and layer.bias and i + 1 < len(self.layers)
                  and self.layers[i + 1].kind == "relu" and _compiled(x, params[f"{i}.weight"])):
                y = np.matmul(x, params[f"{i}.weight"])
                _bias_relu_kernel(y, params[f"{i}.bias"])
                cache, fused = x, True
            else:
                y, cache = layer._forward(self._layer_params(params, i), x, overwrite)
            caches.append(cache)
            if not layer.passes_through:
                overwrite = not layer.keeps_output
            x = y
        return x, caches

    def _backward(self, params, cache, grad_y, input_grad, overwrite):
        per_layer = []
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            layer_grads, grad_y = layer._backward(self._layer_params(params, i), cache[i], grad_y,
                                                  input_grad or i > 0, overwrite)
            per_layer.append({self._prefixes[i] + name: g for name, g in layer_grads.items()})
            overwrite = overwrite or not layer.passes_through
        return {name: g for grads in reversed(per_layer) for name, g in grads.items()}, grad_y

    def config(self):
        return {"kind": self.kind, "layers": [layer.config() for layer in self.layers]}

    def _label(self):
        return "Sequential"

    @classmethod
    def from_config(cls, settings):
        return cls([layer_from_config(c) for c in settings.get("layers", [])])

    def __repr__(self):
        inner = "".join(f"\n  ({i}) " + repr(layer).replace("\n", "\n  ") for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


#: Shortest row a broadcast bias addition should run over (see ``_add_bias``).
_BIAS_ROW = 256


def _add_bias(xp, y, bias):
    """``y += bias[:, None, :]`` for ``y`` of shape (L, batch, out), in rows of at least
    ``_BIAS_ROW`` entries where the batch allows.

    With a short feature axis, NumPy's broadcast addition runs an inner loop of only ``out``
    entries per row and is several times slower than a contiguous addition. Viewing ``k``
    consecutive examples as one row of ``k * out`` entries (``k`` divides the batch) against the
    bias repeated ``k`` times gives the same sums with long inner loops.
    """
    if _compiled(y, bias) and y.flags.c_contiguous:
        _bias_kernel(y, bias)
        return
    networks, batch, out = y.shape
    fold = min(batch, max(1, _BIAS_ROW // out))
    while batch % fold:
        fold -= 1
    if fold == 1:
        y += bias[:, None, :]
        return
    rows = y.reshape(networks, batch // fold, fold * out)
    rows += xp.repeat(bias[:, None, :], fold, axis=1).reshape(networks, 1, fold * out)


def _compiled(y, other) -> bool:
    """Whether the compiled kernels below take ``y`` (L, batch, features) with ``other`` (a
    parameter or an array of ``y``'s shape): host NumPy float arrays of one dtype and
    :func:`pcircuits.jit.available`. The NumPy expressions they replace run everywhere else."""
    return (jit.available() and type(y) is np.ndarray and type(other) is np.ndarray and y.ndim == 3
            and y.dtype == other.dtype and y.dtype in (np.float32, np.float64))


if jit.available():
    # float32 constants stay float32 beside float32 values and widen exactly beside float64 ones
    _ZERO32, _ONE32 = np.float32(0), np.float32(1)

    @jit.kernel
    def _bias_kernel(y, bias):
        """``y += bias[:, None, :]`` in one pass (NumPy's broadcast addition runs short inner loops)."""
        networks, batch, out = y.shape
        for n in range(networks):
            for b in range(batch):
                for j in range(out):
                    y[n, b, j] += bias[n, j]

    @jit.kernel
    def _bias_relu_kernel(y, bias):
        """``y = relu(y + bias[:, None, :])`` in one pass, in place (NaN stays NaN, as ``maximum``)."""
        networks, batch, out = y.shape
        for n in range(networks):
            for b in range(batch):
                for j in range(out):
                    v = y[n, b, j] + bias[n, j]
                    y[n, b, j] = _ZERO32 if v < _ZERO32 else v

    @jit.kernel
    def _relu_vjp_kernel(y, grad_y, out):
        """``out = grad_y * (y > 0)`` in one pass (``out`` may be ``grad_y``; ``inf * 0`` is NaN, as in NumPy)."""
        networks, batch, features = y.shape
        for n in range(networks):
            for b in range(batch):
                for j in range(features):
                    out[n, b, j] = grad_y[n, b, j] * (_ONE32 if y[n, b, j] > _ZERO32 else _ZERO32)


def _check_dtypes(params: dict, x, where: str):
    for name, value in params.items():
        if getattr(value, "dtype", None) != x.dtype:
            raise TypeError(f"{where}: input is {x.dtype} but parameter {name!r} is "
                            f"{getattr(value, 'dtype', type(value).__name__)}; use one dtype "
                            f"(init(..., dtype=...) or x.astype(...))")


def layer_from_config(config: dict) -> Layer:
    """The layer :meth:`Layer.config` describes (nested Sequentials included).

    Raises
    ------
    ValueError
        Not a config, an unknown ``kind``, or settings the layer refuses (named in the message).
    """
    if not isinstance(config, dict) or "kind" not in config:
        raise ValueError(f"a layer config must be a dict with a 'kind', got {config!r}")
    settings = dict(config)
    kind = settings.pop("kind")
    if kind not in LAYERS:
        raise ValueError(f"unknown layer kind {kind!r}; known: {sorted(LAYERS)}")
    try:
        return LAYERS[kind].from_config(settings)
    except TypeError as err:
        raise ValueError(f"layer config {config!r} has settings {kind!r} does not take: {err}") from None
