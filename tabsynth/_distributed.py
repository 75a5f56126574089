"""Several processes training one model (``torchrun``): the process group, the row shards and
the few collectives a distributed fit makes.

Why not ``torch.nn.parallel.DistributedDataParallel``: DDP all-reduces the gradients that
autograd produces, through hooks on each parameter's gradient accumulator, grouped into
buckets. Most of tabsynth's gradients never pass through autograd (CTGAN's critic, TVAE and
every DP step write them in closed form, ``write_linear_grads`` / ``privacy.ghost``), so DDP's
hooks would never fire for them. The same algorithm -- identical initial weights, each process
computes the gradient of its share of the batch, the gradients are averaged with one bucketed
all-reduce before every optimizer step -- is run here at the one place every model's update
goes through: ``models._nn.Adam.step`` (and, under DP, the Opacus ``DistributedDPOptimizer``
subclasses in ``privacy.dpsgd``). One flat bucket per step and dtype is one collective per
step, as DDP's default 25 MiB buckets are for networks of this size.

A *session* exists only while ``fit(..., distributed=True)`` runs (``active()``); library code
asks for it where it must behave differently (progress, saving, the shared optimizer step).
Every collective here is a no-op without a session or with one process, so a one-process
distributed fit is bit-identical to a plain fit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tabsynth import errors
from tabsynth.errors import DistributedError

if TYPE_CHECKING:
    import torch

#: what torchrun sets for every worker (``--nnodes``/``--rdzv-endpoint`` included)
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Session:
    """This process's place in the group: ``rank`` of ``world`` processes, ``local_rank`` on
    its machine, and the device its collectives run on (CPU for gloo, its GPU for nccl)."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the process that releases DP statistics, logs, and writes files."""
        return self.rank == 0


_ACTIVE: Session | None = None


def active() -> Session | None:
    """The session of the distributed fit running in this process, or ``None``."""
    return _ACTIVE


def is_main() -> bool:
    """True outside a distributed fit and on rank 0 (who shows progress and prints)."""
    return _ACTIVE is None or _ACTIVE.rank == 0


def environment() -> tuple[int, int, int]:
    """``(rank, world, local_rank)`` from torchrun's environment, or ``DistributedError``
    naming what is missing (checked before any row is read)."""
    import torch.distributed as dist

    if not dist.is_available():
        raise DistributedError("distributed=True: this torch build has no torch.distributed")
    if dist.is_initialized():  # the caller set the group up itself
        local = os.environ.get("LOCAL_RANK", "0")
        return dist.get_rank(), dist.get_world_size(), int(local) if local.isdigit() else 0
    missing = [k for k in ENV_VARS if not os.environ.get(k)]
    if missing:
        raise DistributedError(
            f"distributed=True needs the environment torchrun sets for each process; missing: "
            f"{', '.join(missing)}. Launch with `torchrun --nproc_per_node=N -m tabsynth fit "
            "DATA -o MODEL --distributed` (or torchrun your script), or fit without "
            "distributed=True / --distributed"
        )
    try:
        rank, world, local = (int(os.environ[k]) for k in ENV_VARS[:3])
    except ValueError:
        shown = {k: os.environ[k] for k in ENV_VARS[:3]}
        raise DistributedError(
            f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not integers: {shown}"
        ) from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise DistributedError(f"inconsistent RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


def process_device(device: torch.device, requested: Any, local_rank: int) -> torch.device:
    """Each process on its own GPU: ``cuda`` (or ``"auto"`` on a CUDA machine) becomes
    ``cuda:LOCAL_RANK``; an explicit ``cuda:N`` or the CPU is kept as asked."""
    import torch

    if device.type == "cuda" and not (isinstance(requested, str) and requested.startswith("cuda:")):
        if isinstance(requested, torch.device) and requested.index is not None:
            return device
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(
                f"LOCAL_RANK={local_rank} but this machine has {count} CUDA device(s): start "
                f"at most {count} processes per machine (--nproc_per_node)"
            )
        return torch.device("cuda", local_rank)
    return device


@contextmanager
def session(device: torch.device) -> Iterator[Session]:
    """The process group for one fit: joined from torchrun's environment (backend ``nccl``
    for CUDA, ``gloo`` otherwise) unless the caller already initialised one, in which case it
    is used and left open."""
    import torch
    import torch.distributed as dist

    global _ACTIVE
    if _ACTIVE is not None:
        raise DistributedError("a distributed fit is already running in this process")
    rank, world, local = environment()
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":  # NCCL bound to this process's GPU
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    comm = device if dist.get_backend() == "nccl" else torch.device("cpu")
    _ACTIVE = Session(rank, world, local, comm)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = None
        if owns:
            dist.destroy_process_group()


# -- rows ----------------------------------------------------------------------------------
def shard(n_rows: int, *, pad: bool) -> np.ndarray:
    """The row indices of this process: rows ``rank::world`` of the table.

    ``pad=True`` (plain training) gives every process the same number of rows, wrapping
    around to the first rows as ``torch.utils.data.DistributedSampler`` does, so every
    process runs the same number of optimizer steps (at most ``world - 1`` rows are seen
    twice per epoch). ``pad=False`` (DP): no row is repeated -- a repeated row would join two
    processes' Poisson samples and double its sensitivity -- and shard sizes differ by at
    most one row, which Poisson sampling does not mind (the step count is fixed by the plan).
    """
    s = _ACTIVE
    if s is None or s.world == 1:
        return np.arange(n_rows)
    total = math.ceil(n_rows / s.world) * s.world if pad else n_rows
    return (np.arange(total) % max(n_rows, 1))[s.rank :: s.world]


# -- collectives ---------------------------------------------------------------------------
def _buckets(tensors: Sequence[torch.Tensor]) -> dict[Any, list[torch.Tensor]]:
    groups: dict[Any, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    return groups


def all_reduce_(tensors: Sequence[torch.Tensor], *, average: bool) -> None:
    """Sum (``average``: mean) ``tensors`` in place across the processes, one flat bucket per
    dtype and device: one collective, not one per tensor. No host synchronisation."""
    import torch
    import torch.distributed as dist

    s = _ACTIVE
    if s is None or s.world == 1 or not tensors:
        return
    for group in _buckets(tensors).values():
        flat = torch.cat([t.reshape(-1) for t in group]).to(s.device)
        dist.all_reduce(flat)
        if average:
            flat.div_(s.world)
        _scatter(flat, group)


def broadcast_(tensors: Sequence[torch.Tensor]) -> None:
    """Overwrite ``tensors`` with rank 0's values (one bucket per dtype and device)."""
    import torch
    import torch.distributed as dist

    s = _ACTIVE
    if s is None or s.world == 1 or not tensors:
        return
    for group in _buckets(tensors).values():
        flat = torch.cat([t.detach().reshape(-1) for t in group]).to(s.device)
        dist.broadcast(flat, src=0)
        _scatter(flat, group)


def _scatter(flat: torch.Tensor, group: list[torch.Tensor]) -> None:
    import torch

    with torch.no_grad():
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset : offset + n].view_as(t))
            offset += n


def mean(value: float) -> float:
    """The mean of a number over the processes (a validation loss: once per validation,
    never per step)."""
    import torch
    import torch.distributed as dist

    s = _ACTIVE
    if s is None or s.world == 1:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=s.device)
    dist.all_reduce(t)
    return float(t.item()) / s.world


def broadcast_json(value: Any = None) -> Any:
    """Rank 0's JSON-able ``value`` on every process, sent as UTF-8 JSON bytes (never pickle:
    ``broadcast_object_list`` would unpickle whatever arrives)."""
    import torch
    import torch.distributed as dist

    s = _ACTIVE
    if s is None or s.world == 1:
        return value
    if s.main:
        data = json.dumps(value, allow_nan=True).encode("utf-8")
        size = torch.tensor([len(data)], dtype=torch.int64, device=s.device)
    else:
        size = torch.zeros(1, dtype=torch.int64, device=s.device)
    dist.broadcast(size, src=0)
    if s.main:
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(s.device)
    else:
        payload = torch.empty(int(size.item()), dtype=torch.uint8, device=s.device)
    dist.broadcast(payload, src=0)
    if s.main:
        return value
    return json.loads(bytes(payload.cpu().numpy()).decode("utf-8"))


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only and return its JSON-able result on every process.

    An exception on rank 0 is raised on every process (the same tabsynth error class and
    message), so no process waits forever for a result that will never come.
    """
    s = _ACTIVE
    if s is None or s.world == 1:
        return fn()
    message: dict[str, Any] | None = None
    if s.main:
        try:
            result = fn()
        except errors.TabsynthError as exc:
            broadcast_json({"error": type(exc).__name__, "message": str(exc)})
            raise
        except Exception as exc:
            broadcast_json({"error": "DistributedError", "message": f"rank 0 failed: {exc!r}"})
            raise
        broadcast_json({"result": result})
        return result
    message = broadcast_json()
    if "error" in message:
        cls = getattr(errors, str(message["error"]), DistributedError)
        if not (isinstance(cls, type) and issubclass(cls, errors.TabsynthError)):
            cls = DistributedError
        raise cls(f"(raised on rank 0) {message['message']}")
    return message["result"]


__all__ = [
    "ENV_VARS",
    "Session",
    "active",
    "all_reduce_",
    "broadcast_",
    "broadcast_json",
    "environment",
    "is_main",
    "mean",
    "on_main",
    "process_device",
    "session",
    "shard",
]
