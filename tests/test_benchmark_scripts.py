"""Benchmark scripts run end to end on small settings: the classification script on a few real images
(recording its settings), the stacked-network timing script on tiny batches."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pcircuits.backend import cupy_available

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flags, frozen, spared", [([], ["gaussian.std"], False),
                                                   (["--freeze-leaves", "--spare-top-products"], [], True)])
def test_mnist_classify_trains_scores_and_records_a_short_run(shared_data, tmp_path, monkeypatch, flags, frozen,
                                                              spared):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("mnist.npz").parent))
    _script("mnist_classify").main(["--train-size", "64", "--test-size", "32", "--epochs", "1", "--no-progress",
                                    "--out", str(tmp_path), *flags])
    record = json.loads((tmp_path / "mnist.json").read_text())
    assert record["freeze_leaves"] == frozen and record["spare_top_products"] is spared
    assert (record["train_images"], record["test_images"], record["epochs"]) == (64, 32, 1)
    assert len(record["test_acc_per_epoch"]) == 1 and 0 <= record["test_accuracy"] <= 1
    assert len((tmp_path / "mnist_epochs.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "mnist_curve.png").stat().st_size > 0


def test_nn_stacked_benchmark_reports_the_pass_against_its_matmul_floor(capsys):
    records = _script("nn_stacked").main(["--batch", "4", "--reps", "1"])
    assert [r["case"] for r in records] == ["vae_leaf", "vae_baseline"]
    for record in records:
        assert record["step_ms"] > 0 and record["matmul_floor_ms"] > 0
        assert record["ratio_of_medians"] == pytest.approx(record["step_ms"] / record["matmul_floor_ms"], rel=0.01)
        assert record["ratio"] > 0 and record["ratio_of_minima"] > 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_gpu_anchor_benchmark_times_every_workload_on_the_strict_device(tmp_path):
    out = tmp_path / "anchor.jsonl"
    _script("gpu_anchor").main(["--backend", "strict", "--batch", "4", "--size", "4", "--reps", "1",
                                "--which", "pd32", "rat", "hclt", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["structure"] for r in records] == ["pd32", "rat", "hclt"]
    for record in records:
        assert "error" not in record, record
        assert record["fwd_ms"] > 0 and record["fwd_bwd_ms"] > 0 and record["em_step_ms"] > 0
        assert record["mean_ll"] < 0


@pytest.mark.skipif(cupy_available(), reason="this machine has a GPU: scripts/gpu-check would run in full")
def test_gpu_check_without_a_gpu_says_what_is_missing_and_exits_2(tmp_path):
    import subprocess
    import sys
    script = SCRIPTS.parent / "scripts" / "gpu-check"
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OUT": str(tmp_path)})
    assert result.returncode == 2
    assert "gpu-check: CuPy or a CUDA GPU is missing" in result.stderr


def test_query_memory_benchmark_reports_peaks_and_chunked_equality():
    records = _script("query_memory").main(["--rows", "3000", "--compare", "600"])
    peaks, comparison = records[:5], records[5]
    assert [r["query"] for r in peaks] == ["log_likelihood", "inpaint", "sample", "leaf_posteriors", "fit"]
    assert all(r["peak_mb"] >= r["peak_mb_after_data"] > 0 for r in peaks)
    assert all(comparison[f"{query}_equal"] for query in ("log_likelihood", "inpaint", "leaf_posteriors", "mpe"))
    assert comparison["log_likelihood_64_rows_max_relative_difference"] < 1e-6
    assert comparison["inpaint_64_rows_max_relative_difference"] < 1e-6
    assert comparison["samples_of_a_seed_independent_of_count"]
    assert comparison["samples_of_a_seed_independent_of_chunks"]


def test_diff_sampling_synthetic_trains_every_objective_and_draws_the_grid(tmp_path):
    records = _script("diff_sampling").main(["synthetic", "--sets", "2-clusters", "9-clusters", "--epochs", "2",
                                             "--train", "200", "--test", "100", "--out", str(tmp_path)])
    assert [(r["set"], r["objective"]) for r in records] == [(s, o) for s in ("2-clusters", "9-clusters")
                                                             for o in ("LL", "ADV", "MMD")]
    for record in records:
        assert np.isfinite(record["test_ll"]) and np.isfinite(record["test_mmd"])
    assert len((tmp_path / "synthetic.jsonl").read_text().splitlines()) == 6
    assert (tmp_path / "synthetic.png").stat().st_size > 0


def test_diff_sampling_mnist_reports_the_pae_reconstruction_error(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("mnist.npz").parent))
    records = _script("diff_sampling").main(["mnist", "--train-size", "40", "--test-size", "10", "--epochs", "1",
                                             "--batch-size", "20", "--depth", "2", "--reps", "1", "--sums", "2",
                                             "--leaves", "2", "--latent", "2", "--out", str(tmp_path)])
    assert [r["objective"] for r in records] == ["LL", "MMD", "PAE"]
    assert records[2]["bce_sampled"] > 0 and records[2]["bce_conditional_mean"] > 0
    for name in ("ll", "mmd", "pae"):
        assert (tmp_path / f"mnist_{name}_samples.png").stat().st_size > 0
    assert (tmp_path / "mnist_pae_reconstructions.png").stat().st_size > 0


def test_diff_sampling_speed_times_the_relaxed_pass_against_the_exact_sampler():
    record = _script("diff_sampling").main(["speed", "--batch", "2", "--reps", "1", "--pd-sums", "2",
                                            "--pd-leaves", "2"])
    assert record["exact_sample_ms"] > 0 and record["relaxed_fwd_bwd_ms"] > 0 and record["ratio"] > 0


def test_scaling_benchmark_trains_over_a_npy_file_and_reports_peak_worker_memory(tmp_path):
    pytest.importorskip("dask.distributed")
    record = _script("scaling").main(["--out", str(tmp_path), "out-of-core", "--gigabytes", "0.002", "--variables", "8",
                                      "--workers", "1", "--memory-limit", "2GB", "--batch-size", "512"])
    assert record["rows"] == int(0.002 * 2 ** 30 / 64) and len(record["peak_worker_bytes"]) == 1
    assert 0 < record["peak_worker_bytes"][0] < record["memory_limit_bytes"] and record["peak_under_limit"]
    assert np.isfinite(record["train_ll"]) and np.isfinite(record["ll"])
    assert (tmp_path / "scaling_out_of_core.json").is_file()


def _description_log_likelihood(description, x):
    """Log-likelihood of a scalar-SPN description, node by node in float64 (the reference)."""
    from scipy.special import logsumexp
    from scipy.stats import norm
    values = []
    for node in description["nodes"]:
        if node["kind"] == "gaussian":
            values.append(norm.logpdf(x[:, node["variable"]], node["mean"], node["std"]))
        elif node["kind"] == "bernoulli":
            values.append(np.log(np.where(x[:, node["variable"]] == 1, node["p"], 1 - node["p"])))
        elif node["kind"] == "product":
            values.append(sum(values[c] for c in node["children"]))
        else:
            children = np.stack([values[c] for c in node["children"]])
            values.append(logsumexp(children + np.log(node["weights"])[:, None], axis=0))
    return values[description["root"]]


def test_scalar_spn_structure_has_about_the_requested_nodes_and_irregular_fan_in():
    module = _script("scalar_spn")
    description = module.random_structure(16, 2000, seed=3)
    fan_in = {len(n["children"]) for n in description["nodes"] if n["kind"] in ("sum", "product")}
    assert abs(len(description["nodes"]) - 2000) < 200 and len(fan_in) >= 4
    assert description["root"] == len(description["nodes"]) - 1


def test_scalar_spn_pcircuits_model_computes_the_description_log_likelihood():
    module = _script("scalar_spn")
    description = module.random_structure(12, 300, seed=4)
    x = module.random_data(12, 20, seed=5)
    program = module.to_pcircuits(description).compile(dtype="float64")
    np.testing.assert_allclose(program.log_likelihood(x), _description_log_likelihood(description, x), rtol=1e-12)


def test_scalar_spn_benchmark_times_pcircuits_and_skips_spflow_without_its_interpreter(capsys):
    record = _script("scalar_spn").main(["--nodes", "300", "--variables", "12", "--batch", "16", "--reps", "1"])
    timings = record["pcircuits"]
    assert 0 < timings["exp_log_floor_ms"] and 0 < timings["inner_forward_ms"] and 0 < timings["forward_ms"] and 0 < timings["forward_backward_ms"]
    assert "spflow" not in record and "spflow: skipped" in capsys.readouterr().err


def test_program_cpu_torch_worker_checks_agreement_and_times_the_reference(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    module = _script("program_cpu")
    args = argparse.Namespace(reps=1, batch=4, threads=1)
    record = module.compare_worker("torch", "digits", args)
    assert record["ll_max_abs_error"] <= 1e-4 and record["grad_max_rel_error"] <= 1e-5
    assert record["forward_ms_batch1"] > 0 and record["forward_ms_batch16"] > 0


@pytest.mark.parametrize("num_variables, depth", [(30, 3), (13, 2)])
def test_torch_rat_spn_agrees_with_the_program_in_float64(monkeypatch, num_variables, depth):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import pcircuits as pc
    circuit = pc.builders.rat_spn(num_variables, depth=depth, num_repetitions=3, num_sums=4, num_leaves=5, seed=1)
    errors = _script("program_cpu").check_torch_agreement(circuit, "rat")
    assert errors["ll_max_abs_error"] <= 1e-10 and errors["grad_max_rel_error"] <= 1e-10


def test_torch_rat_spn_refuses_a_circuit_that_is_not_a_rat_spn(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import pcircuits as pc
    program = pc.builders.poon_domingos(4, 4, delta=2, num_sums=2, num_leaves=2, dense=True, seed=0).compile()
    with pytest.raises(ValueError, match="TorchRatSpn"):
        _script("torch_rat").TorchRatSpn(program, torch.float64)


def test_program_cpu_pcircuits_worker_times_the_same_case():
    record = _script("program_cpu").compare_worker("pcircuits", "digits", argparse.Namespace(reps=1, batch=4, threads=1))
    assert record["library"] == "pcircuits" and record["forward_ms_batch1"] > 0 and record["forward_ms_batch16"] > 0


def test_program_cpu_floor_counts_the_leaf_layer():
    module = _script("program_cpu")
    import pcircuits as pc
    program = pc.builders.rat_spn(16, depth=2, num_repetitions=2, num_sums=2, num_leaves=3, seed=0).compile()
    leaf_values = sum(layer.variables_np.size + layer.stop - layer.start for layer in program.input_layers)
    assert module.leaf_floor_ms(program, 10, 4e9) == pytest.approx(leaf_values * 10 * 4 / 4e9 * 1e3)


def test_per_test_times_records_each_tests_cpu_and_its_full_collections(tmp_path):
    times = _script("per_test_times")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_example.py").write_text(
        "import gc, time\n\n"
        "def test_busy():\n    end = time.process_time() + 0.05\n    while time.process_time() < end:\n        pass\n\n"
        "def test_collects():\n    gc.collect()\n\n"
        "def test_not_run():\n    pass\n")
    tests = ["tests/test_example.py::test_busy", "tests/test_example.py::test_collects"]
    figures = times.run_file(tmp_path, tests, tmp_path / "times.json")
    assert set(figures) == set(tests)
    assert figures[tests[0]]["cpu"] >= 0.05 and figures[tests[0]]["full_gc"] == 0
    assert 0 < figures[tests[1]]["full_gc"] <= figures[tests[1]]["cpu"]


def test_per_test_times_lists_the_tests_slower_than_the_ratio():
    times = _script("per_test_times")
    base = times.minima([{"a": {"cpu": 0.100, "full_gc": 0.0}, "b": {"cpu": 0.050, "full_gc": 0.0}},
                         {"a": {"cpu": 0.090, "full_gc": 0.0}}], {"a", "b"})
    head = times.minima([{"a": {"cpu": 0.130, "full_gc": 0.040}, "b": {"cpu": 0.060, "full_gc": 0.0}}], {"a", "b"})
    assert base == {"a": (0.090, 0.090), "b": (0.050, 0.050)}
    text = times.report(base, head, ratio=1.10, min_ms=20, base_name="v0")
    cpu, less_gc = text.split("## CPU less full garbage collections")
    assert "| a | 90.0 | 130.0 | 1.44 |" in cpu and "| b | 50.0 | 60.0 | 1.20 |" in cpu
    assert "| a |" not in less_gc and "| b | 50.0 | 60.0 | 1.20 |" in less_gc
