"""Models layer: the families listed in ``tabsynth.MODELS`` on one shared base class, plus
``augment`` and ``load`` for saved models.

Importing this package imports every listed model module, which registers its class for
``tabsynth.load`` (``BaseSynthesizer.__init_subclass__``).
"""

from importlib import import_module

from tabsynth import MODELS
from tabsynth.models.augment import augment
from tabsynth.models.base import BaseSynthesizer, load

for _name, _module in MODELS.items():
    globals()[_name] = getattr(import_module(_module), _name)

__all__ = [*MODELS, "BaseSynthesizer", "augment", "load"]  # noqa: PLE0604 - names set above
