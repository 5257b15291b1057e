"""DCGMM checkpoints are validated like ``fit``'s: one ``CheckpointError`` naming the problem.

A damaged or foreign checkpoint of ``Stack.fit`` is refused before anything is restored: its
record, every parameter (present, of its layer's shape, finite, precisions in their range) and
every annealing state are checked; a checkpoint of other settings or data is refused unless
``force_resume=True``, one of another stack always.
"""

import numpy as np
import pytest
from checkpoint_files import edited, read

from pcircuits.dcgmm import CGMM, Folding, Stack
from pcircuits.errors import CheckpointError


def stack(learning_rate=0.05):
    return Stack([Folding(4, 2), CGMM(4, learning_rate=learning_rate), Folding(3, 1), CGMM(4)], (8, 8),
                 dtype="float64")


def images(n=32, seed=0):
    rng = np.random.default_rng(seed)
    bars = np.zeros((n, 8, 8, 1))
    bars[np.arange(n), rng.integers(0, 8, n), :, 0] = 1.0
    return bars + 0.05 * rng.normal(size=bars.shape)


def train(path, x=None, model=None, **options):
    """Two epochs of a small stack on ``x`` (the toy images), checkpointed at ``path``."""
    model = stack() if model is None else model
    return model.fit(images() if x is None else x, epochs=2, batch_size=16, progress=False, checkpoint=path,
                     **options)


@pytest.fixture
def checkpoint(tmp_path):
    """The checkpoint of a run stopped after its first epoch."""
    path = tmp_path / "run.npz"
    train(path, callback=lambda epoch, history: epoch == 1)
    return path


def resume_raises(path, match, **options):
    with pytest.raises(CheckpointError, match=match) as caught:
        train(path, **options)
    assert str(path) in str(caught.value)


def set_array(name, value):
    def edit(arrays, meta):
        arrays[name] = value(arrays[name])
    return edit


# ---- the record ------------------------------------------------------------------------------------
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    path.write_bytes(b"not a zip")
    resume_raises(path, "cannot be read .not a readable zip archive")


@pytest.mark.parametrize("edit, match", [
    (lambda a, m: m.pop("config"), "no 'config' object"),
    (lambda a, m: m.update(epoch=-1), "epoch must be a non-negative int"),
    (lambda a, m: m.update(epoch="1"), "epoch must be a non-negative int"),
    (lambda a, m: m["history"].update(epoch=[1, 2]), "one list of 1 entries"),
    (lambda a, m: m.update(epoch=5, history={}), "5 epochs finished, more than the run's 2"),
    (lambda a, m: m.update(epoch=0, history={}), None),
])
def test_a_damaged_record_is_refused(checkpoint, edit, match):
    if match is None:       # a record that is consistent: the run restarts from epoch 0
        assert train(edited(checkpoint, edit))["epoch"] == [1, 2]
    else:
        resume_raises(edited(checkpoint, edit), match)


# ---- the parameters --------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, match", [
    (lambda a, m: a.pop("L2/means"), "'L2/means' is missing"),
    (set_array("L2/means", lambda v: v[..., :1]), "'L2/means' has shape"),
    (set_array("L4/logits", lambda v: v.astype("U8")), "'L4/logits' has dtype <U8"),
    (set_array("L2/means", lambda v: np.where(np.arange(v.size).reshape(v.shape) == 3, np.nan, v)),
     "'L2/means' holds NaN or infinite"),
    (set_array("L4/logits", lambda v: v + np.inf), "'L4/logits' holds NaN or infinite"),
])
def test_a_missing_misshapen_or_non_finite_parameter_is_refused(checkpoint, edit, match):
    resume_raises(edited(checkpoint, edit), match)


@pytest.mark.parametrize("value", [-1.0, 0.0, 1e6])
def test_precisions_outside_their_range_are_refused(checkpoint, value):
    resume_raises(edited(checkpoint, set_array("L2/precisions", lambda v: np.full_like(v, value))),
                  "'L2/precisions' holds precisions outside")


@pytest.mark.parametrize("edit, match", [
    (lambda a, m: m.pop("annealing"), "no annealing state for layer L2"),
    (lambda a, m: m["annealing"].pop("L4"), "no annealing state for layer L4"),
    (lambda a, m: m["annealing"]["L2"].update(sigma=None), "annealing sigma of layer L2 must be a finite number"),
    (lambda a, m: m["annealing"]["L2"].update(sigma=1e-9), "below its minimum"),
    (lambda a, m: m["annealing"]["L4"].update(running="x"), "annealing running of layer L4"),
    (lambda a, m: m["annealing"]["L4"].update(iteration=-3), "annealing iteration of layer L4"),
])
def test_a_damaged_annealing_state_is_refused(checkpoint, edit, match):
    resume_raises(edited(checkpoint, edit), match)


def test_nothing_is_restored_from_a_damaged_checkpoint(checkpoint):
    edited(checkpoint, lambda a, m: m["annealing"].pop("L4"))
    model = stack()
    before = {k: v.copy() for k, v in model.state_arrays().items()}
    with pytest.raises(CheckpointError):
        train(checkpoint, model=model)
    for key, value in model.state_arrays().items():
        np.testing.assert_array_equal(value, before[key])
    assert model.cgmm_layers[0].annealing.iteration == 0


# ---- the run it belongs to ---------------------------------------------------------------------------
@pytest.mark.parametrize("options, named", [
    (dict(seed=4), "seed=0 .this run: 4."),
    (dict(delay=0.2), "delay=0.1 .this run: 0.2."),
    (dict(model=stack(learning_rate=0.01)), "layers="),
    (dict(x=images(seed=1)), "data fingerprint="),
])
def test_another_runs_checkpoint_is_refused_naming_the_difference(checkpoint, options, named):
    resume_raises(checkpoint, f"{named}.*force_resume=True", **options)


@pytest.mark.parametrize("options", [dict(seed=4), dict(x=images(seed=1))])
def test_force_resume_continues_another_runs_checkpoint_with_a_warning(checkpoint, options):
    with pytest.warns(UserWarning, match="although it was written with"):
        history = train(checkpoint, force_resume=True, **options)
    assert history["epoch"] == [1, 2]


def test_another_stack_is_refused_even_with_force_resume(checkpoint):
    other = Stack([Folding(4, 2), CGMM(9), Folding(3, 1), CGMM(4)], (8, 8), dtype="float64")
    with pytest.raises(CheckpointError, match="notation=.*another stack or dtype"):
        train(checkpoint, model=other, force_resume=True)


def test_an_intact_checkpoint_of_the_same_run_resumes(checkpoint):
    assert train(checkpoint)["epoch"] == [1, 2]
