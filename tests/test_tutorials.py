"""The tutorials run from start to end and write what they promise."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tutorial(name: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(ROOT / "tutorials" / name), str(out)], cwd=out, env=env,
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


def test_tutorial_05_samples_differentiably_and_lowers_the_mmd_by_training(tmp_path):
    result = run_tutorial("05_differentiable_sampling.py", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "straight-through samples equal the exact draws: True" in result.stdout
    assert "temperature 0.01 : largest distance to the exact draws of the same noise 0.0000" in result.stdout
    assert "after MMD training (lower: True)" in result.stdout
    assert (tmp_path / "mmd_density.png").stat().st_size > 0
