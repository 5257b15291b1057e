"""Speed of a scalar SPN (one unit per node, irregular fan-in) against SPFlow 0.0.48.

The structure is a random tree of the kind LearnSPN and SPFlow learn: sums over 2-6
products, products splitting their scope into 2-4 blocks, blocks of one variable a leaf or a
small univariate mixture, some blocks fully factorized; Gaussian leaves on the first half of
the variables, Bernoulli leaves on the second. It is written once to a neutral JSON
description (nodes with their kind, children and parameters) that each library builds its own
model from, so both evaluate the very same SPN on the very same data.

Each library runs in its own process with its threads pinned (``--threads``), times
``--reps`` log-likelihood calls after one warm-up call and reports their median;
pcircuits also times forward+backward (the flows and the EM statistics). The log-likelihoods of
the two must agree to ``--tolerance``. ``--jit-baseline`` also times pcircuits without its
compiled ``exp``/``log`` kernels (``PCIRCUITS_JIT=0``) in a process of its own. SPFlow needs its own interpreter (it pins older NumPy):
``--spflow-python`` names it; without one, or when SPFlow cannot be imported there, its row is
skipped with a message.

    python benchmarks/scalar_spn.py [--nodes 14000] [--batch 2000] [--reps 7] \\
        [--spflow-python /path/to/venv/bin/python] [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# ---- the structure -----------------------------------------------------------------------
def random_structure(num_variables: int = 64, target_nodes: int = 14000, seed: int = 0, *,
                      factorize: float = 0.75) -> dict:
    """A random tree-shaped scalar SPN as a neutral description (plain lists and numbers).

    Returns ``{"num_variables", "nodes", "root"}``; ``nodes`` are in topological order
    (children first), each ``{"kind": "sum", "children", "weights"}``,
    ``{"kind": "product", "children"}``, ``{"kind": "gaussian", "variable", "mean", "std"}``
    or ``{"kind": "bernoulli", "variable", "p"}``. The root mixes clusters (products over all
    variables) until the tree has about ``target_nodes`` nodes; ``factorize`` is the
    probability that a block of several variables is fully factorized rather than a mixture.
    """
    rng = np.random.default_rng(seed)
    nodes: list[dict] = []

    def add(node: dict) -> int:
        nodes.append(node)
        return len(nodes) - 1

    def leaf(variable: int) -> int:
        if variable < num_variables // 2:
            return add({"kind": "gaussian", "variable": variable, "mean": float(rng.normal()),
                        "std": float(rng.uniform(0.5, 2.0))})
        return add({"kind": "bernoulli", "variable": variable, "p": float(rng.uniform(0.05, 0.95))})

    def weights(n: int) -> list:
        w = rng.uniform(0.05, 1.0, size=n)
        return (w / w.sum()).tolist()

    def univariate(variable: int) -> int:
        if rng.random() < 0.3:
            children = [leaf(variable) for _ in range(int(rng.integers(2, 5)))]
            return add({"kind": "sum", "children": children, "weights": weights(len(children))})
        return leaf(variable)

    def block(scope: np.ndarray) -> int:
        if len(scope) == 1:
            return univariate(int(scope[0]))
        if rng.random() < factorize:
            return add({"kind": "product", "children": [univariate(int(v)) for v in scope]})
        return mixture(scope)

    def split(scope: np.ndarray) -> int:
        parts = int(rng.integers(2, min(4, len(scope)) + 1))
        cuts = np.sort(rng.choice(np.arange(1, len(scope)), size=parts - 1, replace=False))
        return add({"kind": "product", "children": [block(b) for b in np.split(rng.permutation(scope), cuts)]})

    def mixture(scope: np.ndarray) -> int:
        children = [split(scope) for _ in range(int(rng.integers(2, 7)))]
        return add({"kind": "sum", "children": children, "weights": weights(len(children))})

    clusters = []
    while len(nodes) + 1 < target_nodes:
        before = len(nodes)
        clusters.append(split(np.arange(num_variables)))
        if len(clusters) > 1 and len(nodes) + 1 - target_nodes > target_nodes - before - 1:
            del nodes[before:]              # the nearer of the two sizes
            clusters.pop()
            break
    root = add({"kind": "sum", "children": clusters, "weights": weights(len(clusters))})
    return {"num_variables": num_variables, "nodes": nodes, "root": root}


def random_data(num_variables: int, batch: int, seed: int = 1) -> np.ndarray:
    """Standard normal values for the Gaussian half, fair coin flips for the Bernoulli half."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, num_variables))
    x[:, num_variables // 2:] = rng.integers(0, 2, size=(batch, num_variables - num_variables // 2))
    return x


# ---- pcircuits ---------------------------------------------------------------------------
def to_pcircuits(description: dict):
    """The description as a :class:`pcircuits.Circuit` (one unit per node)."""
    import pcircuits as pc

    built: list = []
    for node in description["nodes"]:
        kind = node["kind"]
        if kind == "gaussian":
            built.append(pc.InputNode(node["variable"], pc.Gaussian([node["mean"]], [node["std"]])))
        elif kind == "bernoulli":
            built.append(pc.InputNode(node["variable"], pc.Bernoulli([node["p"]])))
        elif kind == "product":
            built.append(pc.ProductNode([built[c] for c in node["children"]]))
        else:
            built.append(pc.SumNode([built[c] for c in node["children"]], weights=[node["weights"]]))
    return pc.Circuit(built[description["root"]])


def time_pcircuits(description: dict, x: np.ndarray, reps: int) -> dict:
    """Forward (the log-likelihoods), its sum and product layers alone (``inner_forward_ms``: the
    leaf layers left out), forward+backward, and the floor of the sum layers: one ``exp`` per
    sum edge and one ``log`` per sum unit over the batch (``exp_log_floor_ms``, by
    ``Backend.exp``/``Backend.log``, which the sum layers call), in milliseconds. The table sums (univariate discrete mixtures, looked up in a forward pass)
    compute no ``exp`` per example and are left out of the floor; ``table_sum_edges`` counts
    their edges."""
    from pcircuits.program.context import PassContext
    from pcircuits.program.layers import TableSumLayer

    t0 = time.perf_counter()
    circuit = to_pcircuits(description)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    program = circuit.compile(dtype="float64")
    compile_s = time.perf_counter() - t0
    xb = program.prepare(x)

    def forward():
        return program._forward(xb, "sum", cache=False)

    def forward_backward():
        program._forward(xb, "sum", cache=True)
        program.backward(leaves=True)

    def inner_forward():
        for layer in program.inner_layers:
            layer.forward(program, program.values, xb, context, None)

    sum_layers = [layer for layer in program.inner_layers
                  if layer.kind == "sum" and not isinstance(layer, TableSumLayer)]
    table_sum_edges = sum(layer.num_edges for layer in program.inner_layers if isinstance(layer, TableSumLayer))
    rng = np.random.default_rng(0)
    exps = -rng.exponential(size=(sum(layer.num_edges for layer in sum_layers), x.shape[0]))
    logs = 1.0 + rng.random((sum(layer.stop - layer.start for layer in sum_layers), x.shape[0]))
    exps_out, logs_out = np.empty_like(exps), np.empty_like(logs)

    def exp_log_floor():
        program.backend.exp(exps, out=exps_out)
        program.backend.log(logs, out=logs_out)

    ll = np.asarray(forward())[:, 0]
    context = PassContext("sum")
    return {"library": "pcircuits", "build_s": round(build_s, 3), "compile_s": round(compile_s, 3),
            "layers": len(program.layers), "table_sum_edges": table_sum_edges, "forward_ms": median_ms(forward, reps),
            "inner_forward_ms": median_ms(inner_forward, reps), "exp_log_floor_ms": median_ms(exp_log_floor, reps),
            "forward_backward_ms": median_ms(forward_backward, reps), "log_likelihood": ll}


# ---- SPFlow ------------------------------------------------------------------------------
def to_spflow(description: dict):
    """The description as an SPFlow 0.0.48 SPN (``spn.structure``)."""
    from spn.structure.Base import Product, Sum, assign_ids, rebuild_scopes_bottom_up
    from spn.structure.leaves.parametric.Parametric import Bernoulli, Gaussian

    built: list = []
    for node in description["nodes"]:
        kind = node["kind"]
        if kind == "gaussian":
            built.append(Gaussian(mean=node["mean"], stdev=node["std"], scope=[node["variable"]]))
        elif kind == "bernoulli":
            built.append(Bernoulli(p=node["p"], scope=[node["variable"]]))
        elif kind == "product":
            built.append(Product(children=[built[c] for c in node["children"]]))
        else:
            built.append(Sum(weights=np.array(node["weights"]), children=[built[c] for c in node["children"]]))
    root = built[description["root"]]
    assign_ids(root)
    rebuild_scopes_bottom_up(root)
    return root


def time_spflow(description: dict, x: np.ndarray, reps: int) -> dict:
    from spn.algorithms.Inference import log_likelihood

    t0 = time.perf_counter()
    spn = to_spflow(description)
    build_s = time.perf_counter() - t0
    ll = log_likelihood(spn, x)[:, 0]
    return {"library": "spflow", "build_s": round(build_s, 3),
            "forward_ms": median_ms(lambda: log_likelihood(spn, x), reps), "log_likelihood": ll}


# ---- timing and processes ------------------------------------------------------------------
def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(float(np.median(times)) * 1e3, 2)


def pinned_environment(threads: int) -> dict:
    env = dict(os.environ)
    for name in ("PCIRCUITS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_library(python: str, library: str, folder: Path, reps: int, threads: int, jit: bool = True) -> dict | None:
    """Time one library in a fresh process (pcircuits without its compiled kernels unless ``jit``);
    None (and a message) when it cannot run there."""
    env = pinned_environment(threads)
    if not jit:
        env["PCIRCUITS_JIT"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH", "")]))
    command = [python, str(Path(__file__).resolve()), "--worker", library, "--folder", str(folder),
               "--reps", str(reps)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{library}: skipped ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'failed'})",
              file=sys.stderr)
        return None
    record = json.loads((folder / f"{library}.json").read_text())
    record["log_likelihood"] = np.load(folder / f"{library}_ll.npy")
    return record


def worker(library: str, folder: Path, reps: int):
    description = json.loads((folder / "structure.json").read_text())
    x = np.load(folder / "data.npy")
    record = (time_pcircuits if library == "pcircuits" else time_spflow)(description, x, reps)
    np.save(folder / f"{library}_ll.npy", record.pop("log_likelihood"))
    (folder / f"{library}.json").write_text(json.dumps(record))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=14000)
    parser.add_argument("--variables", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-8)
    parser.add_argument("--spflow-python", default=None, help="interpreter with spflow==0.0.48 installed")
    parser.add_argument("--out", default=None, help="also write the record to this JSON file")
    parser.add_argument("--jit-baseline", action="store_true",
                        help="also time pcircuits with PCIRCUITS_JIT=0 (no compiled exp/log kernels)")
    parser.add_argument("--worker", choices=["pcircuits", "spflow"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.folder), args.reps)
        return {}
    description = random_structure(args.variables, args.nodes, args.seed)
    x = random_data(args.variables, args.batch, args.seed + 1)
    kinds = [n["kind"] for n in description["nodes"]]
    fan_in = [len(n["children"]) for n in description["nodes"] if "children" in n]
    record = {"nodes": len(kinds), "edges": int(sum(fan_in)), "variables": args.variables, "batch": args.batch,
              "dtype": "float64", "reps": args.reps, "threads": args.threads,
              "sums": kinds.count("sum"), "products": kinds.count("product"),
              "leaves": kinds.count("gaussian") + kinds.count("bernoulli"),
              "max_fan_in": int(max(fan_in)), "load_average": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "structure.json").write_text(json.dumps(description))
        np.save(folder / "data.npy", x)
        ours = run_library(sys.executable, "pcircuits", folder, args.reps, args.threads)
        if ours is None:
            raise RuntimeError("the pcircuits worker failed")
        plain = run_library(sys.executable, "pcircuits", folder, args.reps, args.threads, jit=False) \
            if args.jit_baseline else None
        theirs = run_library(args.spflow_python, "spflow", folder, args.reps, args.threads) \
            if args.spflow_python else None
    if theirs is None and not args.spflow_python:
        print("spflow: skipped (no --spflow-python given)", file=sys.stderr)
    record["pcircuits"] = {k: v for k, v in ours.items() if k not in ("library", "log_likelihood")}
    record["mean_log_likelihood"] = float(ours["log_likelihood"].mean())
    if plain is not None:
        record["pcircuits_nojit"] = {k: v for k, v in plain.items() if k not in ("library", "log_likelihood")}
        record["nojit_max_log_likelihood_difference"] = float(np.max(np.abs(ours["log_likelihood"]
                                                                           - plain["log_likelihood"])))
    if theirs is not None:
        difference = float(np.max(np.abs(ours["log_likelihood"] - theirs["log_likelihood"])))
        if not difference <= args.tolerance:
            raise AssertionError(f"log-likelihoods differ by {difference:.3g} (tolerance {args.tolerance:g})")
        record["spflow"] = {k: v for k, v in theirs.items() if k not in ("library", "log_likelihood")}
        record["max_log_likelihood_difference"] = difference
        record["speedup_forward"] = round(theirs["forward_ms"] / ours["forward_ms"], 1)
        if plain is not None:
            record["nojit_speedup_forward"] = round(theirs["forward_ms"] / plain["forward_ms"], 1)
    print(json.dumps(record), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
