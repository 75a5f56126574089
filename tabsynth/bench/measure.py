"""Measuring one benchmark cell: peak memory per phase, thread pins, JSON-safe values.

Nothing here imports ``resource`` at module level: it does not exist on Windows, where the peak
falls back to what ``psutil`` reports, or to None.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["PeakRSS", "jsonable", "set_threads", "thread_env"]

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


class PeakRSS:
    """Peak resident memory of this process, per phase.

    Linux lets a process reset its own peak (``VmHWM``) by writing 5 to ``/proc/self/clear_refs``,
    so each phase gets its own peak (``method == "vmhwm"``). Elsewhere the figure is the peak of
    the process so far (``ru_maxrss``), an upper bound for the phase.
    """

    def __init__(self) -> None:
        self.method = "vmhwm" if self._reset() else "ru_maxrss"
        self.process_peak = 0.0

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        """Start a new phase (keeps the process-wide peak in ``process_peak``)."""
        self.peak_mib()
        if self.method == "vmhwm":
            self._reset()

    def peak_mib(self) -> float | None:
        """Peak RSS in MiB since the last ``reset`` (or the process peak, see the class doc)."""
        peak = self._read()
        if peak is not None:
            self.process_peak = max(self.process_peak, peak)
        return peak

    def _read(self) -> float | None:
        if self.method == "vmhwm":
            try:
                with open("/proc/self/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            return int(line.split()[1]) / 1024
            except OSError:
                pass
        try:
            import resource  # POSIX only
        except ImportError:
            return None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024

    @contextlib.contextmanager
    def phase(self, row: dict, name: str) -> Iterator[None]:
        """Time a block into ``row[f"{name}_s"]`` and its peak into ``row[f"peak_rss_{name}_mib"]``."""
        self.reset()
        start = time.perf_counter()
        try:
            yield
        finally:
            row[f"{name}_s"] = time.perf_counter() - start
            row[f"peak_rss_{name}_mib"] = self.peak_mib()


def thread_env(n: int | None) -> dict[str, str]:
    """Environment variables that pin every native thread pool to ``n`` threads (none if None)."""
    return {var: str(n) for var in THREAD_ENV_VARS} if n else {}


def set_threads(n: int | None) -> None:
    """Pin torch and the BLAS/OpenMP pools of this process to ``n`` threads.

    The environment variables reach only libraries loaded afterwards, which is why the cell
    runner also puts them in the cell's environment before it starts.
    """
    if not n:
        return
    os.environ.update(thread_env(n))
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy/torch scalars unwrapped, NaN/inf as None, the rest as str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, str):
        try:
            obj = obj.item()
        except (TypeError, ValueError):
            return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
