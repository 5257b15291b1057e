"""The Program: a circuit lowered to layers of index tensors and parameter tables, with its passes.

Passes
------
``forward(x, mode)``
    Log-values of every unit (``mode="sum"``: probabilities; ``"max"``: max-product).
``backward(grad_root)``
    Vector-Jacobian product of the root log-values: unit flows, gradients with respect to the
    log-weights (edge flows, the EM statistics when ``grad_root`` is 1), leaf parameters and inputs.
``top_down(x, mode)``
    Viterbi-style selection of one input per active sum unit, vectorized as mask propagation
    (DCSPN Algorithm 1 for any circuit): ``"argmax"`` for MPE, ``"sample"`` for sampling; both
    conditioned on the evidence in ``x``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Backend, get_backend, to_numpy
from ..distributions.relaxations import relaxation_of
from .context import MAX, SUM, PassContext
from .inputs import InputDomain
from .layers import (DenseSumLayer, FusedSumLayer, InputLayer, SegmentProductLayer, SegmentSumLayer, SumLayer,
                     TableSumLayer, build_layer)
from .streams import StreamRandomSource

__all__ = ["Program", "Gradients"]

#: How many forward passes' worth of working memory each kind of pass takes (Program.bytes_per_row).
_PASS_FACTORS = {"forward": 1, "posterior": 2, "top_down": 2}


@dataclass
class Gradients:
    """What :meth:`Program.backward` returns.

    Attributes
    ----------
    unit_flows : array, shape (num_units, batch)
        d(sum of grad_root * root log-values)/d(log-value of each unit). With ``grad_root = 1``
        these are the posterior probabilities that a unit is in the induced tree.
    log_weights : array, shape (num_weights,)
        Gradient with respect to the log of every weight (= expected edge counts for EM).
    leaves : dict
        (family class, variables per unit) -> {parameter name: gradient w.r.t. the
        unconstrained parameter table}.
    inputs : array, shape (batch, num_variables)
        Gradient with respect to the (continuous) inputs.
    """

    unit_flows: object
    log_weights: object
    leaves: dict
    inputs: object


class _Chooser:
    """How a top-down pass picks one input of an active sum unit."""

    def __init__(self, backend, mode: str, rng, weighted: bool, counts: bool, ties: str = "first", noise=None):
        self.backend = backend
        self.noise = noise
        self.mode = mode
        self.rng = rng
        self.weighted = weighted
        self.ties = ties
        self.counts = [] if counts else None

    def __call__(self, scores, layer, nodes, batch):
        """Index of the chosen input per row of ``scores``, shape (n, num_inputs) -> (n,).

        ``nodes`` (n,) are the active units' sum nodes within ``layer`` and ``batch`` (n,) their
        examples: where the Gumbel noise is fixed (``noise``, one vector per node), it is read there.
        """
        xp = self.backend.xp
        if self.mode == "sample":
            if isinstance(self.rng, StreamRandomSource):
                order = self.rng.group(batch)
                chosen = xp.empty(scores.shape[0], dtype=np.int64)
                chosen[order] = xp.argmax(scores[order] + self.rng.gumbel(scores.shape), axis=1)
                return chosen
            if self.noise is None:
                scores = scores + self.rng.gumbel(scores.shape)
            else:
                scores = scores + self.noise.sums[layer.start][nodes, :, batch]
        elif self.ties == "random":
            best = scores.max(axis=1, keepdims=True)
            tied = (scores == best) & (scores > -xp.inf)
            scores = xp.where(tied, self.rng.uniform(scores.shape), -1.0)
        return xp.argmax(scores, axis=1)


class Program:
    """A compiled circuit. Make one with ``circuit.compile()`` or :func:`pcircuits.layerize`."""

    def __init__(self, circuit, plan, backend: Backend):
        self.circuit = circuit
        self.plan = plan
        self.backend = backend
        self.num_variables = circuit.num_variables
        self.num_units = plan.num_units
        self.layers = [build_layer(spec, backend) for spec in plan.layers]
        self.input_layers = [l for l in self.layers if isinstance(l, InputLayer)]
        self.inner_layers = [l for l in self.layers if not isinstance(l, InputLayer)]
        self._table_layers = [l for l in self.layers if isinstance(l, TableSumLayer)]
        #: Input layers that the last forward pass left for later (only table sums read them,
        #: and every table sum looked its values up): :attr:`values` fills their rows.
        self._pending_leaves = []
        self.roots = plan.roots
        self.root_units = plan.root_units
        self.output_slots = np.concatenate([r + np.arange(k) for r, k in zip(plan.roots, plan.root_units)])
        self.num_outputs = len(self.output_slots)
        self._output_slots_b = backend.index(self.output_slots)
        self.num_edges = sum(l.num_edges for l in self.inner_layers)
        self._mark_root_inputs()
        self._load_parameters()
        self.domain = InputDomain(self.num_variables, [spec for spec in plan.layers if hasattr(spec, "family")])
        self._values = None
        self._cache = {}
        self._x = None
        #: The last forward pass's inputs variable-major, (num_variables, batch), as the leaf
        #: layers read them, and whether they hold a missing value.
        self.inputs_t = None
        self.inputs_missing = True
        self._buffers = {}
        from ..inference import DEFAULT_MEMORY_BUDGET  # here: its random streams import numpy.random, 14 ms

        #: Working memory of one chunk of a query, in bytes (see pcircuits.inference).
        self.memory_budget = DEFAULT_MEMORY_BUDGET
        #: Whether the circuit passed its validity check when compiled (then all-missing rows
        #: have log-probability exactly 0).
        self.checked = False
        self._relaxed = None
        self._forward_row_bytes = None

    def _mark_root_inputs(self):
        """Give each product layer the rows of its units that feed a root directly (``None`` when
        none do), so that product dropout can spare the top products.

        The loop runs over the roots' children only. A fused layer's products feed a root when
        the layer's sum node is one; it gets the indices of those nodes.
        """
        feeds_root = np.zeros(self.num_units + 1, dtype=bool)
        for root in self.circuit.roots:
            for child in getattr(root, "children", ()):
                start = self.plan.node_offsets.get(id(child))
                if start is not None:
                    feeds_root[start:start + child.num_units] = True
        for layer in self.layers:
            if layer.kind == "product":
                rows = np.flatnonzero(feeds_root[layer.start:layer.stop])
                layer.root_input_rows = self.backend.index(rows) if len(rows) else None
            elif isinstance(layer, FusedSumLayer):
                nodes = np.flatnonzero(np.isin(layer.start + layer.K * np.arange(layer.N), self.roots))
                layer.root_nodes = self.backend.index(nodes) if len(nodes) else None

    def buffer(self, key, shape, dtype=None):
        """A work array reused across passes of the same shape (allocated once per batch shape).

        Reuse avoids the page faults of fresh large allocations, which otherwise cost more than
        the arithmetic of a pass.
        """
        dtype = self.backend.dtype if dtype is None else dtype
        buf = self._buffers.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = self.backend.xp.empty(shape, dtype=dtype)
            self._buffers[key] = buf
        return buf

    def scratch(self, name, rows: int, batch: int):
        """The first ``rows`` rows of a work array of shape (at least ``rows``, ``batch``) that
        all layers asking for ``name`` share (grown to the largest request, then reused)."""
        buf = self._buffers.get(("scratch", name))
        if buf is None or buf.shape[0] < rows or buf.shape[1] != batch or buf.dtype != self.backend.dtype:
            buf = self.backend.xp.empty((rows, batch), dtype=self.backend.dtype)
            self._buffers[("scratch", name)] = buf
        return buf[:rows]

    def release_buffers(self):
        """Free the work arrays (they are made again on the next pass)."""
        self._buffers = {}
        self._values = None
        self._pending_leaves = []
        self._cache = {}
        self._relaxed = None

    # ---- parameters ------------------------------------------------------------------
    def _load_parameters(self):
        be, plan = self.backend, self.plan
        flat = np.concatenate([p.values.ravel() for p in plan.sum_params]) if plan.sum_params else np.zeros(0)
        self.weights = be.asarray(flat)
        self._update_log_weights()
        self.leaf_tables = {}
        for table_key, objs in plan.families.items():
            arrays = [o.table_arrays() for o in objs]
            table = {k: np.concatenate([a[k] for a in arrays]) for k in arrays[0]}
            problems = table_key[0].dtype_problems(table, be.dtype)
            if problems:
                raise ValueError(f"compile: {problems[0]}; compile with dtype='float64' (or change the parameter)")
            self.leaf_tables[table_key] = {k: be.asarray(v) for k, v in table.items()}

    def _update_log_weights(self):
        with np.errstate(divide="ignore"):
            self.log_weights = self.backend.log(self.weights)

    def set_weights(self, weights, log_weights=None):
        """Replace the flat weight vector (linear space, shape ``(num_weights,)``).

        ``log_weights``, when the caller has them (a log-softmax), saves taking the log.
        """
        self.weights = self.backend.asarray(weights)
        if log_weights is None:
            self._update_log_weights()
        else:
            self.log_weights = self.backend.asarray(log_weights)

    @property
    def exact(self) -> bool:
        """False when some leaf family computes a lower bound (VAE leaves): every log-value of
        the circuit, log-likelihoods and marginals included, is then a lower bound too."""
        return all(key[0].exact for key in self.leaf_tables)

    @property
    def num_weights(self) -> int:
        return int(self.weights.shape[0])

    def sync_to_circuit(self):
        """Write the Program's current parameters back into the circuit's parameter objects."""
        w = to_numpy(self.weights).astype(np.float64)
        for p, lo, hi in zip(self.plan.sum_params, self.plan.weight_offsets[:-1], self.plan.weight_offsets[1:]):
            p.values = w[lo:hi].reshape(p.values.shape).copy()
        for table_key, objs in self.plan.families.items():
            table = {k: to_numpy(v).astype(np.float64) for k, v in self.leaf_tables[table_key].items()}
            offsets = self.plan.family_offsets[table_key]
            for obj, lo, hi in zip(objs, offsets[:-1], offsets[1:]):
                for name in obj.param_names:
                    if name in table and name in obj.trainable_names:
                        setattr(obj, name, table[name][lo:hi].reshape(np.shape(getattr(obj, name))).copy())
        return self.circuit

    def to(self, backend: str, dtype: str | None = None) -> "Program":
        """The same program on another backend (parameters copied over)."""
        self.sync_to_circuit()
        be = get_backend(backend, dtype or self.backend.dtype.name)
        program = Program(self.circuit, self.plan, be)
        program.memory_budget, program.checked = self.memory_budget, self.checked
        return program

    # ---- input checking ------------------------------------------------------------
    def prepare(self, x, *, what: str = "x", allow_nan: bool = True, offset: int = 0):
        """Check and convert data to a backend array of shape (batch, num_variables).

        See :meth:`~pcircuits.program.inputs.InputDomain.prepare`: wrong number of variables,
        non-numeric dtype, infinite values and values outside a discrete variable's domain are
        refused with a message naming the example and the variable, before any kernel runs.
        """
        return self.domain.prepare(x, self.backend, what=what, allow_nan=allow_nan, offset=offset)

    # ---- passes ------------------------------------------------------------------------
    def forward(self, x, mode: str = "sum", *, cache: bool = True):
        """Log-values of all units, shape (num_units + 1, batch); returns the root outputs.

        Parameters
        ----------
        x : array, shape (batch, num_variables)
            NaN marks a missing value (marginalized in ``"sum"`` mode, maximized in ``"max"``).
        mode : {"sum", "max"}

        Returns
        -------
        array, shape (batch, num_outputs)
            Log-value of every root unit.
        """
        if mode not in ("sum", "max"):
            raise ValueError(f"forward: mode must be 'sum' or 'max', got {mode!r}")
        x = self.prepare(x)
        return self._forward(x, mode, cache=cache)

    def _forward(self, x, context: PassContext | str = SUM, *, cache: bool = True):
        """The forward pass on a prepared array; returns the root outputs (batch, num_outputs).

        ``context`` is a :class:`PassContext` (mode and training-time dropout) or just a mode
        name. With ``cache`` the layers keep what :meth:`backward` reuses.
        """
        if isinstance(context, str):
            context = SUM if context == "sum" else MAX if context == "max" else PassContext(context)
        batch = x.shape[0]
        values = self.buffer("values", (self.num_units + 1, batch))
        values[self.num_units] = 0
        self.inputs_t = self.buffer("inputs_t", (x.shape[1], batch), x.dtype)
        self.inputs_t[...] = x.T
        self.inputs_missing = self.backend.maybe_any(self.backend.xp.isnan(x))
        store = {} if cache and context.mode == "sum" else None
        # the leaves that only table sums read wait until someone asks for their values
        defer = bool(self._table_layers) and all(layer.uses_table(context, store, batch)
                                                  for layer in self._table_layers)
        pending = []
        for layer in self.layers:
            if defer and getattr(layer, "table_only", False):
                pending.append(layer)
                continue
            layer.forward(self, values, x, context, store)
        self._pending_leaves = pending
        self._cache = {} if store is None else store
        self._values, self._x, self._mode = values, x, context.mode
        return values[self._output_slots_b].T

    @property
    def values(self):
        """Log-values of the last forward pass, shape (num_units + 1, batch)."""
        if self._pending_leaves:
            for layer in self._pending_leaves:
                layer.forward(self, self._values, self._x, SUM, None)
            self._pending_leaves = []
        return self._values

    def backward(self, grad_root=None, *, grad_units=None, leaves: bool = True, inputs: bool = False) -> Gradients:
        """Vector-Jacobian product of the last forward pass (which must be in ``"sum"`` mode).

        Parameters
        ----------
        grad_root : array, shape (batch, num_outputs), optional
            Weights of the root log-values (default 1 for every root unit and example, unless
            ``grad_units`` is given).
        grad_units : array, shape (num_units, batch), optional
            Weights of the log-values of every unit (added to ``grad_root``'s): the VJP of a
            loss that reads inner units too (the relaxed sampler's choices under evidence).
        leaves, inputs : bool
            Whether to compute leaf-parameter and input gradients.
        """
        if self._values is None or self._mode != "sum":
            raise RuntimeError("backward needs a preceding forward pass in 'sum' mode")
        be, xp = self.backend, self.backend.xp
        values, x = self.values, self._x
        batch = values.shape[1]
        grads = self.buffer("grads", values.shape)
        be.blocks(grads.shape[0], batch, lambda lo, hi: grads[lo:hi].fill(0), wide=True)
        if grad_units is not None:
            gu = be.asarray(grad_units)
            if gu.shape != (self.num_units, batch):
                raise ValueError(f"backward: grad_units must have shape ({self.num_units}, {batch}), got {gu.shape}")
            grads[:self.num_units] = gu
        if grad_root is None:
            if grad_units is None:
                grads[self._output_slots_b] = 1
        else:
            g = be.asarray(grad_root)
            if g.ndim == 1:
                g = g[:, None]
            if g.shape != (batch, self.num_outputs):
                raise ValueError(f"backward: grad_root must have shape ({batch}, {self.num_outputs}), got {g.shape}")
            grads[self._output_slots_b] += g.T
        self.grad_log_weights = xp.zeros(self.weights.shape, dtype=self.weights.dtype)
        for layer in reversed(self.inner_layers):
            layer.backward(self, values, grads, self._cache)
        grads[self.num_units] = 0
        leaf_grads, input_grads = {}, None
        if inputs:
            input_grads = xp.zeros((self.num_variables, batch), dtype=be.dtype)
        if leaves or inputs:
            for layer in self.input_layers:
                params = layer.params(self.leaf_tables[layer.table_key])
                g = grads[layer.start:layer.stop]
                dropped = self._cache.get(("leaf-dropout", layer.start))
                if dropped is not None:
                    g = xp.where(dropped.T, 0, g)
                if layer.family.stochastic:
                    noise = self._cache.get(("leaf-noise", layer.start))
                    if noise is None:       # the pass kept no cache: its noise came from seed 0
                        noise = layer.noise(params, batch, None)
                    pg, xg = layer.family.grad(be, params, layer.gather_inputs(x), g.T, noise=noise,
                                               state=self._cache.get(("leaf-state", layer.start)))
                    xg = xg.transpose(1, 2, 0)
                else:
                    pg, xg = layer.family.grad_units(be, params, self.inputs_t, layer.variables, g, inputs=inputs,
                                                     missing=self.inputs_missing)
                if leaves:
                    table = self.leaf_tables[layer.table_key]
                    acc = leaf_grads.get(layer.table_key)
                    if acc is None:
                        acc = leaf_grads[layer.table_key] = {k: xp.zeros(table[k].shape, dtype=table[k].dtype)
                                                             for k in pg}
                    for k, v in pg.items():
                        layer.row_scatter.add(acc[k], v)
                if inputs:
                    layer.input_scatter.add(input_grads, xg.reshape(-1, batch))
        return Gradients(grads[:self.num_units], self.grad_log_weights, leaf_grads,
                         None if input_grads is None else input_grads.T)

    def top_down(self, x, mode: str = "argmax", *, forward_mode: str | None = None, root=0,
                 seed=None, weighted: bool = True, ties: str = "first", counts: bool = False,
                 return_active: bool = False, noise=None):
        """Select an induced tree per example and fill the missing values of ``x``.

        Parameters
        ----------
        x : array, shape (batch, num_variables)
            Evidence; NaN marks the variables to fill.
        mode : {"argmax", "sample"}
            ``"argmax"``: at each active sum unit take the input with the largest
            ``log w + value`` (Viterbi; leaves take their mode). ``"sample"``: draw the input with
            probability proportional to ``w * value`` (leaves draw a sample).
        forward_mode : {"max", "sum"}, optional
            Semantics of the values the choice looks at (default: "max" for argmax, "sum" for sample).
        root : int or array of int, shape (batch,)
            Which output unit to start from (per example).
        seed : int, numpy.random.Generator or StreamRandomSource, optional
            The randomness of sample mode (and of random ties); a
            :class:`~pcircuits.program.streams.StreamRandomSource` draws the numbers of every
            block of examples from that block's generator (sample mode only).
        weighted : bool
            False chooses by the unweighted input values (the USI rule of hard EM).
        ties : {"first", "random"}
            Argmax mode: which of several inputs with the same best score is taken, the first
            (deterministic decoding) or one at random from ``seed`` (hard EM, as libspn-keras
            does, so that identical sum units, e.g. rows that no example has reached yet, are
            recruited by different examples instead of all counts going to the first one).
        counts : bool
            Also return how often every weight was on a chosen edge (hard EM statistics).
        return_active : bool
            Also return the mask of units in each example's induced tree, shape
            (num_units + 1, batch) (hard EM leaf statistics).
        noise : RelaxedNoise, optional
            Sample mode: fixed noise (:class:`~pcircuits.program.relaxed.RelaxedNoise` of
            ``batch`` samples) instead of ``seed``: the Gumbel noise of the sums' choices and the
            leaves' exact draws from their noise, the draws that :meth:`sample_relaxed` hardens
            to (binomial leaves have none).

        Returns
        -------
        x_filled : array, shape (batch, num_variables)
        edge_counts : array, shape (num_weights,) (only if ``counts``)
        active : array of bool, shape (num_units + 1, batch) (only if ``return_active``)
        """
        if mode not in ("argmax", "sample"):
            raise ValueError(f"top_down: mode must be 'argmax' or 'sample', got {mode!r}")
        if ties not in ("first", "random"):
            raise ValueError(f"top_down: ties must be 'first' or 'random', got {ties!r}")
        return self._top_down(self.prepare(x), mode, forward_mode=forward_mode, root=root, seed=seed,
                              weighted=weighted, ties=ties, counts=counts, return_active=return_active, noise=noise)

    def _top_down(self, x, mode: str = "argmax", *, forward_mode: str | None = None, root=0, seed=None,
                  weighted: bool = True, ties: str = "first", counts: bool = False, return_active: bool = False,
                  noise=None):
        """:meth:`top_down` of an array that :meth:`prepare` made (as the queries pass their
        chunks), with ``mode`` and ``ties`` known to be valid."""
        forward_mode = forward_mode or ("max" if mode == "argmax" else "sum")
        be, xp = self.backend, self.backend.xp
        self._forward(x, forward_mode, cache=False)
        values = self.values
        batch = x.shape[0]
        if mode == "argmax" and ties == "first":
            rng = None                  # nothing random: no generator to seed (from the OS without a seed)
        else:
            rng = seed if isinstance(seed, StreamRandomSource) else be.rng(seed)
        active = xp.zeros((self.num_units + 1, batch), dtype=bool)
        if isinstance(root, (int, np.integer)):
            if not 0 <= root < self.num_outputs:
                raise ValueError(f"top_down: root must be in 0..{self.num_outputs - 1}")
            active[int(self.output_slots[root])] = True
        else:
            root_idx = np.broadcast_to(np.asarray(root, dtype=np.int64), (batch,))
            if np.any(root_idx < 0) or np.any(root_idx >= self.num_outputs):
                raise ValueError(f"top_down: root must be in 0..{self.num_outputs - 1}")
            active[be.index(self.output_slots[root_idx]), xp.arange(batch)] = True
        if noise is not None:
            if mode != "sample":
                raise ValueError("top_down: noise is for mode='sample'")
            if noise.batch != batch:
                raise ValueError(f"top_down: the noise is for {noise.batch} samples, x has {batch} rows")
            noise.check(self)
        chooser = _Chooser(be, mode, rng, weighted, counts, ties, noise)
        for layer in reversed(self.inner_layers):
            layer.select(self, values, active, chooser)
        out = x.copy()
        for layer in self.input_layers:
            units, rows = xp.nonzero(active[layer.start:layer.stop])
            if len(units) == 0:
                continue
            if isinstance(rng, StreamRandomSource):
                order = rng.group(rows)
                units, rows = units[order], rows[order]
            params = layer.params_at(self.leaf_tables[layer.table_key], units)
            variables = layer.variables[units]                      # (n, d)
            current = out[rows[:, None], variables]
            if layer.family.conditional:                            # the unit's observed inputs matter
                if mode == "argmax":
                    vals = layer.family.conditional_mode(be, params, current[None])[0]
                else:
                    vals = layer.family.conditional_sample(be, params, current[None], rng)[0]
            elif mode == "argmax":
                vals = layer.family.mode(be, params)
            elif noise is not None:
                vals = relaxation_of(layer.family).exact(be, params, noise.leaves[layer.start][rows, units])
            else:
                vals = layer.family.sample(be, params, rng)
            out[rows[:, None], variables] = xp.where(xp.isnan(current), vals, current)
        results = [out]
        if counts:
            chosen = xp.concatenate(chooser.counts) if chooser.counts else xp.zeros(0, dtype=np.int64)
            results.append(xp.bincount(chosen, minlength=self.num_weights).astype(be.dtype))
        if return_active:
            results.append(active)
        return results[0] if len(results) == 1 else tuple(results)

    def sample_relaxed(self, num_samples: int | None = None, temperature: float = 1.0, *, hard: bool = False,
                       evidence=None, seed=None, noise=None, root: int = 0):
        """Differentiable samples: the relaxed top-down pass (Lang et al. 2022, section 3.2).

        Every sum unit draws ``y = softmax((log w + v + g) / temperature)`` over its inputs
        (Gumbel noise ``g``; ``v`` the inputs' log-values under ``evidence``, 0 without) and its
        sample interpolates its inputs' samples with ``y``; products concatenate; leaves draw
        reparameterized samples (:mod:`pcircuits.distributions.relaxations`: Gaussian ``mean +
        std * eps``, binomial by its Gaussian approximation, Bernoulli and categorical by the
        binary Concrete and Gumbel-softmax relaxations returning the expected value).
        :meth:`backward_relaxed` is its vector-Jacobian product.

        Parameters
        ----------
        num_samples : int, optional
            Samples to draw (default: the rows of ``evidence`` or the batch of ``noise``).
        temperature : float
            ``tau > 0``; as it goes to 0 the soft choices become one-hot.
        hard : bool
            Straight-through: one-hot choices (``argmax``) and hard leaf draws forward, the soft
            choices' gradient backward. The forward is then an exact sample of the circuit
            (binomial leaves: rounded Gaussian approximation).
        evidence : array, shape (num_samples, num_variables), optional
            Observed values (NaN where free); observed variables keep them, the choices follow
            ``w * value`` under the evidence as in :meth:`top_down`.
        seed : int or Generator, optional
            Seeds the noise when ``noise`` is not given.
        noise : RelaxedNoise, optional
            Fixed noise (``RelaxedNoise.draw(program, n, seed)``): the pass is then a
            deterministic function of the parameters and the temperature.
        root : int
            The output unit to sample from.

        Returns
        -------
        array, shape (num_samples, num_variables)
        """
        from .relaxed import relaxed_sample
        self._relaxed = relaxed_sample(self, num_samples, temperature, hard=hard, evidence=evidence, seed=seed,
                                       noise=noise, root=root)
        return self._relaxed.samples

    def backward_relaxed(self, grad, *, temperature: bool = True):
        """Gradients of ``sum(grad * samples)`` of the last :meth:`sample_relaxed` with its noise
        held fixed: a :class:`~pcircuits.program.relaxed.RelaxedGradients` (log-weights, leaf
        parameters in their unconstrained forms, temperature).

        Parameters
        ----------
        grad : array, shape (num_samples, num_variables)
            d(loss)/d(samples).
        temperature : bool
            Also the gradient with respect to the temperature (False skips its work; it is then 0).
        """
        if self._relaxed is None:
            raise RuntimeError("backward_relaxed needs a preceding sample_relaxed")
        return self._relaxed.backward(grad, temperature=temperature)

    # ---- convenience -------------------------------------------------------------------
    def statistics(self) -> dict:
        return {"layers": len(self.layers), "units": self.num_units, "edges": self.num_edges,
                "weights": self.num_weights, "backend": self.backend.name, "dtype": self.backend.dtype.name,
                "dense_layers": sum(isinstance(l, DenseSumLayer) for l in self.layers),
                "gather_sum_layers": sum(isinstance(l, SumLayer) for l in self.layers),
                "segment_layers": sum(isinstance(l, (SegmentProductLayer, SegmentSumLayer)) for l in self.layers)}

    def __repr__(self) -> str:
        s = self.statistics()
        return (f"Program({s['layers']} layers ({s['dense_layers']} dense-block sums), {s['units']} units, "
                f"{s['edges']} edges, backend={s['backend']}, dtype={s['dtype']})")

    # ---- queries (see pcircuits.inference) --------------------------------------------
    def bytes_per_row(self, query: str = "forward") -> int:
        """An upper bound of the working memory one input row takes in a pass, in bytes.

        ``"forward"``: the unit values, the widest layer's temporaries and the leaves' float64
        work arrays; ``"posterior"`` (forward with its cache, then backward) and ``"top_down"``
        (forward, then the selection masks and scores) take twice as much. Queries size their
        chunks by it (:func:`pcircuits.inference.chunk_rows`).
        """
        if query not in _PASS_FACTORS:
            raise ValueError(f"bytes_per_row: query must be one of {tuple(_PASS_FACTORS)}, got {query!r}")
        if self._forward_row_bytes is None:
            item = self.backend.dtype.itemsize
            widest = max((layer.num_edges for layer in self.inner_layers), default=0)
            leaves = max((layer.variables_np.size for layer in self.input_layers), default=0)
            self._forward_row_bytes = (item * (2 * (self.num_units + 1) + 3 * widest)
                                       + 8 * (3 * leaves + 2 * self.num_variables))
        return _PASS_FACTORS[query] * self._forward_row_bytes

    def log_likelihood(self, x, *, batch_size: int | None = None, progress: bool = False, client=None,
                       partitions: int | None = None):
        """Log-probability per example (NaN = marginalized); (batch,) or (batch, num_outputs).

        With ``client`` (a Dask client or ``"local"``), ``x`` may also be a ``.npy`` path, ``.npz``
        shards or a dask array, evaluated on the workers.
        """
        from ..inference import log_likelihood
        return log_likelihood(self, x, batch_size=batch_size, progress=progress, client=client,
                              partitions=partitions)

    def log_conditional(self, x_query, x_evidence, *, batch_size: int | None = None):
        """``log p(query | evidence)`` per example."""
        from ..inference import log_conditional
        return log_conditional(self, x_query, x_evidence, batch_size=batch_size)

    def mpe(self, x, *, root=0, batch_size: int | None = None):
        """Fill NaNs with the (approximate) MPE completion."""
        from ..inference import mpe
        return mpe(self, x, root=root, batch_size=batch_size)

    def sample(self, num_samples: int | None = None, evidence=None, *, seed=0, root=0,
               batch_size: int | None = None):
        """Samples, optionally conditioned on ``evidence`` (NaN where free), in chunks."""
        from ..inference import sample
        return sample(self, num_samples, evidence, seed=seed, root=root, batch_size=batch_size)

    def inpaint(self, x, *, method: str = "posterior-mean", root=0, batch_size: int | None = None):
        """Complete NaNs by ``"posterior-mean"`` or ``"mpe"``."""
        from ..inference import inpaint
        return inpaint(self, x, method=method, root=root, batch_size=batch_size)

    def leaf_posteriors(self, x, *, root=0, batch_size: int | None = None):
        """Posterior flows of all units given ``x``, shape (num_units, batch), in chunks."""
        from ..inference import leaf_posteriors
        return leaf_posteriors(self, x, root=root, batch_size=batch_size)
