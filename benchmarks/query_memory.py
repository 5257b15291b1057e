"""Peak memory of the chunked queries on many rows, with the README's circuit.

Each query runs in a fresh process (so one query's peak does not hide another's) on ``--rows``
rows of 64 variables (float32, the right half missing, made in slices so the data cost only
their own 256 MB per million rows), and the process's peak resident memory is read from the
operating system (``ru_maxrss``). ``leaf_posteriors`` returns one float32 per unit and row
(845 units: 3.4 GB per million rows), so its working memory is its peak less data and result.
``fit`` is one epoch of EM in batches of 2000 (its whole-data check and conversion included;
the data have no missing values there); its work grows with ``batch_size``, not with the rows. With ``--compare`` a smaller case also checks that chunked results equal
one big batch.

    python benchmarks/query_memory.py --rows 1000000
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

QUERIES = ("log_likelihood", "inpaint", "sample", "leaf_posteriors", "fit")


def readme_program():
    import pcircuits as pc
    circuit = pc.builders.poon_domingos(8, 8, delta=2, num_sums=4, num_leaves=3, seed=0)
    return circuit.compile(backend="numpy", dtype="float32")


def make_data(rows: int, missing: bool = True) -> np.ndarray:
    x = np.empty((rows, 64), dtype=np.float32)
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):
        x[start:start + 100_000] = rng.normal(size=(min(100_000, rows - start), 64))
    if missing:
        x[:, 32:] = np.nan
    return x


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(query: str, rows: int) -> dict:
    """Run ``query`` on ``rows`` rows in this process; its timing and peak memory."""
    from pcircuits.learning import fit

    program = readme_program()
    x = None if query == "sample" else make_data(rows, missing=query != "fit")
    data_mb = peak_mb()
    started = time.perf_counter()
    if query == "sample":
        out = program.sample(rows, seed=0)
    elif query == "inpaint":
        out = program.inpaint(x)
    elif query == "leaf_posteriors":
        out = program.leaf_posteriors(x)
    elif query == "fit":
        out = np.zeros(0)
        fit(program, x, method="em", epochs=1, batch_size=2000, progress=False)
    else:
        out = program.log_likelihood(x)
    return {"query": query, "rows": rows, "seconds": round(time.perf_counter() - started, 1),
            "output_mb": round(out.nbytes / 2 ** 20), "peak_mb_after_data": round(data_mb),
            "peak_mb": round(peak_mb()), "work_mb": round(peak_mb() - data_mb - out.nbytes / 2 ** 20)}


def compare(rows: int) -> dict:
    """Whether chunks of whole row blocks equal one batch bit for bit, and how far chunks of 64
    rows (smaller than a row block) are from it (largest relative difference; MPE: equal)."""
    from pcircuits.inference import SAMPLE_BLOCK
    from pcircuits.program.blocks import ROW_BLOCK

    program = readme_program()
    program.memory_budget = 1 << 40                       # one batch unless batch_size says otherwise
    x = make_data(rows)

    def equal(query):
        return bool(np.array_equal(query(x, batch_size=ROW_BLOCK), query(x)))

    def difference(query):
        chunked, whole = query(x, batch_size=64), query(x)
        return float(np.max(np.abs(chunked - whole) / (1 + np.abs(whole))))
    return {"rows": rows, "row_block": ROW_BLOCK,
            "log_likelihood_equal": equal(program.log_likelihood),
            "inpaint_equal": equal(program.inpaint),
            "leaf_posteriors_equal": equal(program.leaf_posteriors),
            "mpe_equal": equal(program.mpe),
            "log_likelihood_64_rows_max_relative_difference": difference(program.log_likelihood),
            "inpaint_64_rows_max_relative_difference": difference(program.inpaint),
            "samples_of_a_seed_independent_of_count": bool(np.array_equal(
                program.sample(1100, seed=1)[:1024], program.sample(1024, seed=1))),
            "samples_of_a_seed_independent_of_chunks": bool(np.array_equal(
                program.sample(rows, seed=1, batch_size=SAMPLE_BLOCK), program.sample(rows, seed=1)))}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", nargs="+", choices=QUERIES, default=list(QUERIES))
    parser.add_argument("--compare", type=int, default=0, metavar="ROWS",
                        help="also compare chunked and one-batch results on this many rows")
    parser.add_argument("--one", choices=QUERIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        record = run_one(args.one, args.rows)
        print(json.dumps(record))
        return [record]
    records = []
    for query in args.queries:
        done = subprocess.run([sys.executable, __file__, "--one", query, "--rows", str(args.rows)],
                              capture_output=True, text=True, check=True)
        records.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)
    if args.compare:
        records.append(compare(args.compare))
        print(json.dumps(records[-1]))
    return records


if __name__ == "__main__":
    main()
