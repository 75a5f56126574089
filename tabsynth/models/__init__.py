"""Models layer: ARGN, CTGAN and TVAE on one shared base class, plus ``load`` for saved models."""

from tabsynth.models.argn import ARGN
from tabsynth.models.augment import augment
from tabsynth.models.base import BaseSynthesizer, load
from tabsynth.models.ctgan import CTGAN
from tabsynth.models.tvae import TVAE

__all__ = ["ARGN", "CTGAN", "TVAE", "BaseSynthesizer", "augment", "load"]
