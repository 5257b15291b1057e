"""Benchmark scripts run end to end on small settings: the classification script on a few real images
(recording its settings), the stacked-network timing script on tiny batches."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
