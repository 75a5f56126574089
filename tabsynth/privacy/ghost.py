"""Per-sample clipping for networks of ``nn.Linear`` layers without per-sample gradients.

For a Linear layer applied to a batch, example i's weight gradient is an outer product
``g_i a_i^T`` (``a_i`` the layer input, ``g_i`` the loss gradient at the layer output), so its
norm is ``||g_i|| ||a_i||`` and the clipped sum ``sum_i c_i g_i a_i^T`` is one matmul with
rows scaled by the clip factors ("ghost clipping", Goodfellow 2015; Li et al. 2022). When the
same layer contributes several rank-one terms to one example's gradient (the critic of a GAN
sees real row i, its paired fake and the gradient-penalty term), the norm is still exact from
the Gram of the terms: ``||sum_k g_k a_k^T||^2 = sum_{k,m} (g_k . g_m)(a_k . a_m)``.

Nothing of size (batch x parameters) is ever built, so a DP step costs about what a non-DP
step costs. The clipped sum goes into ``p.grad`` and Opacus'
``DPOptimizerFastGradientClipping`` adds the noise and divides by the expected batch size.
Exactness is tested against ``torch.func`` per-sample gradients (tests/test_privacy.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tabsynth._lazy import nn, torch
from tabsynth.errors import PrivacyError

__all__ = ["LinearTape", "LinearUse", "clip_linear_uses", "record_linear", "write_linear_grads"]

#: Opacus' clip factor: min(1, C / (norm + 1e-6))
_CLIP_EPS = 1e-6


@dataclass(frozen=True)
class LinearUse:
    """One rank-one contribution of ``layer`` to every example's gradient.

    ``inputs`` (b, in) and ``grad_out`` (b, out) are row-aligned with the examples: row i belongs
    to example i. ``bias``: whether the bias receives ``grad_out`` (False for a term that
    differentiates the weight alone, such as the gradient penalty's backward use of W).
    """

    layer: nn.Linear
    inputs: torch.Tensor
    grad_out: torch.Tensor
    bias: bool = True


def clip_linear_uses(
    uses: Sequence[LinearUse], max_grad_norm: float, module: nn.Module | None = None
) -> torch.Tensor:
    """Clip every example's total gradient to ``max_grad_norm`` and write the clipped SUM into
    ``p.grad`` of every layer; returns the per-example norms before clipping.

    ``module``: if given, every trainable parameter of it must belong to a layer in ``uses``
    (anything else would be updated without clipping), checked before anything is written.
    An empty batch (zero rows) writes zero gradients.
    """
    if not uses:
        raise PrivacyError("clip_linear_uses needs at least one layer use")
    b = uses[0].inputs.shape[0]
    for u in uses:
        if u.inputs.dim() != 2 or u.grad_out.dim() != 2:
            raise PrivacyError(
                "ghost clipping needs 2-d layer inputs and outputs (batch, features)"
            )
        if u.inputs.shape[0] != b or u.grad_out.shape[0] != b:
            raise PrivacyError("every layer use must have one row per example")
    groups = _by_layer(uses)
    if module is not None:
        covered = {id(p) for layer, _, _ in groups for p in layer.parameters()}
        for name, p in module.named_parameters():
            if p.requires_grad and id(p) not in covered:
                raise PrivacyError(f"parameter {name!r} is not in a recorded Linear layer")
    sq = uses[0].inputs.new_zeros(b)
    for layer, us, gb in groups:
        for k, u in enumerate(us):
            sq += u.inputs.pow(2).sum(1) * u.grad_out.pow(2).sum(1)
            for v in us[k + 1 :]:
                sq += 2.0 * (u.inputs * v.inputs).sum(1) * (u.grad_out * v.grad_out).sum(1)
        if gb is not None and layer.bias is not None and layer.bias.requires_grad:
            sq += gb.pow(2).sum(1)
    norms = sq.clamp_min(0.0).sqrt()
    factor = (float(max_grad_norm) / (norms + _CLIP_EPS)).clamp(max=1.0)
    _write(groups, factor)
    return norms


def write_linear_grads(uses: Sequence[LinearUse], row_scale: float = 1.0) -> None:
    """``p.grad = row_scale * sum over uses and rows of g_i a_i^T`` (bias: of ``g_i``) for
    every layer in ``uses``: one matmul per layer (the non-private use of the same terms)."""
    _write(_by_layer(uses), row_scale)


def _by_layer(
    uses: Sequence[LinearUse],
) -> list[tuple[nn.Linear, list[LinearUse], torch.Tensor | None]]:
    """Uses grouped by layer, with the per-row bias gradient (None if no use feeds the bias)."""
    grouped: dict[nn.Linear, list[LinearUse]] = {}
    for u in uses:
        grouped.setdefault(u.layer, []).append(u)
    out = []
    for layer, us in grouped.items():
        parts = [u.grad_out for u in us if u.bias]
        gb = None
        for part in parts:
            gb = part if gb is None else gb + part
        out.append((layer, us, gb))
    return out


def _write(
    groups: list[tuple[nn.Linear, list[LinearUse], torch.Tensor | None]],
    row_scale: torch.Tensor | float,
) -> None:
    """Write the (row-scaled) summed gradients; ``row_scale`` is a scalar or shape (b,)."""
    per_row = isinstance(row_scale, torch.Tensor)
    for layer, us, gb in groups:
        if layer.weight.requires_grad:
            g = us[0].grad_out if len(us) == 1 else torch.cat([u.grad_out for u in us], 0)
            a = us[0].inputs if len(us) == 1 else torch.cat([u.inputs for u in us], 0)
            if per_row:
                g = g * row_scale.repeat(len(us)).unsqueeze(1)
            grad = g.t() @ a
            if not per_row and row_scale != 1.0:  # on the (out, in) product: fewer elements
                grad.mul_(row_scale)
            layer.weight.grad = grad.to(layer.weight.dtype)  # float32 under bf16 autocast
        if layer.bias is not None and layer.bias.requires_grad:
            if gb is None:
                summed = torch.zeros_like(layer.bias)
            elif per_row:
                summed = (row_scale.unsqueeze(1) * gb).sum(0)
            else:
                summed = gb.sum(0)
                if row_scale != 1.0:
                    summed.mul_(row_scale)
            layer.bias.grad = summed.to(layer.bias.dtype)


class LinearTape:
    """The inputs and outputs of every ``nn.Linear`` call in a module during one forward.

    Use :func:`record_linear`; then ``tape.uses(loss_rows)`` differentiates the summed per-row
    loss with respect to the recorded OUTPUTS only (autograd then skips every weight-gradient
    matmul) and pairs each output gradient with its input.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

    def _hook(self, layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.calls.append((layer, inputs[0].detach(), output))  # type: ignore[arg-type]

    def uses(self, loss_rows: torch.Tensor) -> list[LinearUse]:
        """Layer uses for ``loss_rows`` (shape (b,), example i's loss in row i)."""
        if loss_rows.dim() != 1:
            raise PrivacyError("the loss must have one entry per example (shape (batch,))")
        outs = [o for _, _, o in self.calls]
        grads = torch.autograd.grad(loss_rows.sum(), outs, allow_unused=True)
        return [
            LinearUse(layer, a, torch.zeros_like(o) if g is None else g)
            for (layer, a, o), g in zip(self.calls, grads, strict=True)
        ]


@contextmanager
def record_linear(module: nn.Module) -> Iterator[LinearTape]:
    """Record every Linear call of ``module`` inside the ``with`` block (hooks removed after)."""
    tape = LinearTape()
    handles = [
        m.register_forward_hook(tape._hook) for m in module.modules() if isinstance(m, nn.Linear)
    ]
    try:
        yield tape
    finally:
        for h in handles:
            h.remove()
