"""The package's layering: no module imports another that imports it back.

Read from the source (``ast``), so the property holds for imports at module level and inside
functions alike. The one allowed exception is documented in ``ALLOWED``.
"""
import ast
import functools
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "pcircuits"
#: Lazy imports that close a loop on purpose: ``Circuit.save``/``load``/``to_networkx`` are
#: one-line delegations to the serialization module, which builds circuits. ``pcircuits.jit``
#: imports its compiled kernels (which import Numba) on first use, and they are declared with
#: ``jit.kernel``.
ALLOWED = {frozenset({"pcircuits.circuit", "pcircuits.serialization"}),
           frozenset({"pcircuits.jit", "pcircuits._jit_kernels"})}


def _modules() -> dict:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


@functools.cache
def _imports(path: Path) -> tuple[list, list]:
    """The import statements of a source file: those at module level, and all of them."""
    tree = ast.parse(path.read_text())
    imports = (ast.Import, ast.ImportFrom)
    return ([node for node in tree.body if isinstance(node, imports)],
            [node for node in _statements(tree.body) if isinstance(node, imports)])


def _statements(body: list):
    """Every statement in ``body``, nested ones included. Imports are statements, and statements
    nest only in other statements' bodies (and their handlers' and cases'), never in expressions."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, field, ()))


def _import_graph(*, module_level_only: bool) -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        module_level, anywhere = _imports(path)
        nodes = module_level if module_level_only else anywhere
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for candidate in candidates:
                if candidate in modules and candidate != name and not modules[candidate].name == "__init__.py":
                    graph.add_edge(name, candidate)
                    break
    return graph


def test_module_level_imports_between_modules_form_no_cycle():
    graph = _import_graph(module_level_only=True)
    assert nx.is_directed_acyclic_graph(graph), nx.find_cycle(graph)


def test_no_module_imports_a_module_that_imports_it_back():
    graph = _import_graph(module_level_only=False)
    mutual = {frozenset((a, b)) for a, b in graph.edges if graph.has_edge(b, a)}
    assert mutual <= ALLOWED, sorted(tuple(sorted(pair)) for pair in mutual - ALLOWED)
