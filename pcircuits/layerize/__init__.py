"""Lowering a Circuit to a Program: layer planning and index tensors."""
from __future__ import annotations

from ..backend import get_backend
from .plan import plan_layers

__all__ = ["layerize", "plan_layers"]


def layerize(circuit, backend: str = "numpy", dtype: str = "float32", *, check: bool = True):
    """Compile ``circuit`` to a :class:`~pcircuits.program.Program`.

    Parameters
    ----------
    backend : {"numpy", "cupy"}
    dtype : {"float32", "float64"}
    check : bool
        Refuse an invalid circuit (raising :class:`~pcircuits.InvalidCircuitError` with the
        validity report). ``check=False`` compiles it anyway (results are then not probabilities).
    """
    from ..program import Program

    be = get_backend(backend, dtype)
    if circuit.back_edges:
        from ..errors import InvalidCircuitError
        raise InvalidCircuitError(circuit.check())
    if check:
        circuit.check().raise_if_invalid()
    else:
        from ..validity import _shape_problems
        for node in circuit.nodes:
            problems = _shape_problems(node)
            if problems:
                raise ValueError(f"layerize: cannot compile {node.describe()}: {problems[0]}")
    program = Program(circuit, plan_layers(circuit), be)
    program.checked = check
    return program
