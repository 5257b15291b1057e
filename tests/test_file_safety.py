"""Model files from someone else are safe to open: bounded time and memory, one error type.

Every size a ``.pcz`` file declares is checked against ``load``'s limits before it is allocated;
malformed archives (duplicate members, misnamed entries) are refused; ``check()`` is linear in
the edges; ``save`` writes a unique, fsynced temporary file and never leaves one behind on failure.
"""
import io
import os
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import pcircuits as pc
from pcircuits import atomic
from pcircuits.serialization import CircuitFileError, load
from test_serialization import read_raw, sample_circuit, write_raw


def saved(tmp_path):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    return path


def add_root(path, record):
    """Append ``record`` (a node over the sample's nodes) as a second root of the file at ``path``."""
    structure, entries = read_raw(path)
    structure["nodes"].append(record)
    structure["roots"].append(len(structure["nodes"]) - 1)
    write_raw(path, structure, entries)


# ---- time and memory bounds --------------------------------------------------------------------
def test_check_is_linear_in_a_repeated_child():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5]))
    product = pc.ProductNode([leaf] * 200_000, pattern="elementwise")
    start = time.perf_counter()
    report = pc.Circuit(product).check()
    assert time.perf_counter() - start < 10
    (violation,) = report.violations
    assert "children 0 and 1 share" in violation.message
    assert "and 199996 more children overlap earlier ones" in violation.message


def test_check_names_the_first_earlier_child_that_overlaps():
    a, b, c = (pc.InputNode(v, pc.Bernoulli([0.5])) for v in range(3))
    both = pc.ProductNode([b, c])
    report = pc.Circuit(pc.ProductNode([a, both, c])).check()
    assert "children 1 and 2 share" in report.violations[0].message


def test_units_beyond_max_units_are_refused_before_building(tmp_path):
    path = saved(tmp_path)
    add_root(path, {"kind": "product", "label": None, "num_units": 2 ** 30, "children": [0] * 30,
                    "pattern": "cartesian"})
    with pytest.raises(CircuitFileError, match="more than max_units=67108864 .raise max_units"):
        load(path)


def test_raising_max_units_admits_a_large_circuit(tmp_path):
    path = saved(tmp_path)
    add_root(path, {"kind": "product", "label": None, "num_units": 2 ** 10, "children": [0] * 10,
                    "pattern": "cartesian"})
    with pytest.raises(CircuitFileError, match="max_units=1000"):
        load(path, max_units=1000, validate=False)
    assert load(path, max_units=2000, validate=False).num_units > 1024


def test_edges_beyond_max_edges_are_refused(tmp_path):
    path = saved(tmp_path)
    add_root(path, {"kind": "product", "label": None, "num_units": 2, "children": [0] * 100_000,
                    "pattern": "elementwise"})
    with pytest.raises(CircuitFileError, match="more than max_edges=100000"):
        load(path, max_edges=100_000, validate=False)
    assert load(path, validate=False).num_edges >= 100_000


def test_limits_must_be_positive_ints(tmp_path):
    with pytest.raises(ValueError, match="max_units must be positive"):
        load(saved(tmp_path), max_units=0)
    with pytest.raises(TypeError, match="max_bytes must be an int"):
        load(saved(tmp_path), max_bytes=1.5)


def test_a_zero_filled_entry_is_refused_from_its_header(tmp_path):
    """An entry that unpacks to 200 MB of unused zeros is refused without reading its data."""
    path = saved(tmp_path)
    rewrite = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            rewrite[name] = archive.read(name)
    values = 25_000_000
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in rewrite.items():
            if name != "data.float64.npy":
                archive.writestr(name, data)
        with archive.open("data.float64.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array_header_1_0(entry, {"descr": "<f8", "fortran_order": False,
                                                         "shape": (values,)})
            chunk = bytes(8 * 1_000_000)
            for _ in range(values // 1_000_000):
                entry.write(chunk)
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(CircuitFileError, match="holds 25000000 values but the array table uses only 11"):
            load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_the_structure_share_of_max_bytes_is_enforced(tmp_path):
    path = saved(tmp_path)
    with pytest.raises(CircuitFileError, match=r"more than max_bytes // 16"):
        load(path, max_bytes=16 * 200)


@pytest.mark.parametrize("shape, message", [
    ([0, 2 ** 62, 2 ** 62], "describes more than"),
    ([1] * 100, "has 100 dimensions"),
    ([0] * 9, "has 9 dimensions"),
])
def test_absurd_array_shapes_are_refused(tmp_path, shape, message):
    path = saved(tmp_path)
    structure, entries = read_raw(path)
    structure["arrays"]["p2.values"]["shape"] = shape
    write_raw(path, structure, entries)
    with pytest.raises(CircuitFileError, match=message):
        load(path)


def npy(array=None, header=None):
    buffer = io.BytesIO()
    if header is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


@pytest.mark.parametrize("header, message", [
    ({"descr": "<f8", "fortran_order": False, "shape": tuple([1] * 100)}, "must be 1-D or a scalar, got 100 dim"),
    ({"descr": "<f8", "fortran_order": False, "shape": (0, 2 ** 62, 2 ** 62)}, "must be 1-D or a scalar"),
    ({"descr": "<f8", "fortran_order": False, "shape": (2 ** 62,)}, "array table uses only 11"),
    ({"descr": "(2,)<f8", "fortran_order": False, "shape": (11,)}, "only bool, int and float"),
])
def test_absurd_entry_headers_are_refused(tmp_path, header, message):
    path = saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    entries["data.float64.npy"] = npy(header=header)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(CircuitFileError, match=message):
        load(path)


# ---- malformed archives ------------------------------------------------------------------------
def test_duplicate_members_are_refused(tmp_path):
    path = saved(tmp_path)
    with zipfile.ZipFile(path) as archive:
        weights = archive.read("data.float64.npy")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("data.float64.npy", weights)
    with pytest.raises(CircuitFileError, match="more than once .'data.float64.npy'"):
        load(path)


def test_an_entry_named_after_another_dtype_is_refused(tmp_path):
    path = saved(tmp_path)
    structure, entries = read_raw(path)
    entries["data.float64"] = entries["data.float64"].astype(np.float16)
    write_raw(path, structure, entries)
    with pytest.raises(CircuitFileError, match="'data.float64' holds float16 values"):
        load(path)


def test_an_entry_the_table_does_not_use_is_refused(tmp_path):
    path = saved(tmp_path)
    structure, entries = read_raw(path)
    entries["data.int32"] = np.arange(3, dtype=np.int32)
    write_raw(path, structure, entries)
    with pytest.raises(CircuitFileError, match="unexpected entry 'data.int32'"):
        load(path)


# ---- saving ------------------------------------------------------------------------------------
def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = saved(tmp_path)
    before = path.read_bytes()

    def fail(handle, **entries):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(KeyboardInterrupt):
        pc.builders.figure1_spn().save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.pcz"]


def test_save_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def record(descriptor):
        synced.append(os.path.isdir(f"/proc/self/fd/{descriptor}") if os.path.exists("/proc/self/fd") else None)
        real_fsync(descriptor)

    monkeypatch.setattr(atomic.os, "fsync", record)
    saved(tmp_path)
    assert len(synced) == 2
    if synced[0] is not None:
        assert synced == [False, True]


def test_concurrent_saves_to_one_path_use_distinct_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "model.pcz"
    names = []
    real_create = atomic._create_temporary

    def record(folder, prefix):
        descriptor, name = real_create(folder, prefix)
        names.append(name)
        return descriptor, name

    monkeypatch.setattr(atomic, "_create_temporary", record)
    circuits = [sample_circuit(), pc.builders.figure1_spn()] * 4
    threads = [threading.Thread(target=c.save, args=(path,)) for c in circuits]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == len(circuits)
    assert load(path).check().ok
    assert sorted(os.listdir(tmp_path)) == ["model.pcz"]


def test_a_saved_file_has_the_permissions_of_an_ordinary_new_file(tmp_path):
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    assert (saved(tmp_path).stat().st_mode & 0o777) == (ordinary.stat().st_mode & 0o777)


def test_temporaries_of_dead_writers_are_removed_by_the_next_save(tmp_path):
    dead = tmp_path / ".model.pcz.999999999.abc.tmp"
    alive = tmp_path / f".model.pcz.{os.getppid()}.abc.tmp"
    other = tmp_path / ".other.pcz.999999999.abc.tmp"
    for file in (dead, alive, other):
        file.write_bytes(b"partial")
    saved(tmp_path)
    assert not dead.exists()
    assert alive.exists() and other.exists()



# ---- validation on load ------------------------------------------------------------------------
def not_smooth_circuit():
    x0, x1 = pc.InputNode(0, pc.Bernoulli([0.3])), pc.InputNode(1, pc.Bernoulli([0.6]))
    return pc.Circuit(pc.SumNode([x0, x1], weights=np.array([[0.5, 0.5]]), label="mix"))


def unnormalized_file(tmp_path):
    circuit = sample_circuit()
    circuit.roots[0].weights[...] *= 3
    path = tmp_path / "unnormalized.pcz"
    circuit.save(path)
    return path


def test_load_refuses_a_circuit_that_fails_check_naming_node_and_property(tmp_path):
    path = tmp_path / "not_smooth.pcz"
    not_smooth_circuit().save(path)
    with pytest.raises(CircuitFileError, match=r"the circuit is invalid: \[smoothness\] SumNode n2 'mix'") as caught:
        load(path)
    assert str(caught.value).startswith(str(path))
    assert caught.value.report.kinds == {"smoothness"}


def test_load_refuses_unnormalized_weights_as_an_invalid_circuit(tmp_path):
    with pytest.raises(pc.errors.InvalidCircuitError, match=r"\[weights\] .* sums to 3"):
        pc.Circuit.load(unnormalized_file(tmp_path))


def test_load_with_validate_false_reads_an_invalid_circuit(tmp_path):
    path = tmp_path / "not_smooth.pcz"
    not_smooth_circuit().save(path)
    for circuit in (load(path, validate=False), pc.Circuit.load(path, validate=False)):
        assert circuit.check().kinds == {"smoothness"}


def test_load_refuses_a_validate_flag_that_is_not_a_bool(tmp_path):
    with pytest.raises(TypeError, match="validate must be True or False"):
        load(saved(tmp_path), validate="no")
