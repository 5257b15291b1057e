"""Tutorial 2 (convolutional SPNs) runs from start to end and writes its drawings."""
from test_tutorials import drawing, run_tutorial


def test_tutorial_02_runs_reports_the_wrong_dilation_and_draws_into_its_output_folder(tmp_path):
    out = tmp_path / "out"
    result = run_tutorial("02_convolutional_spns.py", tmp_path, out)
    assert result.returncode == 0, result.stderr
    assert "footnote 2" in result.stdout
    assert "decomposability" in result.stdout
    assert drawing(out, "dgcspn_1x4").stat().st_size > 0
    assert drawing(out, "wrong_dilation").stat().st_size > 0
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
