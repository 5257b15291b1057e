"""Structure builders: each returns a :class:`~pcircuits.Circuit` that passes ``check()``.

Builders are imported on first use, so ``import pcircuits`` stays fast.
"""
import importlib
import sys
import types

_MODULES = {
    "poon_domingos": "poon_domingos",
    "rat_spn": "rat_spn",
    "cspn": "dcspn",
    "dcspn": "dcspn",
    "dgcspn": "dgcspn",
    "hclt": "hclt",
    "figure1_spn": "examples",
    "dcgmm": "dcgmm",
    "vae_spn": "vae_spn",
    "vae_spn_size": "vae_spn",
}

__all__ = sorted(_MODULES)


class _BuildersPackage(types.ModuleType):
    """Keeps ``builders.dcspn`` the builder function after the submodule ``dcspn`` is imported."""

    def __setattr__(self, name, value):
        if not (name in _MODULES and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _BuildersPackage


def __getattr__(name):
    if name in _MODULES:
        module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
        return getattr(module, name)
    if name in ("conv", "examples", "poon_domingos_module"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
