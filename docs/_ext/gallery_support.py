"""Sphinx-gallery hooks: each tutorial gets its own empty output folder, and the pictures it
writes there (PNG charts and grids, SVG circuit drawings) are shown below the code block that
wrote them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from sphinx_gallery.scrapers import figure_rst

#: Picture files a tutorial writes that its page shows.
PICTURES = (".png", ".svg")

#: Per tutorial, the pictures already shown and their modification times.
_shown: dict[str, dict[str, float]] = {}


def output_folder(gallery_conf: dict, src_file: str) -> Path:
    """The folder a tutorial writes into during the build: ``_build/tutorial-output/<name>``."""
    return Path(gallery_conf["src_dir"]) / "_build" / "tutorial-output" / Path(src_file).stem


def tutorial_argv(gallery_conf: dict, script_vars: dict) -> list[str]:
    """The command-line arguments of a tutorial: its output folder, emptied first, relative to the
    tutorial's folder (where sphinx-gallery runs it)."""
    folder = output_folder(gallery_conf, script_vars["src_file"])
    shutil.rmtree(folder, ignore_errors=True)
    _shown[script_vars["src_file"]] = {}
    return [os.path.relpath(folder, Path(script_vars["src_file"]).parent)]


def scrape_output_folder(block, block_vars: dict, gallery_conf: dict) -> str:
    """The reST that shows the pictures written since the previous code block."""
    folder = output_folder(gallery_conf, block_vars["src_file"])
    shown = _shown.setdefault(block_vars["src_file"], {})
    new = []
    if folder.is_dir():
        for path in sorted(folder.rglob("*"), key=lambda p: (p.stat().st_mtime, p.name)):
            if path.suffix in PICTURES and shown.get(str(path)) != path.stat().st_mtime:
                shown[str(path)] = path.stat().st_mtime
                new.append(path)
    images = []
    for path, target in zip(new, block_vars["image_path_iterator"]):
        target = Path(target).with_suffix(path.suffix)
        shutil.copyfile(path, target)
        images.append(str(target))
    return figure_rst(images, gallery_conf["src_dir"])
