"""Scopes (immutable sets of variable ids) and variable naming.

A :class:`Scope` is backed by a Python ``int`` used as a bitset: bit ``i`` is set when
variable ``i`` is in the scope. Union, intersection and the disjointness test are then
single integer operations, which keeps validity checks of 100k-node circuits fast.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Union

import numpy as np

__all__ = ["Scope", "Variables"]


class Scope:
    """An immutable, hashable set of non-negative variable ids.

    Parameters
    ----------
    variables : int or iterable of int
        One variable id or several. Ids must be non-negative integers.

    Examples
    --------
    >>> Scope([0, 1, 5]) | Scope([2])
    Scope({0, 1, 2, 5})
    """

    __slots__ = ("_bits",)

    def __init__(self, variables: Union[int, Iterable[int]] = ()):
        if isinstance(variables, Scope):
            bits = variables._bits
        elif isinstance(variables, (int, np.integer)) and not isinstance(variables, bool):
            bits = 1 << _check_id(variables)
        else:
            bits = 0
            for v in variables:
                bits |= 1 << _check_id(v)
        object.__setattr__(self, "_bits", bits)

    @classmethod
    def from_bits(cls, bits: int) -> "Scope":
        """Make a scope from its bitset (bit ``i`` set means variable ``i`` is in it)."""
        if not isinstance(bits, int) or bits < 0:
            raise ValueError(f"Scope.from_bits: bits must be a non-negative int, got {bits!r}")
        scope = cls.__new__(cls)
        object.__setattr__(scope, "_bits", bits)
        return scope

    @classmethod
    def range(cls, start: int, stop: int) -> "Scope":
        """The scope ``{start, ..., stop - 1}``, built in one integer operation."""
        if not 0 <= start <= stop:
            raise ValueError(f"Scope.range: need 0 <= start <= stop, got {start}, {stop}")
        return cls.from_bits(((1 << (stop - start)) - 1) << start)

    @property
    def bits(self) -> int:
        """The bitset as a Python int."""
        return self._bits

    def __setattr__(self, name, value):
        raise AttributeError("Scope is immutable")

    def __or__(self, other: "Scope") -> "Scope":
        return Scope.from_bits(self._bits | _bits_of(other))

    def __and__(self, other: "Scope") -> "Scope":
        return Scope.from_bits(self._bits & _bits_of(other))

    def __sub__(self, other: "Scope") -> "Scope":
        return Scope.from_bits(self._bits & ~_bits_of(other))

    def __xor__(self, other: "Scope") -> "Scope":
        return Scope.from_bits(self._bits ^ _bits_of(other))

    def union(self, *others: "Scope") -> "Scope":
        bits = self._bits
        for other in others:
            bits |= _bits_of(other)
        return Scope.from_bits(bits)

    def intersection(self, other: "Scope") -> "Scope":
        return self & other

    def isdisjoint(self, other: "Scope") -> bool:
        return not (self._bits & _bits_of(other))

    def issubset(self, other: "Scope") -> bool:
        return not (self._bits & ~_bits_of(other))

    def issuperset(self, other: "Scope") -> bool:
        return not (_bits_of(other) & ~self._bits)

    def __le__(self, other: "Scope") -> bool:
        return self.issubset(other)

    def __ge__(self, other: "Scope") -> bool:
        return self.issuperset(other)

    def __lt__(self, other: "Scope") -> bool:
        return self.issubset(other) and self._bits != _bits_of(other)

    def __gt__(self, other: "Scope") -> bool:
        return self.issuperset(other) and self._bits != _bits_of(other)

    def __len__(self) -> int:
        return self._bits.bit_count()

    def __bool__(self) -> bool:
        return self._bits != 0

    def __contains__(self, variable) -> bool:
        if isinstance(variable, (int, np.integer)) and not isinstance(variable, bool) and variable >= 0:
            return bool(self._bits >> int(variable) & 1)
        return False

    def __iter__(self) -> Iterator[int]:
        return iter(self.to_array().tolist())

    def to_array(self) -> np.ndarray:
        """The variable ids in increasing order, as an int64 array."""
        if not self._bits:
            return np.zeros(0, dtype=np.int64)
        # Unpack only the span from the lowest to the highest id, so that a small scope of
        # large ids costs O(span), not O(largest id).
        low = (self._bits & -self._bits).bit_length() - 1
        span = self._bits >> low
        raw = np.frombuffer(span.to_bytes((span.bit_length() + 7) // 8, "little"), dtype=np.uint8)
        return np.flatnonzero(np.unpackbits(raw, bitorder="little")).astype(np.int64) + low

    def min(self) -> int:
        if not self._bits:
            raise ValueError("min() of an empty scope")
        return (self._bits & -self._bits).bit_length() - 1

    def max(self) -> int:
        if not self._bits:
            raise ValueError("max() of an empty scope")
        return self._bits.bit_length() - 1

    def __eq__(self, other) -> bool:
        if isinstance(other, Scope):
            return self._bits == other._bits
        if isinstance(other, (set, frozenset)):
            return self == Scope(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Scope", self._bits))

    def __repr__(self) -> str:
        return f"Scope({_format_ids(self.to_array())})"

    def __reduce__(self):
        return (Scope.from_bits, (self._bits,))


def _check_id(v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"Scope: variable ids must be ints, got {v!r} of type {type(v).__name__}")
    if v < 0:
        raise ValueError(f"Scope: variable ids must be non-negative, got {v}")
    return int(v)


def _bits_of(other) -> int:
    if isinstance(other, Scope):
        return other._bits
    return Scope(other)._bits


def _format_ids(ids: np.ndarray, max_items: int = 12) -> str:
    """``{0, 1, 2, 7}`` with long runs shown as ``0..5`` and long sets abbreviated."""
    if len(ids) == 0:
        return "{}"
    runs = []
    start = prev = int(ids[0])
    for v in ids[1:].tolist():
        if v == prev + 1:
            prev = v
            continue
        runs.append((start, prev))
        start = prev = v
    runs.append((start, prev))
    parts = [str(a) if a == b else (f"{a}, {b}" if b == a + 1 else f"{a}..{b}") for a, b in runs]
    if len(parts) > max_items:
        parts = parts[: max_items // 2] + ["..."] + parts[-max_items // 2:]
    return "{" + ", ".join(parts) + "}"


class Variables:
    """Names of the variables of a model, with image geometry when there is one.

    Parameters
    ----------
    num_variables : int
        How many variables there are (ids ``0 .. num_variables - 1``).
    names : sequence of str, optional
        One name per variable; ``x0, x1, ...`` by default.
    shape : tuple of int, optional
        ``(height, width)`` or ``(height, width, channels)`` for image variables, laid out
        row-major (channels last).
    """

    def __init__(self, num_variables: int, names=None, shape=None):
        if not isinstance(num_variables, (int, np.integer)) or num_variables < 0:
            raise ValueError(f"Variables: num_variables must be a non-negative int, got {num_variables!r}")
        self.num_variables = int(num_variables)
        self.shape = None if shape is None else tuple(int(s) for s in shape)
        if self.shape is not None and int(np.prod(self.shape)) != self.num_variables:
            raise ValueError(f"Variables: shape {self.shape} holds {int(np.prod(self.shape))} variables, "
                             f"not {self.num_variables}")
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != self.num_variables:
                raise ValueError(f"Variables: {len(names)} names for {self.num_variables} variables")
        self._names = names

    @classmethod
    def image(cls, height: int, width: int, channels: int | None = None) -> "Variables":
        """Variables of an image, named ``x[r,c]`` (or ``x[r,c,ch]``), row-major."""
        for name, size in (("height", height), ("width", width), ("channels", channels)):
            if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
                raise ValueError(f"Variables.image: {name} must be a positive int, got {size!r}")
        shape = (height, width) if channels is None else (height, width, channels)
        return cls(int(np.prod(shape)), shape=shape)

    @property
    def scope(self) -> Scope:
        """All variables."""
        return Scope.range(0, self.num_variables)

    def name(self, variable: int) -> str:
        if not 0 <= variable < self.num_variables:
            raise IndexError(f"Variables: no variable {variable} among {self.num_variables}")
        if self._names is not None:
            return self._names[variable]
        if self.shape is not None:
            idx = np.unravel_index(variable, self.shape)
            return "x[" + ",".join(str(int(i)) for i in idx) + "]"
        return f"x{variable}"

    def names(self) -> list[str]:
        return [self.name(i) for i in range(self.num_variables)]

    def index(self, row: int, col: int, channel: int | None = None) -> int:
        """Variable id of the pixel ``(row, col[, channel])``."""
        self._require_image("index")
        idx = (row, col) if channel is None else (row, col, channel)
        if len(idx) != len(self.shape):
            raise ValueError(f"Variables.index: image shape {self.shape} needs {len(self.shape)} coordinates")
        return int(np.ravel_multi_index(idx, self.shape))

    def scope_of(self, rows, cols, channels=None) -> Scope:
        """Scope of a rectangle of pixels.

        Parameters
        ----------
        rows, cols : int, slice, range or sequence of int
            The rows and columns of the rectangle (all channels unless ``channels`` is given).
        """
        self._require_image("scope_of")
        axes = [_axis_indices(rows, self.shape[0], "rows"), _axis_indices(cols, self.shape[1], "cols")]
        if len(self.shape) == 3:
            axes.append(_axis_indices(slice(None) if channels is None else channels, self.shape[2], "channels"))
        elif channels is not None:
            raise ValueError("Variables.scope_of: these image variables have no channel axis")
        grid = np.ix_(*axes)
        ids = np.ravel_multi_index(grid, self.shape).ravel()
        bits = np.zeros(self.num_variables, dtype=np.uint8)
        bits[ids] = 1
        return Scope.from_bits(int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little"))

    def format_scope(self, scope: Scope, max_items: int = 6) -> str:
        """A short readable rendering of a scope, e.g. ``x[0..3, 4..7]`` for an image rectangle."""
        ids = scope.to_array()
        if len(ids) == 0:
            return "{}"
        if len(ids) > self.num_variables or ids[-1] >= self.num_variables:
            return repr(scope)
        if self.shape is not None and len(ids) > 1:
            coords = np.stack(np.unravel_index(ids, self.shape), axis=1)
            lo, hi = coords.min(axis=0), coords.max(axis=0)
            if int(np.prod(hi - lo + 1)) == len(ids):
                spans = [str(a) if a == b else f"{a}..{b}" for a, b in zip(lo.tolist(), hi.tolist())]
                return "x[" + ", ".join(spans) + "]"
        if len(ids) <= max_items:
            return "{" + ", ".join(self.name(int(i)) for i in ids) + "}"
        head = ", ".join(self.name(int(i)) for i in ids[: max_items // 2])
        tail = ", ".join(self.name(int(i)) for i in ids[-max_items // 2:])
        return "{" + head + ", ... (" + str(len(ids)) + " vars), " + tail + "}"

    def _require_image(self, what: str):
        if self.shape is None:
            raise ValueError(f"Variables.{what}: these variables have no image shape; use Variables.image(h, w)")

    def __len__(self) -> int:
        return self.num_variables

    def __repr__(self) -> str:
        if self.shape is not None:
            return f"Variables.image{self.shape}"
        return f"Variables({self.num_variables})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Variables) and self.num_variables == other.num_variables
                and self.shape == other.shape and self._names == other._names)

    __hash__ = None


def _axis_indices(sel, size: int, what: str) -> np.ndarray:
    if isinstance(sel, slice):
        return np.arange(size)[sel]
    if isinstance(sel, (int, np.integer)):
        sel = [sel]
    idx = np.asarray(list(sel), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise IndexError(f"Variables.scope_of: {what} {idx.tolist()} out of range 0..{size - 1}")
    return idx
