"""One checker per kind of setting, shared by every model (and ``load``, which runs the same
checks on a file's header) and by ``evaluate``. A bad value raises ``HyperParameterError`` naming the
parameter: it is a setting of the model, not a problem of the user's table (``DataError``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from tabsynth.errors import HyperParameterError, TabsynthError


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(
    name: str,
    value: Any,
    *,
    low: int = 1,
    high: int | None = None,
    optional: bool = False,
    error: type[TabsynthError] = HyperParameterError,
) -> None:
    """An int in ``[low, high]`` (``None`` allowed when ``optional``); ``error`` names the kind
    of mistake (``SamplingError`` for the arguments of ``sample``)."""
    if value is None and optional:
        return
    if not _is_int(value) or value < low or (high is not None and value > high):
        span = f"an int in [{low}, {high}]" if high is not None else _int_words(low)
        extra = "None or " if optional else ""
        raise error(f"{name} must be {extra}{span}, got {value!r}")


def _int_words(low: int) -> str:
    return {0: "a non-negative int", 1: "a positive int"}.get(low, f"an int >= {low}")


def check_number(
    name: str,
    value: Any,
    *,
    low: float = 0.0,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    """A finite real number in the interval from ``low`` to ``high`` (open ends as given)."""
    ok = _is_real(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        if high == math.inf:
            words = "a positive" if low == 0 and low_open else "a non-negative"
            span = f"{words} finite number" if low == 0 else f"a finite number >= {low:g}"
        else:
            left, right = "(" if low_open else "[", ")" if high_open else "]"
            span = f"a number in {left}{low:g}, {high:g}{right}"
        raise HyperParameterError(f"{name} must be {span}, got {value!r}")


def check_dims(name: str, value: Any) -> None:
    """Layer widths: a non-empty-or-empty sequence of positive ints (not a string)."""
    if (
        isinstance(value, (str, bytes))
        or not hasattr(value, "__iter__")
        or any(not _is_int(d) or d < 1 for d in value)
    ):
        raise HyperParameterError(f"{name} must be a sequence of positive ints, got {value!r}")


__all__ = ["check_dims", "check_int", "check_number"]
