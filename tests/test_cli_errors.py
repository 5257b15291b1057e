"""The ``pcircuits`` command's error boundary: every mistake in a command's input ends in exactly
one line on stderr that names the problem (and the fix), exit status 2 and no traceback; output
paths are checked before any work starts."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pcircuits as pc
from pcircuits import cli, viz, workflow

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = ["--delta", "4", "--num-sums", "2", "--num-leaves", "2", "--epochs", "1", "--train-size", "60",
        "--batch-size", "30", "--quiet", "--no-progress"]


def run(capsys, *argv):
    """Run the command in this process; returns (status, stdout, stderr)."""
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(result, *phrases):
    status, out, err = result
    assert "Traceback" not in out + err
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pcircuits ") and ": error: " in lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny Gaussian and Binomial models of the 8x8 digits (one epoch on 60 images)."""
    folder = tmp_path_factory.mktemp("models")
    assert cli.main(["train", *TINY, "--out", str(folder / "gaussian.pcz")]) == 0
    assert cli.main(["train", *TINY, "--leaf", "binomial", "--out", str(folder / "binomial.pcz")]) == 0
    return folder


def copy_model(models: Path, folder: Path, name: str = "model.pcz") -> Path:
    """A copy of the Gaussian model (and its record) in ``folder``."""
    shutil.copy(models / "gaussian.pcz", folder / name)
    shutil.copy(models / "gaussian.pcz.json", folder / (name + ".json"))
    return folder / name


def images_file(path: Path, *, shape=(8, 8), high=17, **extra) -> Path:
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, high, (6, *shape)), x_test=rng.integers(0, high, (4, *shape)))
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


# ---- the mistakes of a new user ---------------------------------------------------------------

def test_images_of_another_shape_than_the_model_are_one_line(models, tmp_path, capsys):
    data = images_file(tmp_path / "small.npz", shape=(4, 4))
    assert_one_line_error(run(capsys, "evaluate", models / "gaussian.pcz", "--data", data),
                          "8x8", "4x4", "--data digits8x8")


@pytest.mark.parametrize("failure, phrase", [(ImportError("No module named 'cupy'"), "pcircuits[gpu]"),
                                             (RuntimeError("cudaErrorNoDevice"), "needs a CUDA GPU")])
def test_cupy_backend_without_cupy_or_a_gpu_is_one_line(models, capsys, monkeypatch, failure, phrase):
    def backend(name, dtype):
        raise failure

    monkeypatch.setattr(pc.backend, "Backend", backend)
    assert_one_line_error(run(capsys, "evaluate", models / "gaussian.pcz", "--backend", "cupy"),
                          phrase, "--backend numpy")


def test_cupy_backend_on_this_machine_works_or_is_one_line(models, capsys):
    result = run(capsys, "evaluate", models / "gaussian.pcz", "--backend", "cupy", "--limit", "4", "--quiet")
    if pc.backend.cupy_available():
        assert result[0] == 0
    else:
        assert_one_line_error(result, "--backend cupy", "--backend numpy")


@pytest.mark.parametrize("command", ["draw", "sample", "inpaint"])
def test_an_unknown_picture_format_is_one_line(models, tmp_path, capsys, command):
    assert_one_line_error(run(capsys, command, models / "gaussian.pcz", "--out", tmp_path / "picture.jpg"),
                          "'.jpg'", ".png")
    assert not (tmp_path / "picture.jpg").exists()


@pytest.mark.parametrize("command, option", [("train", "--out"), ("train", "--checkpoint"), ("train", "--curve"),
                                             ("inpaint", "--out"), ("sample", "--out"), ("sample", "--save"),
                                             ("draw", "--out"), ("check", "--report"), ("evaluate", "--report")])
def test_a_missing_output_folder_is_one_line(models, tmp_path, capsys, command, option):
    names = {"--curve": "curve.png", "--save": "samples.npy", "--report": "report.json", "--checkpoint": "c.npz"}
    target = tmp_path / "missing" / names.get(option, "out.png" if command != "train" else "model.pcz")
    model = [] if command == "train" else [models / "gaussian.pcz"]
    assert_one_line_error(run(capsys, command, *model, option, target), "does not exist", "mkdir -p")


def test_test_images_outside_the_leaves_domain_are_one_line(models, tmp_path, capsys):
    data = images_file(tmp_path / "bytes.npz", high=256)
    assert_one_line_error(run(capsys, "evaluate", models / "binomial.pcz", "--data", data),
                          "do not fit the model", "outside the domain", "--data digits8x8")


def test_training_grey_levels_above_max_value_are_one_line(tmp_path, capsys):
    data = images_file(tmp_path / "levels.npz", high=256, max_value=np.array(16))
    assert_one_line_error(run(capsys, "train", *TINY, "--leaf", "binomial", "--data", data,
                              "--out", tmp_path / "m.pcz"), "grey levels 0..16", "max_value")


# ---- hostile or broken files ----------------------------------------------------------------------

@pytest.mark.parametrize("content, phrase", [(b"{not json", "not valid JSON"), (b"\xff\xfe{}", "not UTF-8"),
                                             (b"[1, 2]", "not an object"), (b'{"shape": "8x8"}', "'shape' must be")])
def test_a_broken_model_record_is_one_line(models, tmp_path, capsys, content, phrase):
    model = copy_model(models, tmp_path)
    cli.record_path(model).write_bytes(content)
    assert_one_line_error(run(capsys, "evaluate", model), "model record", phrase, "repair or delete it")


@pytest.mark.parametrize("x_test, phrase", [(np.array([[["a"] * 8] * 8] * 4), "strings"),
                                            (np.empty((4, 8, 8), dtype=object), "Python objects"),
                                            (np.ones((4, 8, 8), dtype=complex), "complex numbers")])
def test_a_data_file_of_non_numbers_is_one_line(models, tmp_path, capsys, x_test, phrase):
    data = tmp_path / "odd.npz"
    np.savez(data, x_train=np.zeros((4, 8, 8)), x_test=x_test)
    assert_one_line_error(run(capsys, "evaluate", models / "gaussian.pcz", "--data", data), "x_test", phrase)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"plain text"])
def test_a_data_file_that_is_not_an_npz_archive_is_one_line(models, tmp_path, capsys, content):
    data = tmp_path / "broken.npz"
    data.write_bytes(content)
    assert_one_line_error(run(capsys, "evaluate", models / "gaussian.pcz", "--data", data), "numpy.savez")


@pytest.mark.parametrize("command", [["evaluate"], ["sample", "--mask", "left"], ["inpaint"]])
def test_an_all_nan_image_is_one_line(models, tmp_path, capsys, command):
    x_test = np.random.default_rng(0).integers(0, 17, (4, 8, 8)).astype(float)
    x_test[2] = np.nan
    data = images_file(tmp_path / "holes.npz", x_test=x_test)
    out = [] if command == ["evaluate"] else ["--out", tmp_path / "picture.png"]
    assert_one_line_error(run(capsys, command[0], models / "gaussian.pcz", *command[1:], "--data", data, *out),
                          "test image 2", "no observed pixel")


@pytest.mark.parametrize("command", ["evaluate", "sample", "inpaint"])
def test_an_unnormalized_model_is_one_line(models, tmp_path, capsys, command):
    model = copy_model(models, tmp_path, "unnormalized.pcz")
    circuit = pc.Circuit.load(model)
    circuit.roots[0].weights[...] *= 3
    circuit.save(model)
    out = [] if command == "evaluate" else ["--out", tmp_path / "picture.png"]
    assert_one_line_error(run(capsys, command, model, *out), "not a valid circuit", "sums to 3",
                          f"pcircuits check {model}")


def test_a_corrupt_checkpoint_is_one_line_naming_restart(tmp_path, capsys):
    checkpoint = tmp_path / "run.npz"
    checkpoint.write_bytes(b"not a checkpoint")
    assert_one_line_error(run(capsys, "train", *TINY, "--checkpoint", checkpoint, "--out", tmp_path / "m.pcz"),
                          "checkpoint", "--restart")


# ---- output paths are checked before any work -------------------------------------------------------

@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_unwritable_report_path_fails_before_any_work(models, tmp_path, capsys, monkeypatch, where):
    opened = []
    monkeypatch.setattr(cli, "load_model", lambda path: opened.append(path))
    report = tmp_path / "file.txt" / "report.json" if where == "under a file" else tmp_path
    (tmp_path / "file.txt").write_text("")
    assert_one_line_error(run(capsys, "evaluate", models / "gaussian.pcz", "--report", report), "--report")
    assert opened == []


def test_an_unwritable_train_report_fails_before_training(tmp_path, capsys, monkeypatch):
    trained = []
    monkeypatch.setattr(pc.learning, "fit", lambda *a, **k: trained.append(1))
    (tmp_path / "file.txt").write_text("")
    assert_one_line_error(run(capsys, "train", *TINY, "--out", tmp_path / "m.pcz",
                              "--report", tmp_path / "file.txt" / "r.json"), "is a file, not a folder")
    assert trained == [] and not (tmp_path / "m.pcz").exists()


def test_samples_are_saved_only_as_npy(models, tmp_path, capsys):
    assert_one_line_error(run(capsys, "sample", models / "gaussian.pcz", "--save", tmp_path / "samples.txt"),
                          "--save", ".npy")


# ---- option combinations -------------------------------------------------------------------------

@pytest.mark.parametrize("options, phrase", [(["--em-mode", "full-batch", "--lr", "0.5"], "--em-mode online"),
                                             (["--lr", "2"], "(0, 1]"),
                                             (["--valid-size", "60"], "smaller --valid-size"),
                                             (["--leaf", "binomial", "--preprocess", "standardize"],
                                              "--preprocess none")])
def test_train_option_conflicts_are_one_line(tmp_path, capsys, options, phrase):
    assert_one_line_error(run(capsys, "train", *TINY, *options, "--out", tmp_path / "m.pcz"), phrase)


# ---- the boundary itself -------------------------------------------------------------------------

def test_memory_errors_are_one_line(models, capsys, monkeypatch):
    def too_big(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(cli, "evaluate_program", too_big)
    assert_one_line_error(run(capsys, "evaluate", models / "gaussian.pcz"), "out of memory", "--batch-size")


def test_interrupt_is_one_line_with_status_130(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pc.learning, "fit", interrupted)
    status, out, err = run(capsys, "train", *TINY, "--out", tmp_path / "m.pcz")
    assert status == 130 and err.splitlines() == ["pcircuits train: interrupted"]


def test_traceback_option_shows_the_python_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli.main(["--traceback", "check", str(tmp_path / "none.pcz")])


def test_invalid_circuit_errors_name_the_first_violation():
    x0, x1 = pc.InputNode(0, pc.Bernoulli([0.3])), pc.InputNode(1, pc.Bernoulli([0.6]))
    report = pc.Circuit(pc.SumNode([x0, x1], weights=np.array([[0.5, 0.5]]))).check()
    text = cli.describe_error(pc.InvalidCircuitError(report))
    assert "\n" not in text and "smoothness" in text and "pcircuits check" in text


def test_a_mistake_in_a_real_process_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pcircuits.cli", "sample", str(tmp_path / "none.pcz"),
                             "--out", str(tmp_path / "s.png")], capture_output=True, text=True, cwd=REPOSITORY,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [f"pcircuits sample: error: load: no such file: {tmp_path / 'none.pcz'}"]


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"pcircuits {pc.__version__}"


def test_record_fields_of_the_right_type_are_read_back(tmp_path):
    path = tmp_path / "m.pcz.json"
    path.write_text(json.dumps({"data": "digits8x8", "shape": [8, 8], "max_value": 16, "preprocess": "none",
                                "extra": {"anything": [1]}}))
    assert workflow.read_record(path)["extra"] == {"anything": [1]}


@pytest.mark.parametrize("command", [["evaluate"], ["inpaint", "--mask", "left"]])
def test_missing_true_pixels_under_the_mask_are_one_line_not_a_nan_score(models, tmp_path, capsys, command):
    x_test = np.random.default_rng(0).integers(0, 17, (4, 8, 8)).astype(float)
    x_test[1, 3, 0] = np.nan
    data = images_file(tmp_path / "holes.npz", x_test=x_test)
    out = [] if command == ["evaluate"] else ["--out", tmp_path / "picture.png"]
    assert_one_line_error(run(capsys, *command, models / "gaussian.pcz", "--data", data, *out),
                          "test image 1", "missing (NaN) pixels in the left part")


def test_missing_pixels_outside_the_masks_are_marginalized(models, tmp_path, capsys):
    x_test = np.random.default_rng(0).integers(0, 17, (4, 8, 8)).astype(float)
    x_test[1, 0, 7] = np.nan
    data = images_file(tmp_path / "holes.npz", x_test=x_test)
    report = tmp_path / "report.json"
    status, _, err = run(capsys, "evaluate", models / "gaussian.pcz", "--data", data, "--masks", "bottom",
                         "--report", report, "--quiet", "--no-progress")
    assert status == 0 and err == ""
    scores = json.loads(report.read_text())
    assert np.isfinite(scores["log_likelihood"]) and np.isfinite(scores["mse_bottom_posterior-mean"])


def test_warnings_are_one_line(models, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    status, _, err = run(capsys, "draw", models / "gaussian.pcz", "--out", tmp_path / "circuit.svg", "--quiet")
    assert status == 0 and (tmp_path / "circuit.dot").is_file()
    assert len(err.splitlines()) == 1 and err.startswith("pcircuits draw: warning: Graphviz's `dot` program")
