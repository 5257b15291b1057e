"""Modules that only some work needs are imported when that work starts: the subpackages
``builders``, ``datasets``, ``learning`` and ``tasks`` by their first use as ``pc.<name>``, and
SciPy's special functions by the first ``Backend.gammaln`` or ``Backend.logsumexp`` (binomial
leaves, deep mixture layers), not by every Program.

A command's help and model files are tested in ``test_cli.py`` and ``test_serialization.py``."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.special

import pcircuits as pc
from pcircuits.backend import Backend, to_numpy

SUBPACKAGES = ["builders", "datasets", "learning", "tasks"]


def test_importing_pcircuits_imports_a_subpackage_at_its_first_use():
    code = ("import sys\nimport pcircuits as pc\n"
            f"names = {SUBPACKAGES!r}\n"
            "before = [name for name in names if 'pcircuits.' + name in sys.modules]\n"
            "used = [getattr(pc, name) is sys.modules['pcircuits.' + name] for name in names]\n"
            "print(before, used)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[] [True, True, True, True]", result.stderr


def test_the_package_lists_its_subpackages_and_public_names():
    assert set(SUBPACKAGES) | set(pc.__all__) <= set(dir(pc))
    assert all(getattr(pc, name) is not None for name in pc.__all__)


def test_an_unknown_name_of_the_package_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'pcircuits' has no attribute 'learnings'"):
        pc.learnings


def test_a_gaussian_circuit_compiles_and_evaluates_without_scipy():
    code = ("import sys\nimport numpy as np\nimport pcircuits as pc\n"
            "program = pc.builders.rat_spn(4, depth=1, num_repetitions=2, num_sums=2, num_leaves=2).compile()\n"
            "print(np.isfinite(program.log_likelihood(np.zeros((3, 4)))).all(), 'scipy' in sys.modules)")
    environment = dict(os.environ, PCIRCUITS_JIT="0")  # Numba imports parts of SciPy itself
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=environment)
    assert result.stdout.split() == ["True", "False"], result.stderr


@pytest.mark.parametrize("name", ["numpy", "strict"])
def test_a_host_backend_s_special_functions_are_scipy_s(name):
    backend = Backend(name, "float64")
    values = np.array([[0.5, 3.0, 10.0], [-2.0, 1.0, 7.5]])
    np.testing.assert_array_equal(to_numpy(backend.gammaln(backend.asarray(values))), scipy.special.gammaln(values))
    np.testing.assert_array_equal(to_numpy(backend.logsumexp(backend.asarray(values), axis=-1)),
                                  scipy.special.logsumexp(values, axis=-1))


def test_a_backend_has_no_other_attributes_than_it_sets():
    backend = Backend()
    assert not hasattr(backend, "erf")
    with pytest.raises(AttributeError, match="'Backend' object has no attribute 'erf'"):
        backend.erf
