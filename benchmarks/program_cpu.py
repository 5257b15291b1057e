"""Speed of the Program on PD, RAT-SPN and DGC-SPN circuits over 28x28 inputs, against the matmul floor.

Prints one JSON line per circuit: its size (nodes, units, edges, params), compile seconds, the
memory the Program keeps between passes (``kept_mb``: index tables, weights, leaf tables),
forward and forward+backward milliseconds (median of ``--reps``) and throughput in edge
evaluations per second at the given batch size. In the same run it times the bare dense matrix
products of the same shapes as the circuit's dense-block sum layers (one per layer forward, two
more backward) and prints forward+backward time divided by that floor. ``train_step_ms`` is
one Adam step (forward, backward, parameter update) at ``--train-batch``: NLL for PD and RAT;
for the discriminative DGC-SPN of DGC-SPN 5.2 (``dgcspn``) cross-entropy over its 10 class
roots with product and input dropout 0.2, the step that MNIST classification repeats.

The floor also counts the leaf layer at the memory bandwidth measured in the same run (one
read of the gathered inputs and one write of the leaf outputs): ``floor_with_leaves_*``.

    python benchmarks/program_cpu.py [--batch 512] [--reps 5] [--backend numpy] [--which pd rat dgcspn]

``--compare torch`` instead times the Program against a PyTorch implementation of the same
circuit, each library in its own process with its threads pinned to ``--threads`` (PyTorch's
intra-op threads; pcircuits' host threads, ``PCIRCUITS_NUM_THREADS``, over which its blocked
passes spread, matrix products included, each on one BLAS thread), the two interleaved for
``--rounds`` rounds. For RAT-SPN the reference is a hand-written PyTorch RAT-SPN
(``benchmarks/torch_rat.py``: leaf log-densities over a padded ``(features, I, batch)`` tensor,
region products by a reshape and a sum, sums by the outer product of the max-shifted children's
exponentials and ``bmm``); for the PD circuits it runs the Program's own layers
(``benchmarks/torch_reference.py``: the same partitions, ``K`` and Gaussian leaves; outer product
and ``bmm`` for the sums), which ``--layer-reference`` also times for RAT-SPN. The PyTorch
processes run with ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's allocator then asks for transparent huge
pages, as NumPy does for its large arrays; without it every fresh 100 MB tensor costs page
faults, about 4x its arithmetic). Each process first checks, in float64, that the two agree
(log-likelihoods to 1e-4, gradients of the log-weights and leaf parameters to 1e-5 relative),
then times float32 forward and forward+backward passes (median of ``--reps``, and the fastest
call, ``*_fastest``); the least disturbed round (smallest median, smallest fastest call) is
reported. It is skipped with a message when PyTorch is not
installed (``pip install pcircuits[bench]``). ``--baseline DIR`` also times the pcircuits package
of another source folder (an earlier version) in the same interleaved rounds, ``--jit-baseline``
the same pcircuits without its compiled kernels (``PCIRCUITS_JIT=0``: NumPy's ufuncs and the
NumPy definitions of the fused steps).

    python benchmarks/program_cpu.py --compare torch [--cases pd8 pd32 rat digits] [--reps 7] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import pcircuits as pc
from pcircuits.backend import to_numpy
from pcircuits.program.layers import DenseSumLayer


def call_times_ms(fn, reps: int, sync) -> np.ndarray:
    """Milliseconds of ``reps`` calls of ``fn`` (after one warm-up call)."""
    fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return np.array(times) * 1e3


def median_ms(fn, reps: int, sync) -> float:
    return float(np.median(call_times_ms(fn, reps, sync)))


def matmul_floor_ms(program, batch: int, reps: int) -> tuple[float, float]:
    """Median time of the dense layers' matrix products alone: (forward, forward + backward)."""
    xp, dtype = program.backend.xp, program.backend.dtype
    rng = np.random.default_rng(0)
    shapes = [(getattr(l, "Nb", l.N), getattr(l, "Kb", l.K), l.I) for l in program.layers
              if isinstance(l, DenseSumLayer)]
    arrays = [(xp.asarray(rng.random((n, k, i)), dtype=dtype), xp.asarray(rng.random((n, i, batch)), dtype=dtype),
               xp.asarray(rng.random((n, k, batch)), dtype=dtype)) for n, k, i in shapes]

    def forward():
        for w, e, _ in arrays:
            xp.matmul(w, e)

    def forward_backward():
        for w, e, r in arrays:
            xp.matmul(w, e)
            xp.matmul(w.transpose(0, 2, 1), r)
            xp.matmul(r, e.transpose(0, 2, 1))

    sync = program.backend.synchronize
    return median_ms(forward, reps, sync), median_ms(forward_backward, reps, sync)


def memory_bandwidth(nbytes: int = 1 << 27, reps: int = 5) -> float:
    """Bytes per second of one large copy (read plus write), median of ``reps``."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    seconds = median_ms(lambda: np.copyto(dst, src), reps, lambda: None) / 1e3
    return 2 * src.nbytes / seconds


def leaf_floor_ms(program, batch: int, bandwidth: float) -> float:
    """The leaf layers' least memory traffic: one read of their gathered inputs and one write of
    their outputs, shape (leaf units, batch) each, at ``bandwidth`` bytes per second."""
    item = program.backend.dtype.itemsize
    elements = sum(layer.variables_np.size + (layer.stop - layer.start) for layer in program.input_layers)
    return elements * batch * item / bandwidth * 1e3


def kept_bytes(program) -> int:
    """Bytes of the arrays the Program keeps between passes (its layers' index tables, weights,
    log-weights and leaf tables; not its work buffers, not the last backward pass's log-weight
    gradient, not the circuit's own parameters)."""
    seen = {}

    def visit(obj, depth):
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            seen[base.__array_interface__["data"][0]] = base.nbytes
        elif depth < 4 and isinstance(obj, dict):
            for value in obj.values():
                visit(value, depth + 1)
        elif depth < 4 and isinstance(obj, (list, tuple)):
            for value in obj:
                visit(value, depth + 1)
        elif depth < 4 and type(obj).__module__.startswith("pcircuits.program"):
            for name, value in vars(obj).items():
                if name not in ("circuit", "plan", "backend", "_buffers", "_values", "_cache", "_x", "inputs_t",
                                "grad_log_weights"):
                    visit(value, depth + 1)
    visit(program, 0)
    return sum(seen.values())


def build(which: str, args):
    if which == "pd":
        return pc.builders.poon_domingos(28, 28, delta=args.pd_delta, num_sums=args.pd_sums,
                                         num_leaves=args.pd_leaves, leaf="gaussian", dense=args.pd_dense, seed=0)
    if which == "rat":
        return pc.builders.rat_spn(784, depth=args.rat_depth, num_repetitions=args.rat_reps,
                                   num_sums=args.rat_sums, num_leaves=args.rat_leaves, leaf="gaussian", seed=0)
    if which == "dgcspn":
        return pc.builders.dgcspn(28, 28, mode="discriminative", num_classes=10, seed=0)
    raise ValueError(f"unknown circuit {which!r}")


def train_step_ms(program, which: str, args) -> float:
    """Median time of one Adam step on a fixed random batch of ``args.train_batch`` examples."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(args.train_batch, 784))
    if which == "dgcspn":
        labels = rng.integers(0, program.num_outputs, size=args.train_batch)
        learner = pc.learning.Adam(program, lr=1e-3, objective="cross-entropy", product_dropout=0.2,
                                   input_dropout=0.2)
    else:
        labels = None
        learner = pc.learning.Adam(program, lr=1e-3)
    device_rng = program.backend.rng(0)
    return median_ms(lambda: learner.step(x, labels, rng=device_rng), args.reps, program.backend.synchronize)


def run(which: str, args) -> dict:
    t0 = time.perf_counter()
    circuit = build(which, args)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    program = circuit.compile(backend=args.backend, dtype="float32")
    compile_s = time.perf_counter() - t0
    x = np.random.default_rng(0).normal(size=(args.batch, 784))
    xb = program.prepare(x)
    sync = program.backend.synchronize

    def forward():
        program._forward(xb, "sum", cache=False)

    def forward_backward():
        program._forward(xb, "sum", cache=True)
        program.backward(leaves=True)

    fwd = median_ms(forward, args.reps, sync)
    fwd_bwd = median_ms(forward_backward, args.reps, sync)
    floor_f, floor_fb = matmul_floor_ms(program, args.batch, args.reps)
    leaves = leaf_floor_ms(program, args.batch, memory_bandwidth())
    step = train_step_ms(program, which, args)
    edges = circuit.num_edges
    return {
        "circuit": which, "backend": args.backend, "batch": args.batch,
        "nodes": circuit.num_nodes, "units": circuit.num_units, "edges": edges, "params": circuit.num_params,
        "build_s": round(build_s, 3), "compile_s": round(compile_s, 3),
        "kept_mb": round(kept_bytes(program) / 1e6, 1),
        "forward_ms": round(fwd, 2), "forward_backward_ms": round(fwd_bwd, 2),
        "forward_edges_per_s": round(edges * args.batch / (fwd / 1e3)),
        "forward_backward_edges_per_s": round(edges * args.batch / (fwd_bwd / 1e3)),
        "matmul_floor_forward_ms": round(floor_f, 2), "matmul_floor_forward_backward_ms": round(floor_fb, 2),
        "forward_over_floor": round(fwd / floor_f, 2),
        "forward_backward_over_floor": round(fwd_bwd / floor_fb, 2),
        "leaf_floor_ms": round(leaves, 2),
        "floor_with_leaves_forward_ms": round(floor_f + leaves, 2),
        "floor_with_leaves_forward_backward_ms": round(floor_fb + leaves, 2),
        "forward_backward_over_floor_with_leaves": round(fwd_bwd / (floor_fb + leaves), 2),
        "train_batch": args.train_batch, "train_step_ms": round(step, 2),
    }

#: The circuits of the comparison with PyTorch: builder, its settings, the batch sizes timed
#: (``None``: forward and forward+backward at ``--batch``; a list: forward only, at each size)
#: and the PyTorch reference ("rat": the hand-written RAT-SPN; "layers": the Program's layers).
COMPARE_CASES = {
    "pd8": (lambda: pc.builders.poon_domingos(28, 28, delta=7, num_sums=8, num_leaves=4, dense=True, seed=0), None,
            "layers"),
    "pd32": (lambda: pc.builders.poon_domingos(28, 28, delta=7, num_sums=32, num_leaves=4, dense=True, seed=0), None,
             "layers"),
    "rat": (lambda: pc.builders.rat_spn(784, depth=5, num_repetitions=8, num_sums=16, num_leaves=8, leaf="gaussian",
                                        seed=0), None, "rat"),
    "digits": (lambda: pc.builders.poon_domingos(8, 8, delta=2, num_sums=8, num_leaves=4, dense=True, seed=0), [1, 16],
               "layers"),
}


def torch_reference(program, kind: str, dtype):
    """The PyTorch reference of ``program``: ``kind`` "rat" (:class:`torch_rat.TorchRatSpn`) or
    "layers" (:class:`torch_reference.TorchReference`)."""
    if kind == "rat":
        from torch_rat import TorchRatSpn
        return TorchRatSpn(program, dtype)
    from torch_reference import TorchReference
    return TorchReference(program, dtype)


def _pin_threads(threads: int) -> dict:
    """The PyTorch processes' environment: ``threads`` OpenMP and MKL threads (PyTorch's), huge
    pages; NumPy's OpenBLAS (used there by the agreement check alone) on one thread, so that its
    idle threads never compete with PyTorch's."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["THP_MEM_ALLOC_ENABLE"] = "1"
    return env


def _pcircuits_threads(env: dict, threads: int) -> dict:
    """The pcircuits processes' environment: ``threads`` host threads for the blocked passes,
    each running its matrix products on one BLAS thread (so that the two never oversubscribe)."""
    env = dict(env, PCIRCUITS_NUM_THREADS=str(threads))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def check_torch_agreement(circuit, kind: str = "layers", batch: int = 16) -> dict:
    """Largest differences between the Program and its PyTorch reference (``kind``, see
    :func:`torch_reference`) in float64: log-likelihoods (absolute) and gradients (relative to the
    largest gradient); raises when above 1e-4 / 1e-5."""
    import torch

    program = circuit.compile(dtype="float64")
    x = np.random.default_rng(2).normal(size=(batch, program.num_variables))
    ll = to_numpy(program._forward(program.prepare(x), "sum", cache=True))
    grads = program.backward(leaves=True)
    reference = torch_reference(program, kind, torch.float64)
    out = reference.forward(torch.from_numpy(x))
    out.sum().backward()
    expected = reference.gradients()
    ll_error = float(np.abs(out.detach().numpy() - ll).max())
    pairs = [(to_numpy(grads.log_weights), expected["log_weights"])]
    for key, table in grads.leaves.items():
        pairs += [(to_numpy(table[name])[:, 0], expected[key][name]) for name in ("mean", "std")]
    grad_error = max(float(np.abs(a - b).max() / max(1.0, np.abs(b).max())) for a, b in pairs)
    if ll_error > 1e-4 or grad_error > 1e-5:
        raise AssertionError(f"the PyTorch reference disagrees: log-likelihoods by {ll_error:.3g}, "
                             f"gradients by {grad_error:.3g} (relative)")
    return {"ll_max_abs_error": ll_error, "grad_max_rel_error": grad_error}


def compare_worker(library: str, case: str, args) -> dict:
    """Time one case with one library (run in a process of its own)."""
    builder, batches, kind = COMPARE_CASES[case]
    circuit = builder()
    record = {"case": case, "library": library}
    if library in ("torch", "torch_layers"):
        import torch
        kind = "layers" if library == "torch_layers" else kind
        torch.set_num_threads(args.threads)
        record.update(check_torch_agreement(circuit, kind))
        program = circuit.compile(dtype="float32")
        reference = torch_reference(program, kind, torch.float32)
        program.release_buffers()

        def make(batch):
            x = torch.from_numpy(np.random.default_rng(0).normal(size=(batch, 784 if case != "digits" else 64))
                                 .astype(np.float32))

            def forward():
                with torch.no_grad():
                    reference.forward(x)

            def forward_backward():
                reference.zero_grad()
                reference.forward(x).sum().backward()
            return forward, forward_backward
    else:
        program = circuit.compile(dtype="float32")

        def make(batch):
            xb = program.prepare(np.random.default_rng(0).normal(size=(batch, program.num_variables)))

            def forward():
                program._forward(xb, "sum", cache=False)

            def forward_backward():
                program._forward(xb, "sum", cache=True)
                program.backward(leaves=True)
            return forward, forward_backward
    no_sync = lambda: None      # noqa: E731 (both libraries compute on the host)
    # the median of the calls, and their least disturbed one (on a machine shared with other
    # work, the fastest call is the one that had the cores to itself)
    if batches is None:
        forward, forward_backward = make(args.batch)
        record["batch"] = args.batch
        for name, fn in (("forward_ms", forward), ("forward_backward_ms", forward_backward)):
            times = call_times_ms(fn, args.reps, no_sync)
            record[name], record[f"{name}_fastest"] = float(np.median(times)), float(times.min())
    else:
        for batch in batches:
            forward, _ = make(batch)
            times = call_times_ms(forward, max(args.reps, 50), no_sync)
            record[f"forward_ms_batch{batch}"] = float(np.median(times))
            record[f"forward_ms_batch{batch}_fastest"] = float(times.min())
    return record


def compare(args) -> list[dict]:
    """The PyTorch comparison: one process per library, case and round, interleaved."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: PyTorch is not installed (pip install 'pcircuits[bench]')", flush=True)
        return []
    script = Path(__file__).resolve()
    env = _pin_threads(args.threads)
    env["PYTHONPATH"] = os.pathsep.join([str(script.parent), str(script.parents[1]), env.get("PYTHONPATH", "")])
    envs = {"pcircuits": _pcircuits_threads(env, args.threads), "torch": env}
    if args.layer_reference:
        envs["torch_layers"] = env
    if args.baseline:
        envs["baseline"] = dict(envs["pcircuits"], PYTHONPATH=os.pathsep.join([
            str(script.parent), str(Path(args.baseline).resolve()), env.get("PYTHONPATH", "")]))
    if args.jit_baseline:
        envs["nojit"] = dict(envs["pcircuits"], PCIRCUITS_JIT="0")
    records = []
    for case in args.cases:
        runs = {library: [] for library in envs}
        for round_ in range(args.rounds):
            order = list(envs) if round_ % 2 == 0 else list(envs)[::-1]
            for library in order:
                worker = "pcircuits" if library in ("baseline", "nojit") else library
                if library == "torch_layers" and COMPARE_CASES[case][2] == "layers":
                    continue                # the case's own reference already
                out = subprocess.run([sys.executable, str(script), "--worker", worker, "--case", case,
                                      "--reps", str(args.reps), "--batch", str(args.batch),
                                      "--threads", str(args.threads)],
                                     env=envs[library], check=True, capture_output=True, text=True).stdout
                runs[library].append(json.loads(out.splitlines()[-1]))
        record = {"case": case, "threads": args.threads, "reps": args.reps, "rounds": args.rounds,
                  "load_average": os.getloadavg()[0]}
        for library, results in runs.items():
            if not results:
                continue
            for key in results[0]:
                if key.startswith("forward"):
                    record[f"{library}_{key}"] = round(min(r[key] for r in results), 3)
        record.update({k: runs["torch"][0][k] for k in ("ll_max_abs_error", "grad_max_rel_error")})
        if runs.get("torch_layers"):
            record.update({f"torch_layers_{k}": runs["torch_layers"][0][k]
                           for k in ("ll_max_abs_error", "grad_max_rel_error")})
        for key in list(record):
            for library, prefix in (("pcircuits", "ratio"), ("baseline", "baseline_ratio"), ("nojit", "nojit_ratio")):
                if key.startswith(f"{library}_forward"):
                    name = key[len(library) + 1:]
                    record[f"{prefix}_{name}"] = round(record[key] / record[f"torch_{name}"], 3)
                    if f"torch_layers_{name}" in record:
                        record[f"{prefix}_layers_{name}"] = round(record[key] / record[f"torch_layers_{name}"], 3)
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--which", nargs="+", default=["pd", "rat", "dgcspn"], choices=["pd", "rat", "dgcspn"])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--pd-delta", type=int, default=7)
    parser.add_argument("--pd-sums", type=int, default=32)
    parser.add_argument("--pd-leaves", type=int, default=4)
    parser.add_argument("--pd-dense", action=argparse.BooleanOptionalAction, default=True,
                        help="regions on the delta grid only, grid cells as factorized leaves (as PyJuice's PD)")
    parser.add_argument("--rat-depth", type=int, default=5)
    parser.add_argument("--rat-reps", type=int, default=8)
    parser.add_argument("--rat-sums", type=int, default=16)
    parser.add_argument("--rat-leaves", type=int, default=8)
    parser.add_argument("--compare", choices=["torch"], help="time against the PyTorch reference instead")
    parser.add_argument("--cases", nargs="+", default=list(COMPARE_CASES), choices=list(COMPARE_CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline", help="also time the pcircuits package found in this source folder (another "
                                           "version), in its own processes")
    parser.add_argument("--jit-baseline", action="store_true",
                        help="also time pcircuits with PCIRCUITS_JIT=0 (no compiled kernels), in its own processes")
    parser.add_argument("--layer-reference", action="store_true",
                        help="also time the PyTorch reference that runs the Program's layers where the case has "
                             "a hand-written one (RAT-SPN)")
    parser.add_argument("--worker", choices=["pcircuits", "torch", "torch_layers"], help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=list(COMPARE_CASES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(compare_worker(args.worker, args.case, args)), flush=True)
        return
    if args.compare:
        return compare(args)
    for which in args.which:
        print(json.dumps(run(which, args)), flush=True)


if __name__ == "__main__":
    main()
