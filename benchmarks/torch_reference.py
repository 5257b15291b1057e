"""A plain PyTorch implementation of a compiled Program's layered computation (the speed reference).

:class:`TorchReference` reads a Program's layers (the same index tensors, the same partitions,
``K`` and leaves) and evaluates them the way a PyTorch implementation of a PD or RAT-SPN
circuit does: unit-major ``(units, batch)`` log-values; Gaussian leaves over ``x.T``; product
layers as one gather of all their inputs (padding reads a zero row) and a sum; dense sum layers as a max-shifted batched matmul (``bmm``);
fused product-sum layers as the outer product of the max-shifted children's exponentials
followed by ``bmm``. Gradients come from autograd, with respect to the log-weights and the
Gaussians' means and log standard deviations (the parameters the Program's backward pass
differentiates). Only Gaussian leaves are supported.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from pcircuits.distributions.gaussian import Gaussian
from pcircuits.program.layers import DenseSumLayer, FusedSumLayer, InputLayer, ProductLayer

__all__ = ["TorchReference"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _index(a) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64))


def _rows(src: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``src[index]`` for an index tensor of any shape, by ``index_select`` (whose backward is
    ``index_add``, much faster on the CPU than advanced indexing's ``index_put``)."""
    return torch.index_select(src, 0, index.reshape(-1)).view(*index.shape, *src.shape[1:])


class _Sources:
    """The inputs of one layer: which earlier layers' outputs it reads, concatenated once.

    ``slots`` (global unit numbers, the Program's constant slot ``num_units`` included) are
    mapped to rows of the concatenation of the source layers' outputs (plus a zero row when the
    constant slot is read).
    """

    def __init__(self, slots: np.ndarray, bounds: list[tuple[int, int]], zero_slot: int):
        used = np.unique(slots)
        self.layers = [i for i, (lo, hi) in enumerate(bounds) if np.any((used >= lo) & (used < hi))]
        self.zero = bool(np.any(used == zero_slot))
        row = np.full(zero_slot + 1, -1, dtype=np.int64)
        offset = 0
        for i in self.layers:
            lo, hi = bounds[i]
            row[lo:hi] = offset + np.arange(hi - lo)
            offset += hi - lo
        row[zero_slot] = offset
        self.row = row

    def rows(self, slots: np.ndarray) -> torch.Tensor:
        return _index(self.row[slots])

    def gather(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        parts = [outputs[i] for i in self.layers]
        if self.zero:
            parts.append(parts[0].new_zeros((1, parts[0].shape[1])))
        return parts[0] if len(parts) == 1 else torch.cat(parts)


class TorchReference:
    """The PyTorch reference of ``program`` (a compiled Program with Gaussian leaves).

    Parameters
    ----------
    program : Program
    dtype : torch.dtype
    """

    def __init__(self, program, dtype=torch.float32):
        self.dtype = dtype
        weights = np.asarray(program.weights, dtype=np.float64)
        with np.errstate(divide="ignore"):
            self.log_weights = torch.tensor(np.log(weights), dtype=dtype, requires_grad=True)
        self.leaf_params = {}
        for key, table in program.leaf_tables.items():
            if key[0] is not Gaussian or table["mean"].shape[1] != 1:
                raise ValueError(f"TorchReference: only univariate Gaussian leaves, got {key[0].__name__}")
            self.leaf_params[key] = {
                "mean": torch.tensor(np.asarray(table["mean"][:, 0], dtype=np.float64), dtype=dtype, requires_grad=True),
                "log_std": torch.tensor(np.log(np.asarray(table["std"][:, 0], dtype=np.float64)), dtype=dtype,
                                        requires_grad=True)}
        zero_slot = program.num_units
        bounds = [(layer.start, layer.stop) for layer in program.layers]
        if any(b[0] != a[1] for a, b in zip(bounds, bounds[1:])) or bounds[0][0] != 0:
            raise ValueError("TorchReference: the layers must fill the units in order")
        self.steps = []
        for layer in program.layers:
            self.steps.append(self._compile(layer, bounds, zero_slot))
        self.output_rows = _index(program.output_slots - program.layers[-1].start) \
            if np.all(program.output_slots >= program.layers[-1].start) else None
        if self.output_rows is None:
            raise ValueError("TorchReference: the outputs must lie in the last layer")

    def _compile(self, layer, bounds, zero_slot):
        if isinstance(layer, InputLayer):
            if not layer.contiguous:
                raise ValueError("TorchReference: leaf layers must read contiguous table rows")
            lo = int(layer.rows_np[0])
            return ("input", layer.table_key, slice(lo, lo + len(layer.rows_np)), _index(layer.variables_np[:, 0]))
        if isinstance(layer, ProductLayer):
            sources = _Sources(layer.inputs_np, bounds, zero_slot)
            return ("product", sources, sources.rows(layer.inputs_np))
        if isinstance(layer, FusedSumLayer):
            left, right = np.asarray(layer.left), np.asarray(layer.right)
            sources = _Sources(np.concatenate([left.ravel(), right.ravel()]), bounds, zero_slot)
            return ("fused", sources, sources.rows(left), sources.rows(right), self._weight_slice(layer), layer)
        if isinstance(layer, DenseSumLayer):
            inputs = layer.inputs_np[:layer.Nb]
            sources = _Sources(inputs, bounds, zero_slot)
            return ("dense", sources, sources.rows(inputs), self._weight_slice(layer), layer)
        raise ValueError(f"TorchReference: no rule for {type(layer).__name__}")

    @staticmethod
    def _weight_slice(layer) -> slice:
        if not layer.contiguous:
            raise ValueError("TorchReference: sum layers must have contiguous weights")
        return slice(layer.slot0, layer.slot0 + layer.N * layer.K * layer.I)

    def parameters(self) -> list[torch.Tensor]:
        return [self.log_weights] + [p for table in self.leaf_params.values() for p in table.values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Root log-values, shape (batch, num_outputs), of ``x`` (batch, num_variables)."""
        xt = x.t().contiguous()
        outputs = []
        for step in self.steps:
            outputs.append(getattr(self, "_" + step[0])(xt, outputs, *step[1:]))
        return _rows(outputs[-1], self.output_rows).t()

    def _input(self, xt, outputs, key, rows, variables):
        params = self.leaf_params[key]
        mean, log_std = params["mean"][rows, None], params["log_std"][rows, None]
        z = (_rows(xt, variables) - mean) * torch.exp(-log_std)
        return -0.5 * z * z - log_std - _HALF_LOG_2PI

    def _product(self, xt, outputs, sources, inputs):
        return _rows(sources.gather(outputs), inputs).sum(dim=1)            # (U, A, B) -> (U, B)

    def _dense(self, xt, outputs, sources, inputs, weights, layer):
        src = sources.gather(outputs)
        e = _rows(src, inputs)                                        # (N, I, B)
        m = e.detach().amax(dim=1, keepdim=True).clamp_min(-1e30)
        w = torch.exp(self.log_weights[weights]).view(layer.Nb, layer.Kb, layer.I)
        s = torch.bmm(w, torch.exp(e - m))                            # (N, K, B)
        return (torch.log(s) + m).reshape(layer.N * layer.K, -1)

    def _fused(self, xt, outputs, sources, left, right, weights, layer):
        src = sources.gather(outputs)
        lv, rv = _rows(src, left), _rows(src, right)                  # (N, n, KL, B), (N, n, KR, B)
        ml = lv.detach().amax(dim=2, keepdim=True).clamp_min(-1e30)
        mr = rv.detach().amax(dim=2, keepdim=True).clamp_min(-1e30)
        ms = ml + mr
        m = ms.amax(dim=1, keepdim=True)                              # (N, 1, 1, B)
        el = torch.exp(lv - ml + (ms - m))
        er = torch.exp(rv - mr)
        batch = lv.shape[-1]
        products = (el[:, :, :, None, :] * er[:, :, None, :, :]).reshape(layer.N, layer.I, batch)
        w = torch.exp(self.log_weights[weights]).view(layer.N, layer.K, layer.I)
        s = torch.bmm(w, products)
        return (torch.log(s) + m[:, 0]).reshape(layer.N * layer.K, batch)

    def gradients(self) -> dict:
        """Gradients after ``backward``: log-weights and, per leaf table, mean and log-std (NumPy)."""
        grads = {"log_weights": self.log_weights.grad.detach().numpy()}
        for key, params in self.leaf_params.items():
            grads[key] = {"mean": params["mean"].grad.detach().numpy(), "std": params["log_std"].grad.detach().numpy()}
        return grads

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None
