"""Olivetti face completion: ``benchmarks/completion.py --data olivetti`` (see its help).

The flags are those of ``completion.py``; ``--structure`` picks the preset of that structure
(``pd``, ``dgcspn`` for DGC-SPN with USI, ``dcspn``) and ``--out`` defaults to ``out/olivetti``.

    python benchmarks/olivetti.py --structure pd --method usi --epochs 3 --ties first
    python benchmarks/olivetti.py --structure dgcspn --method usi --epochs 15 --batch-size 128 --counts mean --runs 5
    python benchmarks/olivetti.py --structure dcspn --method adam --lr 0.005 --epochs 60
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _completion():
    spec = importlib.util.spec_from_file_location("completion", Path(__file__).resolve().parent / "completion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a == "--structure" or a.startswith("--structure=") for a in argv) and "--model" not in argv:
        argv = ["--structure", "pd", *argv]
    return _completion().main(["--data", "olivetti", *argv])


if __name__ == "__main__":
    main()
