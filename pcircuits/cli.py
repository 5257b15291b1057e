"""The ``pcircuits`` command."""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _demo(args) -> int:
    from .builders.examples import figure1_spn
    from .viz import render_circuit

    os.makedirs(args.out, exist_ok=True)
    circuit = figure1_spn()
    print(circuit)
    report = circuit.check()
    print(report)
    path = render_circuit(circuit, os.path.join(args.out, "figure1_spn.svg"), report=report)
    print(f"drawing written to {path}")
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcircuits", description="Probabilistic circuits: build, check, draw, "
                                     "train, complete and sample.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build an example circuit, check it, and draw it")
    demo.add_argument("--out", default="out", help="folder for the report and pictures (default: out)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
