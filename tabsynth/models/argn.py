"""ARGN-family model: an any-order autoregressive network over discrete sub-columns.

Every column of the ``TableTransformer`` encoding becomes one or more *discrete sub-columns*:

* a categorical/boolean column is its one-hot span as one code (nulls and the ``other`` slot
  are values of it);
* a numeric/datetime column is a ``mode`` code (the encoder's spikes and mixture components,
  plus a null code when nullable; absent when there is a single non-null mode) and a ``value``
  code: the position inside the mode quantised into ``value_bins`` equal bins of the encoder's
  [-1, 1] scalar, decoded with a uniform draw inside the bin;
* id columns have no sub-column (the transformer regenerates them).

Because the codes are read off the transformer's matrix, the private path (a transformer built
from the declared schema and DP histograms only) needs nothing more: no statistic of the data
is computed here.

Network: one embedding per sub-column (rows of one table, offset per sub-column), and per
sub-column a one-hidden-layer network that reads the embeddings of the sub-columns *before it*
(zeroed otherwise, plus the 0/1 mask itself) and ends in a softmax head. The order of the
columns is drawn at random for every training row (a column's mode precedes its value), so the
same network predicts any sub-column from any subset of the others: unconditional sampling,
conditions on any subset of columns and imputation are all "fix what is known, sample the rest".
All sub-columns are computed together as batched matrix products (one ``baddbmm`` per layer),
and the loss is the summed cross-entropy.

Conditions hold by construction (``_sample_exact``): equality conditions fix codes; a range
condition on a numeric/datetime column restricts the (mode, value-bin) cells to those whose
values can fall in the range and the within-bin draw to the part of the bin inside it (found by
bisection through the encoder's own decoder), and those sub-columns are sampled first.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from tabsynth import _distributed
from tabsynth._lazy import F, nn, torch
from tabsynth._params import check_int, check_number
from tabsynth.errors import DataError, SamplingError
from tabsynth.models import _nn
from tabsynth.models._stopping import EarlyStopping, auto_schedule, holdout_size
from tabsynth.models.base import BaseSynthesizer, fitted_int

if TYPE_CHECKING:  # the DP fit's plan; importing it at run time would load Opacus
    from tabsynth.models._private import PrivateFit
    from tabsynth.transform.compact import CompactTable

_NEG = -1e9  # logit of an impossible code (finite: keeps softmax gradients finite)


@dataclass
class _Column:
    name: str
    kind: str  # "cat" | "num"
    subs: list[int]
    start: int = 0  # cat: span start; num: value (scalar) position
    width: int = 0  # cat: span width
    mode_start: int | None = None
    n_modes: int = 1
    null_start: int | None = None
    mode_sub: int | None = None
    value_sub: int | None = None


class _Layout:
    """Sub-columns of a fitted ``TableTransformer``; encodes its matrix to codes and back."""

    def __init__(self, transformer: Any, value_bins: int) -> None:
        self.bins = int(value_bins)
        self.dim = int(transformer.output_dim_)
        by_col: dict[str, list[Any]] = {}
        for span in transformer.spans_:
            by_col.setdefault(span.column, []).append(span)
        self.columns: list[_Column] = []
        cards: list[int] = []
        sub_col: list[int] = []
        sub_rank: list[int] = []
        for name, spans in by_col.items():
            roles = {s.role: s for s in spans}
            ci = len(self.columns)
            if "category" in roles:
                s = roles["category"]
                col = _Column(name, "cat", [len(cards)], start=s.start, width=s.width)
                cards.append(int(s.width))
                sub_col.append(ci)
                sub_rank.append(0)
            elif "value" in roles:
                col = _Column(name, "num", [], start=roles["value"].start)
                if "mode" in roles:
                    col.mode_start, col.n_modes = roles["mode"].start, roles["mode"].width
                if "null" in roles:
                    col.null_start = roles["null"].start
                if col.n_modes > 1 or col.null_start is not None:
                    col.mode_sub = len(cards)
                    col.subs.append(col.mode_sub)
                    cards.append(col.n_modes + int(col.null_start is not None))
                    sub_col.append(ci)
                    sub_rank.append(0)
                col.value_sub = len(cards)
                col.subs.append(col.value_sub)
                cards.append(self.bins)
                sub_col.append(ci)
                sub_rank.append(1)
            else:  # pragma: no cover - the transformer has no other span roles
                raise DataError(f"column {name!r}: unsupported encoding {sorted(roles)}")
            self.columns.append(col)
        self.by_name = {c.name: c for c in self.columns}
        self.cards = np.asarray(cards, dtype=np.int64)
        self.sub_col = np.asarray(sub_col, dtype=np.int64)
        self.sub_rank = np.asarray(sub_rank, dtype=np.int64)
        self.n_sub = len(cards)
        self.value_subs = [c.value_sub for c in self.columns if c.kind == "num"]

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, X: torch.Tensor) -> torch.Tensor:
        """Codes ``(n, n_sub)`` (int64) of transformer rows ``X``."""
        n = X.shape[0]
        codes = torch.zeros(n, self.n_sub, dtype=torch.long, device=X.device)
        for c in self.columns:
            if c.kind == "cat":
                codes[:, c.subs[0]] = X[:, c.start : c.start + c.width].argmax(1)
                continue
            if c.mode_sub is not None:
                if c.mode_start is not None:
                    mode = X[:, c.mode_start : c.mode_start + c.n_modes].argmax(1)
                else:
                    mode = torch.zeros(n, dtype=torch.long, device=X.device)
                if c.null_start is not None:
                    null = X[:, c.null_start + 1] > X[:, c.null_start]
                    mode = torch.where(null, torch.full_like(mode, c.n_modes), mode)
                codes[:, c.mode_sub] = mode
            v = X[:, c.start].clamp(-1.0, 1.0)
            b = torch.floor((v + 1.0) * (self.bins / 2.0)).long().clamp_(0, self.bins - 1)
            codes[:, c.value_sub] = b
        return codes

    def encode_table(self, X: CompactTable, chunk: int = 65_536) -> torch.Tensor:
        """:meth:`encode` of a compact table, a bounded dense chunk at a time."""
        idx = torch.arange(len(X), device=X.device)
        parts = [self.encode(X.dense(rows)) for rows in idx.split(chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, self.n_sub, dtype=torch.long)

    def scalar(self, bins: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The encoder scalar of value bin ``bins`` at relative position ``u`` in [0, 1]."""
        width = 2.0 / self.bins
        return (bins.to(torch.float32) + u.to(torch.float32)) * width - 1.0

    def decode(self, codes: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Transformer rows (one-hot spans, scalars) of ``codes``; ``u`` ``(n, n_value_subs)``."""
        n = codes.shape[0]
        out = torch.zeros(n, self.dim, dtype=torch.float32, device=codes.device)
        rows = torch.arange(n, device=codes.device)
        k = 0
        for c in self.columns:
            if c.kind == "cat":
                out[rows, c.start + codes[:, c.subs[0]]] = 1.0
                continue
            out[:, c.start] = self.scalar(codes[:, c.value_sub], u[:, k])
            k += 1
            mode = codes[:, c.mode_sub] if c.mode_sub is not None else None
            if c.mode_start is not None and mode is not None:
                out[rows, c.mode_start + mode.clamp(max=c.n_modes - 1)] = 1.0
            if c.null_start is not None and mode is not None:
                null = (mode == c.n_modes).to(torch.float32)
                out[:, c.null_start] = 1.0 - null
                out[:, c.null_start + 1] = null
        return out

    def visible(self, order_rank: torch.Tensor) -> torch.Tensor:
        """``(B, S, S)`` bool: sub-column t is seen when predicting s, from column ranks."""
        sc = torch.as_tensor(self.sub_col, device=order_rank.device)
        sr = torch.as_tensor(self.sub_rank, device=order_rank.device)
        pos = order_rank[:, sc] * 2 + sr  # (B, S): a column's mode precedes its value
        return pos.unsqueeze(1) < pos.unsqueeze(2)


@functools.cache
def _nets() -> SimpleNamespace:
    """ARGN's network, defined on first use so that importing this file does not import torch
    (``tabsynth._lazy``): ``_nets().Net``."""

    class _Net(nn.Module):
        """Embeddings + one small network per sub-column, all sub-columns in two matmuls.

        ``w1`` is ``(S*d, S, H)``: block ``(t, s)`` maps the embedding of sub-column ``t`` into the
        hidden layer of sub-column ``s``. For one column order (shared by a batch) the blocks of
        sub-columns not yet seen are zeroed, so all ``S`` first layers are ONE matmul of the
        embeddings with the masked weight; ``wm[t, s]`` adds "``t`` is known" to ``s``'s hidden
        layer (the network can tell a hidden sub-column from a zero embedding). ``w2[s]`` maps
        ``s``'s hidden layer to its logits, padded to the widest sub-column (padding gets a fixed
        very negative logit).
        """

        def __init__(self, cards: np.ndarray, embedding_dim: int, hidden: int) -> None:
            super().__init__()
            S, d, H = len(cards), int(embedding_dim), int(hidden)
            C = int(cards.max()) if S else 1
            self.S, self.d, self.H, self.C = S, d, H, C
            self.embed = nn.Parameter(torch.zeros(int(cards.sum()), d))
            self.w1 = nn.Parameter(torch.zeros(S * d, S, H))
            self.wm = nn.Parameter(torch.zeros(S, S, H))
            self.b1 = nn.Parameter(torch.zeros(S, H))
            self.w2 = nn.Parameter(torch.zeros(S, H, C))
            self.b2 = nn.Parameter(torch.zeros(S, C))
            offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]) if S else np.zeros(0)
            self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.long))
            pad = np.arange(C)[None, :] >= cards[:, None]
            self.register_buffer(
                "pad", torch.as_tensor(np.where(pad, _NEG, 0.0), dtype=torch.float32)
            )

        @torch.no_grad()
        def reset(self, generator: torch.Generator) -> None:
            self.embed.normal_(0.0, 1.0, generator=generator)
            bound = 1.0 / math.sqrt(max(self.S * (self.d + 1) / 2, 1.0))  # about half is visible
            for t in (self.w1, self.wm, self.b1):
                t.uniform_(-bound, bound, generator=generator)
            bound = 1.0 / math.sqrt(self.H)
            for t in (self.w2, self.b2):
                t.uniform_(-bound, bound, generator=generator)

        def embeddings(self, codes: torch.Tensor) -> torch.Tensor:
            return self.embed[codes + self.offsets]  # (B, S, d)

        def hidden_pre(self, e: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
            """``(B, S, H)`` first-layer pre-activations; ``vis[s, t]``: t is seen by s."""
            B = e.shape[0]
            v = vis.to(e.dtype)  # (S, S)
            w = self.w1 * v.t().repeat_interleave(self.d, 0).unsqueeze(-1)  # (S*d, S, H)
            bias = self.b1 + torch.einsum("st,tsh->sh", v, self.wm)
            out = torch.addmm(bias.reshape(1, -1), e.reshape(B, -1), w.reshape(self.S * self.d, -1))
            return out.view(B, self.S, self.H)

        def nll(
            self, codes: torch.Tensor, vis: torch.Tensor, keep: torch.Tensor | None = None
        ) -> torch.Tensor:
            """Per-row negative log-likelihood summed over sub-columns, ``(B,)``."""
            e = self.embeddings(codes)
            if keep is not None:
                e = e * keep
            h = torch.relu(self.hidden_pre(e, vis)).transpose(0, 1)  # (S, B, H)
            logits = torch.baddbmm(self.b2.unsqueeze(1), h, self.w2) + self.pad.unsqueeze(1)
            logp = torch.log_softmax(logits, -1)
            return -logp.gather(2, codes.t().unsqueeze(-1)).squeeze(-1).sum(0)

        def step_logits(self, codes: torch.Tensor, vis: torch.Tensor, s: int) -> torch.Tensor:
            """``(n, C)`` logits of sub-column ``s``; ``vis`` ``(n, S)`` says what each row
            knows."""
            n = codes.shape[0]
            vf = vis.to(torch.float32)
            e = self.embeddings(codes) * vf.unsqueeze(-1)
            pre = torch.addmm(self.b1[s], e.reshape(n, -1), self.w1[:, s, :])
            pre = pre + vf @ self.wm[:, s, :]
            return torch.addmm(self.b2[s], torch.relu(pre), self.w2[s]) + self.pad[s]

        def prefix_logits(self, e_ord: torch.Tensor, order: list[int], k: int) -> torch.Tensor:
            """``(n, C)`` logits of sub-column ``order[k]`` when exactly ``order[:k]`` are known
            (the same for every row): only the known blocks of ``w1`` are multiplied.
            ``e_ord`` is ``(n, S, d)``: the embeddings in ``order``."""
            s = order[k]
            n = e_ord.shape[0]
            seen = order[:k]
            bias = self.b1[s] + self.wm[seen, s, :].sum(0) if k else self.b1[s]
            if k:
                w = self.w1.view(self.S, self.d, self.S, self.H)[seen, :, s, :]  # (k, d, H)
                pre = torch.addmm(bias, e_ord[:, :k].reshape(n, -1), w.reshape(k * self.d, self.H))
            else:
                pre = bias.expand(n, -1)
            return torch.addmm(self.b2[s], torch.relu(pre), self.w2[s]) + self.pad[s]

    return SimpleNamespace(Net=_Net)


@dataclass
class _Constraints:
    """What sampling must respect: codes fixed for every row, restricted codes, bin bounds."""

    fixed: dict[int, int] = field(default_factory=dict)
    #: sub -> (parent sub or None, bool table (parent codes or 1, card))
    allowed: dict[int, tuple[int | None, torch.Tensor]] = field(default_factory=dict)
    #: value sub -> (parent sub or None, u_lo (parent codes or 1, bins), u_hi (same))
    bounds: dict[int, tuple[int | None, torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    first: list[int] = field(default_factory=list)  # restricted subs, sampled before the rest
    #: per-row fixed codes (impute): (codes (n, S), known mask (n, S))
    rows: tuple[torch.Tensor, torch.Tensor] | None = None


def _bisect(holds: Any, true_end: float, false_end: float, m: int, steps: int = 24) -> np.ndarray:
    """Per row of ``m``, the point nearest ``false_end`` where the monotone ``holds(u)`` (a
    boolean vector) is still true; it holds at ``true_end`` and fails at ``false_end``."""
    t, f = np.full(m, true_end), np.full(m, false_end)
    for _ in range(steps):
        mid = (t + f) / 2
        hit = holds(mid)
        t = np.where(hit, mid, t)
        f = np.where(hit, f, mid)
    return t


class ARGN(BaseSynthesizer):
    """Any-order autoregressive network over discrete sub-columns (the TabularARGN idea,
    arXiv 2501.12012), an own implementation.

    Every column becomes discrete sub-columns (see the module docstring); one embedding per
    sub-column and one small network per sub-column predict it from the sub-columns before it
    under a random column order per batch, so the same model samples unconditionally, under
    conditions on any subset of columns (values, numeric/datetime ranges, missing: met by
    construction, no rejection) and imputes missing cells (``impute``). ``epochs=None`` trains
    until the loss on a held-out 10 % stops improving (learning rate halved on each stall, best
    weights restored) within a step budget that grows with the table. Figures in
    ``docs/benchmarks.md``.

    Parameters
    ----------
    embedding_dim : int, default=8
        Size of each sub-column's embedding.
    hidden : int, default=64
        Width of each sub-column's hidden layer.
    dropout : float, default=0.1
        Dropout of the embeddings during (non-DP) training.
    value_bins : int, default=32
        Bins of a numeric column's position inside its mode (a uniform draw inside the bin).
    learning_rate : float, default=2e-3
        Adam learning rate (halved on each validation stall with ``epochs=None``).
    weight_decay : float, default=0.0
        Adam weight decay.
    batch_size : int, default=512
        Rows per step, capped by the table size (with ``epochs=None`` also by a tenth of the
        training rows, at least 32). Under DP the expected Poisson batch size.
    epochs : int or None, default=None
        None: early stopping on a held-out slice (under DP: a fixed plan from epsilon,
        ``round(4 * epsilon)`` epochs in [2, 30]); an int: exactly that many passes.
    max_steps : int or None, default=None
        Step budget of ``epochs=None``; None: 20 epochs, at least 3,000 steps, at most 100
        epochs and 20,000 steps.
    patience : int, default=4
        Validation evaluations without improvement before stopping.
    validation_share : float, default=0.1
        Share of rows held out for ``epochs=None``.
    device : {"auto", "cpu", "cuda"} or torch device string, default="auto"
        ``"auto"`` trains on CUDA when available.
    verbose : bool, default=True
        Progress bar with the losses per evaluation.
    random_state : int or None, default=None
        Seed of every draw of a non-DP fit and of sampling (bit-identical on CPU).
    max_fit_samples : int or None, default=20000
        Rows the column encoders are fitted on (a seeded subsample; None = all rows).
    epsilon : float or None, default=None
        Train with differential privacy at this (epsilon, delta) end to end; needs a public
        schema (see ``docs/privacy.md``).
    delta : float or None, default=None
        DP delta; None picks a value well below 1/n.
    max_grad_norm : float, default=1.0
        Per-example gradient clipping norm of DP-SGD (exact, in closed form).
    accountant : {"prv"}, default="prv"
        Privacy accountant of the ledger.
    dp_domains : bool, default=False
        Under DP, derive undeclared category lists with a thresholded noisy histogram.
    rare_threshold : "auto", float, int or None, default="auto"
        Categorical values seen fewer times than this share one ``other`` slot (as in CTGAN;
        ``"auto"`` only in columns of over 50 distinct values); a condition on such a value
        still holds exactly. Ignored under DP.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` trains under ``torch.autocast`` with bfloat16 matmuls (GPUs with bf16
        tensor cores; weights, optimizer state and gradients stay float32). Non-DP fits only:
        DP-SGD's per-example clipping needs exact float32 norms.

    Attributes
    ----------
    metadata_ : Metadata
        The schema the model was fitted with.
    transformer_ : TableTransformer
        The fitted reversible encoding the sub-columns are read from.
    history_ : pandas.DataFrame
        One row per evaluation: ``loss`` (train), ``val_loss`` (held-out, ``epochs=None``),
        ``lr`` and ``seconds``; under DP only the epoch (durations reveal the private n).
    epochs_trained_ : int
        Passes over the training rows actually run.
    steps_trained_ : int
        Optimizer steps actually run.
    n_rows_fit_ : int
        Rows the model was fitted on (under DP the noisy or declared count).
    batch_size_ : int
        The batch size actually used.
    device_ : torch.device
        Where the network was trained.
    privacy_report_ : dict or None
        The DP ledger of the fit (also ``privacy_report()``); None without DP.
    last_sample_stats_ : dict or None
        Requested/produced/generated rows of the last sample (generated == requested).

    Examples
    --------
    >>> import tabsynth
    >>> from tabsynth.datasets import make_patients
    >>> real = make_patients(600, random_state=0)
    >>> model = tabsynth.ARGN(epochs=2, random_state=0, verbose=False).fit(real)
    >>> rows = model.sample(50, conditions={"sex": "F", "age": (40, 60)}, random_state=1)
    >>> bool(rows["age"].between(40, 60).all()), rows.dtypes.equals(real.dtypes)
    (True, True)
    """

    _auto_epochs: ClassVar[bool] = True
    _forward_chunk: ClassVar[int] = 8192
    _fitted_attrs: ClassVar[dict[str, Any]] = {
        "epochs_trained_": fitted_int(0),
        "steps_trained_": fitted_int(0),
    }

    def __init__(
        self,
        embedding_dim: int = 8,
        hidden: int = 64,
        dropout: float = 0.1,
        value_bins: int = 32,
        learning_rate: float = 2e-3,
        weight_decay: float = 0.0,
        batch_size: int = 512,
        epochs: int | None = None,
        max_steps: int | None = None,
        patience: int = 4,
        validation_share: float = 0.1,
        device: str = "auto",
        verbose: bool = True,
        random_state: int | None = None,
        max_fit_samples: int | None = 20_000,
        epsilon: float | None = None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "prv",
        dp_domains: bool = False,
        rare_threshold: float | str | None = "auto",
        precision: str = "fp32",
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.dropout = dropout
        self.value_bins = value_bins
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.max_steps = max_steps
        self.patience = patience
        self.validation_share = validation_share
        self.device = device
        self.verbose = verbose
        self.random_state = random_state
        self.max_fit_samples = max_fit_samples
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.accountant = accountant
        self.dp_domains = dp_domains
        self.rare_threshold = rare_threshold
        self.precision = precision

    # -- validation ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("embedding_dim", "hidden", "patience"):
            check_int(name, getattr(self, name))
        check_int("value_bins", self.value_bins, low=2, high=4096)
        check_int("max_steps", self.max_steps, optional=True)
        check_number("learning_rate", self.learning_rate, low_open=True)
        check_number("weight_decay", self.weight_decay)
        check_number("dropout", self.dropout, high=1.0)
        check_number("validation_share", self.validation_share, low_open=True, high=0.5)

    # -- building -----------------------------------------------------------------------------
    def _build(self) -> None:
        self._layout = _Layout(self.transformer_, int(self.value_bins))
        if self._layout.n_sub == 0:
            raise DataError("ARGN needs at least one column that is not an id column")
        cards = self._layout.cards
        self.net_ = _nn.seeded_module(
            lambda: _nets().Net(cards, int(self.embedding_dim), int(self.hidden)),
            self._init_generator,
            self.device_,
        )
        self.net_.reset(self._init_generator)
        self.epochs_trained_ = 0
        self.steps_trained_ = 0

    def _modules(self) -> dict[str, nn.Module]:
        return {"net": self.net_}

    def _order(self, generator: torch.Generator) -> torch.Tensor:
        """``(S, S)`` visibility of one random column order (``[s, t]``: t seen by s)."""
        n_cols = len(self._layout.columns)
        keys = torch.rand(1, n_cols, generator=generator, device=self.device_)
        rank = keys.argsort(1).argsort(1)
        return self._layout.visible(rank)[0]

    # -- training -----------------------------------------------------------------------------
    def _train(self, X: CompactTable) -> None:
        gen, dev, net = self._train_generator, self.device_, self.net_
        codes = self._layout.encode_table(X)
        n = codes.shape[0]
        opt = _nn.adam(net.parameters(), float(self.learning_rate), float(self.weight_decay))
        auto = self.epochs is None
        n_val = holdout_size(n, self.validation_share) if auto else 0
        perm = torch.randperm(n, generator=gen, device=dev)
        val, train = codes[perm[:n_val]], codes[perm[n_val:]]
        n_train = train.shape[0]
        if auto:
            B, budget, max_epochs, every = auto_schedule(n_train, self.batch_size_, self.max_steps)
            self.batch_size_ = B
        else:
            B, max_epochs, every = int(min(self.batch_size_, n_train)), int(self.epochs), 1
        # validation: fixed orders (one per slice of the held-out rows), the same every time
        val_parts = (
            [(part, self._order(gen)) for part in torch.tensor_split(val, min(8, max(n_val, 1)))]
            if n_val
            else []
        )
        stopper = EarlyStopping({"net": net}, int(self.patience), opt, float(self.learning_rate))
        p_drop = float(self.dropout)
        self._start_bar(max_epochs if not auto else None)
        try:
            epoch = 0
            steps = 0
            sum_loss = torch.zeros((), device=dev)
            seen = 0
            while epoch < max_epochs:
                shuffled = train.index_select(0, torch.randperm(n_train, generator=gen, device=dev))
                for start in range(0, n_train, B):
                    cb = shuffled[start : start + B]
                    vis = self._order(gen)
                    keep = None
                    if p_drop > 0:
                        keep = torch.rand(cb.shape[0], net.S, net.d, generator=gen, device=dev)
                        keep = (keep >= p_drop).to(torch.float32) / (1.0 - p_drop)
                    loss_rows = net.nll(cb, vis, keep)
                    loss = loss_rows.mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sum_loss += loss_rows.detach().sum()
                    seen += cb.shape[0]
                    steps += 1
                epoch += 1
                if epoch % every and epoch < max_epochs:
                    continue
                row: dict[str, float] = {"loss": float(sum_loss) / max(seen, 1)}
                sum_loss.zero_()
                seen = 0
                if n_val:
                    with torch.no_grad():
                        v = sum(float(net.nll(p, o).sum()) for p, o in val_parts) / n_val
                    row["val_loss"] = stopper.update(v)
                row["lr"] = stopper.lr
                self._log_epoch(**row)
                if auto and (stopper.done or steps >= budget):
                    break
        finally:
            self._bar.close()
        stopper.restore()
        self.epochs_trained_ = int(epoch)
        self.steps_trained_ = int(steps)

    def _start_bar(self, total: int | None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total,
            desc=type(self).__name__,
            unit="epoch",
            disable=not (self.verbose and _distributed.is_main()),
            # under DP no elapsed time or rate: they scale with the private row count
            bar_format=None if self.epsilon is None else "{l_bar}{bar}| {n_fmt}/{total_fmt}",
        )
        self._epoch_t0 = time.perf_counter()

    def _log_epoch(self, **losses: float) -> None:
        super()._log_epoch(**losses)
        self._bar.update(1)

    def _train_private(self, private: PrivateFit) -> None:
        """DP-SGD: Poisson batches, every example's gradient clipped exactly, noise added by
        the calibrated DPOptimizer; a fixed number of steps, no validation, no selection.

        Each example's gradient is a sum of one rank-one term per sub-column network layer
        (``w1[s]``, ``w2[s]``, used once per example) and one row gradient per sub-column in
        the embedding table (distinct rows per example), so its norm comes exactly from the
        activations and the gradients at the layer outputs of a first backward pass; the
        second pass back-propagates the loss weighted by the clip factors, which writes the
        clipped SUM of per-example gradients into ``p.grad``.
        """
        gen, dev, net = self._train_generator, self.device_, self.net_
        clip = float(self.max_grad_norm)
        # Poisson masks and noise: secret generators (_private); batches expanded on the device
        loader = private.loader(private.X.place(dev))
        base = _nn.adam(
            net.parameters(), float(self.learning_rate), float(self.weight_decay), private=True
        )
        opt = private.optimizer(net, base, clip, clipping="ghost")
        batches = loader.batches(private.steps)
        n_epochs = int(private.steps // max(private.steps_per_epoch, 1))
        self._start_bar(n_epochs)
        try:
            for _epoch in range(n_epochs):
                for _ in range(private.steps_per_epoch):
                    xb = next(batches).to(dev)
                    clipped_grads(net, self._layout.encode(xb), self._order(gen), clip)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                self._log_epoch()  # no real-data loss is logged under DP
        finally:
            self._bar.close()
        self.epochs_trained_ = n_epochs
        self.steps_trained_ = int(private.steps)

    # -- sampling -----------------------------------------------------------------------------
    def _sample_codes(
        self, n: int, cons: _Constraints | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes ``(n, S)`` and within-bin positions ``(n, n_value_subs)`` drawn one
        sub-column at a time: fixed codes first, then the restricted sub-columns, then the rest
        in column order (per-row known cells for ``impute``)."""
        lay, net, dev = self._layout, self.net_, self.device_
        S = lay.n_sub
        cons = cons or _Constraints()
        codes = torch.zeros(n, S, dtype=torch.long, device=dev)
        for s, code in cons.fixed.items():
            codes[:, s] = code
        fixed = list(cons.fixed)
        first = [s for s in cons.first if s not in cons.fixed]
        order = fixed + first + [s for s in range(S) if s not in cons.fixed and s not in first]

        def draw(logits: torch.Tensor, s: int) -> torch.Tensor:
            logits = logits[:, : int(lay.cards[s])]
            if s in cons.allowed:
                parent, table = cons.allowed[s]
                ok = table[codes[:, parent]] if parent is not None else table[0].expand(n, -1)
                logits = logits.masked_fill(~ok, -math.inf)
            # inverse CDF: one uniform per row (cheaper than torch.multinomial per row)
            cdf = torch.softmax(logits, -1).cumsum_(-1)
            u = torch.rand(n, 1, generator=generator, device=dev) * cdf[:, -1:]
            return (cdf < u).sum(1).clamp_(max=int(lay.cards[s]) - 1)

        if cons.rows is None:  # one order for every row: only known blocks are multiplied
            e_ord = torch.zeros(n, S, net.d, device=dev)
            for k, s in enumerate(order):
                if k >= len(fixed):
                    codes[:, s] = draw(net.prefix_logits(e_ord, order, k), s)
                e_ord[:, k] = net.embed[codes[:, s] + net.offsets[s]]
        else:
            codes, known = cons.rows[0].clone(), cons.rows[1]
            vis = known.clone()
            for s in order:
                if bool(known[:, s].all()):
                    continue
                pick = draw(net.step_logits(codes, vis, s), s)
                codes[:, s] = torch.where(known[:, s], codes[:, s], pick)
                vis[:, s] = True
        u = torch.rand(n, len(lay.value_subs), generator=generator, device=dev)
        for k, s in enumerate(lay.value_subs):
            if s in cons.bounds:
                parent, lo, hi = cons.bounds[s]
                p = codes[:, parent] if parent is not None else torch.zeros_like(codes[:, s])
                lo_r, hi_r = lo[p, codes[:, s]], hi[p, codes[:, s]]
                u[:, k] = lo_r + u[:, k] * (hi_r - lo_r)
        return codes, u

    def _generate(self, n: int, cond: Any, generator: torch.Generator) -> torch.Tensor:
        """``n`` rows in transformer space; ``cond`` is a ``_Constraints`` (exact) or ignored."""
        cons = cond if isinstance(cond, _Constraints) else None
        if cons is not None and cons.rows is not None:
            raise DataError("internal: per-row constraints go through impute")
        codes, u = self._sample_codes(n, cons, generator)
        return self._layout.decode(codes, u)

    def _sample_exact(self, k: int, conds: list[Any], generator: torch.Generator) -> pd.DataFrame:
        """``k`` rows satisfying every condition by construction (see ``conditions.py``)."""
        frame = self._generate_frame(k, self._constraints(conds), generator)
        for c in conds:  # a value grouped into the rare ``other`` slot: the slot is fixed, and
            # the model knows nothing to tell its members apart, so the member is the one asked
            col = self._layout.by_name[c.column]
            if col.kind == "cat" and c.op == "equal":
                enc = self.transformer_.encoders_[c.column]
                if enc.position(c.value) == enc.other_position_:
                    frame[c.column] = pd.Series([c.value] * len(frame), dtype=frame[c.column].dtype)
        return frame

    def _constraints(self, conds: list[Any]) -> _Constraints:
        cons = _Constraints()
        lay, dev = self._layout, self.device_
        for c in conds:
            col = lay.by_name.get(c.column)
            if col is None:
                raise SamplingError(f"column {c.column!r} cannot be conditioned on")
            if col.kind == "cat":
                if c.op == "missing":
                    pos = self.transformer_.encoders_[c.column].null_position_
                else:
                    pos = self.transformer_.category_position(c.column, c.value)
                cons.fixed[col.subs[0]] = int(pos)
                continue
            if c.op == "missing":
                cons.fixed[col.mode_sub] = col.n_modes  # type: ignore[index]
                continue
            ok, lo, hi = self._range_cells(col, c)
            if not ok.any():
                raise SamplingError(
                    f"no value the model can produce satisfies {c.describe()}: the range is "
                    "between the values it learned for the column"
                )
            okt = torch.as_tensor(ok, device=dev)
            if col.mode_sub is not None:
                modes = torch.zeros(1, int(lay.cards[col.mode_sub]), dtype=torch.bool, device=dev)
                modes[0, : ok.shape[0]] = okt.any(1)
                cons.allowed[col.mode_sub] = (None, modes)
                cons.first.append(col.mode_sub)
                pad = int(lay.cards[col.mode_sub]) - ok.shape[0]  # the null code: never allowed
                okt = F.pad(okt, (0, 0, 0, pad))
                lo = np.pad(lo, ((0, pad), (0, 0)))
                hi = np.pad(hi, ((0, pad), (0, 0)))
                parent = col.mode_sub
            else:
                parent = None
            cons.allowed[col.value_sub] = (parent, okt)  # type: ignore[index]
            cons.first.append(col.value_sub)  # type: ignore[arg-type]
            cons.bounds[col.value_sub] = (  # type: ignore[index]
                parent,
                torch.as_tensor(lo, dtype=torch.float32, device=dev),
                torch.as_tensor(hi, dtype=torch.float32, device=dev),
            )
        return cons

    def _decode_cells(self, col: _Column, modes: np.ndarray, bins: np.ndarray, u: np.ndarray):
        """Decoded values (a Series in the column's dtype) of cells at positions ``u``."""
        lay = self._layout
        m = len(modes)
        codes = torch.zeros(m, lay.n_sub, dtype=torch.long)
        if col.mode_sub is not None:
            codes[:, col.mode_sub] = torch.as_tensor(modes)
        codes[:, col.value_sub] = torch.as_tensor(bins)
        uu = torch.zeros(m, len(lay.value_subs))
        uu[:, lay.value_subs.index(col.value_sub)] = torch.as_tensor(u, dtype=torch.float32)
        X = lay.decode(codes, uu).numpy()
        enc = self.transformer_.encoders_[col.name]
        stop = max(
            col.start + 1,
            (col.mode_start or 0) + col.n_modes if col.mode_start is not None else 0,
            (col.null_start or 0) + 2 if col.null_start is not None else 0,
        )
        block = X[:, col.start : stop]
        return enc.inverse_transform(block, np.random.default_rng(0)).reset_index(drop=True)

    def _range_cells(self, col: _Column, cond: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cells (mode, bin) that can hold a value in the range, and the part of each bin
        (``u`` in [lo, hi]) inside it, found by bisection (decoding is monotone in ``u``)."""
        n_modes, B = col.n_modes, self._layout.bins
        modes = np.repeat(np.arange(n_modes), B)
        bins = np.tile(np.arange(B), n_modes)
        low_only, high_only = copy.copy(cond), copy.copy(cond)
        low_only.high, high_only.low = None, None

        def ok(which: Any, u: np.ndarray) -> np.ndarray:
            return which.mask(self._decode_cells(col, modes, bins, u))

        m = len(modes)
        # lower end: smallest u whose value is >= low; upper end: largest u whose value is <= high
        u_lo = np.where(
            ok(low_only, np.zeros(m)), 0.0, _bisect(lambda u: ok(low_only, u), 1.0, 0.0, m)
        )
        u_hi = np.where(
            ok(high_only, np.ones(m)), 1.0, _bisect(lambda u: ok(high_only, u), 0.0, 1.0, m)
        )
        good = (u_lo <= u_hi) & ok(cond, u_lo) & ok(cond, u_hi)
        u_lo32 = np.asarray(u_lo, dtype=np.float32)
        u_hi32 = np.asarray(u_hi, dtype=np.float32)
        return (
            good.reshape(n_modes, B),
            np.where(good, u_lo32, 0).reshape(n_modes, B),
            np.where(good, u_hi32, 0).reshape(n_modes, B),
        )

    # -- imputation ---------------------------------------------------------------------------
    def impute(self, df: pd.DataFrame, random_state: int | None = None) -> pd.DataFrame:
        """Fill the missing cells of ``df`` with draws from the model given each row's known
        cells; the given cells are returned unchanged (same columns, order and dtypes)."""
        self._check_fitted()
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"impute needs a pandas DataFrame, got {type(df).__name__}")
        names = list(self.metadata_.names)
        missing = [c for c in names if c not in df.columns]
        extra = [c for c in df.columns if c not in names]
        if missing or extra:
            raise DataError(
                f"impute: the frame's columns differ from the model's; missing: {missing}, "
                f"extra: {extra}"
            )
        generator = self._sampling_generator(random_state)
        df = df[names]
        n = len(df)
        if n == 0:
            return df.copy()
        na = df.isna()
        filler = self.sample(1, random_state=0).iloc[0]
        filled = df.copy()
        for c in names:
            if na[c].any() and not self.metadata_[c].nullable:
                filled[c] = filled[c].fillna(filler[c])
        X = torch.as_tensor(self.transformer_.transform(filled), device=self.device_)
        lay = self._layout
        codes = lay.encode(X)
        known = torch.ones_like(codes, dtype=torch.bool)
        cons = _Constraints()
        for col in lay.columns:
            miss = torch.as_tensor(np.array(na[col.name], dtype=bool), device=self.device_)
            if not bool(miss.any()):
                continue
            for s in col.subs:
                known[:, s] &= ~miss
            # a missing cell gets a value, never "missing" again
            if col.kind == "cat":
                null = self.transformer_.encoders_[col.name].null_position_
                if null is not None:
                    t = torch.ones(1, int(lay.cards[col.subs[0]]), dtype=torch.bool)
                    t[0, null] = False
                    cons.allowed[col.subs[0]] = (None, t.to(self.device_))
            elif col.null_start is not None:
                t = torch.ones(1, int(lay.cards[col.mode_sub]), dtype=torch.bool)
                t[0, col.n_modes] = False
                cons.allowed[col.mode_sub] = (None, t.to(self.device_))
        cons.rows = (codes, known)
        for module in self._modules().values():
            module.eval()
        with torch.no_grad():
            new_codes, u = self._sample_codes(n, cons, generator)
            Xs = lay.decode(new_codes, u).cpu().numpy()
        seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())
        syn = self.transformer_.inverse_transform(Xs, random_state=seed)
        cols = {}
        for c in names:
            given = ~na[c].to_numpy()
            if given.all():
                cols[c] = df[c].reset_index(drop=True)
                continue
            vals = syn[c].astype(object).to_numpy(copy=True)
            vals[given] = df[c].astype(object).to_numpy()[given]
            col = pd.Series(vals, name=c)
            try:  # back to the model's dtype (a frame with holes often has float/object ones)
                col = col.astype(syn[c].dtype)
            except (TypeError, ValueError):
                pass
            cols[c] = col
        out = pd.DataFrame(cols)
        out.index = df.index
        return out


def clipped_grads(
    net: nn.Module, codes: torch.Tensor, vis: torch.Tensor, max_grad_norm: float
) -> torch.Tensor:
    """Write the clipped SUM of per-example gradients of the summed NLL into ``p.grad`` of
    ``net`` and return the per-example norms before clipping (an empty batch writes zeros).

    ``vis`` is the batch's column order (``(S, S)``). Exact per-example norms from one backward
    pass to the layer outputs: example i's gradient of ``w1`` is the masked outer product of
    its embeddings and the gradient at its hidden pre-activations (block ``(t, s)`` has norm
    ``||e_it|| ||g_is||`` when t is seen by s), ``wm``/``b1`` get ``g_is`` per seen ``t`` /
    once, ``w2[s]`` is rank one per example, and every sub-column reads a distinct embedding
    row (the gradient at that embedding). The clipped sum is then written from the same terms
    scaled by the clip factors (one matmul per layer), as Opacus' ghost clipping does.
    """
    B = codes.shape[0]
    if B == 0:
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        return torch.zeros(0, device=codes.device)
    S, d, H = net.S, net.d, net.H
    v = vis.to(torch.float32)  # (S, S): [s, t]
    e = net.embeddings(codes).detach().requires_grad_(True)  # (B, S, d)
    with torch.enable_grad():
        w1, wm, b1 = net.w1.detach(), net.wm.detach(), net.b1.detach()
        mask_w = v.t().repeat_interleave(d, 0).unsqueeze(-1)  # (S*d, S, 1)
        bias = b1 + torch.einsum("st,tsh->sh", v, wm)
        pre = torch.addmm(bias.reshape(1, -1), e.reshape(B, -1), (w1 * mask_w).reshape(S * d, -1))
        pre = pre.view(B, S, H)
        pre.retain_grad()
        h = torch.relu(pre).transpose(0, 1)  # (S, B, H)
        logits = torch.baddbmm(net.b2.detach().unsqueeze(1), h, net.w2.detach())
        logits = logits + net.pad.unsqueeze(1)
        logits.retain_grad()
        logp = torch.log_softmax(logits, -1)
        nll = -logp.gather(2, codes.t().unsqueeze(-1)).squeeze(-1).sum(0)
        nll.sum().backward()
    with torch.no_grad():
        g1 = pre.grad  # (B, S, H)
        g2 = logits.grad  # (S, B, C)
        ge = e.grad  # (B, S, d)
        g1sq = g1.square().sum(-1)  # (B, S)
        esq = e.detach().square().sum(-1)  # (B, S)
        seen_e = esq @ v.t()  # (B, S): sum over t seen by s of ||e_t||^2
        n_seen = v.sum(1)  # (S,)
        sq = (g1sq * (seen_e + n_seen + 1.0)).sum(1)  # w1 + wm + b1
        sq = sq + ((h.square().sum(-1) + 1.0) * g2.square().sum(-1)).sum(0)  # w2 + b2
        sq = sq + ge.square().sum((1, 2))  # embedding rows
        norms = sq.sqrt()
        factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        g1c = g1 * factor.view(B, 1, 1)
        g2c = g2 * factor.view(1, B, 1)
        net.w1.grad = (e.detach().reshape(B, -1).t() @ g1c.reshape(B, -1)).view(S * d, S, H)
        net.w1.grad.mul_(mask_w)
        g1sum = g1c.sum(0)  # (S, H)
        net.b1.grad = g1sum
        net.wm.grad = v.t().unsqueeze(-1) * g1sum.unsqueeze(0)  # [t, s] = v[s, t] * G[s]
        net.w2.grad = torch.bmm(h.transpose(1, 2), g2c)
        net.b2.grad = g2c.sum(1)
        rows = (codes + net.offsets).reshape(-1)
        gemb = torch.zeros_like(net.embed)
        gemb.index_add_(0, rows, (ge * factor.view(B, 1, 1)).reshape(-1, d))
        net.embed.grad = gemb
    return norms


__all__ = ["ARGN"]
