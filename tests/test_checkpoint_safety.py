"""Checkpoints are validated like model files, record what decides the run, and are written safely.

A damaged or foreign checkpoint raises one ``CheckpointError`` that names the problem, before
anything is restored; a checkpoint written with other settings or other data is refused unless
``force_resume=True``; concurrent writers never share a temporary file.
"""
import io
import threading
import zipfile

import numpy as np
import pytest
from checkpoint_files import read, write

import pcircuits as pc
from pcircuits.errors import CheckpointError
from pcircuits.learning import fit
from pcircuits.learning.checkpoint import read_checkpoint, write_checkpoint

FORMAT = dict(format_name="pcircuits-fit-checkpoint", version=4)


def data(seed=0, n=60):
    return np.random.default_rng(seed).normal(size=(n, 4))


def gaussian_circuit():
    return pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=0)


def train(path, x=None, epochs=1, **options):
    options = dict(dict(method="em", batch_size=20, progress=False, seed=0), **options)
    return fit(gaussian_circuit().compile(backend="numpy", dtype="float64"), data() if x is None else x,
               epochs=epochs, checkpoint=path, **options)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    train(path)
    return path


def std_name(arrays):
    return next(k for k in arrays if k.startswith("program/leaves/") and k.endswith("/std"))


def edit_array(name_of, change):
    def edit(arrays, meta):
        name = name_of(arrays)
        arrays[name] = change(arrays[name].copy())
    return edit


def weights(arrays):
    return "program/weights"


def with_value(index, value):
    def change(array):
        array.flat[index] = value
        return array
    return change


CORRUPTIONS = [
    ("NaN weight", edit_array(weights, with_value(0, np.nan)), "NaN or infinite"),
    ("negative weight", edit_array(weights, with_value(0, -0.5)), "negative values"),
    ("unnormalized weights", edit_array(weights, lambda w: w * 1.5), "not normalized"),
    ("NaN std", edit_array(std_name, with_value(0, np.nan)), "NaN or infinite"),
    ("negative std", edit_array(std_name, with_value(0, -1.0)), "parameter 'std' is invalid"),
    ("weights of another shape", edit_array(weights, lambda w: w[:-1]), "has shape"),
    ("string weights", edit_array(weights, lambda w: w.astype(str)), "not a number type|dtype <U"),
    ("missing weights", lambda a, m: a.pop("program/weights"), "'program/weights' is missing"),
    ("missing leaves", lambda a, m: a.pop(std_name(a)), "is missing"),
    ("missing step counter", lambda a, m: a.pop("learner/steps"), "'steps' is missing"),
    ("NaN learner state", lambda a, m: a.update({"learner/steps": np.array(np.nan)}), "NaN or infinite|finite"),
    ("no config", lambda a, m: m.pop("config"), "no 'config' object"),
    ("config not an object", lambda a, m: m.update(config=[1]), "no 'config' object"),
    ("no epoch", lambda a, m: m.pop("epoch"), "epoch must be a non-negative int"),
    ("text epoch", lambda a, m: m.update(epoch="1"), "epoch must be a non-negative int"),
    ("negative epoch", lambda a, m: m.update(epoch=-1), "epoch must be a non-negative int"),
    ("history of another length", lambda a, m: m["history"].update(epoch=[1, 2]), "history must hold"),
    ("history not an object", lambda a, m: m.update(history=3), "history must hold"),
    ("another format", lambda a, m: m.update(format="other"), "is not a version-4"),
    ("no structure record", lambda a, m: m["config"].pop("structure"), "was written with"),
    ("other tables", lambda a, m: m["config"]["structure"].update(tables=[]), "another circuit"),
]


@pytest.mark.parametrize("edit, message", [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupt_checkpoint_is_one_clear_error(checkpoint, edit, message):
    arrays, meta = read(checkpoint)
    edit(arrays, meta)
    write(checkpoint, arrays, meta)
    with pytest.raises(CheckpointError, match=message):
        train(checkpoint, epochs=2)


def test_a_refused_checkpoint_leaves_the_program_untouched(checkpoint):
    arrays, meta = read(checkpoint)
    arrays["program/weights"] = arrays["program/weights"] * 1.5
    write(checkpoint, arrays, meta)
    program = gaussian_circuit().compile(backend="numpy", dtype="float64")
    before = program.weights.copy()
    with pytest.raises(CheckpointError):
        fit(program, data(), method="em", epochs=2, batch_size=20, progress=False, checkpoint=checkpoint)
    assert np.array_equal(program.weights, before)


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "not a readable zip archive"),
    (None, "more than once"),
])
def test_unreadable_archives_are_one_clear_error(checkpoint, content, message):
    if content is None:
        with zipfile.ZipFile(checkpoint) as archive:
            weights = archive.read("program/weights.npy")
        with pytest.warns(UserWarning), zipfile.ZipFile(checkpoint, "a") as archive:
            archive.writestr("program/weights.npy", weights)
    else:
        checkpoint.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        train(checkpoint, epochs=2)


def test_pickled_arrays_are_refused(checkpoint):
    with zipfile.ZipFile(checkpoint, "a") as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        archive.writestr("learner/extra.npy", buffer.getvalue())
    with pytest.raises(CheckpointError, match="no objects, no pickle"):
        train(checkpoint, epochs=2)


def test_the_size_limit_applies_to_checkpoints(checkpoint):
    with pytest.raises(CheckpointError, match="more than max_bytes=1000"):
        read_checkpoint(checkpoint, max_bytes=1000, **FORMAT)


# ---- settings and data that decide the run ------------------------------------------------------
@pytest.mark.parametrize("setting", [
    {"eps": 0.5}, {"counts": "mean"}, {"leaf_eps": 0.5}, {"min_std": 0.05}, {"freeze_leaves": True},
    {"batch_size": 30}, {"seed": 4},
])
def test_resuming_with_another_setting_is_refused(checkpoint, setting):
    name = next(iter(setting))
    with pytest.raises(CheckpointError, match=f"written with .*{name}="):
        train(checkpoint, epochs=2, **setting)


def test_resuming_on_other_data_of_the_same_size_is_refused(checkpoint):
    with pytest.raises(CheckpointError, match="data fingerprint="):
        train(checkpoint, x=data(seed=1), epochs=2)


def test_force_resume_continues_with_a_warning(checkpoint):
    with pytest.warns(UserWarning, match=r"leaf_eps=0.01 \(this run: 0.5\)"):
        history = train(checkpoint, epochs=2, leaf_eps=0.5, force_resume=True)
    assert history["epoch"] == [1, 2]


def test_force_resume_still_refuses_another_circuit(checkpoint):
    other = pc.builders.poon_domingos(2, 2, delta=1, num_sums=3, num_leaves=2, seed=0).compile(dtype="float64")
    with pytest.raises(CheckpointError, match="another circuit"):
        fit(other, data(), method="em", epochs=2, batch_size=20, progress=False, checkpoint=checkpoint,
            force_resume=True)


def test_the_same_settings_and_data_resume(checkpoint):
    assert train(checkpoint, epochs=2)["epoch"] == [1, 2]


# ---- writing ----------------------------------------------------------------------------------
def test_concurrent_writers_of_one_checkpoint_do_not_collide(tmp_path):
    path = tmp_path / "c.npz"
    errors = []

    def writer(value):
        try:
            for _ in range(20):
                write_checkpoint(path, {"x": np.full(1000, value)}, {"format": "f", "version": 1})
        except Exception as err:  # noqa: BLE001 - any failure of a writer fails the test
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(v,)) for v in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    arrays, _ = read_checkpoint(path, format_name="f", version=1)
    assert len(set(arrays["x"].tolist())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
