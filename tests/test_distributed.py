"""Evaluation on a Dask LocalCluster equals the single-process evaluation."""
import numpy as np
import pytest

import pcircuits as pc

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_evaluate_on_two_workers_with_uneven_partitions_equals_one_process(client):
    circuit = pc.builders.rat_spn(6, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, seed=0)
    program = circuit.compile(dtype="float64")
    data = np.random.default_rng(0).normal(size=(101, 6))
    expected = pc.learning.evaluate(program, data, batch_size=16)
    got = pc.learning.evaluate(program, data, batch_size=16, client=client)
    assert got["ll"] == pytest.approx(expected["ll"], rel=1e-10)


def test_cross_entropy_and_accuracy_on_two_workers_equal_one_process(client):
    circuit = pc.builders.rat_spn(6, depth=2, num_repetitions=2, num_sums=2, num_leaves=2, num_classes=3, seed=1)
    program = circuit.compile(dtype="float64")
    rng = np.random.default_rng(1)
    data, labels = rng.normal(size=(57, 6)), rng.integers(0, 3, size=57)
    expected = pc.learning.evaluate(program, data, labels, objective="cross-entropy", batch_size=10)
    got = pc.learning.evaluate(program, data, labels, objective="cross-entropy", batch_size=10, client=client)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-10)
    assert got["acc"] == expected["acc"]


def test_an_unknown_client_name_is_refused():
    program = pc.builders.rat_spn(2, depth=1, num_repetitions=1, num_sums=1, num_leaves=1, seed=0).compile()
    with pytest.raises(ValueError, match="client"):
        pc.learning.evaluate(program, np.zeros((2, 2)), client="cluster")
