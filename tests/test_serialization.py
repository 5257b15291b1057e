"""networkx round trips and .pcz files: exact round trips, and clear errors for bad files."""
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcircuits as pc
from pcircuits.builders import figure1_spn
from pcircuits.serialization import FORMAT_VERSION, CircuitFileError, from_networkx, load, save
from strategies import ALL_FAMILIES, assert_circuits_equal, invalid_circuits, valid_circuits


def sample_circuit():
    """Nodes: 0 Bernoulli input (2 units), 1 categorical input (2 units), 2 table product, 3 masked sum."""
    a = pc.InputNode(0, pc.Bernoulli([0.2, 0.7]), label="a")
    b = pc.InputNode(1, pc.Categorical([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    product = pc.ProductNode([a, b], np.array([[0, 1], [1, 0], [1, 1]]))
    root = pc.SumNode([product], weights=[[0.25, 0.75, 0.0]], mask=[[True, True, False]], label="root")
    return pc.Circuit(root, variables=pc.Variables(2, names=["first", "second"]))


def read_raw(path):
    """(structure, entries) of a file: the JSON structure and the data entries by name."""
    with np.load(path, allow_pickle=False) as data:
        entries = {k: data[k] for k in data.files}
    structure = json.loads(entries.pop("structure").tobytes())
    entries.pop("format_version")
    return structure, entries


def write_raw(path, structure, entries, version=FORMAT_VERSION):
    """Write a .pcz-like file with np.savez (which pickles object arrays, as a hostile file would)."""
    content = {"format_version": np.array(version),
               "structure": np.frombuffer(json.dumps(structure).encode(), dtype=np.uint8)}
    content.update(entries)
    with open(path, "wb") as handle:
        np.savez(handle, **content)


def read_file(path):
    """(structure without its array table, arrays by name), decoded independently of the loader."""
    structure, entries = read_raw(path)
    arrays = {}
    for name, ref in structure.pop("arrays").items():
        blob = entries["data." + ref["data"]]
        size = int(np.prod(ref["shape"]))
        arrays[name] = blob[ref["offset"]:ref["offset"] + size].reshape(ref["shape"])
    return structure, arrays


def write_file(path, structure, arrays, version=FORMAT_VERSION):
    """Write ``arrays`` packed into one data entry per dtype, in reverse order, with their table."""
    table, blobs = {}, {}
    for name, array in reversed(list(arrays.items())):
        array = np.asarray(array)
        blob = blobs.setdefault(array.dtype.name, [])
        table[name] = {"data": array.dtype.name, "offset": sum(b.size for b in blob), "shape": list(array.shape)}
        blob.append(array.ravel())
    write_raw(path, dict(structure, arrays=table),
              {f"data.{key}": np.concatenate(parts) for key, parts in blobs.items()}, version)


def round_trip_file(circuit, validate: bool = True):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "circuit.pcz"
        circuit.save(path)
        return pc.Circuit.load(path, validate=validate)


# ---- round trips ------------------------------------------------------------------------------
@given(valid_circuits(families=ALL_FAMILIES, multiple_roots=True))
def test_save_load_round_trip_is_exact(circuit):
    assert_circuits_equal(circuit, round_trip_file(circuit))


@given(valid_circuits(families=ALL_FAMILIES, multiple_roots=True))
def test_networkx_round_trip_is_exact(circuit):
    assert_circuits_equal(circuit, pc.Circuit.from_networkx(circuit.to_networkx()))


@settings(max_examples=20)
@given(st.sampled_from(["smoothness", "decomposability"]).flatmap(invalid_circuits))
def test_invalid_but_acyclic_circuits_round_trip(case):
    circuit, _ = case
    loaded = round_trip_file(circuit, validate=False)
    assert_circuits_equal(circuit, loaded)
    assert [v.kind for v in loaded.check().violations] == [v.kind for v in circuit.check().violations]


def test_figure1_round_trip_keeps_names_and_labels():
    loaded = round_trip_file(figure1_spn())
    assert loaded.variables.names() == ["X1", "X2", "X3", "X4"]
    assert loaded.roots[0].label == "root"
    assert_circuits_equal(figure1_spn(), loaded)


def test_saving_and_loading_a_file_do_not_import_networkx(tmp_path):
    path = tmp_path / "figure1.pcz"
    code = ("import sys\nimport pcircuits as pc\nfrom pcircuits.builders import figure1_spn\n"
            f"figure1_spn().save({str(path)!r})\npc.Circuit.load({str(path)!r})\nprint('networkx' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False"], result.stderr


def test_image_variables_round_trip():
    leaves = [pc.InputNode(v, pc.Bernoulli([0.5])) for v in range(6)]
    circuit = pc.Circuit(pc.ProductNode(leaves), variables=pc.Variables.image(2, 3))
    assert round_trip_file(circuit).variables == pc.Variables.image(2, 3)


def test_tied_parameters_stay_tied_after_loading():
    family = pc.Bernoulli([0.1, 0.9])
    weights = pc.SumWeights([[0.3, 0.7]])
    sums = [pc.SumNode([pc.InputNode(v, family)], weights=weights) for v in range(2)]
    loaded = round_trip_file(pc.Circuit(pc.ProductNode(sums)))
    first, second = loaded.sum_nodes
    assert first.params is second.params
    assert first.children[0].family is second.children[0].family


def test_deep_chain_round_trips():
    weights = pc.SumWeights([[1.0]])
    node = pc.InputNode(0, pc.Bernoulli([0.5]))
    for _ in range(5000):
        node = pc.SumNode([node], weights=weights)
    assert round_trip_file(pc.Circuit(node)).num_nodes == 5001


# ---- the networkx graph -----------------------------------------------------------------------
def test_graph_is_readable_by_plain_networkx():
    circuit = figure1_spn()
    graph = circuit.to_networkx()
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert graph.number_of_nodes() == circuit.num_nodes
    assert graph.graph["roots"] == [f"n{circuit.num_nodes - 1}"]
    assert nx.descendants(graph, graph.graph["roots"][0]) == set(graph.nodes) - set(graph.graph["roots"])
    assert list(nx.topological_sort(graph))[0] == graph.graph["roots"][0]
    for i, node in enumerate(circuit.nodes):
        attrs = graph.nodes[f"n{i}"]
        assert attrs["kind"] == node.kind and attrs["num_units"] == node.num_units
        assert attrs["scope"] == tuple(node.scope) and attrs["label"] == node.label


def test_graph_edges_go_parent_to_child_in_order():
    circuit = sample_circuit()
    graph = circuit.to_networkx()
    assert sorted(graph.edges(data="order")) == [("n2", "n0", 0), ("n2", "n1", 1), ("n3", "n2", 0)]


def test_graph_attributes_describe_parameters():
    graph = sample_circuit().to_networkx()
    assert graph.nodes["n0"]["family"] == "bernoulli" and graph.nodes["n0"]["variables"] == (0,)
    assert graph.nodes["n0"]["parameters"]["p"].tolist() == [0.2, 0.7]
    assert graph.nodes["n2"]["pattern"] == "table" and graph.nodes["n2"]["table"].shape == (3, 2)
    assert graph.nodes["n3"]["weights"].tolist() == [[0.25, 0.75, 0.0]]
    assert graph.nodes["n3"]["mask"].tolist() == [[True, True, False]]
    assert graph.graph["variables"] == {"num": 2, "names": ["first", "second"], "shape": None}


def test_tied_nodes_share_a_param_id():
    family = pc.Bernoulli([0.5])
    leaves = [pc.InputNode(v, family) for v in range(2)] + [pc.InputNode(2, pc.Bernoulli([0.5]))]
    graph = pc.Circuit(pc.ProductNode(leaves)).to_networkx()
    assert graph.nodes["n0"]["param_id"] == graph.nodes["n1"]["param_id"] != graph.nodes["n2"]["param_id"]


def test_graph_arrays_are_copies():
    circuit = sample_circuit()
    graph = circuit.to_networkx()
    graph.nodes["n3"]["weights"][0, 0] = 0.9
    assert circuit.roots[0].weights[0, 0] == 0.25


def test_a_child_used_twice_keeps_both_positions():
    leaf = pc.InputNode(0, pc.Bernoulli([0.3]))
    circuit = pc.Circuit(pc.SumNode([leaf, leaf], weights=[[0.4, 0.6]]))
    graph = circuit.to_networkx()
    assert graph.edges["n1", "n0"]["positions"] == (0, 1)
    assert_circuits_equal(circuit, from_networkx(graph))


@given(valid_circuits(multiple_roots=True))
def test_relabeled_graphs_rebuild_the_same_circuit(circuit):
    graph = circuit.to_networkx()
    names = {node: f"node-{len(graph) - k}" for k, node in enumerate(graph.nodes)}
    relabeled = nx.relabel_nodes(graph, names)
    relabeled.graph["roots"] = [names[r] for r in graph.graph["roots"]]
    assert_circuits_equal(circuit, from_networkx(relabeled))


def test_roots_default_to_nodes_without_parents():
    graph = sample_circuit().to_networkx()
    del graph.graph["roots"], graph.graph["variables"]
    circuit = from_networkx(graph)
    assert circuit.roots[0].label == "root" and circuit.num_variables == 2


def test_from_networkx_refuses_a_cycle():
    graph = sample_circuit().to_networkx()
    graph.add_edge("n0", "n3", order=0)
    with pytest.raises(ValueError, match="has a cycle"):
        from_networkx(graph)


def test_a_cyclic_circuit_still_converts_to_a_graph():
    leaf = pc.InputNode(0, pc.Bernoulli([0.5]))
    inner = pc.SumNode([leaf, leaf], weights=[[0.5, 0.5]])
    outer = pc.SumNode([inner], weights=[[1.0]])
    inner.rewire([leaf, outer])
    graph = pc.Circuit(outer).to_networkx()
    assert not nx.is_directed_acyclic_graph(graph)


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.nodes["n1"].pop("kind"), "node 'n1' has no 'kind' entry"),
    (lambda g: g.nodes["n0"].update(family="poisson"), "unknown leaf family 'poisson'"),
    (lambda g: g.edges["n2", "n1"].update(positions=(0,)), "two edges claim child position 0"),
    (lambda g: g.edges["n2", "n1"].update(positions=(5,)), r"child positions \[0, 5\] are not 0..1"),
    (lambda g: g.nodes["n3"].update(weights=np.ones((2, 3))), r"weights have shape \(2, 3\)"),
    (lambda g: g.graph.update(roots=["n9"]), r"the roots \['n9'\] are not nodes of the graph"),
    (lambda g: g.nodes["n0"].update(variables=3), r"variables must be a list of ints"),
])
def test_from_networkx_refuses_inconsistent_graphs(edit, message):
    graph = sample_circuit().to_networkx()
    edit(graph)
    with pytest.raises(ValueError, match=message):
        from_networkx(graph)


def test_tied_nodes_with_diverging_arrays_are_refused():
    family = pc.Bernoulli([0.5])
    graph = pc.Circuit(pc.ProductNode([pc.InputNode(v, family) for v in range(2)])).to_networkx()
    graph.nodes["n1"]["parameters"] = {"p": np.array([0.9])}
    with pytest.raises(ValueError, match="share param_id 0 but hold different parameters"):
        from_networkx(graph)


def test_from_networkx_needs_a_digraph():
    with pytest.raises(TypeError, match="expected a networkx.DiGraph"):
        from_networkx(nx.MultiDiGraph())


# ---- the file ---------------------------------------------------------------------------------
def test_save_writes_exactly_the_given_path(tmp_path):
    path = tmp_path / "model"
    returned = save(sample_circuit(), path)
    assert returned == path and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "model.pcz"
    save(figure1_spn(), path)
    save(sample_circuit(), path)
    assert load(path).num_nodes == 4


def test_file_holds_only_plain_arrays(tmp_path):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    names = zipfile.ZipFile(path).namelist()
    assert all(name.endswith(".npy") for name in names)
    assert {"format_version.npy", "structure.npy"} <= set(names)
    with np.load(path, allow_pickle=False) as data:
        assert all(not data[k].dtype.hasobject for k in data.files)
        assert int(data["format_version"]) == FORMAT_VERSION
        structure = json.loads(data["structure"].tobytes())
    assert structure["format_version"] == FORMAT_VERSION and len(structure["nodes"]) == 4


def test_save_refuses_a_cyclic_circuit(tmp_path):
    leaf = pc.InputNode(0, pc.Bernoulli([0.5]))
    inner = pc.SumNode([leaf, leaf], weights=[[0.5, 0.5]])
    outer = pc.SumNode([inner], weights=[[1.0]])
    inner.rewire([leaf, outer])
    with pytest.raises(ValueError, match="the circuit has a cycle"):
        pc.Circuit(outer).save(tmp_path / "cycle.pcz")
    assert not list(tmp_path.iterdir())


def test_save_refuses_parameters_of_the_wrong_shape(tmp_path):
    circuit = sample_circuit()
    circuit.roots[0].weights = np.ones((1, 4)) / 4
    with pytest.raises(ValueError, match="sum node n3 cannot be stored: weights have shape"):
        circuit.save(tmp_path / "bad.pcz")


def test_load_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.pcz")


def test_load_of_a_folder_is_refused(tmp_path):
    with pytest.raises(CircuitFileError, match="not a file"):
        load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, world", b"PK\x03\x04" + b"\0" * 40])
def test_load_of_a_non_zip_is_refused(tmp_path, content):
    path = tmp_path / "junk.pcz"
    path.write_bytes(content)
    with pytest.raises(CircuitFileError, match="not a readable zip archive"):
        load(path)


def test_load_of_a_plain_npy_is_refused(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.arange(3))
    with pytest.raises(CircuitFileError, match="not a readable zip archive"):
        load(path)


@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "figure1.pcz"
    figure1_spn().save(path)
    return path.read_bytes()


@given(cut=st.integers(0, 10_000))
def test_truncated_files_are_refused(saved_bytes, cut):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cut.pcz"
        path.write_bytes(saved_bytes[: cut % len(saved_bytes)])
        with pytest.raises(CircuitFileError):
            load(path)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_files_load_identically_or_are_refused(saved_bytes, flips):
    data = bytearray(saved_bytes)
    for position, value in flips:
        data[position % len(data)] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "corrupt.pcz"
        path.write_bytes(bytes(data))
        try:
            loaded = load(path)
        except CircuitFileError as err:
            assert str(err).startswith(str(path))
        else:
            assert_circuits_equal(figure1_spn(), loaded)


def test_the_size_limit_guards_against_bombs(tmp_path):
    path = tmp_path / "model.pcz"
    figure1_spn().save(path)
    with pytest.raises(CircuitFileError, match="more than max_bytes=100"):
        load(path, max_bytes=100)


def rezip(path, drop=(), add=None):
    """Rewrite the zip at ``path`` without the entries in ``drop`` and with raw entries ``add``."""
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist() if n not in drop}
    entries.update(add or {})
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def npy_bytes(array=None, header=None):
    buffer = io.BytesIO()
    if header is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(b"\0" * 8)
    return buffer.getvalue()


@pytest.mark.parametrize("drop, add, message", [
    (("structure.npy",), None, "the entry 'structure' is missing"),
    (("format_version.npy",), None, "the entry 'format_version' is missing"),
    (("data.float64.npy",), None, "refers to the data entry 'float64', which is missing"),
    ((), {"notes.txt": b"hello"}, "unexpected entry 'notes.txt'"),
    ((), {"notes.npy": npy_bytes(np.zeros(2))}, "unexpected entry 'notes'"),
    ((), {"format_version.npy": npy_bytes(np.array(99))}, "unknown format version 99"),
    ((), {"format_version.npy": npy_bytes(np.array(1.0))}, "format_version must be an integer scalar"),
    ((), {"structure.npy": npy_bytes(np.zeros(3))}, "the structure entry must be a 1-D uint8 array"),
    ((), {"structure.npy": npy_bytes(np.frombuffer(b"{not json", dtype=np.uint8))}, "not valid JSON"),
    ((), {"structure.npy": npy_bytes(np.frombuffer(b"\xff\xfe", dtype=np.uint8))}, "not valid JSON"),
    ((), {"structure.npy": npy_bytes(np.frombuffer(b"[" * 100_000, dtype=np.uint8))}, "not valid JSON"),
    ((), {"structure.npy": npy_bytes(np.frombuffer(b"[1, 2]", dtype=np.uint8))}, "does not describe a pcircuits"),
    ((), {"data.float64.npy": b"garbage"}, "the entry 'data.float64' is not a valid array"),
    ((), {"data.float64.npy": npy_bytes(np.array([{"a": 1}], dtype=object))}, "has dtype object"),
    ((), {"data.float64.npy": npy_bytes(np.array(["a"]))}, "has dtype <U1"),
    ((), {"data.float64.npy": npy_bytes(np.zeros((2, 2)))}, "the entry 'data.float64' must be 1-D"),
    ((), {"data.float64.npy": npy_bytes(np.zeros(3))}, "holds only 3 values"),
    ((), {"data.float64.npy": npy_bytes(header={"descr": "<f8", "fortran_order": False, "shape": (11,)})},
     "truncated or corrupted"),
    ((), {"data.float64.npy": npy_bytes(header={"descr": "<f8", "fortran_order": False, "shape": (-1,)})},
     "negative size"),
])
def test_damaged_entries_are_refused(tmp_path, drop, add, message):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    rezip(path, drop, add)
    with pytest.raises(CircuitFileError, match=message):
        load(path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.clear() or t.update({"p2.values": []}), r"structure.arrays\['p2.values'\] must be a JSON object"),
    (lambda t: t.__setitem__("p2.values", {"data": "float64", "shape": [1, 3]}), "has no 'offset' entry"),
    (lambda t: t["p2.values"].update(offset=-1), r"offset must be in >= 0, got -1"),
    (lambda t: t["p2.values"].update(offset=10**9), "holds only"),
    (lambda t: t["p2.values"].update(shape=[1, -3]), r"shape\[1\] must be in >= 0, got -3"),
    (lambda t: t["p2.values"].update(shape=[10**6, 10**6]), "holds only"),
    (lambda t: t["p2.values"].update(data="complex128"), "refers to the data entry 'complex128', which is missing"),
])
def test_hostile_array_table_is_refused(tmp_path, edit, message):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    structure, entries = read_raw(path)
    edit(structure["arrays"])
    write_raw(path, structure, entries)
    with pytest.raises(CircuitFileError, match=message):
        load(path)


def test_array_table_must_be_an_object(tmp_path):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    structure, entries = read_raw(path)
    structure["arrays"] = [1, 2]
    write_raw(path, structure, entries)
    with pytest.raises(CircuitFileError, match="structure.arrays must be a JSON object"):
        load(path)


def test_arrays_are_packed_one_entry_per_dtype(tmp_path):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    names = sorted(zipfile.ZipFile(path).namelist())
    assert names == ["data.bool.npy", "data.float64.npy", "data.int64.npy", "format_version.npy", "structure.npy"]


def set_node(i, key, value):
    return lambda s, a: s["nodes"][i].__setitem__(key, value)


HOSTILE = [
    ("forward child", set_node(2, "children", [0, 3]), "children refers to node 3, but children must come before"),
    ("self child", set_node(2, "children", [0, 2]), "children refers to node 2"),
    ("negative child", set_node(3, "children", [-1]), r"children\[0\] must be in >= 0, got -1"),
    ("negative units", set_node(0, "num_units", -3), r"num_units must be in 1..\d+, got -3"),
    ("huge units", set_node(0, "num_units", 10**30), r"num_units must be in 1..\d+"),
    ("string units", set_node(0, "num_units", "2"), "num_units must be an int, got str"),
    ("bool units", set_node(0, "num_units", True), "num_units must be an int, got bool"),
    ("unknown kind", set_node(0, "kind", "max"), "kind must be 'input', 'product' or 'sum', got 'max'"),
    ("bad label", set_node(3, "label", 5), "label must be a string or null"),
    ("bad pattern", set_node(2, "pattern", "outer"), "pattern must be 'elementwise', 'cartesian' or 'table'"),
    ("elementwise sizes", set_node(2, "pattern", "elementwise"), "needs children of 3 units each"),
    ("cartesian sizes", set_node(2, "pattern", "cartesian"), "has 4 units, not 3"),
    ("childless product", set_node(2, "children", []), "a product node needs children"),
    ("input with children", set_node(1, "children", [0]), "an input node has no children"),
    ("variable out of range", set_node(0, "variables", [9]), r"variables\[0\] must be in 0..1, got 9"),
    ("repeated variables", set_node(0, "variables", [0, 0]), "must be distinct increasing ids"),
    ("sum with family", set_node(3, "param", 0), "holds family, not weights"),
    ("input with weights", set_node(0, "param", 2), "holds weights, not family"),
    ("param out of range", set_node(0, "param", 7), r"param must be in 0..2, got 7"),
    ("unknown family", lambda s, a: s["params"][0].update(family="poisson"), "unknown leaf family 'poisson'"),
    ("unknown param type", lambda s, a: s["params"][2].update(type="blob"), "unknown parameter type 'blob'"),
    ("config not plain", lambda s, a: s["params"][0].update(config={"n": [1]}), "config must be a JSON object"),
    ("wrong array names", lambda s, a: s["params"][0].update(arrays={"q": "p0.p"}), r"needs the arrays \['p'\]"),
    ("missing config", lambda s, a: s["params"][0].update(family="binomial"), "needs the setting 'n' in its config"),
    ("bad config", lambda s, a: s["params"][0].update(config={"colour": 1}), "cannot rebuild the bernoulli family"),
    ("root out of range", lambda s, a: s.update(roots=[7]), r"structure.roots\[0\] must be in 0..3, got 7"),
    ("no roots", lambda s, a: s.update(roots=[]), "structure.roots is empty"),
    ("dangling node", lambda s, a: s.update(roots=[2]), r"1 node\(s\) are not under any root"),
    ("nodes not a list", lambda s, a: s.update(nodes={}), "structure.nodes must be a non-empty list"),
    ("node not an object", lambda s, a: s["nodes"].__setitem__(1, "x"), r"nodes\[1\] must be a JSON object"),
    ("no variables", lambda s, a: s.pop("variables"), "structure has no 'variables' entry"),
    ("negative variables", lambda s, a: s["variables"].update(num=-1), "variables.num must be in"),
    ("huge variables", lambda s, a: s["variables"].update(num=2**40), "variables.num must be in"),
    ("bad image shape", lambda s, a: s["variables"].update(shape=[3, 3]), "does not describe 2 image variables"),
    ("names count", lambda s, a: s["variables"].update(names=["a"]), "has 1 names for 2 variables"),
    ("format name", lambda s, a: s.update(format="other"), "does not describe a pcircuits circuit"),
    ("version mismatch", lambda s, a: s.update(format_version=2), "does not match the file's version"),
    ("array missing", lambda s, a: a.pop("p2.values"), "refers to the array 'p2.values', which is missing"),
    ("weights shape", lambda s, a: a.update({"p2.values": np.ones((2, 3)) / 3}), r"weights have shape \(2, 3\)"),
    ("weights dtype", lambda s, a: a.update({"p2.values": np.ones((1, 3), dtype=np.int64)}), "expected one of kinds 'f'"),
    ("mask dtype", lambda s, a: a.update({"p2.mask": np.ones((1, 3))}), "expected one of kinds 'b'"),
    ("weights 3-D", lambda s, a: a.update({"p2.values": np.ones((1, 3, 1))}), "weights must be 2-D"),
    ("negative weights", lambda s, a: a.update({"p2.values": -np.ones((1, 3))}), "weights must be non-negative"),
    ("family units", lambda s, a: a.update({"p0.p": np.array([0.2, 0.7, 0.1])}), "describe 3 units"),
    ("family rank", lambda s, a: a.update({"p0.p": np.array([[0.2], [0.7]])}), "p must have 1 dimension"),
    ("family scalar", lambda s, a: a.update({"p0.p": np.array(0.2)}), "must have a unit axis"),
    ("family values", lambda s, a: a.update({"p0.p": np.array([1.5, 0.2])}), r"p must lie in \[0, 1\]"),
    ("table range", lambda s, a: a.update({"n2.table": np.array([[0, 5], [1, 0], [1, 1]])}),
     "refers to child units that do not exist"),
    ("table shape", lambda s, a: a.update({"n2.table": np.zeros((3, 3), dtype=np.int64)}),
     r"pattern table has shape \(3, 3\), expected \(3, 2\)"),
    ("table dtype", lambda s, a: a.update({"n2.table": np.zeros((3, 2))}), "expected one of kinds 'iu'"),
]


@pytest.mark.parametrize("edit, message", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_content_is_refused_with_a_reason(tmp_path, edit, message):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    structure, arrays = read_file(path)
    edit(structure, arrays)
    write_file(path, structure, arrays)
    with pytest.raises(CircuitFileError, match=message):
        load(path)


def test_unedited_rewritten_file_loads(tmp_path):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    write_file(path, *read_file(path))
    assert_circuits_equal(sample_circuit(), load(path))


def test_big_endian_arrays_are_read_as_native(tmp_path):
    path = tmp_path / "model.pcz"
    sample_circuit().save(path)
    structure, arrays = read_file(path)
    arrays["p2.values"] = arrays["p2.values"].astype(">f8")
    write_file(path, structure, arrays)
    loaded = load(path)
    assert loaded.roots[0].weights.dtype == np.float64 and loaded.roots[0].weights.tolist() == [[0.25, 0.75, 0.0]]
