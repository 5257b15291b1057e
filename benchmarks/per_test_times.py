"""Per-test CPU time of this checkout against a base revision: which tests got slower.

Each test file runs alone, in its own process per checkout, restricted to the test functions
both checkouts have, with one thread, Hypothesis seed 0 and byte code cached. The plugin half of
this module (``-p per_test_times``) records for every test (setup, call and teardown) the
process's CPU time, that of the child processes it waited for, and the CPU time of the garbage
collector's full collections during the test: which test pays a full collection depends on the
process's allocation count, not on the test's code, so the report gives both figures.
Repetitions alternate the checkouts; each test keeps its minimum over repetitions.

    python benchmarks/per_test_times.py --base 90674e5 --reps 3 --out out/test_times

writes ``times.json`` (every run's figures) and ``report.md`` (totals and the tests slower than
``--ratio`` times the base and at least ``--min-ms`` long) under ``--out``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Environment of every run: one thread everywhere.
RUN_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PCIRCUITS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


# --- the plugin half: runs inside each pytest process -------------------------------------------

_times: dict = {}
_full_collections = {"started": 0.0, "total": 0.0}


def _on_collection(phase: str, info: dict) -> None:
    if info.get("generation") != 2:
        return
    if phase == "start":
        _full_collections["started"] = time.process_time()
    else:
        _full_collections["total"] += time.process_time() - _full_collections["started"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pytest_configure(config):
    gc.callbacks.append(_on_collection)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, children, collections = time.process_time(), _children_cpu(), _full_collections["total"]
    yield
    _times[item.nodeid] = {"cpu": time.process_time() - cpu + _children_cpu() - children,
                           "full_gc": _full_collections["total"] - collections}


def pytest_sessionfinish(session, exitstatus):
    Path(os.environ["PER_TEST_TIMES_OUT"]).write_text(json.dumps({"exitstatus": int(exitstatus),
                                                                  "times": _times}))


# --- the driver half ------------------------------------------------------------------------------

def _pytest(tree: Path, args: list, **env) -> subprocess.CompletedProcess:
    # byte code is written: an uncached lazy import would compile source inside the test that runs it
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment.update(RUN_ENV, PYTHONPATH=os.pathsep.join([str(tree), str(ROOT / "benchmarks")]), **env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           *args], cwd=tree, env=environment, capture_output=True, text=True)


def collected_ids(tree: Path) -> set:
    """The test ids pytest collects in ``tree``."""
    result = _pytest(tree, ["--collect-only"])
    ids = {line.strip() for line in result.stdout.splitlines() if "::" in line}
    if not ids:
        raise RuntimeError(f"pytest collected no tests in {tree}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return ids


def functions_by_file(common: set, only: list | None) -> dict:
    """``{file: [file::function, ...]}`` of the common tests (parameters stripped), optionally
    only the files named in ``only``."""
    functions: dict = {}
    for test in sorted(common):
        file, function = test.split("::", 1)
        if only and file not in only and Path(file).name not in only:
            continue
        name = f"{file}::{function.split('[')[0]}"
        functions.setdefault(file, [])
        if name not in functions[file]:
            functions[file].append(name)
    return functions


def run_file(tree: Path, tests: list, out: Path) -> dict:
    """Run ``tests`` (ids of one file) in ``tree``; their per-test figures."""
    out.unlink(missing_ok=True)
    result = _pytest(tree, ["-p", "per_test_times", "--hypothesis-seed=0", *tests], PER_TEST_TIMES_OUT=str(out))
    if not out.exists():
        raise RuntimeError(f"{tests[0].split('::')[0]} did not finish in {tree}:\n{result.stdout[-3000:]}")
    return json.loads(out.read_text())["times"]


def minima(runs: list, common: set) -> dict:
    """``{test: (cpu, cpu less full collections)}``, each the minimum over ``runs``."""
    best: dict = {}
    for times in runs:
        for test, figures in times.items():
            if test in common:
                cpu, less = figures["cpu"], figures["cpu"] - figures["full_gc"]
                old = best.get(test, (cpu, less))
                best[test] = (min(old[0], cpu), min(old[1], less))
    return best


def report(base: dict, head: dict, *, ratio: float, min_ms: float, base_name: str) -> str:
    tests = sorted(set(base) & set(head))
    lines = [f"{len(tests)} tests common to {base_name} and this checkout.", ""]
    for which, label in [(0, "CPU"), (1, "CPU less full garbage collections")]:
        total_base, total_head = (sum(d[t][which] for t in tests) for d in (base, head))
        slower = [t for t in tests if head[t][which] > ratio * base[t][which]]
        listed = [t for t in slower if max(head[t][which], base[t][which]) * 1e3 >= min_ms]
        lines += [f"## {label}", "",
                  f"Total: base {total_base:.2f} s, this checkout {total_head:.2f} s "
                  f"({total_head / total_base:.3f}x). Tests over {ratio:.2f}x the base: {len(slower)}, "
                  f"{len(listed)} of them at least {min_ms:g} ms:", "",
                  "| test | base ms | this ms | ratio |", "|---|---|---|---|"]
        lines += [f"| {t} | {base[t][which] * 1e3:.1f} | {head[t][which] * 1e3:.1f} | "
                  f"{head[t][which] / base[t][which]:.2f} |" for t in listed]
        lines.append("")
    return "\n".join(lines)


def main(argv: list | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--files", nargs="*", help="only these test files (path or file name)")
    parser.add_argument("--ratio", type=float, default=1.10)
    parser.add_argument("--min-ms", type=float, default=20.0, help="shortest test listed in the report")
    parser.add_argument("--out", type=Path, default=Path("out/test_times"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        base_tree = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), args.base], cwd=ROOT, check=True)
        try:
            trees = {"base": base_tree, "head": ROOT}
            for tree in trees.values():
                subprocess.run([sys.executable, "-m", "compileall", "-q", "pcircuits", "tests"], cwd=tree,
                               capture_output=True)
            common = collected_ids(base_tree) & collected_ids(ROOT)
            functions = functions_by_file(common, args.files)
            runs: dict = {"base": [], "head": []}
            for rep in range(args.reps):
                for file, tests in functions.items():
                    for name, tree in trees.items():
                        runs[name].append(run_file(tree, tests, Path(scratch) / f"{name}.json"))
                print(f"repetition {rep + 1} of {args.reps} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=True)
    (args.out / "times.json").write_text(json.dumps({"base": args.base, "runs": runs}))
    text = report(minima(runs["base"], common), minima(runs["head"], common), ratio=args.ratio,
                  min_ms=args.min_ms, base_name=args.base)
    (args.out / "report.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
