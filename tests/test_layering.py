"""The package's layering: no module imports another that imports it back.

Read from the source, so the property holds for imports at module level and inside functions
alike: each import statement is found by the line it starts on and parsed alone with ``ast``
(parsing every module whole would cost ten times more). The one allowed exception is documented
in ``ALLOWED``.
"""
import ast
import functools
import re
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


#: The start of an import statement: a line that begins, after its indentation, with
#: ``import name`` or ``from name import``.
IMPORT_START = re.compile(r"^([ \t]*)(?:import[ \t]+[\w.]|from[ \t]+[\w.]+[ \t]+import\b)", re.MULTILINE)


@functools.cache
def _imports(path: Path) -> tuple[list, list]:
    """The import statements of a source file: those at module level (not indented), and all of them."""
    source = path.read_text()
    module_level, anywhere = [], []
    for match in IMPORT_START.finditer(source):
        try:
            node = ast.parse(_statement(source, match.end(1))).body[0]
        except SyntaxError:  # a line of prose in a docstring, such as "import Numba (0.2 s)"
            continue
        anywhere.append(node)
        if not match.group(1):
            module_level.append(node)
    return module_level, anywhere


def _statement(source: str, start: int) -> str:
    """The statement starting at ``start``: to the end of its line, of its parenthesized names, or
    of its backslash-continued lines."""
    end = _line_end(source, start)
    if "(" in source[start:end]:
        end = source.index(")", start) + 1
    while source[start:end].endswith("\\"):
        end = _line_end(source, end + 1)
    return source[start:end]


def _line_end(source: str, position: int) -> int:
    end = source.find("\n", position)
    return len(source) if end < 0 else end


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


def test_import_statements_are_read_whole_at_any_indentation(tmp_path):
    source = tmp_path / "example.py"
    source.write_text('"""Prose:\nimport Numba (0.2 s).\n"""\n'
                      "from .a import (b,\n    c)\nimport d.e, \\\n    f\n\n\ndef g():\n    from . import h\n")
    module_level, anywhere = _imports(source)
    assert [ast.unparse(node) for node in module_level] == ["from .a import b, c", "import d.e, f"]
    assert [ast.unparse(node) for node in anywhere] == ["from .a import b, c", "import d.e, f", "from . import h"]
