"""The tutorials run from start to end and write what they promise."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tutorial(name: str, cwd: Path, out: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``tutorials/name`` as a plain script in ``cwd``, writing into ``out`` (default ``cwd``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(ROOT / "tutorials" / name), str(out or cwd)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def drawing(out: Path, stem: str) -> Path:
    """The SVG, or the .dot source written instead when Graphviz is missing."""
    svg, dot = out / f"{stem}.svg", out / f"{stem}.dot"
    return svg if svg.exists() else dot


def test_tutorial_01_builds_checks_breaks_and_draws(tmp_path):
    result = run_tutorial("01_building_circuits.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid circuit" in result.stdout
    assert "[decomposability] ProductNode n9" in result.stdout
    assert "raised InvalidCircuitError" in result.stdout
    assert drawing(tmp_path, "figure1").stat().st_size > 0
    assert "decomposability" in drawing(tmp_path, "figure1_broken").read_text()
    assert (tmp_path / "figure1.pcz").is_file()


def test_tutorial_03_trains_vae_leaves_beside_a_vanilla_spn_and_completes_digits(tmp_path):
    result = run_tutorial("03_vae_leaves.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exact log-likelihoods: False" in result.stdout
    assert "log p(nothing observed): [0.]" in result.stdout
    assert "saved and loaded: identical bounds True" in result.stdout
    for picture in ("completions.png", "samples.png", "learning_curves.png"):
        assert (tmp_path / picture).stat().st_size > 0
    assert drawing(tmp_path, "vae_spn").stat().st_size > 0


def test_tutorial_00_prints_program_answers_equal_to_brute_force_and_draws(tmp_path):
    result = run_tutorial("00_what_is_a_circuit.py", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    joint = [line.split() for line in lines if line.startswith("x = [")]
    assert len(joint) == 8 and all(words[-3] == words[-1] for words in joint)
    assert "sum over all assignments: 1.000000" in result.stdout
    marginals = [line for line in lines if line.startswith("p([")]
    assert len(marginals) == 2 and all(line.split("= ")[1].split()[0] == line.split("), ")[1].split()[0]
                                       for line in marginals)
    conditional = next(line for line in lines if line.startswith("p(x2 = 1 | x0 = 1)"))
    assert conditional.split()[8] == conditional.split()[10]
    assert "[decomposability] ProductNode" in result.stdout
    assert (tmp_path / "joint_and_samples.png").stat().st_size > 0
    assert "decomposability" in drawing(tmp_path, "not_decomposable").read_text()
    assert drawing(tmp_path, "mixture").stat().st_size > 0


def test_tutorial_06_answers_every_query_consistently_and_pictures_them(tmp_path):
    result = run_tutorial("06_queries.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "equals log p(x) - log p(top): True" in result.stdout
    assert "conditional samples keep the evidence: True" in result.stdout
    mse = {line.split()[0]: float(line.split()[-1]) for line in result.stdout.splitlines() if "MSE over" in line}
    assert mse["posterior"] < mse["MPE"]
    for picture in ("completions.png", "samples.png", "conditional_samples.png"):
        assert (tmp_path / picture).stat().st_size > 0


def test_tutorial_07_trains_five_ways_and_resumes_bit_for_bit(tmp_path):
    result = run_tutorial("07_learning.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert sum("test log-likelihood per image" in line for line in result.stdout.splitlines()) == 5
    assert "resumed and uninterrupted runs give identical test log-likelihoods: True" in result.stdout
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
    assert (tmp_path / "adam.ckpt.npz").is_file()


@pytest.mark.parametrize("name, drawing_stem, pictures", [
    ("08_poon_domingos.py", "poon_domingos_2x2", ("learning_curve.png", "completions.png", "samples.png")),
    ("09_rat_spn.py", "rat_spn_small", ("samples.png", "classifier_curve.png")),
    ("10_hclt.py", "hclt_small", ("learning_curve.png", "samples.png")),
])
def test_builder_tutorial_draws_a_small_valid_circuit_and_trains_on_digits(tmp_path, name, drawing_stem, pictures):
    result = run_tutorial(name, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Valid circuit" in result.stdout
    assert drawing(tmp_path, drawing_stem).stat().st_size > 0
    for picture in pictures:
        assert (tmp_path / picture).stat().st_size > 0


def test_tutorial_05_samples_differentiably_and_lowers_the_mmd_by_training(tmp_path):
    result = run_tutorial("05_differentiable_sampling.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "straight-through samples equal the exact draws: True" in result.stdout
    assert "temperature 0.01 : largest distance to the exact draws of the same noise 0.0000" in result.stdout
    assert "after MMD training (lower: True)" in result.stdout
    assert (tmp_path / "mmd_density.png").stat().st_size > 0


@pytest.mark.parametrize("script", sorted(path.name for path in (ROOT / "tutorials").glob("[0-9][0-9]_*.py")))
def test_tutorial_opens_with_a_titled_docstring_for_the_gallery(script):
    lines = (ROOT / "tutorials" / script).read_text().splitlines()
    assert lines[0] == '"""' and lines[1].strip(), "the docstring starts with its title line"
    assert lines[2] == "=" * len(lines[1]), "the title is underlined with '=' of its length"
