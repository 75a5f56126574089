"""Torch helpers shared by the models: device choice, seeded init, span activations.

Everything random takes an explicit ``torch.Generator`` so that fitting and sampling never read
or advance the global torch RNG (reproducibility is a contract, see ``BaseSynthesizer``).
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tabsynth import _distributed
from tabsynth._lazy import F, LazyModule, nn, no_grad, torch
from tabsynth.errors import HyperParameterError

logger = logging.getLogger("tabsynth.models")


_DEVICES = "'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'mps' (or a torch.device)"


def check_device(device: Any) -> None:
    """Refuse a ``device`` hyper-parameter torch would not understand, listing what works."""
    if device is None or isinstance(device, torch.device):
        return
    ok = isinstance(device, str) and (
        device in ("auto", "cpu", "cuda", "mps")
        or (device.startswith("cuda:") and device[5:].isdigit() and device[5:].isascii())
    )
    if not ok:
        raise HyperParameterError(f"device must be {_DEVICES}; got {device!r}"[:300])
    if device.startswith("cuda:") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if int(device[5:]) >= count:
            raise HyperParameterError(
                f"device={device!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None picks CUDA when available; a CUDA (or MPS) request without it falls back
    to the CPU with a warning, so a model trained on a GPU loads and samples anywhere."""
    check_device(device)
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"device={str(device)!r} was requested but CUDA is not available "
            "(CPU-only torch build or no GPU); using the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        warnings.warn(
            f"device={str(device)!r} was requested but MPS is not available; using the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    return dev


def autocast(device: torch.device, precision: str) -> Any:
    """The training context for ``precision``: bfloat16 autocast for ``"bf16"`` (matmuls in
    bf16, parameters and gradients float32), nothing for ``"fp32"``."""
    import contextlib

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``seed`` (CUDA tensors need a CUDA generator)."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


def seeded_module(
    factory: Callable[[], nn.Module], generator: torch.Generator, device: torch.device
) -> nn.Module:
    """Build ``factory()`` without touching the global RNG, then re-initialise it from ``generator``.

    Module constructors draw their default init from the global torch RNG; we build inside
    ``fork_rng`` (global state restored afterwards) and overwrite every Linear/norm parameter with
    draws from our own generator, so the weights depend only on the model's ``random_state``.
    """
    if torch.device(device).type == "meta":  # shapes only: nothing allocated, nothing drawn
        with torch.device("meta"):
            return factory()
    with torch.random.fork_rng(devices=[]):
        module = factory()
    reset_parameters(module, generator)
    return module.to(device)


@no_grad
def reset_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Torch's default init for Linear (uniform ±1/sqrt(fan_in)) and norms, from ``generator``."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
            m.weight.uniform_(-bound, bound, generator=generator)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(m, (nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
            if getattr(m, "bias", None) is not None:
                m.bias.fill_(0.0)
            if isinstance(m, nn.BatchNorm1d):
                m.reset_running_stats()


@functools.cache
def _seeded_dropout() -> type[nn.Module]:
    """``SeededDropout``, defined on first use so that importing this file does not import
    torch (``tabsynth._lazy``); other files read it as ``_nn.SeededDropout``."""

    class SeededDropout(nn.Module):
        """Dropout whose mask comes from an explicit generator (``nn.Dropout`` uses the global RNG).

        ``generator`` is looked up through a callable so the module holds no generator state itself
        (state_dicts stay plain tensors) and the owner can swap generators between fit and sample.
        """

        def __init__(self, p: float, generator: Callable[[], torch.Generator | None]) -> None:
            super().__init__()
            self.p = float(p)
            self._get_generator = generator

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p <= 0.0:
                return x
            keep = 1.0 - self.p
            mask = torch.rand(x.shape, generator=self._get_generator(), device=x.device) < keep
            return x * mask / keep

        def extra_repr(self) -> str:
            return f"p={self.p}"

    return SeededDropout


def __getattr__(name: str) -> Any:
    if name == "SeededDropout":  # PEP 562: built on first use, see ``_seeded_dropout``
        globals()[name] = _seeded_dropout()  # later look-ups skip this hook
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_optim_adam = LazyModule("torch.optim.adam")


def functional_adam(*args: Any, **kwargs: Any) -> None:
    """``torch.optim.adam.adam``, imported on first use (importing it does not load
    ``torch._dynamo``, unlike building a ``torch.optim`` optimizer; see :class:`Adam`)."""
    _optim_adam.adam(*args, **kwargs)


def adam(
    params: Any,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    private: bool = False,
) -> Any:
    """The models' Adam: :class:`Adam` for plain training; under DP (``private``) a
    ``torch.optim.Adam`` (fused where the build allows), because Opacus wraps an optimizer."""
    if not private:
        return Adam(params, lr, weight_decay, betas)
    params = list(params)
    kwargs: dict[str, Any] = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # pragma: no cover - old torch / unsupported device
        return torch.optim.Adam(params, **kwargs)


class Adam:
    """Adam (L2 ``weight_decay`` as in ``torch.optim.Adam``) through torch's functional
    implementation, ``torch.optim.adam.adam``, with its fused kernel where the build has one.

    Same algorithm and kernel as ``torch.optim.Adam``; why not that class: building the first
    ``torch.optim`` optimizer of a process imports ``torch._dynamo`` (0.7-1.2 s on the
    reference machine, paid by every ``fit`` in a fresh process), and its ``step`` wrappers cost
    ~0.1 ms per step. Parameters whose ``.grad`` is None are skipped, as torch.optim does.

    In a distributed fit (``tabsynth._distributed``) ``step`` first averages the gradients
    over the processes in one bucketed all-reduce: every model's plain training (and CTGAN's
    generator under DP) updates through here, so each gets data parallelism without code
    of its own; all processes then apply the same update to the same weights.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self._state = [
            (
                torch.zeros_like(p, memory_format=torch.preserve_format),
                torch.zeros_like(p, memory_format=torch.preserve_format),
                torch.zeros((), dtype=torch.float32, device=p.device),  # as torch.optim's fused
            )
            for p in self.params
        ]
        self._fused = True

    @no_grad
    def step(self) -> None:
        live = [(p, s) for p, s in zip(self.params, self._state, strict=True) if p.grad is not None]
        if not live:
            return
        if _distributed.active() is not None:  # the same set of gradients on every process
            _distributed.all_reduce_([p.grad for p, _ in live], average=True)
        args = (
            [p for p, _ in live],
            [p.grad for p, _ in live],
            [s[0] for _, s in live],
            [s[1] for _, s in live],
            [],
            [s[2] for _, s in live],
        )
        kwargs: dict[str, Any] = dict(
            amsgrad=False,
            beta1=self.betas[0],
            beta2=self.betas[1],
            lr=self.lr,
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )
        if self._fused:
            try:
                functional_adam(*args, fused=True, **kwargs)
                return
            except (RuntimeError, TypeError):  # pragma: no cover - no fused kernel here
                self._fused = False
        functional_adam(*args, foreach=False, **kwargs)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()


def gumbel_noise(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Standard Gumbel noise drawn from ``generator``."""
    u = torch.rand(tuple(shape), generator=generator, device=device)
    eps = torch.finfo(u.dtype).tiny
    neg_log_u = (-torch.log(u.clamp_min(eps))).clamp_min(eps)
    return -torch.log(neg_log_u)


class SpanLayout:
    """Activations for all spans in a few kernels, without a Python loop over columns.

    ``spans`` are the transformer's ``Span`` objects (``start``, ``width``, ``activation``,
    ``role``, ``column``). Tanh scalars are gathered with one index. Softmax spans are bucketed
    by width (powers of two); each bucket is one padded ``(batch, n_spans, width)`` tensor
    (padding reads a ``-inf`` column, so it gets probability 0) and one softmax call. A last
    gather puts the columns back in transformer order. Padding never exceeds 2x, and a batch
    costs a few kernels per bucket (at most ~log2(widest span) buckets), whatever the number
    of columns.
    """

    def __init__(self, spans: Sequence[Any], output_dim: int) -> None:
        self.output_dim = d = int(output_dim)
        bad = [s for s in spans if s.activation not in ("tanh", "softmax")]
        if bad:
            raise ValueError(
                f"span of column {bad[0].column!r}: unknown activation {bad[0].activation!r}"
            )
        tanh = np.asarray([int(s.start) for s in spans if s.activation == "tanh"], dtype=np.int64)
        buckets: dict[int, list[tuple[int, int]]] = {}
        for s in spans:
            if s.activation == "softmax":
                key = int(np.ceil(np.log2(max(int(s.width), 1))))
                buckets.setdefault(key, []).append((int(s.start), int(s.width)))
        order = [tanh]
        self._buckets: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        for _, members in sorted(buckets.items()):  # per bucket, once
            width = max(w for _, w in members)
            pad = np.full((len(members), width), d, dtype=np.int64)  # column d is -inf
            for i, (start, w) in enumerate(members):
                pad[i, :w] = np.arange(start, start + w)
            valid = pad.reshape(-1) < d
            self._buckets.append((len(members), width, pad.reshape(-1), np.flatnonzero(valid)))
            order.append(pad.reshape(-1)[valid])
        order_arr = np.concatenate(order)
        if sorted(order_arr.tolist()) != list(range(d)):
            raise ValueError("the spans do not tile the encoded matrix exactly once")
        self._tanh = tanh
        self._inverse = np.argsort(order_arr)
        self._cache: dict[torch.device, tuple] = {}

    def _indices(self, device: torch.device) -> tuple:
        if device not in self._cache:
            t = functools.partial(torch.as_tensor, device=device)
            self._cache[device] = (
                t(self._tanh),
                t(self._inverse),
                [(n, w, t(pad), t(valid)) for n, w, pad, valid in self._buckets],
            )
        return self._cache[device]

    def activate(
        self,
        logits: torch.Tensor,
        *,
        tau: float = 0.2,
        gumbel: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """tanh on scalar spans; (Gumbel-)softmax with temperature ``tau`` on one-hot spans."""
        tanh, inverse, buckets = self._indices(logits.device)
        b = logits.shape[0]
        parts = [torch.tanh(logits.index_select(1, tanh))]
        z = logits
        if gumbel:
            z = (z + gumbel_noise(z.shape, generator, z.device)) / tau
        z = F.pad(z, (0, 1), value=float("-inf"))
        for n, width, pad, valid in buckets:
            block = z.index_select(1, pad).view(b, n, width)
            parts.append(torch.softmax(block, dim=-1).flatten(1).index_select(1, valid))
        return torch.cat(parts, dim=1).index_select(1, inverse)

    @no_grad
    def draw(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Sampling-time decode: tanh on scalar spans and, per one-hot span, a category drawn
        from ``softmax(logits)`` written as an exact one-hot.

        Same law as the argmax of a Gumbel-softmax sample (the Gumbel-max trick; the
        temperature does not move the argmax), with one uniform per span and row (inverse
        CDF) instead of one Gumbel draw per category and row.
        """
        tanh, inverse, buckets = self._indices(logits.device)
        b = logits.shape[0]
        out = logits.new_zeros(b, self.output_dim + 1)  # the extra column absorbs padding
        out[:, tanh] = torch.tanh(logits.index_select(1, tanh))
        z = F.pad(logits, (0, 1), value=float("-inf"))
        for n, width, pad, _valid in buckets:
            cdf = torch.softmax(z.index_select(1, pad).view(b, n, width), dim=-1).cumsum_(-1)
            u = torch.rand(b, n, 1, generator=generator, device=logits.device)
            u.mul_(cdf[:, :, -1:])  # the cumulative sum may end a rounding error below 1
            pick = torch.searchsorted(cdf, u).squeeze(-1).clamp_(max=width - 1)
            cols = pad.view(n, width).gather(1, pick.t()).t()  # (b, n) output columns
            out.scatter_(1, cols, 1.0)
        return out[:, : self.output_dim]
