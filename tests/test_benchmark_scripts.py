"""The classification benchmark script runs end to end on a few real images and records its settings."""
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
