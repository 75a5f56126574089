"""Training curves: per-epoch callbacks, optional TensorBoard scalars and ``plot_history``.

Under DP only quantities that are DP or public leave the fit: the epoch index, the privacy spent
so far (from the ledger, which counts noisy steps, not data) and the losses a model declares as
post-processing of its DP release (CTGAN's generator loss reads only the DP critic and fake rows).
A loss computed on real rows without noise, and the wall time per epoch (it scales with the
private Poisson batch sizes), are never passed on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from tabsynth._plots import MAX_PANELS, NOT_LOSSES, draw_history
from tabsynth.errors import DataError

if TYPE_CHECKING:  # annotations only: base imports this module
    from tabsynth.models.base import BaseSynthesizer


class Callback(Protocol):
    """Anything with ``on_epoch_end(model, row)``: ``row`` is the epoch's history row."""

    def on_epoch_end(self, model: BaseSynthesizer, row: dict[str, float]) -> None: ...


def check_callbacks(callbacks: Any) -> list[Callback]:
    """A list of objects with a callable ``on_epoch_end`` (clear error otherwise)."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, Iterable) or isinstance(callbacks, (str, bytes)):
        raise DataError(
            f"callbacks must be a list of objects with on_epoch_end(model, row), got {callbacks!r}"
        )
    out = list(callbacks)
    for cb in out:
        if not callable(getattr(cb, "on_epoch_end", None)):
            raise DataError(
                f"callback {cb!r} has no on_epoch_end(model, row) method; wrap a function "
                "as an object with that method"
            )
    return out


def _summary_writer(log_dir: Any) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise DataError(
            "log_dir needs the 'tensorboard' package: pip install 'tabsynth[tracking]' "
            "(or pip install tensorboard)"
        ) from exc
    if not isinstance(log_dir, (str, Path)):
        raise DataError(f"log_dir must be a folder path, got {log_dir!r}")
    return SummaryWriter(log_dir=str(log_dir))


class Tracker:
    """Passes each epoch's row to the callbacks and the TensorBoard writer (DP-filtered)."""

    def __init__(
        self,
        callbacks: Sequence[Callback],
        log_dir: Any,
        *,
        private: Any = None,
        dp_keys: Sequence[str] = (),
    ) -> None:
        self.callbacks = list(callbacks)
        self.private = private
        self.dp_keys = frozenset(dp_keys)
        self.writer = _summary_writer(log_dir) if log_dir is not None else None

    @property
    def active(self) -> bool:
        return bool(self.callbacks) or self.writer is not None

    def public_row(self, row: dict[str, float]) -> dict[str, float]:
        """What may leave the fit: everything without DP; only DP/public values under DP."""
        if self.private is None:
            return dict(row)
        out = {k: v for k, v in row.items() if k == "epoch" or k in self.dp_keys}
        out["epsilon_spent"] = float(self.private.ledger.epsilon())
        return out

    def epoch_end(self, model: BaseSynthesizer, row: dict[str, float]) -> None:
        if not self.active:
            return
        public = self.public_row(row)
        step = int(public.get("epoch", 0))
        if self.writer is not None:
            for key, value in public.items():
                if key != "epoch":
                    self.writer.add_scalar(f"{type(model).__name__}/{key}", value, step)
            self.writer.flush()
        for cb in self.callbacks:
            cb.on_epoch_end(model, public)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_history(history: pd.DataFrame, title: str = "") -> Any:
    """The training curves of ``history``: one panel per loss (a matplotlib ``Figure``)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise DataError("plot_history needs matplotlib: pip install 'tabsynth[report]'") from exc
    losses = [c for c in history.columns if c not in NOT_LOSSES][:MAX_PANELS]
    fig = Figure(figsize=(3.4 * max(len(losses), 1), 2.8))
    return draw_history(fig, {str(c): history[c].tolist() for c in history.columns}, title)


__all__ = ["Callback", "Tracker", "check_callbacks", "plot_history"]
