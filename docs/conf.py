"""Sphinx configuration of the pcircuits documentation (``./scripts/docs`` builds it)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
if (ROOT / "pcircuits").is_dir():
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

import pcircuits  # noqa: E402
from api_pages import write_api_pages  # noqa: E402

project = "pcircuits"
author = "the pcircuits authors"
copyright = "the pcircuits authors, MIT licence"
release = version = pcircuits.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "gallery/*.ipynb", "gallery/*.py", "gallery/*.zip",
                    "gallery/*.md5", "gallery/*.json", "_ext", "_templates"]
templates_path = ["_templates"]
default_role = "literal"

html_theme = "furo"
html_title = f"pcircuits {release}"
html_static_path = []
html_show_sourcelink = False

# Markdown pages: MyST, headings linkable as page.md#slug.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: one page per public namespace, written from the packages' __all__.
write_api_pages(DOCS / "api")
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# No network while building: no intersphinx inventories.
intersphinx_mapping = {}

# The tutorials: executed, with their figures and drawings inline and downloads of each script
# and notebook. Each tutorial writes its files to the folder given as its first argument.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "tutorials"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"/\d\d_",
    "within_subsection_order": "FileNameSortKey",
    "reset_argv": "gallery_support.tutorial_argv",
    "image_scrapers": ("matplotlib", "gallery_support.scrape_output_folder"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "capture_repr": (),
    "show_memory": False,
    "plot_gallery": "True",
}

#: Pages of docs/ that are not part of the site (the folder's own index on the code host).
NOT_PAGES = {"README"}


def _add_unlisted_pages(app, docname: str, source: list[str]) -> None:
    """Append every Markdown page of docs/ that index.md does not list to its user guide."""
    if docname != "index":
        return
    text = source[0]
    marker = ":caption: User guide\n\n"
    listed = set(text.split())
    missing = sorted(path.stem for path in DOCS.glob("*.md")
                     if path.stem not in listed and path.stem not in NOT_PAGES and path.stem != "index")
    if missing:
        head, _, tail = text.partition(marker)
        body, fence, rest = tail.partition("```")
        source[0] = head + marker + body + "".join(f"{name}\n" for name in missing) + fence + rest


def setup(app):
    app.connect("source-read", _add_unlisted_pages)
