"""The documentation site builds without a warning: the Markdown pages, an API page for every
public name, the command line, the tutorial gallery with its downloads, and a search page.

The build runs once per test session, in a copy of ``docs/`` and ``tutorials/`` (so the source
tree stays clean), with the gallery's scripts not executed (``plot_gallery=0``): the tutorials'
own tests run them.
"""
from __future__ import annotations

import configparser
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import pcircuits

ROOT = Path(__file__).resolve().parents[1]
#: Phrases that speak of how the software was made rather than of the software.
PROCESS_REMARKS = [r"\bsessions?\b", r"DESIGN\.md", r"device time", r"development machine",
                   r"\bI (looked|did|ran|measured|tried|checked)\b"]


def _extra(name: str) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options.extras_require"][name].splitlines() if line.strip()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    for module in ("sphinx", "sphinx_gallery", "furo", "myst_parser", "numpydoc", "sphinxarg"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install -e '.[docs]')")
    work = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "docs", work / "docs",
                    ignore=shutil.ignore_patterns("_build", "api", "gallery", "sg_execution_times.rst"))
    shutil.copytree(ROOT / "tutorials", work / "tutorials")
    shutil.copy(ROOT / "CHANGELOG.md", work / "CHANGELOG.md")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             "-D", "plot_gallery=0", "-d", str(work / "doctrees"), str(work / "docs"),
                             str(work / "html")], capture_output=True, text=True, env=env, timeout=600)
    return work / "html", result


def test_test_extra_installs_everything_the_docs_extra_does():
    assert _extra("docs") <= _extra("test")


def test_pages_and_readme_speak_of_the_software_not_of_how_it_was_made():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "tutorials").glob("*.py"))]
    remarks = [f"{page.name}: {match.group(0)!r}" for page in pages for pattern in PROCESS_REMARKS
               for match in re.finditer(pattern, page.read_text())]
    assert remarks == []


def test_site_builds_without_warnings(site):
    html, result = site
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_site_has_an_index_and_a_search_page(site):
    html, _ = site
    assert "probabilistic circuit" in (html / "index.html").read_text().lower()
    assert (html / "search.html").is_file() and (html / "searchindex.js").is_file()


def test_every_markdown_page_of_docs_is_rendered(site):
    html, _ = site
    pages = [path.stem for path in (ROOT / "docs").glob("*.md") if path.name != "README.md"]
    assert pages
    assert [page for page in pages if not (html / f"{page}.html").is_file()] == []


def _public_names() -> list[str]:
    names = []
    for namespace in ["pcircuits"] + [f"pcircuits.{name}" for name in pcircuits.__all__
                                      if isinstance(getattr(pcircuits, name), ModuleType)]:
        module = importlib.import_module(namespace)
        names += [f"{namespace}.{member}" for member in module.__all__
                  if not isinstance(getattr(module, member), ModuleType)]
    return names


def test_every_public_name_of_the_package_and_its_subpackages_is_in_the_api_reference(site):
    html, _ = site
    api = "".join(path.read_text() for path in (html / "api").glob("*.html"))
    anchors = set(re.findall(r'id="([\w.]+)"', "".join(path.read_text() for path in (html / "api").rglob("*.html"))))
    missing = [name for name in _public_names()
               if name not in anchors and f'title="{name}"' not in api
               and f">{name.rpartition('.')[2]}<" not in api]
    assert missing == []


def test_the_circuit_page_documents_its_methods(site):
    html, _ = site
    page = (html / "api" / "generated" / "pcircuits.Circuit.html").read_text()
    for method in ("compile", "check", "render", "save", "load"):
        assert f'id="pcircuits.Circuit.{method}"' in page


def test_the_command_line_page_lists_every_subcommand(site):
    html, _ = site
    page = (html / "cli.html").read_text()
    from pcircuits.cli import build_parser
    subcommands = next(action for action in build_parser()._actions if action.dest == "command").choices
    assert [name for name in subcommands if f'id="pcircuits-{name}"' not in page] == []


def test_every_tutorial_has_a_gallery_page_with_script_and_notebook_downloads(site):
    html, _ = site
    for script in sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py")):
        page = (html / "gallery" / f"{script.stem}.html").read_text()
        assert f"{script.stem}.py" in page and f"{script.stem}.ipynb" in page, script.name
