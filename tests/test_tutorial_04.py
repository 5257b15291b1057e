"""Tutorial 4 (DCGMM stacks) runs from start to end and writes its pictures."""
import runpy
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "04_dcgmm.py"


def test_tutorial_04_trains_samples_and_shows_the_stack_is_not_a_circuit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(TUTORIAL), str(tmp_path)])
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    output = capsys.readouterr().out
    assert "cannot take the output of layer L2 G(16)" in output
    assert "valid = False" in output and "decomposability" in output
    pictures = {path.name for path in tmp_path.iterdir()}
    assert {"dcgmm_samples.png", "dcgmm_samples_sharpened.png", "dcgmm_inpainting.png"} <= pictures
    assert "dcgmm_stack.svg" in pictures or "dcgmm_stack.dot" in pictures
