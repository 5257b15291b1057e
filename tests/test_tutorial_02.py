"""Tutorial 2 (convolutional SPNs) runs from start to end and writes its drawings."""
import importlib.util
import runpy
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "tutorials" / "02_convolutional_spns.py"


@pytest.mark.skipif(importlib.util.find_spec("pcircuits.viz") is None, reason="pcircuits.viz is not available")
def test_tutorial_02_runs_and_reports_the_wrong_dilation(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(TUTORIAL), run_name="__main__")
    output = capsys.readouterr().out
    assert "footnote 2" in output
    assert "decomposability" in output
    drawings = {path.stem for path in tmp_path.iterdir()}
    assert {"dgcspn_1x4", "wrong_dilation"} <= drawings
