"""Packaging: the licence file matches the metadata, the 8x8 digits ship inside the package and
equal scikit-learn's copy bit for bit, and nothing in the package needs scikit-learn."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pcircuits as pc

REPOSITORY = Path(__file__).resolve().parents[1]


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPOSITORY / "setup.cfg")
    return config


def test_licence_file_is_the_mit_licence_that_setup_cfg_declares():
    assert setup_cfg()["metadata"]["license"] == "MIT"
    assert (REPOSITORY / "LICENSE").read_text().startswith("MIT License")


def test_scikit_learn_is_not_an_install_requirement():
    requirements = setup_cfg()["options"]["install_requires"]
    assert "scikit-learn" not in requirements and "sklearn" not in requirements


def test_package_data_covers_the_shipped_digits_and_their_licence_note():
    patterns = [p.strip() for p in setup_cfg()["options.package_data"]["pcircuits"].split(",")]
    package = REPOSITORY / "pcircuits"
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    assert package / "data" / "digits8x8.npz" in shipped and package / "data" / "README.md" in shipped


def test_digits_load_with_scikit_learn_blocked():
    code = ("import sys; sys.modules['sklearn'] = None; import pcircuits, pcircuits.cli, pcircuits.demo; "
            "d = pcircuits.datasets.load_digits_8x8(); print(d.x_train.shape, d.x_test.shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPOSITORY,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1437, 8, 8) (360, 8, 8)"


def test_shipped_digits_equal_scikit_learns_with_the_same_split():
    datasets = pytest.importorskip("sklearn.datasets")
    reference = datasets.load_digits()
    images, labels = reference.images.astype(np.uint8), reference.target.astype(np.int64)
    data = pc.datasets.load_digits_8x8()
    for ours, theirs in ((data.x_train, images[:1437]), (data.x_test, images[1437:]),
                         (data.y_train, labels[:1437]), (data.y_test, labels[1437:])):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    assert data.shape == (8, 8) and data.max_value == 16
