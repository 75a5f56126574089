"""DP-SGD plumbing shared by the models: Poisson batches, the Opacus optimizer, module
validation, and ``torch.func`` per-sample gradients.

The models clip per example with ghost clipping (``privacy.ghost``: exact, nothing of size
batch x parameters is built) and hand the clipped sum to ``make_dp_optimizer(...,
clipping="ghost")``. The ``torch.func`` path here (``per_sample_grads``: ``vmap(grad(...))``,
nested for a WGAN-GP penalty, fed to a ``DPOptimizer`` through ``p.grad_sample``, Opacus'
``no_op`` pattern) materialises every per-sample gradient: it is the general reference the
invariant tests compare the fast path against, and ``make_dp_optimizer(clipping="per_sample")``
takes it for a network that ghost clipping does not cover (neither model needs that).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DistributedDPOptimizer, DPOptimizer
from opacus.optimizers.ddpoptimizer_fast_gradient_clipping import (
    DistributedDPOptimizerFastGradientClipping,
)
from opacus.optimizers.optimizer_fast_gradient_clipping import DPOptimizerFastGradientClipping
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.utils.data import Dataset, TensorDataset

from tabsynth import _distributed
from tabsynth.errors import PrivacyError
from tabsynth.privacy.ledger import check_delta

__all__ = [
    "PoissonLoader",
    "gradient_penalty",
    "make_dp_optimizer",
    "make_poisson_loader",
    "module_state",
    "per_sample_grads",
    "resolve_delta",
    "secure_generator",
    "single_example",
    "validate_dp_module",
    "write_grad_samples",
]

DEFAULT_DELTA = 1e-5


def resolve_delta(delta: float | None, n: int) -> float:
    """The delta of a DP fit.

    Default ``min(1e-5, 1 / (10 n))``: delta is the probability that the guarantee fails
    outright, so it must be far below the chance 1/n of picking any one row. A user delta >= 1/n
    is refused; one above 1/(10 n) is allowed with a warning. ``n`` should be public or a
    noisy count (the default delta would otherwise depend on the private n).
    """
    if int(n) != n or n < 1:
        raise PrivacyError(f"n must be a positive integer to choose delta, got {n!r}")
    if delta is None:
        return min(DEFAULT_DELTA, 1.0 / (10 * n))
    delta = float(delta)
    if not 0 < delta < 1:
        raise PrivacyError(f"delta must be in (0, 1), got {delta!r}")
    if delta >= 1.0 / n:
        raise PrivacyError(
            f"delta={delta:g} is >= 1/n = {1.0 / n:g}: such a guarantee allows releasing a "
            "random row in the clear; use delta well below 1/n (default min(1e-5, 1/(10 n)))"
        )
    delta = check_delta(delta)
    if delta > 1.0 / (10 * n):
        warnings.warn(
            f"delta={delta:g} is above 1/(10 n) = {1.0 / (10 * n):g}; consider a smaller delta",
            UserWarning,
            stacklevel=2,
        )
    return delta


# ---------------------------------------------------------------------- Poisson sampling
class _BatchTensorDataset(TensorDataset):
    """TensorDataset that gathers a whole batch with one indexing op (no per-row loop)."""

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return [t[idx] for t in self.tensors]


class _CompactRows(Dataset):
    """The rows of a compact encoded store (``CompactTable``): a batch is one ``dense(rows)``
    call, expanded on the store's device; the store is never made dense as a whole."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (self.table.dense(torch.as_tensor([int(i)], dtype=torch.long))[0],)

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return [self.table.dense(torch.as_tensor(indices, dtype=torch.long))]


def _collate(single: bool) -> Callable[[list[torch.Tensor]], Any]:
    def collate(batch: list[torch.Tensor]) -> Any:
        return batch[0] if single else tuple(batch)

    return collate


class _NoRows:
    """Poisson sampling of zero rows: every batch is empty. The loader of a process whose
    shard holds no row (a distributed DP fit on fewer rows than processes), which Opacus'
    sampler refuses; it still takes every step of the plan, as the other processes do."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], sample_rate: float) -> None:
        self.batch = tensors[0] if len(tensors) == 1 else tensors
        self.steps = int(1 / sample_rate)  # as UniformWithReplacementSampler

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.steps):
            yield self.batch


class PoissonLoader(NamedTuple):
    """A Poisson-sampling loader with the rate and epoch length the accountant must use."""

    loader: DPDataLoader | _NoRows
    sample_rate: float
    steps_per_epoch: int

    def batches(self, n_steps: int) -> Iterator[Any]:
        """Exactly ``n_steps`` independent Poisson batches (re-iterating the loader as needed)."""
        remaining = int(n_steps)
        while remaining > 0:
            for batch in self.loader:
                yield batch
                remaining -= 1
                if remaining == 0:
                    return


def make_poisson_loader(
    X: Any,
    expected_batch_size: int,
    *,
    generator: torch.Generator,
    n: int | None = None,
) -> PoissonLoader:
    """Opacus ``DPDataLoader`` over the rows of ``X``: every row joins each batch independently
    with rate ``q = expected_batch_size / n``; batches vary in size and may be empty (then
    they have zero rows but the right shape).

    ``n`` is the row count that sets q: pass the public (or noisy) count; by default len(X),
    which treats n as public (with ``n`` given, ``X`` may have no row: a process's empty
    shard, whose every batch is empty). One epoch is ``len(loader) = int(1 / q)`` batches: use
    ``steps_per_epoch`` (not a recomputed value) when planning the budget.
    A tuple of tensors yields tuples of batches; a single tensor yields a tensor; a compact
    store (``tabsynth.transform.compact.CompactTable``) yields ``X.dense(rows)`` of the sampled
    rows (the same masks from the same generator as for the dense matrix, so the same rows).
    """
    if hasattr(X, "dense") and hasattr(X, "spans"):  # a CompactTable: batches expanded
        dataset: Dataset = _CompactRows(X)
        rows, single = len(X), True
        tensors: tuple[torch.Tensor, ...] = (X.dense(torch.zeros(0, dtype=torch.long)),)
    else:
        tensors = X if isinstance(X, tuple) else (X,)
        if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
            raise PrivacyError("make_poisson_loader needs a tensor (or a tuple of tensors)")
        rows = len(tensors[0])
        if any(len(t) != rows for t in tensors):
            raise PrivacyError("make_poisson_loader needs tensors with equal row counts")
        dataset, single = _BatchTensorDataset(*tensors), len(tensors) == 1
    if rows < 1 and n is None:
        raise PrivacyError("make_poisson_loader needs a non-empty table (or the row count n)")
    if not isinstance(generator, torch.Generator):
        raise PrivacyError("make_poisson_loader needs a seeded torch.Generator (generator=)")
    n = rows if n is None else int(n)
    if int(expected_batch_size) != expected_batch_size or expected_batch_size < 1:
        raise PrivacyError(
            f"expected_batch_size must be a positive integer, got {expected_batch_size!r}"
        )
    if n < 1 or expected_batch_size > n:
        raise PrivacyError(
            f"expected_batch_size={expected_batch_size} must not exceed the row count n={n}"
        )
    q = expected_batch_size / n
    if rows == 0:  # n counts the rows of every process; this one holds none
        return PoissonLoader(_NoRows(tensors, q), q, int(1 / q))
    loader = DPDataLoader(
        dataset,
        sample_rate=q,
        collate_fn=_collate(single),
        generator=generator,
    )
    return PoissonLoader(loader, q, len(loader))


# ---------------------------------------------------------------------- per-sample gradients
def module_state(module: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Detached ``(params, buffers)`` of a module for ``torch.func`` (trainable params only)."""
    params = {k: p.detach() for k, p in module.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in module.named_buffers()}
    return params, buffers


def single_example(
    module: nn.Module, params: dict, buffers: dict, *inputs: torch.Tensor
) -> torch.Tensor:
    """Run ``module`` on ONE example (no batch dimension) and return its output without one."""
    frozen = {k: v.detach() for k, v in module.named_parameters() if k not in params}
    out = functional_call(module, (params | frozen, buffers), tuple(x.unsqueeze(0) for x in inputs))
    return out.squeeze(0)


def gradient_penalty(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: float = 1.0
) -> torch.Tensor:
    """Per-example WGAN-GP term ``(||d fn / d x||_2 - target)^2`` for a scalar ``fn`` of one
    example; a nested ``torch.func.grad`` so it works inside ``per_sample_grads``."""
    g = grad(fn)(x)
    return (torch.linalg.vector_norm(g) - target) ** 2


def per_sample_grads(
    loss_fn: Callable[..., torch.Tensor],
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    *batch_tensors: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per-example gradients ``{name: (b, *param.shape)}`` of ``loss_fn`` w.r.t. ``params``.

    ``loss_fn(params, buffers, *example_tensors)`` returns the scalar, UN-averaged loss of one
    example (the DPOptimizer divides by the expected batch size). Every term that touches
    record i -- real term, its paired fake term, its gradient penalty -- must be inside that
    loss, so that each per-sample gradient depends on one record. Per-example randomness
    (fakes, interpolation weights) should be generated outside from a seeded generator and
    passed in as batch tensors; in-graph randomness (dropout) is drawn independently per
    example (``randomness="different"``). An empty batch returns zero-row gradients.
    """
    if not batch_tensors:
        raise PrivacyError("per_sample_grads needs at least one batch tensor")
    b = len(batch_tensors[0])
    if any(len(t) != b for t in batch_tensors):
        raise PrivacyError("per_sample_grads: batch tensors have different numbers of rows")
    if b == 0:
        return {k: p.new_zeros((0, *p.shape)) for k, p in params.items()}
    in_dims = (None, None) + (0,) * len(batch_tensors)
    fn = vmap(grad(loss_fn), in_dims=in_dims, randomness="different")
    return fn(params, buffers, *batch_tensors)


def write_grad_samples(module: nn.Module, grads: dict[str, torch.Tensor]) -> None:
    """Hand per-sample gradients to Opacus: set ``p.grad_sample`` for every trainable param.

    Raises PrivacyError if a trainable parameter has no per-sample gradient (it would
    otherwise be updated without clipping/noise) or if batch sizes disagree.
    """
    sizes = {len(g) for g in grads.values()}
    if len(sizes) > 1:
        raise PrivacyError(f"per-sample gradients have different batch sizes: {sorted(sizes)}")
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if name not in grads:
            raise PrivacyError(f"parameter {name!r} has no per-sample gradient")
        g = grads[name]
        if tuple(g.shape[1:]) != tuple(p.shape):
            raise PrivacyError(
                f"parameter {name!r}: per-sample gradient shape {tuple(g.shape)} does not "
                f"match the parameter {tuple(p.shape)}"
            )
        p.grad_sample = g.detach().to(dtype=p.dtype)


# ---------------------------------------------------------------------- optimizer
_MIXING_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _running_stat_norms(module: nn.Module) -> list[str]:
    """Layers that mix examples of a batch whatever their parameters (Opacus only checks
    layers with trainable parameters, so an affine-free BatchNorm would slip through)."""
    bad = []
    for name, sub in module.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            bad.append(
                f"{name or '<root>'} ({type(sub).__name__}): normalises each example with "
                "statistics of the whole batch"
            )
        elif isinstance(sub, nn.modules.instancenorm._InstanceNorm) and sub.track_running_stats:
            bad.append(f"{name or '<root>'} ({type(sub).__name__}): tracks running statistics")
    return bad


def validate_dp_module(module: nn.Module) -> None:
    """Refuse modules whose per-sample gradients would depend on other examples.

    Runs ``opacus.validators.ModuleValidator.validate(strict=True)`` and converts its failure
    into PrivacyError naming the offending layers (BatchNorm, InstanceNorm with running
    statistics, LSTM without the DP replacement...). Stricter than Opacus in one respect: a
    BatchNorm without trainable parameters is refused too. The module must be in training mode.
    """
    if not isinstance(module, nn.Module):
        raise PrivacyError(f"expected a torch.nn.Module, got {type(module).__name__}")
    bad = _running_stat_norms(module)
    for name, sub in module.named_modules():
        check = ModuleValidator.VALIDATORS.get(type(sub))
        trainable = any(p.requires_grad for p in sub.parameters(recurse=False))
        if check is not None and trainable and not isinstance(sub, _MIXING_NORMS):
            for err in check(sub):
                bad.append(f"{name or '<root>'} ({type(sub).__name__}): {str(err).split('. ')[0]}")
    if not module.training:
        bad.append("the module is in eval mode (call .train() before DP training)")
    if not bad:
        try:
            ModuleValidator.validate(module, strict=True)
        except UnsupportedModuleError as exc:
            bad.append(str(exc))
    if bad:
        raise PrivacyError(
            "module not trainable with DP-SGD: " + "; ".join(bad) + " (DP-safe normalisation: "
            "LayerNorm, GroupNorm)"
        )


def secure_generator() -> torch.Generator:
    """A cryptographically secure generator (torchcsprng, CPU) for release runs: use it for
    both the Poisson loader and the optimizer noise (``secure_mode=True`` does the latter)."""
    try:
        import torchcsprng  # type: ignore[import-not-found]
    except ImportError:
        raise PrivacyError(
            "secure_mode=True needs the torchcsprng package (cryptographically secure noise); "
            "install it or train with a seeded generator and secure_mode=False"
        ) from None
    return torchcsprng.create_random_device_generator("/dev/urandom")


class _SummedAcrossProcesses:
    """Opacus' distributed DP optimizers with one change: ``reduce_gradients`` SUMS the
    processes' gradients in one bucketed all-reduce (``tabsynth._distributed``) instead of
    averaging them one tensor at a time.

    What each process holds at that point: its clipped per-example gradients summed over
    its own Poisson sample, plus -- on rank 0 only -- the Gaussian noise, all divided by the
    expected batch size of the WHOLE step (``expected_batch_size`` is the global one). The
    sum over processes is therefore ``(sum of clipped gradients over the union of the
    samples + N(0, sigma^2 C^2)) / B``: the one-process update, noise added once.
    """

    def reduce_gradients(self) -> None:
        _distributed.all_reduce_([p.grad for p in self.params if p.requires_grad], average=False)


class _DistributedPerSample(_SummedAcrossProcesses, DistributedDPOptimizer):
    pass


class _DistributedGhost(_SummedAcrossProcesses, DistributedDPOptimizerFastGradientClipping):
    pass


def make_dp_optimizer(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: int,
    generator: torch.Generator | None = None,
    secure_mode: bool = False,
    clipping: str = "per_sample",
    distributed: bool = False,
) -> DPOptimizer:
    """Wrap ``optimizer`` (over exactly ``module``'s trainable parameters) in an Opacus
    ``DPOptimizer``: clip each per-sample gradient to ``max_grad_norm``, add
    N(0, (noise_multiplier * max_grad_norm)^2) and divide by the EXPECTED batch size, so the
    realised Poisson batch size never enters the update.

    ``clipping="per_sample"``: feed it with ``write_grad_samples`` (the no_op pattern; Opacus
    clips). ``clipping="ghost"``: the caller writes the already clipped SUM of per-sample
    gradients into ``p.grad`` (``ghost.clip_linear_uses``) and the returned
    ``DPOptimizerFastGradientClipping`` only adds the noise and divides. Noise comes from
    ``generator`` (seeded, on the parameters' device) or, with ``secure_mode=True``, from
    torchcsprng.

    ``distributed=True`` (inside a distributed fit, ``tabsynth._distributed``): Opacus'
    ``DistributedDPOptimizer`` (or its ghost-clipping twin), whose noise is added on rank 0
    only; each process feeds the clipped sum of its own Poisson sample and
    ``expected_batch_size`` stays the expected size of the whole step's batch.
    """
    if clipping not in ("per_sample", "ghost"):
        raise PrivacyError(f"clipping must be 'per_sample' or 'ghost', got {clipping!r}")
    validate_dp_module(module)
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    in_opt = {id(p) for g in optimizer.param_groups for p in g["params"] if p.requires_grad}
    if trainable != in_opt:
        raise PrivacyError(
            "the optimizer must hold exactly the module's trainable parameters "
            f"({len(in_opt)} given, {len(trainable)} in the module)"
        )
    sigma = float(noise_multiplier)
    if not math.isfinite(sigma) or sigma < 0:
        raise PrivacyError(f"noise_multiplier must be >= 0, got {noise_multiplier!r}")
    clip = float(max_grad_norm)
    if not math.isfinite(clip) or clip <= 0:
        raise PrivacyError(f"max_grad_norm must be positive, got {max_grad_norm!r}")
    if int(expected_batch_size) != expected_batch_size or expected_batch_size < 1:
        raise PrivacyError(
            f"expected_batch_size must be a positive integer, got {expected_batch_size!r}"
        )
    if secure_mode:
        if generator is not None:
            raise PrivacyError("secure_mode=True draws its own noise; do not pass a generator")
        generator = secure_generator()
    elif not isinstance(generator, torch.Generator):
        raise PrivacyError(
            "make_dp_optimizer needs a seeded torch.Generator (generator=) or secure_mode=True"
        )
    if distributed:
        if _distributed.active() is None:
            raise PrivacyError("distributed=True needs a running distributed fit")
        cls: type = _DistributedPerSample if clipping == "per_sample" else _DistributedGhost
    else:
        cls = DPOptimizer if clipping == "per_sample" else DPOptimizerFastGradientClipping
    return cls(
        optimizer,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        expected_batch_size=int(expected_batch_size),
        loss_reduction="mean",
        generator=generator,
        secure_mode=bool(secure_mode),
    )
