"""Fuzzing: mutated model files and checkpoints load correctly or fail with the one error type.

Valid ``.pcz`` files, ``fit`` checkpoints and DCGMM ``Stack.fit`` checkpoints are mutated at
every level (bytes of the archive, fields of the JSON record, ``.npy`` headers, array values,
entries; for model files also targeted hostile structures: absurd array shapes and offsets, a
child repeated thousands of times, a cartesian product claiming up to 2**30 units), and each
mutant must either load (a circuit that passes ``check()``; a resumed history with finite
parameters) or raise ``CircuitFileError`` / ``CheckpointError``, within a time and memory
bound. 500 examples each, also in CI.
"""
import io
import json
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders import figure1_spn
from pcircuits.dcgmm import CGMM, Folding, Stack
from pcircuits.errors import CheckpointError, CircuitFileError
from pcircuits.learning import fit
from pcircuits.serialization import load
from test_serialization import sample_circuit

FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
#: Bounds of one example: seconds and bytes allocated (the valid files are a few kB).
SECONDS, BYTES = 5.0, 64 << 20
#: The load limits the bounds above hold for: checking a circuit takes memory in proportion to
#: its edges, so a file may declare at most this many (the defaults allow far more, and far more
#: memory, as docs/safety.md says).
LIMITS = dict(max_units=1 << 20, max_edges=1 << 20)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def archive(entries: dict[str, bytes]) -> bytes:
    """A zip of ``entries`` with fixed timestamps, so that the same entries give the same bytes
    (and the derandomized examples drawn from them are the same in every run)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, data in entries.items():
            out.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data,
                         compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def json_of(data: bytes):
    return json.loads(np.load(io.BytesIO(data), allow_pickle=False).tobytes())


def json_npy(value) -> bytes:
    return npy(np.frombuffer(json.dumps(value).encode(), dtype=np.uint8))


# ---- mutations ---------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 62])
    | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def json_paths(value, path=()):
    """Every path into a JSON value (dict keys and list indices)."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:6]):
            yield from json_paths(item, path + (index,))


def set_path(value, path, new):
    if not path:
        return new
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return value


@st.composite
def byte_mutations(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(0, max(len(out) - 1, 0)))
        if kind == "flip" and out:
            out[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del out[position:position + draw(st.integers(1, 64))]
        else:
            out[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


@st.composite
def record_mutations(draw, data: bytes, record: str) -> bytes:
    """Replace one field anywhere in the JSON record with another JSON value."""
    entries = members(data)
    value = json_of(entries[record])
    path = draw(st.sampled_from(list(json_paths(value))))
    entries[record] = json_npy(set_path(value, path, draw(JSON_VALUES)))
    return archive(entries)


HEADER_SHAPES = st.one_of(
    st.tuples(st.integers(-3, 2 ** 62)),
    st.lists(st.integers(0, 2 ** 62), min_size=0, max_size=70).map(tuple),
    st.just((0, 2 ** 62, 2 ** 62)))
DESCRIPTIONS = st.sampled_from(["<f8", ">f8", "<f2", "<i8", "|b1", "<c16", "|O", "<U3", "<M8[s]", "(2,)<f8"])


@st.composite
def header_mutations(draw, data: bytes) -> bytes:
    """Rewrite one entry's .npy header (shape, dtype, order), keeping or dropping its data bytes."""
    entries = members(data)
    name = draw(st.sampled_from(sorted(entries)))
    stream = io.BytesIO(entries[name])
    np.lib.format.read_magic(stream)
    np.lib.format.read_array_header_1_0(stream)
    body = entries[name][stream.tell():]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": draw(DESCRIPTIONS), "fortran_order": draw(st.booleans()),
                                                  "shape": draw(HEADER_SHAPES)})
    entries[name] = header.getvalue() + (body if draw(st.booleans()) else body[:draw(st.integers(0, 64))])
    return archive(entries)


@st.composite
def value_mutations(draw, data: bytes) -> bytes:
    """Overwrite some values of one numeric entry (NaN, infinities, negatives, huge numbers)."""
    entries = members(data)
    name = draw(st.sampled_from(sorted(entries)))
    array = np.load(io.BytesIO(entries[name]), allow_pickle=False).copy()
    if array.size == 0 or array.dtype == np.uint8:
        return archive(entries)
    flat = array.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, -1.0, 0.0, 2.0, 1e300, -1e-300] if array.dtype.kind == "f" \
        else [-1, 0, 2 ** 31, -2 ** 40, 7]
    for _ in range(draw(st.integers(1, 3))):
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(specials)) if array.dtype.kind != "b" \
            else draw(st.booleans())
    entries[name] = npy(array)
    return archive(entries)


@st.composite
def entry_mutations(draw, data: bytes) -> bytes:
    """Drop, duplicate or add an entry, or swap two entries' contents."""
    entries = members(data)
    names = sorted(entries)
    kind = draw(st.sampled_from(["drop", "add", "swap", "duplicate"]))
    if kind == "drop":
        entries.pop(draw(st.sampled_from(names)))
    elif kind == "add":
        entries[draw(st.sampled_from(["extra.npy", "data.int32.npy", "data.float32.npy", "x.txt"]))] = \
            npy(np.arange(draw(st.integers(0, 5)), dtype=np.int32))
    elif kind == "swap" and len(names) > 1:
        a, b = draw(st.permutations(names))[:2]
        entries[a], entries[b] = entries[b], entries[a]
    elif kind == "duplicate":
        name = draw(st.sampled_from(names))
        buffer = io.BytesIO(archive(entries))
        with pytest.warns(UserWarning), zipfile.ZipFile(buffer, "a") as out:
            out.writestr(name, entries[name])
        return buffer.getvalue()
    return archive(entries)


@st.composite
def hostile_structures(draw, data: bytes) -> bytes:
    """Targeted edits of a model file's structure: absurd array shapes and offsets, and products
    that repeat one child many times (cartesian ones claiming up to 2**30 units)."""
    entries = members(data)
    structure = json_of(entries["structure.npy"])
    kind = draw(st.sampled_from(["shape", "offset", "repeat"]))
    if kind in ("shape", "offset"):
        reference = structure["arrays"][draw(st.sampled_from(sorted(structure["arrays"])))]
        if kind == "shape":
            reference["shape"] = draw(st.just([0, 2 ** 62, 2 ** 62]) | st.lists(
                st.sampled_from([0, 1, 2, 2 ** 31, 2 ** 62]), max_size=100))
        else:
            reference["offset"] = draw(st.sampled_from([2 ** 31, 2 ** 62, 2 ** 64, -1]))
    else:
        leaves = [i for i, node in enumerate(structure["nodes"]) if node["kind"] == "input"]
        child = draw(st.sampled_from(leaves))
        units = structure["nodes"][child]["num_units"]
        if units > 1 and draw(st.booleans()):
            count = draw(st.integers(2, 30))
            record = {"kind": "product", "label": None, "num_units": min(units ** count, 2 ** 31 - 1),
                      "children": [child] * count, "pattern": "cartesian"}
        else:
            record = {"kind": "product", "label": None, "num_units": units,
                      "children": [child] * draw(st.sampled_from([2, 1000, 20_000])), "pattern": "elementwise"}
        structure["nodes"].append(record)
        structure["roots"].append(len(structure["nodes"]) - 1)
    entries["structure.npy"] = json_npy(structure)
    return archive(entries)


def mutants(data: bytes, record: str):
    return st.one_of(byte_mutations(data), record_mutations(data, record), header_mutations(data),
                     value_mutations(data), entry_mutations(data))


def bounded(call):
    """Run ``call()``; assert it took under SECONDS and allocated under BYTES at its peak."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        return call()
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < SECONDS, f"took {elapsed:.1f} s"
        assert peak < BYTES, f"allocated {peak} bytes"


# ---- model files -------------------------------------------------------------------------------
def saved(circuit) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pcz"
        circuit.save(path)
        return archive(members(path.read_bytes()))


MODEL_FILES = [saved(sample_circuit()), saved(figure1_spn()),
               saved(pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=0))]


@FUZZ
@given(data=st.sampled_from(range(len(MODEL_FILES))).flatmap(
    lambda i: mutants(MODEL_FILES[i], "structure.npy") | hostile_structures(MODEL_FILES[i])))
def test_mutated_model_files_load_or_raise_circuit_file_error(tmp_path, data):
    path = tmp_path / "mutant.pcz"
    path.write_bytes(data)

    def attempt():
        try:
            circuit = load(path, **LIMITS)
        except CircuitFileError as err:
            assert str(err).startswith(str(path))
            return
        assert circuit.check().ok
    bounded(attempt)


# ---- checkpoints -------------------------------------------------------------------------------
X = np.random.default_rng(0).normal(size=(40, 4))


def circuit():
    return pc.builders.poon_domingos(2, 2, delta=1, num_sums=2, num_leaves=2, seed=0)


def checkpoint_bytes(method: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.npz"
        fit(circuit().compile(dtype="float64"), X, method=method, epochs=1, batch_size=20, progress=False,
            checkpoint=path, lr=0.05)
        return archive(members(path.read_bytes()))


METHODS = ["em", "adam"]
CHECKPOINTS = [checkpoint_bytes(method) for method in METHODS]


@pytest.fixture(scope="module")
def programs():
    return [circuit().compile(dtype="float64") for _ in METHODS]


@FUZZ
@given(choice=st.sampled_from(range(len(METHODS))).flatmap(
    lambda i: st.tuples(st.just(i), mutants(CHECKPOINTS[i], "meta.npy"))))
def test_mutated_checkpoints_resume_or_raise_checkpoint_error(tmp_path, programs, choice):
    index, data = choice
    path = tmp_path / "run.npz"
    path.write_bytes(data)

    def attempt():
        try:
            history = fit(programs[index], X, method=METHODS[index], epochs=1, batch_size=20, progress=False,
                          checkpoint=path, lr=0.05)
        except CheckpointError as err:
            assert str(path) in str(err)
            return
        assert len(history["epoch"]) >= 1
        assert np.all(np.isfinite(programs[index].weights))
    bounded(attempt)


# ---- DCGMM checkpoints -------------------------------------------------------------------------
IMAGES = np.random.default_rng(1).normal(size=(16, 8, 8, 1))


def stack():
    return Stack([Folding(4, 2), CGMM(4), Folding(3, 1), CGMM(4)], (8, 8), dtype="float64")


def fit_stack(model, path, **options):
    return model.fit(IMAGES, epochs=2, batch_size=8, progress=False, checkpoint=path, **options)


def stack_checkpoint_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.npz"
        fit_stack(stack(), path, callback=lambda epoch, history: epoch == 1)
        return archive(members(path.read_bytes()))


STACK_CHECKPOINT = stack_checkpoint_bytes()


@FUZZ
@given(data=mutants(STACK_CHECKPOINT, "meta.npy"))
def test_mutated_stack_checkpoints_resume_or_raise_checkpoint_error(tmp_path, data):
    path = tmp_path / "run.npz"
    path.write_bytes(data)
    model = stack()

    def attempt():
        try:
            history = fit_stack(model, path)
        except CheckpointError as err:
            assert str(path) in str(err)
            return
        assert len(history["epoch"]) >= 1
        for layer in model.cgmm_layers:
            assert all(np.all(np.isfinite(value)) for value in layer.parameters().values())
            assert layer.min_precision <= layer.precisions.min() <= layer.precisions.max() <= layer.max_precision
            assert np.isfinite(layer.annealing.sigma)
    bounded(attempt)
