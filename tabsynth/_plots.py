"""Training curves drawn once, for ``model.plot_history()`` and the HTML report alike.

Plain matplotlib ``Figure`` objects (no pyplot): no global backend or figure registry is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: history columns that are not losses
NOT_LOSSES = ("epoch", "seconds")
#: at most this many loss panels side by side
MAX_PANELS = 4


def history_losses(history: Mapping[str, Sequence[Any]]) -> list[str]:
    """The loss columns of a history (every column but the epoch and the timing)."""
    return [str(k) for k in history if k not in NOT_LOSSES][:MAX_PANELS]


def draw_history(
    fig: Any, history: Mapping[str, Sequence[Any]], title: str = "", color: str = "C0"
) -> Any:
    """One small panel per loss of ``history`` (``{column: values}``) on ``fig``; returns it.

    Losses have different scales (a GAN's two losses, a VAE's reconstruction and KL), so each
    gets its own panel rather than one shared axis.
    """
    losses = history_losses(history)
    n = len(history.get("epoch", []) or [])
    epochs = np.asarray(history["epoch"], dtype=float) + 1 if n else np.arange(1.0, 1.0)
    if not losses or not n:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for k, name in enumerate(losses):
        ax = fig.add_subplot(1, len(losses), k + 1)
        y = np.array([np.nan if v is None else v for v in history[name]], dtype=float)
        ax.plot(epochs, y, color=color, linewidth=1.2, label=name)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
