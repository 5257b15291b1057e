"""The ``pcircuits`` command: every subcommand's help and defaults, progress bars, a train ->
evaluate/inpaint/sample/draw/check round trip on the shipped 8x8 digits, resuming from a checkpoint,
and the demo end to end (``--quick``), which ``train`` reproduces bit for bit.

Mistakes and the error boundary are tested in ``test_cli_errors.py``."""
from __future__ import annotations

import ast
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


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_states_every_default(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = "".join(capsys.readouterr().out.split())
    subparser = cli.build_parser()._subparsers._group_actions[0].choices[command]
    formatter = subparser._get_formatter()
    for action in subparser._actions:
        if action.option_strings and action.nargs != 0:
            rendered = formatter._expand_help(action)
            assert "default" in rendered and "".join(rendered.split()) in text, f"{action.option_strings}: {rendered}"


def test_top_level_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in SUBCOMMANDS)


def test_command_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "pcircuits.cli", "check", "--help"], capture_output=True,
                            text=True, cwd=REPOSITORY, timeout=60)
    assert result.returncode == 0 and "--report" in result.stdout


def test_a_command_s_help_imports_no_module_that_only_the_work_needs():
    work_only = ("{'scipy', 'numba', 'networkx', 'numpy.random', 'concurrent.futures', 'hashlib', "
                 "'importlib.resources', 'pcircuits.nn'}")
    code = ("import sys\nfrom pcircuits import cli\ntry:\n    cli.main(['check', '--help'])\nexcept SystemExit:\n"
            f"    print(sorted({work_only} & sys.modules.keys()), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPOSITORY, timeout=60)
    assert result.stderr.strip() == "[]"


def test_progress_bars_follow_the_terminal_unless_asked(tmp_path, monkeypatch):
    seen = []

    def fake_fit(program, x, **options):
        seen.append(options["progress"])
        return pc.learning.History({"epoch": [], "train_ll": []})

    monkeypatch.setattr(pc.learning, "fit", fake_fit)
    tiny = ["train", "--delta", "4", "--num-sums", "2", "--num-leaves", "2", "--train-size", "20", "--quiet",
            "--out", str(tmp_path / "m.pcz")]
    for terminal in (False, True):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal, raising=False)
        for flag in ([], ["--progress"], ["--no-progress"]):
            assert cli.main(tiny + flag) == 0
    assert seen == [False, True, False, True, True, False]


def test_readme_names_the_subcommands_with_progress_bars():
    sentence = next(line for paragraph in (REPOSITORY / "README.md").read_text().split("\n\n")
                    if "--no-progress" in paragraph for line in [" ".join(paragraph.split())])
    choices = cli.build_parser()._subparsers._group_actions[0].choices
    for command, subparser in choices.items():
        takes_it = any("--no-progress" in action.option_strings for action in subparser._actions)
        assert takes_it == (f"`{command}`" in sentence), command


def test_train_defaults_are_the_demo_settings():
    from pcircuits.demo import DEMO_SETTINGS

    args = cli.build_parser().parse_args(["train"])
    assert args.data == "digits8x8"
    settings = cli.train_settings(args, (8, 8), 1437)
    for key in ("delta", "num_sums", "num_leaves", "leaf_std", "method", "em_mode", "epochs", "batch_size"):
        assert settings[key] == DEMO_SETTINGS[key], key
    assert settings["lr"] == DEMO_SETTINGS["step_size"] and settings["valid_size"] == 143
    assert settings["learn_leaves"] is False and settings["train_size"] == 1437


def test_train_defaults_scale_the_resolution_to_larger_images():
    settings = cli.train_settings(cli.build_parser().parse_args(["train"]), (28, 28), 60000)
    assert settings["delta"] == 4 and settings["valid_size"] == 6000


def test_demo_and_workflow_never_import_the_command():
    for name in ("demo.py", "workflow.py"):
        tree = ast.parse((REPOSITORY / "pcircuits" / name).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "cli" not in imported and "pcircuits.cli" not in imported, name


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
                     "--quiet", *options]) == 0
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


def not_smooth_model(tmp_path):
    x0, x1 = pc.InputNode(0, pc.Bernoulli([0.3])), pc.InputNode(1, pc.Bernoulli([0.6]))
    not_smooth = pc.SumNode([x0, x1], weights=np.array([[0.5, 0.5]]))
    path = tmp_path / "bad.pcz"
    pc.Circuit(not_smooth).save(path)
    return path


def test_check_fails_an_invalid_model(tmp_path):
    assert cli.main(["check", str(not_smooth_model(tmp_path)), "--quiet"]) == 1


def test_draw_highlights_an_invalid_model(tmp_path):
    path = tmp_path / "circuit.dot"
    assert cli.main(["draw", str(not_smooth_model(tmp_path)), "--highlight", "--out", str(path), "--quiet"]) == 0
    assert "! smoothness" in path.read_text()


def test_a_missing_model_file_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "none.pcz")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---- resuming ------------------------------------------------------------------------------

def test_rerunning_a_training_command_says_that_it_resumes(tmp_path, capsys):
    command = ["train", "--delta", "4", "--num-sums", "2", "--num-leaves", "2", "--train-size", "40",
               "--batch-size", "20", "--no-progress", "--checkpoint", str(tmp_path / "run.npz"),
               "--out", str(tmp_path / "m.pcz")]
    assert cli.main(command + ["--epochs", "1"]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(command + ["--epochs", "2"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"pcircuits train: resuming from the checkpoint {tmp_path / 'run.npz'} (1 of 2 epochs done); "
        f"pass --restart to start over"]
    assert len(json.loads(cli.record_path(tmp_path / "m.pcz").read_text())["history"]["train_ll"]) == 2
    assert cli.main(command + ["--epochs", "1", "--restart"]) == 0
    assert capsys.readouterr().err == ""
    assert len(json.loads(cli.record_path(tmp_path / "m.pcz").read_text())["history"]["train_ll"]) == 1


# ---- the demo -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "nested" / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out), "--no-progress", "--quiet"]) == 0
    return out


def test_train_with_the_quick_settings_gives_the_quick_demos_model(quick_demo, tmp_path):
    from pcircuits.demo import QUICK_SETTINGS as quick

    assert cli.main(["train", "--delta", str(quick["delta"]), "--num-sums", str(quick["num_sums"]), "--num-leaves",
                     str(quick["num_leaves"]), "--epochs", str(quick["epochs"]), "--train-size",
                     str(quick["train_size"]), "--out", str(tmp_path / "m.pcz"), "--quiet"]) == 0
    ours, demos = (pc.Circuit.load(path).compile("numpy", "float64") for path in (tmp_path / "m.pcz",
                                                                                   quick_demo / "model.pcz"))
    np.testing.assert_array_equal(pc.to_numpy(ours.weights), pc.to_numpy(demos.weights))
    x = pc.datasets.standardize_images(pc.datasets.load_digits_8x8().x_test.reshape(-1, 64))[0]
    np.testing.assert_array_equal(ours.log_likelihood(x), demos.log_likelihood(x))


def test_quick_demo_writes_its_report_and_pictures(quick_demo):
    out = quick_demo
    report = json.loads((out / "report.json").read_text())
    assert report["circuit"]["valid"]
    for key in ("log_likelihood", "bits_per_dimension", "mse_left_posterior-mean", "mse_bottom_posterior-mean"):
        assert np.isfinite(report["metrics"][key])
    for name in ("completion_left", "completion_bottom", "samples", "learning_curve"):
        assert png_size(out / report["files"][name])[0] > 0
    assert (out / "report.md").read_text().startswith("# pcircuits demo")
    assert pc.Circuit.load(out / "model.pcz").check().ok
