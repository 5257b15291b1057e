"""Writes the API reference pages: one page per public namespace of pcircuits, listing the
names of its ``__all__``. Each object is documented once, on the page of the first namespace
that exports it (the package itself first); later namespaces link to that page."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import pcircuits

#: Namespaces shown first, in this order; every other public module or subpackage of
#: pcircuits with an ``__all__`` follows in alphabetical order.
FIRST = ["pcircuits", "pcircuits.builders", "pcircuits.distributions", "pcircuits.learning",
         "pcircuits.program", "pcircuits.nn", "pcircuits.datasets", "pcircuits.tasks"]

#: Modules documented elsewhere (the command line has its own page) or not meant for users.
SKIP = {"pcircuits.cli", "pcircuits.demo", "pcircuits.arguments"}


def namespaces() -> list[str]:
    """The public namespaces to document, in page order."""
    found = [f"pcircuits.{info.name}" for info in pkgutil.iter_modules(pcircuits.__path__)
             if not info.name.startswith("_")]
    rest = sorted(name for name in found if name not in FIRST and name not in SKIP)
    return FIRST + [name for name in rest if hasattr(importlib.import_module(name), "__all__")]


def _page(name: str, module: ModuleType, documented: dict[object, str]) -> str:
    title = f"``{name}``"
    lines = [title, "=" * len(title), "", f".. automodule:: {name}", "   :no-members:"]
    if not isinstance(getattr(pcircuits, name.rpartition(".")[2], module), ModuleType):
        lines.append("   :no-index:")  # the package exports a function of the same name
    lines += ["", f".. currentmodule:: {name}", ""]
    own, linked = [], []
    for member in module.__all__:
        obj = getattr(module, member)
        if isinstance(obj, ModuleType):
            continue
        home = documented.get(id(obj)) if not isinstance(obj, (int, float, str, tuple)) else None
        if home is None or home.rpartition(".")[0] == name:
            documented.setdefault(id(obj), f"{name}.{member}")
            own.append(member)
        else:
            linked.append((member, home))
    if own:
        lines += [".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
        lines += [f"   {member}" for member in own] + [""]
    if linked:
        lines += ["Also exported here, documented with the namespace that exports them first:", "",
                  ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   ~{home}" for _, home in linked] + [""]
    return "\n".join(lines)


def write_api_pages(folder: Path) -> None:
    """Write ``index.rst`` and one page per namespace into ``folder`` (unchanged files are kept,
    so that Sphinx does not reread them)."""
    folder.mkdir(parents=True, exist_ok=True)
    documented: dict[object, str] = {}
    pages = {}
    for name in namespaces():
        pages[name] = _page(name, importlib.import_module(name), documented)
    index = ["API reference", "=============", "",
             "Every public name of the package, one page per namespace. The command line is",
             "described in :doc:`../cli`.", "", ".. toctree::", "   :maxdepth: 1", ""]
    index += [f"   {name}" for name in pages] + [""]
    pages["index"] = "\n".join(index)
    for name, text in pages.items():
        path = folder / f"{name}.rst"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
