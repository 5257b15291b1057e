"""benchmarks/dcgmm.py runs end to end on a few real images and records what it promises."""
import importlib.util
import json
from pathlib import Path

from pcircuits import jit

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dcgmm.py"


def script():
    spec = importlib.util.spec_from_file_location("dcgmm_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auc_is_the_probability_that_an_inlier_outscores_an_outlier():
    auc = script().auc
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0], [2.0]) == 0.0
    assert auc([1.0, 3.0], [2.0, 2.0]) == 0.5


def test_outlier_run_reports_an_auc_per_cgmm_layer(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("mnist.npz").parent))
    record = script().main(["outliers", "--instance", "A", "--train-size", "200", "--test-size", "100",
                            "--no-progress", "--out", str(tmp_path)])
    assert record["top_layer"] == "L2" and 0 <= record["top_layer_auc_exact"] <= 100
    assert set(record["auc_percent"]["exact"]) == {"L2"}
    assert json.loads((tmp_path / "outliers_mnist_A.json").read_text())["train_images"] == record["train_images"]


def test_sample_run_writes_its_grids(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("mnist.npz").parent))
    record = script().main(["samples", "--instance", "B", "--train-size", "100", "--test-size", "20",
                            "--num-samples", "4", "--sharpen-iterations", "2", "--no-progress", "--out", str(tmp_path)])
    names = {Path(path).name for path in record["files"]}
    assert {"mnist_B_samples.png", "mnist_B_samples_sharpened.png", "mnist_B_inpainting.png",
            "mnist_B_centroids.png"} <= names
    assert all(Path(path).stat().st_size > 0 for path in record["files"])


def test_timing_run_compares_the_forward_pass_with_its_matmuls(tmp_path):
    record = script().main(["timing", "--batch-size", "4", "--reps", "1", "--out", str(tmp_path)])
    for case in record["forward"].values():
        assert case["ratio_of_minima"] > 0 and case["bare_matmuls_min_ms"] > 0 and case["ratio_of_cpu_minima"] > 0
        assert case["ratio_of_medians"] == case["cgmm_forward_median_ms"] / case["bare_matmuls_median_ms"]
    steps = record["forward"]["E L2: 26x26 positions, d=9, K=25"]["steps_cpu_min_ms"]
    compiled = {"compiled_softmax"} if jit.available() else set()
    assert set(steps) == {"tables", "shifted_scores", "exp", "row_sums", "scale"} | compiled and min(steps.values()) >= 0


def test_circuit_run_reports_an_auc_per_structure_against_the_paper(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("mnist.npz").parent))
    record = script().main(["circuits", "--structures", "pd", "rat", "--train-size", "200", "--test-size", "100",
                            "--depth", "2", "--repetitions", "2", "--num-sums", "2", "--num-leaves", "2",
                            "--no-progress", "--out", str(tmp_path)])
    assert set(record["circuits"]) == {"pd", "rat"}
    assert all(0 <= r["auc_percent"] <= 100 for r in record["circuits"].values())
    assert record["circuits"]["rat"]["paper_auc"] == 91.8
    assert (tmp_path / "circuits_mnist_pd-rat.json").exists()
