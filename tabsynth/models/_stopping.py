"""``epochs=None``: train until a held-out validation loss stops improving (every model).

Why: the right training length depends on the table (a 900-row table is over- or
under-trained by any fixed epoch count that suits a 30,000-row one), so a model that accepts
``epochs=None`` holds out a slice of the training rows, evaluates its validation loss every
few epochs, halves the learning rate each time the loss stalls, stops after ``patience``
stalls or when a step budget that grows with the table is spent, and keeps the best weights.
Only without DP: a DP fit runs a fixed plan and selects nothing on private data.
"""

from __future__ import annotations

import math
from typing import Any

from tabsynth import _distributed
from tabsynth._lazy import nn, torch


def step_budget(
    n_train: int,
    batch: int,
    max_steps: int | None = None,
    *,
    max_epochs: int = 100,
    min_steps: int = 3000,
) -> int:
    """Optimizer steps at most: ``min_steps`` (at least 20 epochs) but no more than
    ``max_epochs`` epochs nor 20,000 steps; each model sets the two from how it converges."""
    if max_steps is not None:
        return int(max_steps)
    per_epoch = max(1, math.ceil(n_train / batch))
    return int(min(max(min_steps, 20 * per_epoch), max_epochs * per_epoch, 20_000))


def auto_batch(batch: int, n_train: int) -> int:
    """Small tables: at least ~10 steps per epoch (not 2-step epochs), batches of >= 32 rows."""
    batch = int(min(batch, n_train))
    return int(max(min(batch, n_train // 10), min(32, batch)))


def holdout_size(n: int, share: float) -> int:
    """Rows held out for validation (none when fewer than 2 would be left to train on)."""
    n_val = max(1, int(round(float(share) * n)))
    return 0 if n - n_val < 2 else n_val


def eval_every(per_epoch: int) -> int:
    """Epochs between validations: at least every ~50 steps on tiny tables."""
    return max(1, math.ceil(50 / max(per_epoch, 1)))


def auto_schedule(
    n_train: int,
    batch: int,
    max_steps: int | None = None,
    *,
    max_epochs: int = 100,
    min_steps: int = 3000,
) -> tuple[int, int, int, int]:
    """``(batch, step budget, epochs at most, epochs between validations)`` of an
    ``epochs=None`` fit on ``n_train`` rows (see ``auto_batch`` and ``step_budget``)."""
    batch = auto_batch(batch, n_train)
    per_epoch = max(1, math.ceil(n_train / batch))
    budget = step_budget(n_train, batch, max_steps, max_epochs=max_epochs, min_steps=min_steps)
    return batch, budget, max(1, math.ceil(budget / per_epoch)), eval_every(per_epoch)


class EarlyStopping:
    """Tracks the validation loss: best weights, stalls, learning-rate halving on each stall."""

    def __init__(self, modules: dict[str, nn.Module], patience: int, optimizer: Any, lr: float):
        self.modules = modules
        self.patience = int(patience)
        self.optimizer = optimizer
        self.lr = float(lr)
        self.best = math.inf
        self.stall = 0
        self._state: dict[str, dict[str, torch.Tensor]] | None = None

    def update(self, value: float) -> float:
        """Record one validation loss (a relative gain below 1e-4 counts as a stall) and
        return it. In a distributed fit the loss of each process's held-out slice is
        averaged over the processes first, so they all take the same decisions (learning
        rate, best weights, stop) and stay identical."""
        value = _distributed.mean(value)
        scale = abs(self.best if math.isfinite(self.best) else value)
        if value < self.best - 1e-4 * scale:
            self.best, self.stall = value, 0
            self._state = {
                name: {k: t.detach().clone() for k, t in m.state_dict().items()}
                for name, m in self.modules.items()
            }
        else:
            self.stall += 1
            self.lr *= 0.5
            self.optimizer.lr = self.lr
        return value

    @property
    def done(self) -> bool:
        return self.stall >= self.patience

    def restore(self) -> None:
        """Put the best weights back (nothing to do when no validation ran)."""
        if self._state is not None:
            for name, m in self.modules.items():
                m.load_state_dict(self._state[name])


__all__ = [
    "EarlyStopping",
    "auto_batch",
    "auto_schedule",
    "eval_every",
    "holdout_size",
    "step_budget",
]
