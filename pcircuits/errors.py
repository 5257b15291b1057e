"""The library's error types, each a subclass of the builtin a user would catch.

Code that only knows Python catches ``ValueError`` or ``ImportError`` and still gets these;
code that knows pcircuits can tell a damaged file from a bad argument.
"""
from __future__ import annotations

__all__ = ["CircuitFileError", "InvalidCircuitError", "InvalidCircuitFileError", "CheckpointError", "NonFiniteError", "OptionalDependencyError"]


class CircuitFileError(ValueError):
    """A circuit file (or graph) is damaged, truncated, of an unknown version, or not a circuit."""


class InvalidCircuitError(ValueError):
    """A circuit breaks smoothness, decomposability, acyclicity or normalization.

    Raised by :meth:`~pcircuits.validity.ValidityReport.raise_if_invalid`; carries the report.
    """

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


class InvalidCircuitFileError(CircuitFileError, InvalidCircuitError):
    """A circuit file is readable but its circuit fails ``check()``; carries the report.

    Raised by :func:`~pcircuits.serialization.load` unless ``validate=False``; caught as either
    a :class:`CircuitFileError` or an :class:`InvalidCircuitError`.
    """

    def __init__(self, message: str, report):
        ValueError.__init__(self, message)
        self.report = report


class CheckpointError(ValueError):
    """A training checkpoint cannot be read, is not one, or belongs to another run."""


class NonFiniteError(ValueError):
    """Training produced a non-finite loss or parameter (a diverging step, data out of the dtype's range)."""


class OptionalDependencyError(ImportError):
    """A feature needs a package that is not installed; the message names what to install."""
