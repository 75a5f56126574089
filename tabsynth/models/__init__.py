"""Models layer: ARGN, CTGAN and TVAE on one shared base class, plus ``load`` for saved models."""

from tabsynth.models.argn import ARGN
from tabsynth.models.augment import augment
from tabsynth.models.base import BaseSynthesizer
from tabsynth.models.ctgan import CTGAN
from tabsynth.models.persistence import load

try:  # TVAE lives in its own module, written alongside this one
    from tabsynth.models.tvae import TVAE
except ImportError as exc:  # pragma: no cover - only while tvae.py is absent
    if exc.name != "tabsynth.models.tvae":
        raise

__all__ = ["ARGN", "CTGAN", "TVAE", "BaseSynthesizer", "augment", "load"]
