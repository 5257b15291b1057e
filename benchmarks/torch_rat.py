"""A hand-written PyTorch RAT-SPN (the speed reference for RAT-SPN circuits).

:class:`TorchRatSpn` is the RAT-SPN of Peharz et al. written directly in PyTorch, the way its
EinsumNetworks-style implementations are, with the structure and parameters of a pcircuits
``rat_spn`` circuit (the same random partitions, ``S``, ``I`` and Gaussian leaves, the same
weights), so that both compute the same log-likelihoods:

* every repetition's variables are put in the order of its leaf regions once (the leaf
  regions' variables side by side, each region padded to the largest region's size), and the
  leaf log-densities are two fused expressions (``addcmul``) over a ``(repetitions x padded
  features, I, batch)`` tensor; padding leaves have inverse scale and constant 0, so that their
  log-densities are exactly log 1 = 0;
* a leaf region's product is a reshape and a sum over its features;
* a region's sums over the partition of its two child regions (adjacent along the region axis)
  are the outer product of the children's max-shifted exponentials, one batched matrix product
  (``bmm``) with the weights and a log (the log-einsum-exp pattern);
* the root sums over all repetitions' top partitions the same way.

Tensors are region-major, ``(regions, channels, batch)``, so each batched product reads its
operands in place. Gradients come from autograd with respect to the log-weights and the
Gaussians' means and log standard deviations; :meth:`TorchRatSpn.gradients` lays them
out as the Program's own gradients (flat weight vector, leaf-table rows) for the agreement check.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from pcircuits.distributions.gaussian import Gaussian

__all__ = ["TorchRatSpn"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _levels(root) -> list[list]:
    """The region nodes below the root, level by level from the top, each level in the order of
    the repetitions and, within one, left to right: the two children of the ``n``-th node of a
    level are the ``2n``-th and ``2n+1``-th of the next. The last level holds the leaf regions'
    products."""
    level = []
    for top in root.children:
        if top.kind != "product" or top.pattern != "cartesian" or len(top.children) != 2:
            raise ValueError("TorchRatSpn: the root's children must be binary cartesian products (a RAT-SPN)")
        level.extend(top.children)
    levels = [level]
    while level[0].kind == "sum":
        nxt = []
        for node in level:
            partition = node.children[0] if len(node.children) == 1 else None
            if node.kind != "sum" or partition is None or partition.kind != "product" or \
                    partition.pattern != "cartesian" or len(partition.children) != 2:
                raise ValueError("TorchRatSpn: every region's sum must have one binary cartesian partition "
                                 "(a RAT-SPN of a full region tree)")
            nxt.extend(partition.children)
        levels.append(nxt)
        level = nxt
    if not all(n.kind == "product" and n.pattern == "elementwise" for n in level) or \
            not all(c.kind == "input" and isinstance(c.family, Gaussian) and c.family.num_variables == 1
                    for n in level for c in n.children):
        raise ValueError("TorchRatSpn: leaf regions must be products of univariate Gaussian leaves")
    return levels


class TorchRatSpn:
    """The PyTorch RAT-SPN of a pcircuits RAT-SPN circuit (see the module docstring).

    Parameters
    ----------
    program : Program
        A compiled ``pc.builders.rat_spn(..., leaf="gaussian")`` circuit with every region split
        to the full depth and one root of one unit; the reference reads the circuit's structure
        and parameters, and where the Program keeps each of them (for :meth:`gradients`).
    dtype : torch.dtype
    """

    def __init__(self, program, dtype=torch.float32):
        circuit = program.circuit
        if len(circuit.roots) != 1 or circuit.roots[0].num_units != 1:
            raise ValueError("TorchRatSpn: one root of one unit")
        root = circuit.roots[0]
        self.dtype = dtype
        levels = _levels(root)
        weight_offset = {id(p): int(o) for p, o in zip(program.plan.sum_params, program.plan.weight_offsets[:-1])}

        # leaves: the variables of every leaf region, padded to the largest region
        regions = levels[-1]
        self.region_size = max(len(r.children) for r in regions)
        leaves = [c for r in regions for c in r.children]
        self.num_leaves = leaves[0].num_units
        size, units = self.region_size, self.num_leaves
        variables = np.zeros((len(regions), size), dtype=np.int64)
        real = np.zeros((len(regions), size), dtype=bool)
        mean = np.zeros((len(regions), size, units))
        std = np.ones((len(regions), size, units))
        rows = np.zeros((len(regions), size), dtype=np.int64)          # leaf-table row of each leaf's unit 0
        table_row = {id(o): (key, int(program.plan.family_offsets[key][i]))
                     for key, objs in program.plan.families.items() for i, o in enumerate(objs)}
        for g, region in enumerate(regions):
            for f, leaf in enumerate(region.children):
                variables[g, f] = leaf.variables[0]
                real[g, f] = True
                mean[g, f], std[g, f] = leaf.family.mean, leaf.family.std
                key, rows[g, f] = table_row[id(leaf.family)]
        self.leaf_key = key
        self.variables = torch.as_tensor(variables.ravel())
        self.real = torch.tensor(real.reshape(-1, 1, 1), dtype=dtype)
        self._real = real.ravel()
        self._leaf_rows = rows.ravel()[self._real]
        self.mean = torch.tensor(mean.reshape(-1, units, 1), dtype=dtype, requires_grad=True)
        self.log_std = torch.tensor(np.log(std).reshape(-1, units, 1), dtype=dtype, requires_grad=True)

        # sums: one (nodes, K, inputs) log-weight tensor per level, the root's last
        self.log_weights, self._weight_slots = [], []
        for nodes in levels[:-1][::-1] + [[root]]:
            values = np.stack([n.params.values for n in nodes])
            with np.errstate(divide="ignore"):
                self.log_weights.append(torch.tensor(np.log(values), dtype=dtype, requires_grad=True))
            self._weight_slots.append(np.concatenate([weight_offset[id(n.params)] + np.arange(n.params.values.size)
                                                      for n in nodes]))
        self.num_weights = program.num_weights
        self.table_rows = int(program.leaf_tables[self.leaf_key]["mean"].shape[0])

    def parameters(self) -> list[torch.Tensor]:
        return [self.mean, self.log_std] + self.log_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Root log-values, shape (batch, 1), of ``x`` (batch, num_variables)."""
        # padding leaves have inverse scale and constant 0: z = 0, log-density exactly 0
        inv_std = torch.exp(-self.log_std) * self.real
        z = torch.addcmul(-self.mean * inv_std, x.t()[self.variables].unsqueeze(1), inv_std)   # (G * F, I, B)
        logp = torch.addcmul(-(self.log_std + _HALF_LOG_2PI) * self.real, z, z, value=-0.5)
        batch = x.shape[0]
        h = logp.view(-1, self.region_size, self.num_leaves, batch).sum(dim=1)  # (G, I, B) leaf regions
        for log_w in self.log_weights[:-1]:
            h = self._sum_layer(h[0::2], h[1::2], log_w)
        return self._root(h[0::2], h[1::2], self.log_weights[-1]).t()

    @staticmethod
    def _shifted(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``exp(h - m)`` and ``m``, the largest entry of each region's column, (N, 1, B)."""
        m = h.detach().amax(dim=1, keepdim=True)
        return torch.exp(h - m), m

    def _sum_layer(self, left, right, log_w):
        """Sums over the partitions of adjacent region pairs: (N, C, B) twice -> (N, K, B)."""
        el, ml = self._shifted(left)
        er, mr = self._shifted(right)
        n, c, batch = el.shape
        products = (el.unsqueeze(2) * er.unsqueeze(1)).view(n, c * c, batch)   # (N, C * C, B)
        return torch.log(torch.bmm(torch.exp(log_w), products)) + (ml + mr)

    def _root(self, left, right, log_w):
        """The root's sum over every repetition's top partition: (R, S, B) twice -> (1, B)."""
        el, ml = self._shifted(left)
        er, mr = self._shifted(right)
        ms = ml + mr                                                           # (R, 1, B)
        m = ms.amax(dim=0, keepdim=True)
        el = el * torch.exp(ms - m)
        r, c, batch = el.shape
        products = (el.unsqueeze(2) * er.unsqueeze(1)).view(1, r * c * c, batch)
        return (torch.log(torch.bmm(torch.exp(log_w), products)) + m)[0]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def gradients(self) -> dict:
        """The gradients after ``backward`` laid out as the Program's (NumPy, float64): the flat
        log-weight vector, and the leaf table's ``mean`` and ``std`` (log-std) rows."""
        log_weights = np.zeros(self.num_weights)
        for w, slots in zip(self.log_weights, self._weight_slots):
            log_weights[slots] = w.grad.detach().double().numpy().ravel()
        rows = (self._leaf_rows[:, None] + np.arange(self.num_leaves)[None, :]).ravel()
        leaves = {}
        for name, p in (("mean", self.mean), ("std", self.log_std)):
            table = np.zeros(self.table_rows)
            table[rows] = p.grad.detach().double().numpy().reshape(-1, self.num_leaves)[self._real].ravel()
            leaves[name] = table
        return {"log_weights": log_weights, self.leaf_key: leaves}
