"""The relaxed (soft) top-down pass: differentiable sampling (Lang et al. 2022, section 3.2).

Every sum unit draws a Gumbel-softmax vector over its inputs, ``y = softmax((log w + v + g) /
tau)`` (``v``: the inputs' log-values under the evidence, 0 without evidence), and its sample is
the interpolation ``sum_j y_j s_j`` of its inputs' samples; a product's sample concatenates its
inputs' (disjoint) samples; a leaf's sample is reparameterized
(:mod:`pcircuits.distributions.relaxations`). ``hard=True`` is the straight-through estimator:
the forward takes ``y = onehot(argmax)``, the backward the gradient of the soft ``y``.

Because the interpolation is linear, the sample of variable ``v`` is
``sum_L a_L s_L[v]`` over the leaves ``L`` over ``v``, where the *soft flow* ``a`` of a unit is
the sum over its paths from the root of the products of the ``y`` along them. The pass computes
these flows top-down, layer by layer, in the shape of the backward pass of the forward (a sum
layer sends ``a_u y_uj`` to input ``j``, a product layer sends ``a_u`` to each input); its
adjoint runs bottom-up. Both are vectorized per layer (the gathers and scatters of the
Program's own index tensors), never per node.

The Gumbel noise of every sum unit and the noise of every leaf are drawn up front
(:class:`RelaxedNoise`) and can be passed in, so that a loss on the samples is a deterministic
function of the parameters and temperature: what finite differences hold fixed, and what makes
the exact sampler (``Program.top_down(..., noise=)``) comparable draw for draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import RandomSource
from ..distributions.relaxations import relaxation_of
from .context import SUM
from .layers import (DenseSumLayer, FusedSumLayer, ProductLayer, SegmentProductLayer, SegmentSumLayer, SumLayer,
                     TableSumLayer)

__all__ = ["RelaxedNoise", "RelaxedGradients", "RelaxedTape", "relaxed_sample", "RELAXED_RULES"]


@dataclass
class RelaxedNoise:
    """The noise of one relaxed (or fixed-noise exact) sampling pass of ``batch`` samples.

    Attributes
    ----------
    batch : int
    sums : dict int -> array, shape (sum nodes of the layer, inputs per node, batch)
        Standard Gumbel noise of every sum node's inputs (shared by its units), by the sum
        layer's first slot.
    leaves : dict int -> array, shape (batch, layer units, width)
        Every input layer's leaf noise (see the relaxation of its family), by its first slot.
    """

    batch: int
    sums: dict
    leaves: dict

    @classmethod
    def draw(cls, program, batch: int, seed=None, *, reuse: bool = False) -> "RelaxedNoise":
        """Fresh noise for ``batch`` samples of ``program`` from ``seed`` (an int, a NumPy
        Generator or a backend :class:`~pcircuits.backend.RandomSource`, which it draws from).

        ``reuse``: draw the sums' noise into the Program's work buffers (what
        :meth:`Program.sample_relaxed` does when it draws the noise itself; the noise of an
        earlier such draw is then overwritten)."""
        if not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"RelaxedNoise: batch must be a positive integer, got {batch!r}")
        rng = seed if isinstance(seed, RandomSource) else program.backend.rng(seed)
        sums = {}
        for layer in program.inner_layers:
            rule = RELAXED_RULES.get(type(layer))
            if rule is not None and rule.is_sum:
                shape = (rule.shape(layer)[0], rule.num_inputs(layer), int(batch))
                out = program.buffer(("relaxed-noise", layer.start), shape) if reuse else None
                sums[layer.start] = rng.gumbel_fast(shape, out=out)
        leaves = {}
        for layer in program.input_layers:
            relax = relaxation_of(layer.family)
            leaves[layer.start] = relax.draw(rng, int(batch), layer.params(program.leaf_tables[layer.table_key]))
        return cls(int(batch), sums, leaves)

    def check(self, program):
        """Raise ``ValueError`` when this noise does not fit ``program``'s layers."""
        for layer in program.inner_layers:
            rule = RELAXED_RULES.get(type(layer))
            if rule is not None and rule.is_sum:
                g = self.sums.get(layer.start)
                want = (rule.shape(layer)[0], rule.num_inputs(layer), self.batch)
                if g is None or tuple(g.shape) != want:
                    raise ValueError(f"RelaxedNoise: the sum layer at slot {layer.start} needs Gumbel noise of shape "
                                     f"{want}, got {None if g is None else tuple(g.shape)} (noise of another circuit?)")
        for layer in program.input_layers:
            e = self.leaves.get(layer.start)
            if e is None or e.shape[:2] != (self.batch, layer.stop - layer.start):
                raise ValueError(f"RelaxedNoise: the input layer at slot {layer.start} needs noise of shape "
                                 f"({self.batch}, {layer.stop - layer.start}, ...), got "
                                 f"{None if e is None else tuple(e.shape)}")


@dataclass
class RelaxedGradients:
    """What :meth:`RelaxedTape.backward` returns: gradients of ``sum(grad * samples)``.

    Attributes
    ----------
    log_weights : array, shape (num_weights,)
        With respect to the log of every sum weight.
    leaves : dict
        (family class, variables per unit) -> {parameter name: gradient w.r.t. the
        unconstrained parameter table} (as :class:`~pcircuits.program.Gradients`).
    temperature : float
        With respect to the temperature.
    """

    log_weights: object
    leaves: dict
    temperature: float


# ---- per layer kind: the sum layers seen as N nodes of K units over I inputs ------------------

class _InputRowsRule:
    """Sum layers whose ``inputs`` index the rows of their inputs directly."""

    @staticmethod
    def gather(layer, rows):
        return rows[layer.inputs]

    @staticmethod
    def gather_into(xp, layer, rows, out):
        xp.take(rows, layer.inputs, axis=0, out=out)


class _PaddedSumRule(_InputRowsRule):
    """:class:`SumLayer`: every unit its own node (``K = 1``); padding has log-weight -inf."""

    is_sum = True

    @staticmethod
    def num_inputs(layer):
        return int(layer.inputs_np.shape[1])

    @staticmethod
    def shape(layer):
        return layer.stop - layer.start, 1, int(layer.inputs_np.shape[1])

    @staticmethod
    def log_weights(layer, program):
        return layer.log_weights(program)[:, None, :]

    @staticmethod
    def spread(layer, dst, flows):
        layer.scatter.add(dst, flows.reshape(-1, flows.shape[-1]))

    @staticmethod
    def add_weight_gradient(layer, grad, edge):
        layer.weight_scatter.add(grad, edge[:, 0, :][layer.valid_b])


class _DenseSumRule(_InputRowsRule):
    """:class:`DenseSumLayer`: ``N`` nodes of ``K`` units over the same ``I`` inputs."""

    is_sum = True

    @staticmethod
    def num_inputs(layer):
        return layer.I

    @staticmethod
    def shape(layer):
        return layer.N, layer.K, layer.I

    @staticmethod
    def log_weights(layer, program):
        if layer.contiguous:
            return program.log_weights[layer.slot0:layer.slot0 + layer.N * layer.K * layer.I].reshape(
                layer.N, layer.K, layer.I)
        return program.log_weights[layer.slots]

    @staticmethod
    def spread(layer, dst, flows):
        batch = flows.shape[-1]
        if layer.Nb != layer.N:                 # nodes over the very same inputs: one scatter
            flows = flows.sum(axis=0, keepdims=True)
        layer.scatter.add(dst, flows.reshape(-1, batch))

    @staticmethod
    def add_weight_gradient(layer, grad, edge):
        if layer.contiguous:
            grad[layer.slot0:layer.slot0 + edge.size] += edge.ravel()
        else:
            layer.weight_scatter.add(grad, edge.ravel())


class _FusedSumRule(_DenseSumRule):
    """:class:`FusedSumLayer`: the inputs are the outer products of left and right units."""

    @staticmethod
    def gather(layer, rows):
        left = rows[layer.left]                                         # (N, n, KL, B)
        right = rows[layer.right]                                       # (N, n, KR, B)
        return (left[:, :, :, None, :] + right[:, :, None, :, :]).reshape(layer.N, layer.I, -1)

    @staticmethod
    def gather_into(xp, layer, rows, out):
        left, right = rows[layer.left], rows[layer.right]
        xp.add(left[:, :, :, None, :], right[:, :, None, :, :],
               out=out.reshape(layer.N, layer.n, layer.KL, layer.KR, out.shape[-1]))

    @staticmethod
    def spread(layer, dst, flows):
        batch = flows.shape[-1]
        f = flows.reshape(layer.N, layer.n, layer.KL, layer.KR, batch)
        layer.left_scatter.add(dst, f.sum(axis=3).reshape(-1, batch))
        layer.right_scatter.add(dst, f.sum(axis=2).reshape(-1, batch))


class _SegmentSumRule:
    """:class:`SegmentSumLayer`: the padded rule applied to the layer's padded form."""

    is_sum = True

    @staticmethod
    def gather(layer, rows):
        return _PaddedSumRule.gather(layer.padded, rows)

    @staticmethod
    def gather_into(xp, layer, rows, out):
        _PaddedSumRule.gather_into(xp, layer.padded, rows, out)

    @staticmethod
    def num_inputs(layer):
        return _PaddedSumRule.num_inputs(layer.padded)

    @staticmethod
    def shape(layer):
        return _PaddedSumRule.shape(layer.padded)

    @staticmethod
    def log_weights(layer, program):
        return _PaddedSumRule.log_weights(layer.padded, program)

    @staticmethod
    def spread(layer, dst, flows):
        _PaddedSumRule.spread(layer.padded, dst, flows)

    @staticmethod
    def add_weight_gradient(layer, grad, edge):
        _PaddedSumRule.add_weight_gradient(layer.padded, grad, edge)


class _ProductRule:
    is_sum = False


#: The relaxed-pass rule of every inner layer kind.
RELAXED_RULES = {SumLayer: _PaddedSumRule, DenseSumLayer: _DenseSumRule, FusedSumLayer: _FusedSumRule,
                 SegmentSumLayer: _SegmentSumRule, TableSumLayer: _SegmentSumRule, ProductLayer: _ProductRule,
                 SegmentProductLayer: _ProductRule}


def _rule(layer):
    rule = RELAXED_RULES.get(type(layer))
    if rule is None:
        raise TypeError(f"the relaxed top-down pass has no rule for layer kind {type(layer).__name__}")
    return rule


#: Largest (nodes, units, inputs, columns) array of an explicit layer before the batch is chunked.
_EXPLICIT_ELEMENTS = 1 << 22


def _safe_max(xp, a, axis):
    m = a.max(axis=axis)
    return xp.where(xp.isfinite(m), m, 0)


def _softmax(be, z, axis):
    """Softmax along ``axis``; all zeros where every score is -inf (a unit that the evidence
    makes impossible, which then receives no flow)."""
    xp = be.xp
    m = z.max(axis=axis, keepdims=True)
    e = be.exp(z - xp.where(xp.isfinite(m), m, 0))
    total = e.sum(axis=axis, keepdims=True)
    return e / xp.where(total > 0, total, 1)


class RelaxedTape:
    """One relaxed sampling pass: its samples and what its backward pass needs.

    Its large arrays live in the Program's work buffers: a tape's backward is valid until the
    Program's next relaxed pass (``Program.backward_relaxed`` always uses the last one).

    Attributes
    ----------
    samples : array, shape (batch, num_variables)
    """

    def __init__(self, program, noise, tau, hard, evidence, root):
        self.program, self.noise, self.tau, self.hard = program, noise, float(tau), bool(hard)
        self.evidence, self.root = evidence, root
        self.saved = {}
        self.samples = self._forward()

    # ---- forward -------------------------------------------------------------------------
    def _forward(self):
        program, be = self.program, self.program.backend
        xp = be.xp
        batch = self.noise.batch
        values = None
        if self.evidence is not None:
            program._forward(self.evidence, SUM, cache=False)
            values = program.values
        flows = xp.zeros((program.num_units + 1, batch), dtype=be.dtype)
        flows[int(program.output_slots[self.root])] = 1
        for layer in reversed(program.inner_layers):
            rule = _rule(layer)
            if not rule.is_sum:
                layer.backward(program, None, flows, None)          # each input gets the product's flow
                continue
            scores = self.noise.sums[layer.start]                                # (N, I, B)
            if values is not None:
                scores = scores + rule.gather(layer, values)
            units = flows[layer.start:layer.stop]
            saved = None if self.hard else self._factored_forward(layer, rule, scores, units, flows)
            if saved is None:
                saved = self._explicit_forward(layer, rule, scores, units, flows)
            self.saved[layer.start] = saved
        self.flows = flows
        out = xp.zeros((program.num_variables, batch), dtype=be.dtype)
        for layer in program.input_layers:
            params = layer.params(program.leaf_tables[layer.table_key])
            s = relaxation_of(layer.family).sample(be, params, self.noise.leaves[layer.start], self.tau, self.hard)
            contribution = s * flows[layer.start:layer.stop].T[:, :, None]           # (B, U, d)
            layer.input_scatter.add(out, contribution.transpose(1, 2, 0).reshape(-1, batch))
        x = out.T
        if self.evidence is not None:
            x = xp.where(xp.isnan(self.evidence), x, self.evidence)
        return x

    # ---- one sum layer ---------------------------------------------------------------------
    # A sum node's K units share one Gumbel vector over its I inputs (each induced tree holds at
    # most one unit of a node, so the hard draws are exact either way), and so do the inputs'
    # values under the evidence: the scores are ``log w[k, j] + S[j, b]`` with S = g + v. The
    # soft choices then factor, ``y[k, j, b] = W[k, j] E[j, b] / Z[k, b]`` with ``W = w^(1/tau)``,
    # ``E = exp(S / tau)`` and ``Z = W @ E``, and the pass and its adjoint are batched matrix
    # products, like the forward and backward of the dense sum layers ("factored"). Where ``Z``
    # underflows (small temperatures), and for straight-through choices, the layer is done with
    # explicit (N, K, I, columns) arrays over chunks of the batch instead ("explicit"; the
    # backward recomputes the choices from the stored scores).

    def _factored_forward(self, layer, rule, scores, units, flows):
        """The soft layer as matrix products; None when Z underflows somewhere."""
        xp, tau = self.program.backend.xp, self.tau
        N, K, I = rule.shape(layer)
        batch = scores.shape[-1]
        program = self.program
        log_w = rule.log_weights(layer, program)                                  # (N, K, I)
        # the large (N, I, B) arrays live in the Program's reused buffers (fresh allocations of
        # this size cost more page faults than arithmetic); E is kept per layer for the backward
        E = program.buffer(("relaxed-E", layer.start), (N, I, batch))
        xp.subtract(scores, _safe_max(xp, scores, axis=1)[:, None, :], out=E)
        E *= 1.0 / tau
        be = program.backend
        be.exp(E, out=E)
        W = be.exp((log_w - _safe_max(xp, log_w, axis=2)[:, :, None]) / tau)      # (N, K, I)
        Z = xp.matmul(W, E)                                                        # (N, K, B)
        finfo = np.finfo(Z.dtype)
        if Z.size and float(Z.min()) < finfo.tiny / finfo.eps:
            return None
        R = units.reshape(N, K, batch) / Z
        inputs = program.buffer(("relaxed-work", N, I), (N, I, batch))
        xp.matmul(W.transpose(0, 2, 1), R, out=inputs)
        inputs *= E
        rule.spread(layer, flows, inputs)
        return ("factored", log_w, scores, W, E, Z)

    def _factored_backward(self, layer, rule, saved, adjoint, flows, grad_log_weights, value_grads, temperature):
        xp, tau = self.program.backend.xp, self.tau
        _, log_w, scores, W, E, Z = saved
        N, K, I = rule.shape(layer)
        batch = E.shape[-1]
        program = self.program
        EA = program.buffer(("relaxed-EA", N, I), (N, I, batch))
        rule.gather_into(xp, layer, adjoint, EA)                                  # children's adjoints A
        EA *= E
        mean = xp.matmul(W, EA)
        mean /= Z                                                                 # (N, K, B): sum_j y_kj A_j
        adjoint[layer.start:layer.stop] = mean.reshape(N * K, batch)
        # dz[k, j, b] = y[k, j, b] a[k, b] (A[j, b] - mean[k, b]): sums over b and over k by matmuls
        R = flows[layer.start:layer.stop].reshape(N, K, batch) / Z
        RM = R * mean
        g_log_w = xp.matmul(R, EA.transpose(0, 2, 1))
        g_log_w -= xp.matmul(RM, E.transpose(0, 2, 1))
        g_log_w *= W
        g_log_w *= 1.0 / tau
        rule.add_weight_gradient(layer, grad_log_weights, g_log_w)
        if value_grads is None and not temperature:
            return 0.0
        finite = xp.isfinite(log_w)
        weight_part = (xp.where(finite, log_w, 0) * xp.where(finite, g_log_w, 0)).sum()
        if value_grads is None:
            # only the temperature's gradient: sum_jb scores * g_scores, with the sums over the
            # inputs done by two more products of the dense layout, (W @ (S E A)) and (W @ (S E))
            work = program.buffer(("relaxed-work", N, I), (N, I, batch))
            xp.multiply(scores, EA, out=work)
            part = (R * xp.matmul(W, work)).sum()
            xp.multiply(scores, E, out=work)
            part = part - (RM * xp.matmul(W, work)).sum()
            return -(weight_part + part / tau) / tau
        Wt = W.transpose(0, 2, 1)
        g_scores = xp.matmul(Wt, R)                                               # (N, I, B)
        g_scores *= EA
        work = program.buffer(("relaxed-work", N, I), (N, I, batch))
        xp.matmul(Wt, RM, out=work)
        work *= E
        g_scores -= work
        g_scores *= 1.0 / tau
        if value_grads is not None:
            rule.spread(layer, value_grads, g_scores)
        if not temperature:
            return 0.0
        # d/dtau = -(1/tau) sum dz * z = -(1/tau) (sum log_w * g_log_w + sum scores * g_scores)
        scores = xp.where(xp.isfinite(scores), scores, 0)
        return -(weight_part + xp.vdot(scores.ravel(), g_scores.ravel())) / tau

    def _chunks(self, N, K, I, batch):
        """Column ranges of the batch whose (N, K, I, columns) arrays hold at most
        ``_EXPLICIT_ELEMENTS`` values (the explicit layers' memory stays bounded)."""
        step = max(1, _EXPLICIT_ELEMENTS // max(1, N * K * I))
        return [(b0, min(batch, b0 + step)) for b0 in range(0, batch, step)]

    def _explicit_choices(self, layer, rule, scores, b0, b1):
        """Soft choices (and the one-hot ones under ``hard``) of batch columns ``b0:b1``, (N, K, I, c)."""
        xp, tau = self.program.backend.xp, self.tau
        z = (rule.log_weights(layer, self.program)[..., None] + scores[:, None, :, b0:b1]) / tau
        soft = _softmax(self.program.backend, z, axis=2)
        if not self.hard:
            return soft, soft
        one_hot = xp.arange(z.shape[2])[None, None, :, None] == xp.argmax(z, axis=2)[:, :, None, :]
        return soft, one_hot.astype(soft.dtype)

    def _explicit_forward(self, layer, rule, scores, units, flows):
        xp = self.program.backend.xp
        N, K, I = rule.shape(layer)
        batch = scores.shape[-1]
        units = units.reshape(N, K, 1, batch)
        inputs = xp.empty((N, I, batch), dtype=scores.dtype)
        for b0, b1 in self._chunks(N, K, I, batch):
            _, y = self._explicit_choices(layer, rule, scores, b0, b1)
            inputs[:, :, b0:b1] = (y * units[..., b0:b1]).sum(axis=1)
        rule.spread(layer, flows, inputs)
        return ("explicit", scores)

    def _explicit_backward(self, layer, rule, saved, adjoint, flows, grad_log_weights, value_grads, temperature):
        xp, tau = self.program.backend.xp, self.tau
        _, scores = saved
        N, K, I = rule.shape(layer)
        batch = scores.shape[-1]
        inputs = rule.gather(layer, adjoint)[:, None]                             # (N, 1, I, B)
        units = flows[layer.start:layer.stop].reshape(N, K, 1, batch)
        unit_adjoints = xp.empty((N, K, batch), dtype=scores.dtype)
        g_log_w = xp.zeros((N, K, I), dtype=scores.dtype)
        g_scores = None if value_grads is None else xp.empty((N, I, batch), dtype=scores.dtype)
        dtau = xp.zeros((), dtype=scores.dtype)
        for b0, b1 in self._chunks(N, K, I, batch):
            soft, y = self._explicit_choices(layer, rule, scores, b0, b1)
            unit_adjoints[:, :, b0:b1] = (y * inputs[..., b0:b1]).sum(axis=2)
            dy = units[..., b0:b1] * inputs[..., b0:b1]                          # (N, K, I, c)
            dz = soft * (dy - (soft * dy).sum(axis=2, keepdims=True))           # d/dz, z = scores / tau
            g_log_w += dz.sum(axis=3)
            if g_scores is not None:
                g_scores[:, :, b0:b1] = dz.sum(axis=1)
            if temperature:
                with np.errstate(divide="ignore"):
                    log_soft = xp.where(soft > 0, self.program.backend.log(xp.where(soft > 0, soft, 1)), 0)
                # sum_j dz_j z_j = sum_j dz_j log softmax(z)_j, because sum_j dz_j = 0
                dtau = dtau - (dz * log_soft).sum() / tau
        adjoint[layer.start:layer.stop] = unit_adjoints.reshape(N * K, batch)
        rule.add_weight_gradient(layer, grad_log_weights, g_log_w / tau)
        if g_scores is not None:
            rule.spread(layer, value_grads, g_scores / tau)
        return dtau

    # ---- backward ------------------------------------------------------------------------
    def backward(self, grad, *, temperature: bool = True) -> RelaxedGradients:
        """Gradients of ``sum(grad * samples)`` with the noise held fixed.

        Parameters
        ----------
        grad : array, shape (batch, num_variables)
            d(loss)/d(samples); entries of observed variables are ignored.
        temperature : bool
            Also the temperature's gradient (False skips its work and reports 0).
        """
        program, be = self.program, self.program.backend
        xp = be.xp
        batch = self.noise.batch
        g = be.asarray(grad)
        if tuple(g.shape) != (batch, program.num_variables):
            raise ValueError(f"backward_relaxed: grad must have shape ({batch}, {program.num_variables}), "
                             f"got {tuple(g.shape)}")
        if self.evidence is not None:
            g = xp.where(xp.isnan(self.evidence), g, 0)
        tau, flows = self.tau, self.flows
        adjoint = xp.zeros((program.num_units + 1, batch), dtype=be.dtype)
        dtau = xp.zeros((), dtype=be.dtype)
        leaf_grads = {}
        for layer in program.input_layers:
            relax = relaxation_of(layer.family)
            params = layer.params(program.leaf_tables[layer.table_key])
            noise = self.noise.leaves[layer.start]
            s = relax.sample(be, params, noise, tau, self.hard)
            gs = g[:, layer.variables]                                       # (B, U, d)
            adjoint[layer.start:layer.stop] = (s * gs).sum(axis=2).T
            pg, dt = relax.grad(be, params, noise, tau, self.hard, gs * flows[layer.start:layer.stop].T[:, :, None])
            dtau = dtau + dt
            table = program.leaf_tables[layer.table_key]
            acc = leaf_grads.setdefault(layer.table_key, {k: xp.zeros_like(table[k]) for k in pg})
            for k, v in pg.items():
                layer.row_scatter.add(acc[k], v)
        grad_log_weights = xp.zeros_like(program.weights)
        value_grads = None
        if self.evidence is not None:
            value_grads = xp.zeros((program.num_units + 1, batch), dtype=be.dtype)
        for layer in program.inner_layers:
            rule = _rule(layer)
            if not rule.is_sum:
                out = adjoint[layer.start:layer.stop]
                for column in layer.columns:
                    out += adjoint[column]
                continue
            saved = self.saved[layer.start]
            backward = self._factored_backward if saved[0] == "factored" else self._explicit_backward
            dtau = dtau + backward(layer, rule, saved, adjoint, flows, grad_log_weights, value_grads, temperature)
        if value_grads is not None:
            program._forward(self.evidence, SUM, cache=True)
            through = program.backward(grad_units=value_grads[:program.num_units], leaves=bool(program.input_layers))
            grad_log_weights = grad_log_weights + through.log_weights
            for key, grads in through.leaves.items():
                acc = leaf_grads.setdefault(key, {k: xp.zeros_like(v) for k, v in grads.items()})
                for k, v in grads.items():
                    acc[k] = acc.get(k, 0) + v
        return RelaxedGradients(grad_log_weights, leaf_grads, float(dtau) if temperature else 0.0)


def relaxed_sample(program, num_samples: int | None, temperature: float, *, hard: bool = False, evidence=None,
                   seed=None, noise: RelaxedNoise | None = None, root: int = 0) -> RelaxedTape:
    """Run the relaxed top-down pass (see :meth:`Program.sample_relaxed`); returns its tape."""
    if not isinstance(temperature, (int, float, np.floating, np.integer)) or not temperature > 0 \
            or not np.isfinite(temperature):
        raise ValueError(f"sample_relaxed: temperature must be a positive finite number, got {temperature!r}")
    if not isinstance(root, (int, np.integer)) or not 0 <= root < program.num_outputs:
        raise ValueError(f"sample_relaxed: root must be an integer in 0..{program.num_outputs - 1}, got {root!r}")
    for layer in program.inner_layers:
        _rule(layer)
    for layer in program.input_layers:
        relaxation_of(layer.family)
    x = None
    if evidence is not None:
        x = program.prepare(evidence, what="evidence")
        if num_samples is not None and num_samples != x.shape[0]:
            raise ValueError(f"sample_relaxed: num_samples={num_samples} but evidence has {x.shape[0]} rows")
        num_samples = x.shape[0]
    if noise is None:
        if num_samples is None:
            raise ValueError("sample_relaxed: give num_samples, evidence or noise")
        noise = RelaxedNoise.draw(program, num_samples, seed, reuse=True)
    elif num_samples is not None and num_samples != noise.batch:
        raise ValueError(f"sample_relaxed: num_samples={num_samples} but the noise is for {noise.batch} samples")
    noise.check(program)
    return RelaxedTape(program, noise, temperature, hard, x, int(root))
