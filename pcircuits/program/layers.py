"""Executable layers: one class per layer kind, each with its forward, backward and top-down rule.

Values and gradients live in arrays of shape ``(num_units + 1, batch)`` (unit-major, so that
gathering a unit's inputs copies whole rows); the last row is the constant log 1 = 0 slot.
All loops here are over the columns of one layer's index tensor (its arity), never over nodes,
units or samples.

Every layer kind has the same three methods:

* ``forward(program, values, x, context, cache)``: write the layer's log-values into
  ``values``; ``context`` is the pass's :class:`~pcircuits.program.context.PassContext` (mode,
  dropout), ``cache`` a dict for what the backward pass reuses (None when no backward follows);
* ``backward(program, values, grads, cache)``: add the layer's flows to its inputs' rows of
  ``grads`` and its edge flows to ``program.grad_log_weights``;
* ``select(program, values, active, chooser)``: the top-down step, marking the chosen inputs
  of the active units.
"""
from __future__ import annotations

import bisect
import threading

import numpy as np

from ..backend import BLOCK_ELEMENTS
from ..distributions.discrete import _lookup
from ..layerize.plan import (DenseSumLayerSpec, FusedSumLayerSpec, InputLayerSpec, ProductLayerSpec,
                              SegmentProductLayerSpec, SegmentSumLayerSpec, SumLayerSpec, TableSumLayerSpec)
from . import kernels
from .blocks import batch_matmul
from .kernels import safe_max as _safe_max
from .context import SUM
from .scatter import Scatter, add_at

__all__ = ["InputLayer", "ProductLayer", "SumLayer", "DenseSumLayer", "FusedSumLayer", "SegmentProductLayer",
           "SegmentSumLayer", "TableSumLayer", "COMPILE_RULES", "build_layer"]

#: Host blocks of values (``BLOCK_ELEMENTS`` each) in one block of a segment layer's edges: the
#: unit of work its forward pass hands to a host thread.
SEGMENT_BLOCKS = 16

# largest (batch x edges) intermediate of a max-mode dense layer before it is chunked
_MAX_CHUNK_ELEMENTS = 1 << 24


def _drop_products(xp, out, context, root_input_rows):
    """Product dropout: each product unit's log-value set to -inf with the context's rate, the
    rows ``root_input_rows`` (the root's inputs) spared when the context asks for it."""
    dropped = context.rng.bernoulli_mask(out.shape, context.product_dropout)
    if context.spare_root_inputs and root_input_rows is not None:
        dropped[root_input_rows] = False
    xp.putmask(out, dropped, -xp.inf)


class InputLayer:
    """All units of one leaf family: ``value[u] = log p_u(x[variables[u]])``."""

    kind = "input"

    def __init__(self, spec: InputLayerSpec, backend):
        self.backend = backend
        self.family = spec.family
        self.table_key = spec.table_key
        self.start, self.stop = spec.start, spec.stop
        self.variables_np = spec.variables
        self.variables = backend.index(spec.variables)
        self.rows_np = spec.rows
        self.rows = backend.index(spec.rows)
        self.contiguous = bool(np.array_equal(spec.rows, np.arange(spec.rows[0], spec.rows[0] + len(spec.rows))))
        self._row_slice = slice(int(spec.rows[0]), int(spec.rows[0]) + len(spec.rows))
        self.row_scatter = Scatter(backend, spec.rows)
        self.input_scatter = Scatter(backend, spec.variables.ravel())
        self.settings = dict(spec.table_key[3]) if len(spec.table_key) > 3 else {}
        self.num_edges = 0
        #: Only table sums read these units: a forward pass in which every table sum layer looks
        #: its values up (:meth:`TableSumLayer.uses_table`) may leave them for later.
        self.table_only = spec.table_only
        #: Units over one variable whose most probable value is a constant of the unit (neither a
        #: conditional nor a stochastic family): a max-mode pass gives a missing variable the
        #: unit's log-density at that value.
        self.fixed_mode = spec.variables.shape[1] == 1 and not self.family.conditional and not self.family.stochastic

    def params(self, table: dict) -> dict:
        """The parameters of this layer's units (rows of the family table) and the layer settings."""
        rows = self._row_slice if self.contiguous else self.rows
        params = {k: v[rows] for k, v in table.items()}
        if self.settings:
            params.update(self.settings)
        return params

    def params_at(self, table: dict, units) -> dict:
        """The parameters of the layer units ``units`` (an index array, repeats allowed)."""
        return {**{k: v[self.rows[units]] for k, v in table.items()}, **self.settings}

    def log_prob(self, params: dict, x, noise=None):
        """The family's log-densities at ``x`` (batch, U, d), with ``noise`` for a stochastic family."""
        if self.family.stochastic:
            return self.family.log_prob(self.backend, params, x, noise=noise)
        return self.family.log_prob(self.backend, params, x)

    def noise(self, params: dict, batch: int, rng):
        """What a stochastic family draws for one pass (None for the others); seed 0 without ``rng``."""
        if not self.family.stochastic:
            return None
        return self.family.draw_noise(self.backend, params, batch, self.backend.rng(0) if rng is None else rng)

    def gather_inputs(self, x):
        """``x[:, variables]``: shape (batch, U, d)."""
        return x[:, self.variables]

    def forward(self, program, values, x, context, cache):
        be = self.backend
        params = self.params(program.leaf_tables[self.table_key])
        out = values[self.start:self.stop]
        if self.family.stochastic:
            xg = self.gather_inputs(x)
            noise = self.noise(params, xg.shape[0], context.rng)
            if cache is not None:
                cache[("leaf-noise", self.start)] = noise
                logp, cache[("leaf-state", self.start)] = self.family.log_prob_and_state(be, params, xg, noise)
            else:
                logp = self.log_prob(params, xg, noise)
            out[...] = logp.T
        else:
            noise = None
            self.family.log_prob_units(be, params, program.inputs_t, self.variables, out,
                                       missing=program.inputs_missing)
        if context.mode == "max" and program.inputs_missing and self.fixed_mode:
            self._missing_at_mode(program, params, out)
        elif context.mode == "max" and program.inputs_missing:
            # a missing variable takes the leaf's most probable value (given the observed ones)
            xg = self.gather_inputs(x)
            missing = be.xp.isnan(xg).any(axis=2)
            if be.maybe_any(missing):
                if self.family.conditional:
                    mode_x = self.family.conditional_mode(be, params, xg)
                else:
                    mode_x = self.family.mode(be, params)[None]
                filled = be.xp.where(be.xp.isnan(xg), mode_x, xg)
                out[...] = be.xp.where(missing, self.log_prob(params, filled, noise), out.T).T
        if context.leaf_dropout:
            dropped = context.rng.bernoulli_mask((out.shape[1], out.shape[0]), context.leaf_dropout)
            be.xp.putmask(out, dropped.T, 0)
            if cache is not None:
                cache[("leaf-dropout", self.start)] = dropped

    def _missing_at_mode(self, program, params, out):
        """Max mode: every unit whose variable is missing takes its log-density at its mode, one
        value per unit (units over one variable whose mode ignores the others, :attr:`fixed_mode`)."""
        xp = self.backend.xp
        missing = xp.isnan(program.inputs_t.take(self.variables[:, 0], axis=0))  # (U, B)
        if self.backend.maybe_any(missing):
            top = self.log_prob(params, self.family.mode(self.backend, params)[None])[0]      # (U,)
            out[...] = xp.where(missing, top[:, None], out)

    def backward(self, program, values, grads, cache):
        """Leaf parameters are not weights: their gradients come from :meth:`Program.backward`'s
        leaf step (``family.grad``), which needs the inputs."""

    def select(self, program, values, active, choose):
        """Leaves have no inputs to choose among; the Program fills their variables."""


class ProductLayer:
    """``value[u] = sum_j value[inputs[u, j]]``."""

    kind = "product"

    def __init__(self, spec: ProductLayerSpec, backend):
        self.backend = backend
        self.start, self.stop = spec.start, spec.stop
        self.inputs_np = spec.inputs
        self.inputs = backend.index(spec.inputs)
        self.columns = [backend.index(spec.inputs[:, j]) for j in range(spec.inputs.shape[1])]
        padding = spec.inputs == spec.zero_slot
        # one scatter per column over its real (non-padding) inputs, so padding never forces
        # the slow duplicate-safe path
        self.column_scatters = []
        for j in range(spec.inputs.shape[1]):
            rows = np.flatnonzero(~padding[:, j])
            if len(rows):
                full = len(rows) == spec.inputs.shape[0]
                self.column_scatters.append((None if full else backend.index(rows),
                                             Scatter(backend, spec.inputs[rows, j])))
        self.num_edges = int((~padding).sum())
        self.root_input_rows = None     # units that feed a root (set by the Program)
        # when the layer's inputs are a contiguous range of slots, each read once (the leaves
        # under a RAT-SPN's or PD's first products), the backward pass gathers every input's
        # flow from its one parent, block by block, instead of one scatter per column
        targets = spec.inputs[~padding]
        self.input_range = None
        if len(targets) and targets.max() - targets.min() + 1 == len(targets) and \
                len(np.unique(targets)) == len(targets):
            order = np.argsort(targets)
            self.input_range = (int(targets.min()), backend.index(np.nonzero(~padding)[0][order]))

    def forward(self, program, values, x, context, cache):
        xp = self.backend.xp
        out = values[self.start:self.stop]

        # over cache-sized blocks of units, so that each block's sum stays in cache while its
        # inputs are gathered column by column (on a device: one block)
        def block(lo, hi):
            kernels.gather_sum(self.backend, values, self.inputs[lo:hi], out[lo:hi])
        self.backend.blocks(out.shape[0], out.shape[1], block, wide=True)
        if context.product_dropout:
            _drop_products(xp, out, context, self.root_input_rows)

    def backward(self, program, values, grads, cache):
        g = grads[self.start:self.stop]
        if self.input_range is not None:
            first, parents = self.input_range

            def block(lo, hi):
                grads[first + lo:first + hi] += g.take(parents[lo:hi], axis=0)
            self.backend.blocks(len(parents), g.shape[1], block, wide=True)
            return
        for rows, scatter in self.column_scatters:
            scatter.add(grads, g if rows is None else g[rows])

    def select(self, program, values, active, choose):
        xp = self.backend.xp
        units, batch = xp.nonzero(active[self.start:self.stop])
        for col in self.columns:
            active[col[units], batch] = True


class SumLayer:
    """Padded-gather sums: ``value[u] = logsumexp_j(log w[u, j] + value[inputs[u, j]])``."""

    kind = "sum"

    def __init__(self, spec: SumLayerSpec, backend):
        self.backend = backend
        self.start, self.stop = spec.start, spec.stop
        self.inputs_np = spec.inputs
        self.inputs = backend.index(spec.inputs)
        self.slots_np = spec.weight_slots
        self.padding = spec.weight_slots < 0
        self.slots = backend.index(np.where(self.padding, 0, spec.weight_slots))
        self.padding_b = backend.xp.asarray(self.padding)
        self.scatter = Scatter(backend, spec.inputs.ravel())
        valid = ~self.padding
        self.weight_scatter = Scatter(backend, spec.weight_slots[valid])
        self.valid_b = backend.xp.asarray(valid)
        self.num_edges = int(valid.sum())

    def log_weights(self, program):
        xp = self.backend.xp
        return xp.where(self.padding_b, -xp.inf, program.log_weights[self.slots])

    def scores(self, program, values, weighted=True):
        """``log w + value`` of every input, shape (U, A, batch)."""
        g = values[self.inputs]
        if weighted:
            g = g + self.log_weights(program)[:, :, None]
        return g

    def forward(self, program, values, x, context, cache):
        xp = self.backend.xp
        g = self.scores(program, values)
        if context.mode == "max":
            values[self.start:self.stop] = g.max(axis=1)
            return
        be = self.backend
        m = _safe_max(xp, g, axis=1)
        with np.errstate(divide="ignore"):
            total = be.exp(g - m[:, None, :]).sum(axis=1)
            values[self.start:self.stop] = be.log(total, out=total) + m

    def backward(self, program, values, grads, cache):
        xp = self.backend.xp
        g = self.scores(program, values)
        out = values[self.start:self.stop]
        with np.errstate(invalid="ignore"):
            post = self.backend.exp(g - xp.where(xp.isfinite(out), out, 0)[:, None, :])
        post = xp.where(xp.isfinite(out)[:, None, :], post, 0)
        flow = post * grads[self.start:self.stop][:, None, :]          # (U, A, B)
        self.scatter.add(grads, flow.reshape(-1, flow.shape[-1]))
        edge = flow.sum(axis=2)[self.valid_b]
        self.weight_scatter.add(program.grad_log_weights, edge)

    def select(self, program, values, active, choose):
        xp = self.backend.xp
        units, batch = xp.nonzero(active[self.start:self.stop])
        if len(units) == 0:
            return
        scores = values[self.inputs[units], batch[:, None]]
        if choose.weighted:
            scores = scores + self.log_weights(program)[units]
        scores = xp.where(self.padding_b[units], -xp.inf, scores)
        j = choose(scores, self, units, batch)
        active[self.inputs[units, j], batch] = True
        if choose.counts is not None:
            choose.counts.append(self.slots[units, j])


class DenseSumLayer:
    """``N`` sum nodes of ``K`` units over ``I`` inputs each, as a batched max-shifted matmul."""

    kind = "sum"

    def __init__(self, spec: DenseSumLayerSpec, backend):
        self.backend = backend
        self.start, self.stop = spec.start, spec.stop
        self.N, self.K, self.I = spec.num_nodes, spec.num_units, spec.num_inputs
        self.inputs_np = spec.inputs
        self.inputs = backend.index(spec.inputs)
        # nodes over the very same inputs (e.g. one root per class) stack into one node of N*K
        # units: the inputs are gathered once and the product is one plain matmul
        shared = self.N > 1 and bool((spec.inputs == spec.inputs[:1]).all())
        self.Nb, self.Kb = (1, self.N * self.K) if shared else (self.N, self.K)
        self.batched_inputs = backend.index(spec.inputs[:self.Nb])
        self.scatter = Scatter(backend, spec.inputs[:self.Nb].ravel())
        self._weight_layout(spec.weight_offsets, backend)
        self.num_edges = self.N * self.K * self.I

    def _weight_layout(self, offsets: np.ndarray, backend):
        """Keep where every node's (K, I) weight block starts, (N,), not a slot per weight: the
        layer's weights are one contiguous range (``contiguous``, ``slot0``) unless nodes are tied."""
        offsets = np.asarray(offsets, dtype=np.int64)
        size = self.K * self.I
        self.contiguous = bool(np.array_equal(offsets, offsets[0] + size * np.arange(len(offsets))))
        self.slot0 = int(offsets[0])
        self.weight_offsets = backend.index(offsets)
        self.weight_scatter = None if self.contiguous else \
            Scatter(backend, (offsets[:, None] + np.arange(size)[None, :]).ravel())

    @property
    def slots(self):
        """Position of every weight in the flat vector, shape (N, K, I) (made on each call)."""
        block = self.backend.xp.arange(self.K * self.I, dtype=np.int64).reshape(self.K, self.I)
        return self.weight_offsets[:, None, None] + block[None]

    def weights(self, program):
        """Linear weights, shape (N, K, I): a view of the flat vector when untied."""
        if self.contiguous:
            return program.weights[self.slot0:self.slot0 + self.N * self.K * self.I].reshape(self.N, self.K, self.I)
        return program.weights[self.slots]

    def _buffers(self, program, batch, cache):
        """(E, S) work arrays: per layer when cached for backward, else shared by shape."""
        key = id(self) if cache is not None else "shared"
        E = program.buffer(("E", key, self.Nb, self.I), (self.Nb, self.I, batch))
        S = program.buffer(("S", key, self.Nb, self.Kb), (self.Nb, self.Kb, batch))
        return E, S

    def _batched_weights(self, program):
        """Linear weights as the batched matmul sees them, shape (Nb, Kb, I)."""
        return self.weights(program).reshape(self.Nb, self.Kb, self.I)

    def _finish(self, program, values, E, S, M, cache, exact: bool = True):
        batch_matmul(self.backend, self._batched_weights(program), E, S)       # (Nb, Kb, B)
        out = values[self.start:self.stop].reshape(self.Nb, self.Kb, -1)
        small = S < np.finfo(S.dtype).tiny if kernels.log_plus(self.backend, S, M, out) else None
        if small is not None and exact:
            self._exact_values(program, values, out, small)
        if cache is not None:
            cache[id(self)] = (E, S, small, exact)

    # The matmul shifts by the largest *input*, so a unit whose weights on its large inputs are
    # tiny has ``S`` below the smallest normal float: its value would underflow to -inf and
    # ``grad / S`` overflow (NaN flows once multiplied by a zero weight). Such entries are rare;
    # they are recomputed exactly in log space (``exact``), shifted by the unit's own largest
    # weighted input.

    def _small_scores(self, program, values, small):
        """Indices of the small entries and their ``log w + input value`` rows, (r, I)."""
        xp = self.backend.xp
        nb, kb, b = xp.nonzero(small)
        u = nb * self.Kb + kb
        node, unit = u // self.K, u % self.K
        with np.errstate(divide="ignore"):
            scores = self._input_scores(values, node, b) + self.backend.log(self.weights(program)[node, unit])
        return nb, kb, b, u, scores

    def _exact_values(self, program, values, out, small):
        xp = self.backend.xp
        nb, kb, b, _, scores = self._small_scores(program, values, small)
        be = self.backend
        m = _safe_max(xp, scores, axis=1)
        with np.errstate(divide="ignore"):
            total = be.exp(scores - m[:, None]).sum(axis=1)
            out[nb, kb, b] = be.log(total, out=total) + m

    def _exact_flows(self, program, values, G, small, flows, edge):
        """Add the flows and edge flows of the small entries, ``G * exp(log w + x - value)``."""
        xp = self.backend.xp
        small = small & (G != 0)
        if not bool(small.any()):
            return
        nb, kb, b, u, scores = self._small_scores(program, values, small)
        value = values[self.start + u, b]
        keep = xp.isfinite(value)
        nb, b, u, scores, value = nb[keep], b[keep], u[keep], scores[keep], value[keep]
        post = self.backend.exp(scores - value[:, None])
        post *= G[nb, kb[keep], b][:, None]                                           # (r, I)
        columns = xp.arange(self.I)[None, :]
        add_at(self.backend, flows, (nb[:, None], columns, b[:, None]), post)
        add_at(self.backend, edge.reshape(self.Nb * self.Kb, self.I), (u[:, None], columns), post)

    def forward(self, program, values, x, context, cache):
        xp = self.backend.xp
        batch = values.shape[1]
        if context.mode == "max":
            values[self.start:self.stop] = self._max_forward(program, values[self.inputs])
            return
        E, S = self._buffers(program, batch, cache)
        m = xp.empty((self.Nb, batch), dtype=E.dtype)
        kernels.max_shifted_exp(self.backend, values, self.batched_inputs, E, m)      # (Nb, I, B), (Nb, B)
        self._finish(program, values, E, S, m, cache)

    def _max_forward(self, program, X):
        xp = self.backend.xp
        with np.errstate(divide="ignore"):
            logw = self.backend.log(self.weights(program))        # (N, K, I)
        batch = X.shape[2]
        step = max(1, _MAX_CHUNK_ELEMENTS // max(1, self.N * self.K * self.I))
        outs = []
        for b0 in range(0, batch, step):
            Xc = X[:, :, b0:b0 + step]
            outs.append((logw[:, :, :, None] + Xc[:, None, :, :]).max(axis=2))
        return xp.concatenate(outs, axis=2).reshape(self.N * self.K, batch)

    def backward(self, program, values, grads, cache):
        if id(self) not in cache:
            self.forward(program, values, None, SUM, cache)
        grad_inputs = self._input_flows(program, values, grads, *cache[id(self)])    # (Nb, I, B)
        self.scatter.add(grads, grad_inputs.reshape(self.Nb * self.I, -1))

    def _input_flows(self, program, values, grads, E, S, small, exact):
        """Flows of every input, ``E * (W^T @ (grad / S))`` (Nb, I, B); also adds the edge flows
        ``W * ((grad / S) @ E^T)`` to the log-weight gradient. ``small`` marks the entries of
        ``S`` below the smallest normal float (None when there are none), found by the forward;
        ``exact`` says whether they are recomputed in log space."""
        xp = self.backend.xp
        G = grads[self.start:self.stop].reshape(self.Nb, self.Kb, -1)
        R = program.buffer(("R", self.Nb, self.Kb), G.shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            xp.divide(G, S, out=R)
        if small is not None:
            R[small] = 0
        W = self._batched_weights(program)
        flows = program.buffer(("WtR", self.Nb, self.I), (self.Nb, self.I, R.shape[2]))
        batch_matmul(self.backend, W.transpose(0, 2, 1), R, flows)
        flows *= E
        edge = W * xp.matmul(R, E.transpose(0, 2, 1))
        if small is not None and exact:
            self._exact_flows(program, values, G, small, flows, edge)
        if self.contiguous:
            program.grad_log_weights[self.slot0:self.slot0 + edge.size] += edge.ravel()
        else:
            self.weight_scatter.add(program.grad_log_weights, edge.ravel())
        return flows

    def _input_scores(self, values, node, batch):
        """Log-values of the inputs of ``node[a]`` at example ``batch[a]``: (n_active, I)."""
        return values[self.inputs[node], batch[:, None]]

    def _activate(self, active, node, j, batch):
        active[self.inputs[node, j], batch] = True

    def select(self, program, values, active, choose):
        xp = self.backend.xp
        rows, batch = xp.nonzero(active[self.start:self.stop])
        if len(rows) == 0:
            return
        node, unit = rows // self.K, rows % self.K
        scores = self._input_scores(values, node, batch)
        if choose.weighted:
            with np.errstate(divide="ignore"):
                scores = scores + self.backend.log(self.weights(program)[node, unit])
        j = choose(scores, self, node, batch)
        self._activate(active, node, j, batch)
        if choose.counts is not None:
            choose.counts.append(self.weight_offsets[node] + unit * self.I + j)

class FusedSumLayer(DenseSumLayer):
    """Sums over binary cartesian products, fused: products are formed as outer products of the
    max-shifted children's exponentials and contracted with the weights by batched matmuls, node
    block by node block (one call over all nodes on a device); the products are never kept, the
    backward pass forms them again from the children's exponentials."""

    def __init__(self, spec: FusedSumLayerSpec, backend):
        self.backend = backend
        self.start, self.stop = spec.start, spec.stop
        self.N, self.K = spec.num_nodes, spec.num_units
        self.Nb, self.Kb = self.N, self.K
        self.root_nodes = None          # its sum nodes that are roots (set by the Program)
        self.n, self.KL, self.KR = spec.num_splits, spec.left_units, spec.right_units
        self.I = self.n * self.KL * self.KR
        self.left = backend.index(spec.left)
        self.right = backend.index(spec.right)
        self._child_tables(spec.left, spec.right, backend)
        self._weight_layout(spec.weight_offsets, backend)
        self.left_scatter = Scatter(backend, spec.left.ravel())
        self.right_scatter = Scatter(backend, spec.right.ravel())
        self.num_edges = self.N * self.K * self.I + 2 * self.N * self.I

    def _child_tables(self, left: np.ndarray, right: np.ndarray, backend):
        """The distinct children (rows of ``K`` units) and which one each split takes: a child is
        shared by several splits and nodes (1.3 to 2 uses on average in a PD circuit), and its
        exponentials are computed once. Both sides share one table when ``KL == KR``."""
        shape = (self.N, self.n)
        if self.KL == self.KR:
            table, child = np.unique(np.concatenate([left.reshape(-1, self.KL), right.reshape(-1, self.KR)]),
                                     axis=0, return_inverse=True)
            tables = [table]
            left_child, right_child = child.reshape(-1)[:self.N * self.n], child.reshape(-1)[self.N * self.n:]
        else:
            left_table, left_child = np.unique(left.reshape(-1, self.KL), axis=0, return_inverse=True)
            right_table, right_child = np.unique(right.reshape(-1, self.KR), axis=0, return_inverse=True)
            tables = [left_table, right_table]
        self.child_tables = [backend.index(t) for t in tables]
        self.left_child = backend.index(left_child.reshape(shape))
        self.right_child = backend.index(right_child.reshape(shape))

    def _child_exps(self, program, values, batch: int):
        """Every distinct child's max-shifted exponentials and shift, ``[(exps, tops)]`` per table
        ((C, K, B), (C, B)): the left side's first, the right side's last."""
        out = []
        for t, rows in enumerate(self.child_tables):
            # work arrays that every fused layer shares (only its forward reads them)
            exps = program.scratch(("child-exps", t), rows.size, batch).reshape(rows.shape + (batch,))
            tops = program.scratch(("child-tops", t), rows.shape[0], batch)

            def block(lo, hi, rows=rows, exps=exps, tops=tops):
                kernels.max_shifted_exp(self.backend, values, rows[lo:hi], exps[lo:hi], tops[lo:hi])
            self.backend.blocks(rows.shape[0], rows.shape[1] * batch, block, wide=True)
            out.append((exps, tops))
        return out[0], out[-1]

    def _factors(self, program, values, context, cache):
        """Buffers for the children's max-shifted exponentials ``(L, R, M, dropped)``, and the
        function ``fill(lo, hi)`` that computes them for nodes ``lo:hi``.

        ``L`` (N, n, KL, B) and ``R`` (N, n, KR, B) are such that the outer product
        ``L[:, s, i] * R[:, s, j]`` is ``exp(left_i + right_j - M)`` of split ``s``, with ``M``
        (N, B) the largest sum of the split's two children's largest values (each 0 where it is
        not finite; :func:`~pcircuits.program.kernels.split_factors`); ``dropped`` is the
        product-dropout mask (N, I, B) of the pass, or None.
        """
        batch = values.shape[1]
        key = id(self) if cache is not None else "shared"
        L = program.buffer(("L", key, self.N, self.n, self.KL), (self.N, self.n, self.KL, batch))
        R = program.buffer(("Rt", key, self.N, self.n, self.KR), (self.N, self.n, self.KR, batch))
        M = program.buffer(("M", key, self.N), (self.N, batch))
        dropped = None
        if context.product_dropout:
            dropped = context.rng.bernoulli_mask((self.N, self.I, batch), context.product_dropout)
            if context.spare_root_inputs and self.root_nodes is not None:
                dropped.reshape(self.N, -1)[self.root_nodes] = False
        (left_exps, left_tops), (right_exps, right_tops) = self._child_exps(program, values, batch)

        def fill(lo, hi):
            kernels.split_factors(self.backend, left_exps, left_tops, self.left_child[lo:hi], right_exps, right_tops,
                                  self.right_child[lo:hi], L[lo:hi], R[lo:hi], M[lo:hi])
        return L, R, M, dropped, fill

    def _outer(self, L, R, dropped, lo: int, hi: int, out=None):
        """The products of nodes ``lo:hi``, ``L[:, s, i] * R[:, s, j]`` (hi - lo, I, B), dropped ones 0."""
        xp = self.backend.xp
        batch = L.shape[-1]
        if out is None:
            out = xp.empty((hi - lo, self.I, batch), dtype=L.dtype)
        kernels.outer_product(self.backend, L[lo:hi], R[lo:hi], out.reshape(hi - lo, self.n, self.KL, self.KR, batch))
        if dropped is not None:
            xp.putmask(out, dropped[lo:hi], 0)
        return out

    def forward(self, program, values, x, context, cache):
        if context.mode == "max":
            L = values[self.left]
            R = values[self.right]
            X = (L[:, :, :, None, :] + R[:, :, None, :, :]).reshape(self.N, self.I, -1)
            values[self.start:self.stop] = self._max_forward(program, X)
            return
        batch = values.shape[1]
        L, R, M, dropped, fill = self._factors(program, values, context, cache)
        S = program.buffer(("S", id(self) if cache is not None else "shared", self.N, self.K), (self.N, self.K, batch))
        W = self._batched_weights(program)
        out = values[self.start:self.stop].reshape(self.N, self.K, -1)

        # node by node (on a device: all at once), so that the products never leave the cache
        underflow = []

        def block(lo, hi):
            fill(lo, hi)
            batch_matmul(self.backend, W[lo:hi], self._outer(L, R, dropped, lo, hi), S[lo:hi])
            if kernels.log_plus(self.backend, S[lo:hi], M[lo:hi], out[lo:hi]):
                underflow.append(lo)
        self.backend.blocks(self.N, self.I * batch, block, wide=True)
        # after product dropout the products differ from those that _input_scores rebuilds; the
        # rare underflowing entries then keep the clamped values (-inf, no flow) instead
        exact = not context.product_dropout
        small = S < np.finfo(S.dtype).tiny if underflow else None
        if small is not None and exact:
            self._exact_values(program, values, out, small)
        if cache is not None:
            cache[id(self)] = (L, R, dropped, S, small, exact)

    def backward(self, program, values, grads, cache):
        xp = self.backend.xp
        if id(self) not in cache:
            self.forward(program, values, None, SUM, cache)
        L, R, dropped, S, small, exact = cache[id(self)]
        batch = values.shape[1]
        if small is not None:
            # underflowing sums: the flows over the whole layer at once, the small entries exact
            E = self._outer(L, R, dropped, 0, self.N, program.buffer(("E", self.N, self.I), (self.N, self.I, batch)))
            flows = self._input_flows(program, values, grads, E, S, small, exact)
            self._add_input_flows(grads, flows.reshape(self.N, self.n, self.KL, self.KR, batch))
            return
        G = grads[self.start:self.stop].reshape(self.N, self.K, -1)
        ratio = program.buffer(("R", self.N, self.K), G.shape)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            xp.divide(G, S, out=ratio)
        W = self._batched_weights(program)
        edge = program.buffer(("edge", self.N, self.K, self.I), (self.N, self.K, self.I))
        left = program.buffer(("left-flows", self.N, self.n, self.KL), L.shape)
        right = program.buffer(("right-flows", self.N, self.n, self.KR), R.shape)

        # node by node, as the forward: flows E * (W^T @ (G / S)), edge flows W * ((G / S) @ E^T)
        def block(lo, hi):
            E = self._outer(L, R, dropped, lo, hi)
            flows = xp.empty_like(E)
            batch_matmul(self.backend, W[lo:hi].transpose(0, 2, 1), ratio[lo:hi], flows)
            xp.matmul(ratio[lo:hi], E.transpose(0, 2, 1), out=edge[lo:hi])
            flows *= E
            flows = flows.reshape(hi - lo, self.n, self.KL, self.KR, batch)
            flows.sum(axis=3, out=left[lo:hi])
            flows.sum(axis=2, out=right[lo:hi])
        self.backend.blocks(self.N, self.I * batch, block, wide=True)
        edge *= W
        if self.contiguous:
            program.grad_log_weights[self.slot0:self.slot0 + edge.size] += edge.ravel()
        else:
            self.weight_scatter.add(program.grad_log_weights, edge.ravel())
        self.left_scatter.add(grads, left.reshape(-1, batch))
        self.right_scatter.add(grads, right.reshape(-1, batch))

    def _add_input_flows(self, grads, flows):
        """Add the product flows (N, n, KL, KR, B) to the left and right children's rows."""
        batch = flows.shape[-1]
        self.left_scatter.add(grads, flows.sum(axis=3).reshape(-1, batch))
        self.right_scatter.add(grads, flows.sum(axis=2).reshape(-1, batch))

    def _input_scores(self, values, node, batch):
        """Log-values of the products of ``node[a]`` at example ``batch[a]``: (n_active, I)."""
        L = values[self.left[node], batch[:, None, None]]          # (a, n, KL)
        R = values[self.right[node], batch[:, None, None]]         # (a, n, KR)
        return (L[:, :, :, None] + R[:, :, None, :]).reshape(len(node), self.I)

    def _activate(self, active, node, j, batch):
        split, rest = j // (self.KL * self.KR), j % (self.KL * self.KR)
        active[self.left[node, split, rest // self.KR], batch] = True
        active[self.right[node, split, rest % self.KR], batch] = True


class _SegmentLayer:
    """Scalar nodes as a flat edge list in rounds (see
    :class:`~pcircuits.layerize.plan.SegmentLayerSpec`): round ``r`` is the contiguous block of
    the ``r``-th inputs of the layer's first ``n_r`` units, so a reduction over every unit's
    inputs is one elementwise operation per round on a prefix of the layer's rows, with no
    padding and no scattered writes. The top-down and relaxed passes see the layer in its padded
    form (:attr:`padded`, made on first use)."""

    def __init__(self, spec, backend):
        self.backend = backend
        self.start, self.stop = spec.start, spec.stop
        self.spec = spec
        self.inputs_np = spec.inputs
        bounds = np.concatenate([[0], np.cumsum(spec.round_sizes)])
        self.rounds = [(int(lo), int(n)) for lo, n in zip(bounds[:-1], spec.round_sizes)]
        self.round_starts = [lo for lo, _ in self.rounds]
        #: The rounds' first edges and sizes as index arrays, (R,) each (the compiled loops read them).
        self.round_bounds = (backend.index(bounds[:-1]), backend.index(np.asarray(spec.round_sizes)))
        self.inputs = backend.index(spec.inputs)
        self.round_inputs = [backend.index(spec.inputs[lo:lo + n]) for lo, n in self.rounds]
        # the first input slot of every round whose inputs are consecutive slots (read as a
        # slice of the value array, no gather), else -1: a round is consecutive when none of
        # its n - 1 steps from one edge's input to the next is other than +1
        breaks = np.concatenate([[0], np.cumsum(np.diff(spec.inputs) != 1)])
        self.round_slices = [int(spec.inputs[lo]) if breaks[lo + n - 1] == breaks[lo] else -1
                             for lo, n in self.rounds]
        self.scatter = Scatter(backend, spec.inputs)
        self.num_edges = int(len(spec.inputs))
        self._padded = None
        #: :meth:`_parts` of the whole layer (a pass over a small batch is one block).
        self._whole = [(lo, lo + n, n) for lo, n in self.rounds]

    def _padded_table(self, fill: int, values: np.ndarray) -> np.ndarray:
        """``values`` per edge as a (units, largest fan-in) table, padded with ``fill``."""
        table = np.full((self.stop - self.start, len(self.rounds)), fill, dtype=np.int64)
        for r, (lo, n) in enumerate(self.rounds):
            table[:n, r] = values[lo:lo + n]
        return table

    def _parts(self, a: int, b: int):
        """The edges of units ``[a, b)``, round by round: ``(first edge, last edge + 1, units)``
        for every round that reaches unit ``a`` (its units are ``a .. a + units - 1``)."""
        if a == 0 and b >= self.stop - self.start:
            return self._whole
        parts = []
        for lo, n in self.rounds:
            if n <= a:
                break
            m = min(b, n) - a
            parts.append((lo + a, lo + a + m, m))
        return parts

    def _inputs_of(self, values, lo: int, hi: int, out=None):
        """The rows of ``values`` that edges ``lo:hi`` (one round's part) read: a slice of
        ``values`` when the round's inputs are consecutive slots, else gathered into ``out``."""
        r = bisect.bisect_right(self.round_starts, lo) - 1
        first = self.round_slices[r]
        if first >= 0:
            start = first + lo - self.rounds[r][0]
            return values[start:start + hi - lo]
        self.backend.take_rows(values, self.inputs[lo:hi], out)
        return out

    def _block_rows(self, batch: int) -> int:
        """The row size that makes :meth:`Backend.blocks` hand out blocks of units whose edges
        hold at most about ``SEGMENT_BLOCKS`` host blocks of values, and at least 8 blocks (of
        16 units or more) per layer, so that the host threads share even a small layer evenly."""
        units = self.stop - self.start
        per_block = max(1, BLOCK_ELEMENTS * SEGMENT_BLOCKS * units // (batch * self.num_edges))
        per_block = min(per_block, max(16, -(-units // 8)))
        return max(1, BLOCK_ELEMENTS // per_block)

    @staticmethod
    def _reduce_parts(ufunc, edges, parts, out):
        """``out[i] = ufunc.reduce`` over the rows of ``edges`` that :meth:`_parts` gives unit
        ``a + i`` (``out`` holds the block's units)."""
        lo, hi, _ = parts[0]
        out[...] = edges[lo:hi]
        for lo, hi, m in parts[1:]:
            ufunc(out[:m], edges[lo:hi], out=out[:m])

    def _spread(self, rows, edges, ufunc=None):
        """Every unit's row of ``rows`` (U, batch) onto its edges' rows of ``edges`` (E, batch):
        copied, or combined in place with ``ufunc``."""
        for lo, n in self.rounds:
            if ufunc is None:
                edges[lo:lo + n] = rows[:n]
            else:
                ufunc(edges[lo:lo + n], rows[:n], out=edges[lo:lo + n])


class SegmentProductLayer(_SegmentLayer):
    """Scalar products: ``value[u]`` is the sum of the log-values of unit ``u``'s inputs."""

    kind = "product"

    def __init__(self, spec: SegmentProductLayerSpec, backend):
        super().__init__(spec, backend)
        self.root_input_rows = None     # units that feed a root (set by the Program)

    @property
    def padded(self) -> ProductLayer:
        """The same products as a padded :class:`ProductLayer`."""
        if self._padded is None:
            table = self._padded_table(self.spec.zero_slot, self.inputs_np)
            self._padded = ProductLayer(ProductLayerSpec(self.start, self.stop, table, self.spec.zero_slot),
                                        self.backend)
        return self._padded

    @property
    def columns(self):
        """The padded form's input columns (the relaxed pass's adjoint reads them)."""
        return self.padded.columns

    def forward(self, program, values, x, context, cache):
        xp = self.backend.xp
        be = self.backend
        out = values[self.start:self.stop]

        # blocks of units shared by the host threads, each one compiled loop where it applies
        def block(a, b):
            if not kernels.segment_gather_sum(be, values, self.inputs, *self.round_bounds, a, b, out[a:b]):
                self._add_block(program, values, a, b, out[a:b])
        be.blocks(self.stop - self.start, self._block_rows(values.shape[1]), block)
        if context.product_dropout:
            _drop_products(xp, out, context, self.root_input_rows)

    def _add_block(self, program, values, a: int, b: int, rows):
        """Units ``a:b`` of the forward pass in NumPy into ``rows`` (b - a, B): round 0 gathered
        into the rows, each later round gathered into the thread's own block-sized scratch
        (which stays in its cache) and added."""
        parts = self._parts(a, b)
        lo, hi, _ = parts[0]
        first = self._inputs_of(values, lo, hi, rows)
        if first is not rows:
            rows[...] = first
        if len(parts) > 1:
            scratch = program.scratch(("segment-round", threading.get_ident()), b - a, values.shape[1])
            for lo, hi, m in parts[1:]:
                rows[:m] += self._inputs_of(values, lo, hi, scratch[:m])

    def backward(self, program, values, grads, cache):
        g = grads[self.start:self.stop]
        if self.scatter.unique:         # no input shared within the layer: one add per round
            for (lo, n), inputs in zip(self.rounds, self.round_inputs):
                grads[inputs] += g[:n]
            return
        flows = program.scratch("segment-edges", self.num_edges, grads.shape[1])
        self._spread(g, flows)
        self.scatter.add(grads, flows)

    def select(self, program, values, active, choose):
        xp = self.backend.xp
        for (lo, n), inputs in zip(self.rounds, self.round_inputs):
            units, batch = xp.nonzero(active[self.start:self.start + n])
            active[inputs[units], batch] = True


class SegmentSumLayer(_SegmentLayer):
    """Scalar sums: ``value[u] = logsumexp_e(log w[e] + value[inputs[e]])`` over unit ``u``'s edges.

    Each unit is shifted by its own largest weighted input, so the sum of the shifted
    exponentials ``S`` is at least 1 (or exactly 0 when every input is -inf): nothing underflows,
    and the flows are ``exp(shifted score) * grad / S``.
    """

    kind = "sum"

    def __init__(self, spec: SegmentSumLayerSpec, backend):
        super().__init__(spec, backend)
        self.slots_np = spec.weight_slots
        self.slots = backend.index(spec.weight_slots)
        self.weight_scatter = Scatter(backend, spec.weight_slots)
        self._largest = float(np.finfo(backend.dtype).max)

    @property
    def padded(self) -> SumLayer:
        """The same sums as a padded :class:`SumLayer` (padding has weight slot -1)."""
        if self._padded is None:
            inputs = self._padded_table(self.spec.zero_slot, self.inputs_np)
            slots = self._padded_table(-1, self.slots_np)
            self._padded = SumLayer(SumLayerSpec(self.start, self.stop, inputs, slots), self.backend)
        return self._padded

    def forward(self, program, values, x, context, cache):
        batch = values.shape[1]
        units = self.stop - self.start
        if cache is None:
            scores = program.scratch("segment-edges", self.num_edges, batch)
            total = program.scratch("segment-total", units, batch)
        else:
            scores = program.buffer(("segment-scores", self.start), (self.num_edges, batch))
            total = program.buffer(("segment-total", self.start), (units, batch))
        shift = program.scratch("segment-shift", units, batch)
        maximum = context.mode == "max"
        self._reduce_edges(program, values, values[self.start:self.stop], scores, total, shift, maximum)
        if cache is not None and not maximum:
            cache[id(self)] = (scores, total)

    def _reduce_edges(self, program, values, out, scores, total, shift, maximum: bool):
        """``out`` (U, batch) the units' log-sums (or with ``maximum`` their largest weighted
        inputs) of the inputs' rows of ``values``; ``scores`` (E, batch) ends up holding the
        shifted exponentials, ``total`` (U, batch) their sums; ``shift`` is work space. Over
        blocks of units (their edges are disjoint rows of every buffer), shared by the host
        threads; each block is one compiled loop where it applies
        (:func:`~pcircuits.program.kernels.segment_logsumexp`), else :meth:`_reduce_block`."""
        log_weights = program.log_weights[self.slots]

        def block(a, b):
            top = out[a:b] if maximum else shift[a:b]
            if not kernels.segment_logsumexp(self.backend, values, self.inputs, log_weights, self.round_bounds[0],
                                             self.round_bounds[1], a, b, scores, top, total[a:b], out[a:b], maximum):
                self._reduce_block(values, log_weights, a, b, scores, top, total[a:b], out[a:b], maximum)
        self.backend.blocks(self.stop - self.start, self._block_rows(values.shape[1]), block)

    def _reduce_block(self, values, log_weights, a: int, b: int, scores, top, sums, out, maximum: bool):
        """Units ``a:b`` of :meth:`_reduce_edges` in NumPy: ``top``, ``sums`` and ``out`` hold the
        block's units (``top`` is ``out`` with ``maximum``)."""
        xp = self.backend.xp
        be = self.backend
        big = self._largest
        parts = self._parts(a, b)
        for lo, hi, _ in parts:
            xp.add(self._inputs_of(values, lo, hi, scores[lo:hi]), log_weights[lo:hi, None], out=scores[lo:hi])
        self._reduce_parts(xp.maximum, scores, parts, top)
        if maximum:
            return
        # infinite shifts clipped to the largest finite values: a unit whose inputs are all
        # -inf keeps exponentials 0 (value -inf), one with a +inf input the value +inf
        xp.minimum(top, big, out=top)
        xp.maximum(top, -big, out=top)
        for lo, hi, m in parts:
            xp.subtract(scores[lo:hi], top[:m], out=scores[lo:hi])
            be.exp(scores[lo:hi], out=scores[lo:hi])
        self._reduce_parts(xp.add, scores, parts, sums)
        with np.errstate(divide="ignore"):
            be.log(sums, out=out)
        out += top

    def backward(self, program, values, grads, cache):
        xp = self.backend.xp
        if id(self) not in cache:
            self.forward(program, values, None, SUM, cache)
        shifted, total = cache[id(self)]
        ratio = program.scratch("segment-shift", self.stop - self.start, grads.shape[1])
        xp.maximum(total, 1, out=ratio)
        xp.divide(grads[self.start:self.stop], ratio, out=ratio)
        flows = program.scratch("segment-edges", self.num_edges, grads.shape[1])
        for lo, n in self.rounds:
            xp.multiply(shifted[lo:lo + n], ratio[:n], out=flows[lo:lo + n])
        self.scatter.add(grads, flows)
        self.weight_scatter.add(program.grad_log_weights, flows.sum(axis=1))

    def select(self, program, values, active, choose):
        self.padded.select(program, values, active, choose)


class TableSumLayer(SegmentSumLayer):
    """Scalar sums over discrete leaves of one variable each (univariate mixtures).

    A unit's value depends on its variable alone, so a sum-mode forward pass that keeps nothing
    for a backward pass evaluates the sums once at every value of their variables and at a
    missing value (:meth:`log_table`, with the segment sums' own arithmetic on a batch of
    ``num_values + 1`` columns) and looks every example's value up: no ``exp`` or ``log`` per
    example, and the same values as the segment sums to the last bit. The other passes (max
    mode, with dropout, before a backward pass, batches no larger than the table) run the
    segment sums.
    """

    def __init__(self, spec: TableSumLayerSpec, backend):
        super().__init__(spec, backend)
        self.num_values = spec.num_values
        self.variables_np = spec.variables
        self.unit_variables = backend.index(spec.variables[:, None])
        self._grid = None
        self._leaf_layers = None

    def uses_table(self, context, cache, batch: int) -> bool:
        """Whether a forward pass with this context, cache and batch size looks the values up."""
        return cache is None and context.mode == "sum" and not context.dropout and batch > self.num_values

    def forward(self, program, values, x, context, cache):
        if not self.uses_table(context, cache, values.shape[1]):
            super().forward(program, values, x, context, cache)
            return
        _lookup(self.backend, self.log_table(program), program.inputs_t, self.unit_variables,
                values[self.start:self.stop], program.inputs_missing)

    def log_table(self, program):
        """The units' log-values at every value ``0 .. num_values - 1`` of their variables and at a
        missing value (the last column), shape (units, num_values + 1); a column beyond a
        variable's largest value repeats that value's."""
        be, xp = self.backend, self.backend.xp
        width = self.num_values + 1
        if self._grid is None:
            top = np.minimum(program.domain.max_values, self.num_values - 1)[:, None]
            grid = np.minimum(np.arange(self.num_values, dtype=np.float64)[None, :], top)
            grid = np.concatenate([grid, np.full((len(top), 1), np.nan)], axis=1)
            self._grid = be.asarray(grid, dtype=program.inputs_t.dtype)
            self._leaf_layers = [layer for layer in program.input_layers
                                 if np.any((self.inputs_np >= layer.start) & (self.inputs_np < layer.stop))]
        leaves = program.buffer(("table-sum-leaves", self.start), (program.num_units + 1, width))
        for layer in self._leaf_layers:
            params = layer.params(program.leaf_tables[layer.table_key])
            layer.family.log_prob_units(be, params, self._grid, layer.variables, leaves[layer.start:layer.stop],
                                        missing=True)
        units = self.stop - self.start
        table = xp.empty((units, width), dtype=be.dtype)
        self._reduce_edges(program, leaves, table, xp.empty((self.num_edges, width), dtype=be.dtype),
                           xp.empty((units, width), dtype=be.dtype), xp.empty((units, width), dtype=be.dtype),
                           False)
        return table


#: The compile rule table: layer spec type -> executable layer class.
COMPILE_RULES = {InputLayerSpec: InputLayer, ProductLayerSpec: ProductLayer, SumLayerSpec: SumLayer,
                 DenseSumLayerSpec: DenseSumLayer, FusedSumLayerSpec: FusedSumLayer,
                 SegmentProductLayerSpec: SegmentProductLayer, SegmentSumLayerSpec: SegmentSumLayer,
                 TableSumLayerSpec: TableSumLayer}


def build_layer(spec, backend):
    """The executable layer of a layer spec (by :data:`COMPILE_RULES`)."""
    rule = COMPILE_RULES.get(type(spec))
    if rule is None:
        raise TypeError(f"no compile rule for layer spec {type(spec).__name__}")
    return rule(spec, backend)
