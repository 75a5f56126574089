"""torch on first use: ``import tabsynth; tabsynth.CTGAN`` must not pay for ``import torch``.

Importing torch takes 2-3 s, more than the rest of tabsynth together (docs/benchmarks.md, import
time). The files that need it write ``from tabsynth._lazy import F, nn, torch``: each name is a
stand-in that imports the real module on its first attribute read (the first ``torch.randn``
of a fit, a load or a sample) and keeps every attribute it hands out on itself, so later reads
are plain attribute look-ups. Code that needs torch when a file is imported (``class
X(nn.Module)``, ``@torch.no_grad()`` on a module-level function) is written so that it runs on
first use instead: the classes inside a cached function, ``@no_grad`` below as the decorator.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar


class LazyModule:
    """Stands for the module ``name`` and imports it on the first attribute read."""

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:  # called only for names not yet on the stand-in
        value = getattr(importlib.import_module(self._lazy_name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


if TYPE_CHECKING:  # type checkers and IDEs see the real modules
    import torch
    from torch import nn
    from torch.nn import functional as F
else:
    torch = LazyModule("torch")
    nn = LazyModule("torch.nn")
    F = LazyModule("torch.nn.functional")

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def no_grad(fn: _Fn) -> _Fn:
    """``@torch.no_grad()`` that imports torch when ``fn`` runs, not when it is defined."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["F", "LazyModule", "nn", "no_grad", "torch"]
