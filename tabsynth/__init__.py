"""tabsynth: synthetic tabular data with CTGAN/TVAE-family models and end-to-end DP."""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: every model family: public class name -> its module. A new model is one file in
#: ``tabsynth/models/`` plus one line here: it becomes ``tabsynth.NAME``, ``tabsynth.models.NAME``,
#: a ``--model`` choice of the CLI and a benchmark contender, and ``tabsynth.load`` reads its files
#: (docs/architecture.md, "Adding a model").
MODELS = {
    "ARGN": "tabsynth.models.argn",
    "CTGAN": "tabsynth.models.ctgan",
    "TVAE": "tabsynth.models.tvae",
}

_LAZY = {
    "Metadata": "tabsynth.metadata",
    "ColumnSpec": "tabsynth.metadata",
    "TableTransformer": "tabsynth.transform",
    **MODELS,
    "load": "tabsynth.models",
    "augment": "tabsynth.models",
    "evaluate": "tabsynth.metrics",
    "Report": "tabsynth.metrics",
    "datasets": "tabsynth.datasets",
}

__all__ = sorted(_LAZY) + ["MODELS", "__version__"]


def __getattr__(name: str) -> Any:
    """Import heavy layers (torch, sklearn) only when first used."""
    if name in _LAZY:
        module = import_module(_LAZY[name])
        return module if name == "datasets" else getattr(module, name)
    raise AttributeError(f"module 'tabsynth' has no attribute {name!r}")
