"""Declared argument constraints: one table per function, checked before any work is done.

In the spirit of scikit-learn's parameter constraints: a function that takes many options
declares, for each, what it accepts and what it means, in one table of :class:`Argument`
entries. :func:`check_arguments` refuses a bad value with a message that names the function,
the argument, what it must be and what it got; :func:`document_arguments` writes the
"Parameters" section of the function's docstring from the same table, so the checks and the
documentation cannot drift apart.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Argument", "Integer", "Number", "Options", "Boolean", "CallableValue", "Pair", "FolderOf", "Anything",
           "check_arguments", "document_arguments"]


class Rule:
    """What an argument accepts. ``describe()`` completes "must be ..."; ``type_name`` is the
    numpydoc type."""

    type_name = "object"

    def accepts(self, value) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Integer(Rule):
    """An ``int`` (not a bool) at or above ``low``."""

    type_name = "int"

    def __init__(self, low: int | None = None):
        self.low = low

    def accepts(self, value) -> bool:
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and (self.low is None or value >= self.low))

    def describe(self) -> str:
        return {1: "a positive int", 0: "a non-negative int"}.get(self.low, f"an int >= {self.low}")


class Number(Rule):
    """A finite real number (not a bool) in an interval.

    Parameters
    ----------
    low, high : float, optional
        Bounds (None: unbounded).
    closed : {"both", "left", "right", "neither"}
        Which bounds belong to the interval.
    """

    type_name = "float"

    def __init__(self, low: float | None = None, high: float | None = None, closed: str = "both"):
        self.low, self.high, self.closed = low, high, closed

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (value > self.high or (value == self.high and self.closed in ("left", "neither"))):
            return False
        return True

    def describe(self) -> str:
        if self.low == 0 and self.high is None:
            return "a positive number" if self.closed in ("right", "neither") else "a non-negative number"
        if self.high is None:
            return f"a number {'>' if self.closed in ('right', 'neither') else '>='} {self.low:g}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


class Options(Rule):
    """One of a fixed set of values (compared with ``==``)."""

    def __init__(self, *values):
        self.values = tuple(values)

    @property
    def type_name(self) -> str:
        return "{" + ", ".join(repr(v) for v in self.values) + "}"

    def accepts(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        return f"one of {self.values}"


class Boolean(Rule):
    type_name = "bool"

    def accepts(self, value) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "True or False"


class CallableValue(Rule):
    type_name = "callable"

    def accepts(self, value) -> bool:
        return callable(value)

    def describe(self) -> str:
        return "callable"


class Pair(Rule):
    """Two values, each accepted by ``rule``."""

    def __init__(self, rule: Rule):
        self.rule = rule

    @property
    def type_name(self) -> str:
        return f"({self.rule.type_name}, {self.rule.type_name})"

    def accepts(self, value) -> bool:
        try:
            items = tuple(value)
        except TypeError:
            return False
        return len(items) == 2 and all(self.rule.accepts(v) for v in items)

    def describe(self) -> str:
        return f"two numbers {self.rule.describe()}"


class FolderOf(Rule):
    """A path whose folder exists (a file to be written there)."""

    type_name = "path"

    def accepts(self, value) -> bool:
        try:
            return Path(value).resolve().parent.is_dir()
        except TypeError:
            return False

    def describe(self) -> str:
        return "a path in an existing folder"


class Anything(Rule):
    """No check here (the argument is checked where it is used); documents the type only."""

    def __init__(self, type_name: str = "object"):
        self.type_name = type_name

    def accepts(self, value) -> bool:
        return True

    def describe(self) -> str:
        return "anything"


@dataclass(frozen=True)
class Argument:
    """One entry of an argument table.

    Attributes
    ----------
    rule : Rule
        What the argument accepts.
    doc : str
        What it means (the docstring text; blank lines are not allowed).
    optional : bool
        ``None`` is accepted too (and means "not given").
    type_name : str, optional
        The numpydoc type, when the rule's own would mislead.
    """

    rule: Rule
    doc: str
    optional: bool = False
    type_name: str | None = None


def check_arguments(owner: str, table: dict[str, Argument], values: dict):
    """Refuse the first value of ``values`` that its table entry does not accept.

    Raises
    ------
    ValueError, TypeError
        ``"{owner}: {name} must be {description}, got {value!r}"``; TypeError for a value that
        must be callable.
    """
    for name, argument in table.items():
        if name not in values:
            continue
        value = values[name]
        if value is None and argument.optional:
            continue
        if not argument.rule.accepts(value):
            error = TypeError if isinstance(argument.rule, CallableValue) else ValueError
            shown = f"{type(value).__name__}" if error is TypeError else repr(value)
            raise error(f"{owner}: {name} must be {argument.rule.describe()}, got {shown}")


def document_arguments(table: dict[str, Argument], *, indent: str = "    ", prefix: str = "") -> str:
    """The numpydoc lines of every entry of ``table``: ``name : type`` and the indented text
    (its first line preceded by ``prefix``)."""
    lines = []
    for name, argument in table.items():
        type_name = argument.type_name or argument.rule.type_name
        lines.append(f"{indent}{name} : {type_name}{', optional' if argument.optional else ''}")
        text = (prefix + argument.doc.strip()).splitlines()
        lines.extend(f"{indent}    {line}" for line in text)
    return "\n".join(lines)
