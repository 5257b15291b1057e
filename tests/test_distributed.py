"""Evaluation and training on a Dask LocalCluster (processes, one thread each) equal the single-process ones."""
import os
import signal

import numpy as np
import pytest

import pcircuits as pc

distributed = pytest.importorskip("dask.distributed")
from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402  (after the import check)

RELATIVE = 1e-10


@pytest.fixture(scope="module")
def clients():
    """``clients(n)``: a client of a LocalCluster with ``n`` worker processes, made once per module."""
    made, stack = {}, []

    def get(n: int):
        if n not in made:
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=":0")
            made[n] = distributed.Client(cluster)
            stack.append((cluster, made[n]))
        return made[n]

    yield get
    for cluster, client in stack:
        client.close()
        cluster.close()


def _program(seed: int = 0, num_classes: int = 1):
    circuit = pc.builders.rat_spn(6, depth=2, num_repetitions=2, num_sums=3, num_leaves=2,
                                  num_classes=num_classes, seed=seed)
    return circuit.compile(dtype="float64")


def _data(n: int = 103, seed: int = 0):
    return np.random.default_rng(seed).normal(size=(n, 6))


def _assert_same_parameters(got, expected):
    np.testing.assert_allclose(got.weights, expected.weights, rtol=RELATIVE, atol=0)
    assert got.leaf_tables.keys() == expected.leaf_tables.keys()
    for key, table in expected.leaf_tables.items():
        for name, value in table.items():
            np.testing.assert_allclose(got.leaf_tables[key][name], value, rtol=RELATIVE, atol=0, err_msg=name)


# ---- evaluation ---------------------------------------------------------------------------
def test_evaluate_on_two_workers_with_uneven_partitions_equals_one_process(clients):
    program = _program()
    data = _data(101)
    expected = pc.learning.evaluate(program, data, batch_size=16)
    got = pc.learning.evaluate(program, data, batch_size=16, client=clients(2))
    assert got["ll"] == pytest.approx(expected["ll"], rel=RELATIVE)


def test_cross_entropy_and_accuracy_on_two_workers_equal_one_process(clients):
    program = _program(seed=1, num_classes=3)
    rng = np.random.default_rng(1)
    data, labels = rng.normal(size=(57, 6)), rng.integers(0, 3, size=57)
    expected = pc.learning.evaluate(program, data, labels, objective="cross-entropy", batch_size=10)
    got = pc.learning.evaluate(program, data, labels, objective="cross-entropy", batch_size=10, client=clients(2))
    assert got["loss"] == pytest.approx(expected["loss"], rel=RELATIVE)
    assert got["acc"] == expected["acc"]


def test_evaluate_reads_a_npy_file_on_the_workers(clients, tmp_path):
    program, data = _program(), _data(77)
    np.save(tmp_path / "data.npy", data)
    expected = pc.learning.evaluate(program, data, batch_size=16)
    got = pc.learning.evaluate(program, str(tmp_path / "data.npy"), batch_size=16, client=clients(2))
    assert got["ll"] == pytest.approx(expected["ll"], rel=RELATIVE)


def test_log_likelihood_on_two_workers_equals_one_process_row_by_row(clients):
    program, data = _program(), _data(101)
    data[::7, 2] = np.nan
    expected = program.log_likelihood(data, batch_size=16)
    got = program.log_likelihood(data, batch_size=16, client=clients(2), partitions=3)
    assert got.shape == (101,)
    np.testing.assert_allclose(got, expected, rtol=RELATIVE, atol=0)


def test_log_likelihood_of_several_roots_on_workers_keeps_one_column_per_root(clients):
    program, data = _program(seed=2, num_classes=3), _data(40, seed=2)
    got = pc.inference.log_likelihood(program, data, client=clients(2))
    assert got.shape == (40, 3)
    np.testing.assert_allclose(got, program.log_likelihood(data), rtol=RELATIVE, atol=0)


def test_log_likelihood_reads_npy_files_shards_and_dask_arrays_on_the_workers(clients, tmp_path):
    import dask.array as da
    program, data = _program(), _data(90, seed=3)
    expected = program.log_likelihood(data)
    np.save(tmp_path / "data.npy", data)
    np.savez(tmp_path / "a.npz", x=data[:25])
    np.savez(tmp_path / "b.npz", x=data[25:])
    for source in (str(tmp_path / "data.npy"), [tmp_path / "a.npz", tmp_path / "b.npz"],
                   da.from_array(data, chunks=(33, 6))):
        got = program.log_likelihood(source, batch_size=8, client=clients(2))
        np.testing.assert_allclose(got, expected, rtol=RELATIVE, atol=0)


def test_log_likelihood_on_workers_refuses_data_of_the_wrong_width(clients):
    with pytest.raises(ValueError, match="5 variables per example, the circuit has 6"):
        _program().log_likelihood(np.zeros((10, 5)), client=clients(2))


def test_an_unknown_client_name_is_refused():
    program = pc.builders.rat_spn(2, depth=1, num_repetitions=1, num_sums=1, num_leaves=1, seed=0).compile()
    with pytest.raises(ValueError, match="client"):
        pc.learning.evaluate(program, np.zeros((2, 2)), client="cluster")


def test_a_local_client_closes_the_cluster_it_started(monkeypatch):
    started = []

    class OneWorker(distributed.LocalCluster):
        def __init__(self, **options):
            super().__init__(**dict(options, n_workers=1))
            started.append(self)

    monkeypatch.setattr(distributed, "LocalCluster", OneWorker)
    pc.learning.fit(_program(), _data(20), epochs=1, batch_size=8, progress=False, client="local")
    assert len(started) == 1 and started[0].status.name == "closed"


# ---- training equals one process ------------------------------------------------------------
TRAINERS = {
    "full-batch EM": dict(method="em", mode="full-batch"),
    "online EM": dict(method="em", mode="online", step_size=0.5),
    "Adam": dict(method="adam", lr=0.05),
}


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_training_on_workers_with_uneven_partitions_equals_one_process(clients, trainer, workers):
    data = _data(103)
    options = dict(epochs=3, batch_size=16, seed=3, progress=False, **TRAINERS[trainer])
    expected, got = _program(), _program()
    single = pc.learning.fit(expected, data, **options)
    spread = pc.learning.fit(got, data, client=clients(workers), partitions=workers + 1, **options)
    _assert_same_parameters(got, expected)
    np.testing.assert_allclose(spread["train_loss"], single["train_loss"], rtol=RELATIVE)


def test_class_conditional_adam_with_labels_on_workers_equals_one_process(clients):
    rng = np.random.default_rng(4)
    data, labels = rng.normal(size=(90, 6)), rng.integers(0, 3, size=90)
    options = dict(method="adam", objective="cross-entropy", lr=0.05, epochs=2, batch_size=16, progress=False)
    expected, got = _program(num_classes=3), _program(num_classes=3)
    single = pc.learning.fit(expected, data, labels=labels, **options)
    spread = pc.learning.fit(got, data, labels=labels, client=clients(2), partitions=3, **options)
    _assert_same_parameters(got, expected)
    assert spread["train_acc"] == single["train_acc"]


def test_training_from_a_npy_file_equals_training_from_the_array(clients, tmp_path):
    data = _data(97)
    np.save(tmp_path / "data.npy", data)
    options = dict(method="em", mode="online", epochs=2, batch_size=20, progress=False)
    expected, got = _program(), _program()
    pc.learning.fit(expected, data, **options)
    pc.learning.fit(got, tmp_path / "data.npy", client=clients(2), **options)
    _assert_same_parameters(got, expected)


def test_training_from_npz_shards_of_uneven_sizes_equals_training_from_the_array(clients, tmp_path):
    data = _data(80)
    shards = []
    for i, (lo, hi) in enumerate([(0, 13), (13, 50), (50, 80)]):
        shards.append(tmp_path / f"shard{i}.npz")
        np.savez(shards[-1], x=data[lo:hi])
    options = dict(method="em", epochs=2, batch_size=16, progress=False)
    expected, got = _program(), _program()
    pc.learning.fit(expected, data, **options)
    pc.learning.fit(got, [str(s) for s in shards], client=clients(2), **options)
    _assert_same_parameters(got, expected)


def test_training_from_a_dask_array_equals_training_from_the_array(clients):
    da = pytest.importorskip("dask.array")
    data = _data(70)
    options = dict(method="adam", lr=0.05, epochs=2, batch_size=16, progress=False)
    expected, got = _program(), _program()
    pc.learning.fit(expected, data, **options)
    pc.learning.fit(got, da.from_array(data, chunks=(25, 6)), client=clients(2), **options)
    _assert_same_parameters(got, expected)


def test_full_batch_em_sends_the_parameters_once_per_epoch(clients):
    from pcircuits.learning.distributed import DataPartitions, DistributedEpochs
    program = _program()
    client = clients(2)
    parts = DataPartitions(client, _data(40), None, program.num_variables, partitions=3)
    epochs = DistributedEpochs(client, program, parts, "em", dict(pc.learning.fit.__kwdefaults__, method="em"))
    first = epochs.epoch_statistics(8, 0)
    epochs.epoch_statistics(8, 0)
    assert epochs.broadcasts == 1
    learner = pc.learning.make_learner("em", program, dict(pc.learning.fit.__kwdefaults__, mode="full-batch"))
    learner.update(first)
    learner.end_epoch()
    epochs.epoch_statistics(8, 1)
    assert epochs.broadcasts == 2


# ---- checkpoints and faults ---------------------------------------------------------------
def test_a_single_process_checkpoint_resumes_on_workers_to_the_uninterrupted_run(clients, tmp_path):
    data = _data(60)
    options = dict(method="em", mode="online", step_size=0.5, batch_size=16, progress=False)
    expected = _program()
    pc.learning.fit(expected, data, epochs=4, **options)
    got = _program()
    pc.learning.fit(got, data, epochs=2, checkpoint=tmp_path / "run.npz", **options)
    history = pc.learning.fit(got, data, epochs=4, checkpoint=tmp_path / "run.npz", client=clients(2), **options)
    assert len(history["epoch"]) == 4
    _assert_same_parameters(got, expected)


class _KillAfterTasks(SchedulerPlugin):
    """Kills a process once ``count`` batch-statistics tasks have finished."""

    def __init__(self, pid: int, count: int):
        self.pid, self.count, self.finished = pid, count, 0

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory" and str(key).startswith("_batch_statistics"):
            self.finished += 1
            if self.finished == self.count:
                os.kill(self.pid, signal.SIGKILL)


def test_a_worker_killed_during_an_epoch_leaves_the_result_unchanged():
    data = _data(120)
    options = dict(method="em", mode="online", step_size=0.5, epochs=2, batch_size=15, seed=1, progress=False)
    expected = _program()
    pc.learning.fit(expected, data, **options)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        victim = max(client.run(os.getpid).values())
        order = np.random.default_rng([1, 0]).permutation(120)      # epoch 0's batches; 4 partitions of 30
        tasks_per_epoch = sum(len(np.unique(order[i:i + 15] // 30)) for i in range(0, 120, 15))
        killer = _KillAfterTasks(victim, tasks_per_epoch + tasks_per_epoch // 2)
        cluster.scheduler.add_plugin(killer)
        got = _program()
        pc.learning.fit(got, data, client=client, partitions=4, **options)
        assert killer.finished > killer.count and victim not in client.run(os.getpid).values()
    _assert_same_parameters(got, expected)


# ---- the command line -----------------------------------------------------------------------
def test_train_on_two_local_workers_writes_the_one_process_model(tmp_path):
    from pcircuits import cli
    common = ["train", "--data", "digits8x8", "--structure", "pd", "--delta", "4", "--num-sums", "2",
              "--num-leaves", "2", "--epochs", "2", "--train-size", "120", "--valid-size", "0", "--batch-size", "30",
              "--em-mode", "online", "--dtype", "float64", "--no-progress", "--quiet"]
    assert cli.main(common + ["--out", str(tmp_path / "one.pcz")]) == 0
    assert cli.main(common + ["--workers", "2", "--out", str(tmp_path / "two.pcz")]) == 0
    one, two = (pc.Circuit.load(tmp_path / name).compile(dtype="float64") for name in ("one.pcz", "two.pcz"))
    _assert_same_parameters(two, one)
