"""The ``pcircuits`` command: every subcommand's help, a train -> evaluate/inpaint/sample/draw/check
round trip on the embedded digits, and the demo end to end (``--quick``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pcircuits as pc
from pcircuits import cli

from test_tasks import png_size

SUBCOMMANDS = ["train", "evaluate", "inpaint", "sample", "draw", "check", "demo"]
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    for action in subparser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"
            assert action.option_strings[-1] in text


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in SUBCOMMANDS)


def test_command_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "pcircuits.cli", "check", "--help"], capture_output=True,
                            text=True, cwd=REPOSITORY, timeout=60)
    assert result.returncode == 0 and "--report" in result.stdout


@pytest.mark.parametrize("text, expected", [("4", 4), ("7x4", [[7, 4]]), ("8,4", [8, 4]), ("7x7,1", [[7, 7], 1])])
def test_delta_option_reads_resolutions_and_levels(text, expected):
    assert cli.parse_delta(text) == expected


def test_unknown_data_set_is_a_clean_error(tmp_path, capsys):
    status = cli.main(["train", "--data", "cifar", "--out", str(tmp_path / "m.pcz"), "--quiet"])
    assert status == 2
    assert "--data must be one of" in capsys.readouterr().err


def test_em_step_size_out_of_range_is_a_clean_error(tmp_path, capsys):
    status = cli.main(["train", "--lr", "2", "--out", str(tmp_path / "m.pcz"), "--quiet", "--no-progress"])
    assert status == 2
    assert "step size" in capsys.readouterr().err


def test_train_passes_the_em_count_unit_to_fit(tmp_path, monkeypatch):
    seen = {}

    def fake_fit(program, x, **options):
        seen.update(options)
        return pc.learning.History({"epoch": [], "train_ll": []})

    monkeypatch.setattr(pc.learning, "fit", fake_fit)
    cli.main(["train", "--data", "digits8x8", "--structure", "pd", "--delta", "4", "--num-sums", "2", "--num-leaves",
              "2", "--method", "usi", "--em-counts", "mean", "--epochs", "1", "--train-size", "20",
              "--out", str(tmp_path / "m.pcz"), "--quiet", "--no-progress"])
    assert seen["method"] == "usi" and seen["counts"] == "mean"


def test_npz_data_files_are_read(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (5, 4, 4), dtype=np.uint8),
             x_test=rng.integers(0, 256, (3, 4, 4), dtype=np.uint8))
    data = cli.load_data(str(path))
    assert data.shape == (4, 4) and len(data.x_test) == 3 and data.max_value == 255


# ---- a trained model and the subcommands that read it --------------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A PD model trained for one epoch on 200 digits (fast settings), with its train report."""
    folder = tmp_path_factory.mktemp("model")
    path = folder / "model.pcz"
    status = cli.main(["train", "--data", "digits8x8", "--structure", "pd", "--delta", "4", "--num-sums", "2",
                       "--num-leaves", "2", "--epochs", "1", "--train-size", "200", "--valid-size", "20",
                       "--batch-size", "50", "--out", str(path), "--report", str(folder / "train.json"),
                       "--curve", str(folder / "curve.png"), "--no-progress", "--quiet"])
    assert status == 0
    return path


def test_train_writes_a_loadable_model_and_its_record(model):
    circuit = pc.Circuit.load(model)
    assert circuit.num_variables == 64 and circuit.check().ok
    record = json.loads(cli.record_path(model).read_text())
    assert record["data"] == "digits8x8" and record["preprocess"] == "standardize" and record["shape"] == [8, 8]


def test_train_report_holds_the_history(model):
    report = json.loads((model.parent / "train.json").read_text())
    assert report["command"] == "train" and len(report["history"]["train_ll"]) == 1


def test_train_draws_the_learning_curve(model):
    assert png_size(model.parent / "curve.png")[0] > 0


def test_evaluate_reports_likelihood_bpd_and_completion_mse(model, tmp_path):
    report_path = tmp_path / "evaluate.json"
    assert cli.main(["evaluate", str(model), "--limit", "30", "--method", "both", "--report", str(report_path),
                     "--no-progress", "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    assert report["num_images"] == 30 and np.isfinite(report["log_likelihood"])
    assert report["bits_per_dimension"] > 0
    for key in ("mse_left_posterior-mean", "mse_bottom_posterior-mean", "mse_left_mpe", "mse_bottom_mpe"):
        assert 0 < report[key] < 255.0 ** 2


def test_inpaint_draws_a_completion_grid(model, tmp_path):
    picture = tmp_path / "completions.png"
    assert cli.main(["inpaint", str(model), "--mask", "bottom", "--num-images", "6", "--out", str(picture),
                     "--report", str(tmp_path / "r.json"), "--no-progress", "--quiet"]) == 0
    assert png_size(picture)[0] > 0
    assert json.loads((tmp_path / "r.json").read_text())["mse_bottom_posterior-mean"] > 0


@pytest.mark.parametrize("mask", [None, "left"])
def test_sample_draws_samples(model, tmp_path, mask):
    picture, array = tmp_path / "samples.png", tmp_path / "samples.npy"
    options = [] if mask is None else ["--mask", mask]
    assert cli.main(["sample", str(model), "--num", "6", "--out", str(picture), "--save", str(array),
                     "--no-progress", "--quiet", *options]) == 0
    assert png_size(picture)[0] > 0
    assert np.load(array).shape == (6, 8, 8)


def test_draw_writes_a_picture(model, tmp_path):
    path = tmp_path / "circuit.dot"
    assert cli.main(["draw", str(model), "--out", str(path), "--quiet"]) == 0
    assert path.read_text().startswith("digraph")


def test_check_passes_a_valid_model(model, tmp_path, capsys):
    assert cli.main(["check", str(model), "--report", str(tmp_path / "check.json")]) == 0
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["ok"] and report["num_variables"] == 64 and report["violations"] == []


def test_check_fails_an_invalid_model(tmp_path):
    x0, x1 = pc.InputNode(0, pc.Bernoulli([0.3])), pc.InputNode(1, pc.Bernoulli([0.6]))
    not_smooth = pc.SumNode([x0, x1], weights=np.array([[0.5, 0.5]]))
    path = tmp_path / "bad.pcz"
    pc.Circuit(not_smooth).save(path)
    assert cli.main(["check", str(path), "--quiet"]) == 1


def test_a_missing_model_file_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "none.pcz")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---- the demo -------------------------------------------------------------------------------

def test_quick_demo_writes_its_report_and_pictures(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out), "--no-progress", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["circuit"]["valid"]
    for key in ("log_likelihood", "bits_per_dimension", "mse_left_posterior-mean", "mse_bottom_posterior-mean"):
        assert np.isfinite(report["metrics"][key])
    for name in ("completion_left", "completion_bottom", "samples", "learning_curve"):
        assert png_size(out / report["files"][name])[0] > 0
    assert (out / "report.md").read_text().startswith("# pcircuits demo")
    assert pc.Circuit.load(out / "model.pcz").check().ok
