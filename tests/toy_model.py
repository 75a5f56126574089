"""A toy model written against the model contract alone (#14, docs/architecture.md).

Every span of the encoded table is drawn independently: one-hot groups from their frequencies,
scalars from a normal with their mean and spread. It is a baseline, not a generator worth
using; its point is that a new model family is this one file (the registry line is
``tabsynth.MODELS`` for a built-in model; importing this module registers it for ``load``)
and that it passes the shared model tests (``test_models_common.py``) unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from tabsynth.models import _nn
from tabsynth.models.base import BaseSynthesizer
from tabsynth.transform.compact import CompactTable


class _Marginals(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(width))  # one-hot groups: their frequencies
        self.std = nn.Parameter(torch.ones(width))  # scalars: their spread


class IndependentMarginals(BaseSynthesizer):
    """Independent marginals in the transformer's space (no DP training: refused at fit)."""

    def __init__(
        self,
        batch_size: int = 500,
        epochs: int = 1,
        device: str = "auto",
        verbose: bool = True,
        random_state: int | None = None,
        max_fit_samples: int | None = 20_000,
        epsilon: float | None = None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "prv",
        rare_threshold: float | str | None = "auto",
    ) -> None:
        self.batch_size = batch_size
        self.epochs = epochs
        self.device = device
        self.verbose = verbose
        self.random_state = random_state
        self.max_fit_samples = max_fit_samples
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.accountant = accountant
        self.rare_threshold = rare_threshold

    def _build(self) -> None:
        width = self.transformer_.output_dim_
        self.marginals_ = _nn.seeded_module(
            lambda: _Marginals(width), self._init_generator, self.device_
        )

    def _train(self, data: CompactTable) -> None:
        X = data.dense()  # a toy: the whole table at once
        for _epoch in self._epochs():
            with torch.no_grad():
                self.marginals_.mean.copy_(X.mean(0))
                self.marginals_.std.copy_(X.std(0, correction=0))
            self._log_epoch(loss=0.0)

    def _generate(self, n: int, cond: dict | None, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.marginals_.mean, self.marginals_.std
        out = torch.empty(n, mean.numel(), device=mean.device)
        for span in self.transformer_.spans_:  # per column, vectorised over rows
            cols = slice(span.start, span.start + span.width)
            if span.activation == "softmax":
                p = mean[cols].clamp_min(0) + 1e-12
                idx = torch.multinomial(p, n, replacement=True, generator=generator)
                out[:, cols] = F.one_hot(idx, span.width).to(out.dtype)
            else:
                z = torch.randn(n, span.width, generator=generator, device=mean.device)
                out[:, cols] = (mean[cols] + std[cols] * z).clamp(-1, 1)
        return out  # the base rejects the rows that miss a condition

    def _modules(self) -> dict[str, nn.Module]:
        return {"marginals": self.marginals_}
