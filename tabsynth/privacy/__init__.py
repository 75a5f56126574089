"""Differential privacy: one ledger for every mechanism, DP metadata, DP-SGD helpers.

See docs/privacy.md for the threat model and how the pieces fit together.

The public names are those of the submodules' ``__all__`` and load on first use (PEP 562):
Opacus (~1.5 s to import) is needed by ``ledger``, ``budget`` and ``dpsgd`` only, and the
ghost-clipping code the models import at module level is plain torch, so ``import
tabsynth.models`` does not pay for Opacus unless a DP fit asks for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: searched in this order, cheapest first (``ghost`` needs torch only; the others Opacus)
_SUBMODULES = ("ghost", "ledger", "mechanisms", "budget", "dpsgd")


def _all_names() -> list[str]:
    names = {n for sub in _SUBMODULES for n in import_module(f"{__name__}.{sub}").__all__}
    return sorted(names)


def __getattr__(name: str) -> Any:
    if name == "__all__":
        value: Any = _all_names()
    elif name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    else:
        for sub in _SUBMODULES:
            module = import_module(f"{__name__}.{sub}")
            if name in module.__all__:
                value = getattr(module, name)
                break
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_all_names()))
