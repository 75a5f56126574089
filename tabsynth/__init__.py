"""tabsynth: synthetic tabular data with CTGAN/TVAE-family models and end-to-end DP."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Metadata": "tabsynth.metadata",
    "ColumnSpec": "tabsynth.metadata",
    "TableTransformer": "tabsynth.transform",
    "ARGN": "tabsynth.models",
    "CTGAN": "tabsynth.models",
    "TVAE": "tabsynth.models",
    "load": "tabsynth.models",
    "augment": "tabsynth.models",
    "evaluate": "tabsynth.metrics",
    "Report": "tabsynth.metrics",
    "datasets": "tabsynth.datasets",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import heavy layers (torch, sklearn) only when first used."""
    if name in _LAZY:
        module = import_module(_LAZY[name])
        return module if name == "datasets" else getattr(module, name)
    raise AttributeError(f"module 'tabsynth' has no attribute {name!r}")
