"""benchmarks/completion.py runs the completion protocol end to end on a few real images of every
data set, resumes a stopped run, and averages runs the papers' way."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import pcircuits as pc

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks"
FILES = {"olivetti": "olivetti_pd.npz", "caltech": "caltech101_pd64.npz", "mnist": "mnist.npz",
         "fashion-mnist": "fashion_mnist.npz"}
SCORES = ("left_posterior-mean_mse", "left_mpe_mse", "bottom_posterior-mean_mse", "bottom_mpe_mse")
#: A tiny DCSPN on a few images: the protocol, not the model, is under test.
TINY = ["--model", "dcspn", "--num-sums", "2", "--epochs", "1", "--train-size", "6", "--test-size", "3",
        "--no-progress"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: One copy of the script for all tests, so its compiled programs are reused across them.
completion = _script("completion")


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("data", sorted(FILES))
def test_completion_scores_both_halves_both_methods_and_the_baseline_on_a_tiny_subset(shared_data, tmp_path,
                                                                                       monkeypatch, data):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data(FILES[data]).parent))
    extra = ["--categories", "dolphin"] if data == "caltech" else []
    completion.main(["--data", data, *TINY, *extra, "--out", str(tmp_path)])
    [record] = _records(tmp_path)
    assert (record["data"], record["train_images"], record["test_images"]) == (data, 6, 3)
    assert all(record[key] > 0 for key in SCORES)
    assert set(record["baseline_mean_image_mse"]) == {"left", "bottom"}
    tag = f"{data}_dcspn_seed0" + ("_dolphin" if data == "caltech" else "")
    assert (tmp_path / f"{tag}_left.png").stat().st_size > 0 and (tmp_path / f"{tag}_bottom.png").stat().st_size > 0


def test_caltech_trains_one_model_per_category_in_the_given_order_and_a_rerun_trains_only_the_missing_ones(
        shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("caltech101_pd64.npz").parent))
    argv = ["--data", "caltech", *TINY, "--categories", "helicopter", "dolphin", "--out", str(tmp_path)]
    completion.main(argv)
    first = _records(tmp_path)
    assert [r["category"] for r in first] == ["helicopter", "dolphin"]
    (tmp_path / "results.jsonl").write_text(json.dumps(first[0]) + "\n")
    completion.main(argv)
    second = _records(tmp_path)
    assert second[0] == first[0]
    assert sorted(r["category"] for r in second) == ["dolphin", "helicopter"]


def test_a_reused_program_given_new_leaf_means_equals_a_fresh_build(shared_data, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("mnist.npz").parent))
    z_train, z_test, _, _, shape = completion.load("mnist", None, 40, 5)
    first, second = pc.learning.quantile_means(z_train[:20], 4), pc.learning.quantile_means(z_train[20:], 4)
    args = completion.parse_args(["--data", "mnist", *TINY])
    monkeypatch.setattr(completion, "_PROGRAMS", {})
    _, fresh = completion.prepare(args, shape, second, seed=3)
    monkeypatch.setattr(completion, "_PROGRAMS", {})
    _, reused = completion.prepare(args, shape, first, seed=3)
    reused.set_weights(reused.weights * 0.5)
    assert completion.prepare(args, shape, second, seed=3)[1] is reused
    np.testing.assert_array_equal(pc.to_numpy(reused.log_likelihood(z_test)), pc.to_numpy(fresh.log_likelihood(z_test)))


def _record(seed: int, category: str | None, mse: float, data: str = "caltech") -> dict:
    return {"data": data, "model": "pd", "category": category, "seed": seed, "settings": {"epochs": 3},
            **{key: mse for key in SCORES}, "test_ll": -1.0, "wall_s": 1.0,
            "baseline_mean_image_mse": {"left": 9.0, "bottom": 9.0}}


def test_summary_of_caltech_averages_the_categories_of_a_seed_then_the_seeds():
    records = [_record(0, "a", 100.0), _record(0, "b", 300.0), _record(1, "a", 300.0), _record(1, "b", 500.0)]
    [summary] = completion.summarize(records, "caltech", "pd")
    assert summary["left_posterior-mean_mse"]["runs"] == [200.0, 400.0]
    assert summary["left_posterior-mean_mse"]["mean"] == 300.0
    assert summary["left_posterior-mean_mse"]["std"] == pytest.approx(141.4, abs=0.1)
    assert (summary["runs"], summary["categories"]) == (2, 2)


def test_summary_leaves_out_a_seed_whose_categories_are_unfinished():
    records = [_record(0, "a", 100.0), _record(0, "b", 300.0), _record(1, "a", 700.0)]
    [summary] = completion.summarize(records, "caltech", "pd")
    assert summary["seeds"] == [0] and summary["left_posterior-mean_mse"]["mean"] == 200.0


def test_summary_keeps_configurations_with_different_settings_apart():
    other = {**_record(1, None, 50.0, "mnist"), "settings": {"epochs": 1}}
    summaries = completion.summarize([_record(0, None, 100.0, "mnist"), other], "mnist", "pd")
    assert sorted(s["left_posterior-mean_mse"]["mean"] for s in summaries) == [50.0, 100.0]


def test_olivetti_script_runs_the_completion_protocol_on_olivetti(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PCIRCUITS_DATA", str(shared_data("olivetti_pd.npz").parent))
    olivetti = _script("olivetti")
    monkeypatch.setattr(olivetti, "_completion", lambda: completion)
    olivetti.main(["--structure", "dcspn", "--method", "adam", *TINY[2:], "--out", str(tmp_path)])
    [record] = _records(tmp_path)
    assert (record["data"], record["model"], record["settings"]["method"]) == ("olivetti", "dcspn", "adam")
