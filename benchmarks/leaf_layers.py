"""Speed of the leaf layers' mechanisms: batch-major, unit-major, cache blocks, cache blocks in threads.

Times the Gaussian leaf layer of the RAT-SPN of ``program_cpu.py`` (784 variables, 50,176 leaf
units) at batch ``--batch``: its log-densities (``forward``) and its parameter gradients without
input gradients (``gradient``), four ways, interleaved call by call, median of ``--reps``:

* ``batch_major``: the family's ``log_prob`` / ``grad`` on the gathered ``(batch, U, 1)`` inputs,
  then the transposed store into the ``(units, batch)`` value array (what the Program did before);
* ``unit_major``: ``log_prob_units`` / ``grad_units`` over the whole layer at once;
* ``blocked``: the same in cache-sized blocks of units, one thread;
* ``blocked_threads``: the blocks shared by ``--threads`` threads (NumPy's loops release the GIL).

It also times the first product layer's backward pass, one scatter per column against the
gather of every leaf's flow from its one parent (``product_backward_*``). Prints one JSON line.

    python benchmarks/leaf_layers.py [--batch 512] [--reps 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import pcircuits as pc
import pcircuits.backend as backend_module


def _median_ms(calls: dict, reps: int) -> dict:
    times = {name: [] for name in calls}
    for name, fn in calls.items():
        fn()
    for _ in range(reps):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: round(float(np.median(t)) * 1e3, 2) for name, t in times.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variables", type=int, default=784)
    args = parser.parse_args(argv)
    circuit = pc.builders.rat_spn(args.variables, depth=5, num_repetitions=8, num_sums=16, num_leaves=8,
                                  leaf="gaussian", seed=0)
    program = circuit.compile(dtype="float32")
    be = program.backend
    x = program.prepare(np.random.default_rng(0).normal(size=(args.batch, program.num_variables)))
    program._forward(x, "sum", cache=True)
    program.backward(leaves=True)
    layer = program.input_layers[0]
    family = layer.family
    params = layer.params(program.leaf_tables[layer.table_key])
    values = program.values[layer.start:layer.stop]
    g = np.random.default_rng(1).normal(size=values.shape).astype(values.dtype)
    xt = program.inputs_t

    def batch_major_forward():
        values[...] = family.log_prob(be, params, layer.gather_inputs(x)).T

    def batch_major_gradient():
        family.grad(be, params, layer.gather_inputs(x), g.T)

    def with_blocks(fn, elements, threads):
        def call():
            saved = backend_module.BLOCK_ELEMENTS
            backend_module.BLOCK_ELEMENTS = elements
            os.environ["PCIRCUITS_NUM_THREADS"] = str(threads)
            try:
                fn()
            finally:
                backend_module.BLOCK_ELEMENTS = saved
                del os.environ["PCIRCUITS_NUM_THREADS"]
        return call

    def unit_forward():
        family.log_prob_units(be, params, xt, layer.variables, values, missing=False)

    def unit_gradient():
        family.grad_units(be, params, xt, layer.variables, g, inputs=False, missing=False)

    whole = values.size + 1
    block = backend_module.BLOCK_ELEMENTS
    record = {"batch": args.batch, "leaf_units": int(values.shape[0]), "threads": args.threads,
              "block_elements": block, "load_average": os.getloadavg()[0]}
    for what, batch_major, unit in (("forward", batch_major_forward, unit_forward),
                                    ("gradient", batch_major_gradient, unit_gradient)):
        timed = _median_ms({"batch_major": batch_major, "unit_major": with_blocks(unit, whole, 1),
                            "blocked": with_blocks(unit, block, 1),
                            "blocked_threads": with_blocks(unit, block, args.threads)}, args.reps)
        record.update({f"{what}_{name}_ms": ms for name, ms in timed.items()})

    products = program.layers[1]
    grads = program.buffer("grads", program.values.shape)
    gather = products.input_range

    def scatter_backward():
        products.input_range = None
        try:
            products.backward(program, program.values, grads, program._cache)
        finally:
            products.input_range = gather

    def gather_backward():
        products.backward(program, program.values, grads, program._cache)

    timed = _median_ms({"scatter": scatter_backward, "gather": with_blocks(gather_backward, block, 1),
                        "gather_threads": with_blocks(gather_backward, block, args.threads)}, args.reps)
    record.update({f"product_backward_{name}_ms": ms for name, ms in timed.items()})
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
