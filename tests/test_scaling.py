"""Building and checking grow linearly with the number of nodes (two sizes, one run, no time limits)."""
import time

import numpy as np

import pcircuits as pc


def balanced_circuit(num_leaves: int, rng) -> pc.Circuit:
    """A binary tree over ``num_leaves`` variables: 2-unit Bernoulli leaves, then alternating
    elementwise products of two neighbours and 2-unit sums; about 3 nodes per leaf."""
    layer = [pc.InputNode(v, pc.Bernoulli(rng.uniform(0.1, 0.9, size=2))) for v in range(num_leaves)]
    while len(layer) > 1:
        pairs = [pc.ProductNode(layer[i:i + 2]) for i in range(0, len(layer) - 1, 2)]
        layer = [pc.SumNode([p], num_units=2, rng=rng) for p in pairs] + layer[len(pairs) * 2:]
    return pc.Circuit(pc.SumNode(layer, num_units=1, rng=rng))


def build_and_check(num_leaves: int) -> tuple[int, float, float]:
    """(nodes, seconds to build, seconds to order and check)."""
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    circuit = balanced_circuit(num_leaves, rng)
    built = time.perf_counter()
    report = circuit.check()
    checked = time.perf_counter()
    assert report.ok
    return circuit.num_nodes, built - start, checked - built


def test_build_and_check_time_grows_linearly():
    small = min((build_and_check(3_334) for _ in range(3)), key=lambda r: r[1] + r[2])
    large = build_and_check(33_334)
    for nodes, build, check in (small, large):
        print(f"{nodes} nodes: build {build:.3f} s, check {check:.3f} s, "
              f"{1e6 * (build + check) / nodes:.1f} us per node")
    assert small[0] == 10_001 and large[0] == 100_001
    per_node_small = (small[1] + small[2]) / small[0]
    per_node_large = (large[1] + large[2]) / large[0]
    print(f"per-node time ratio (100k / 10k): {per_node_large / per_node_small:.2f}")
    assert per_node_large / per_node_small < 3.0
