"""Ghost clipping (privacy/ghost.py) equals clipping materialised per-example gradients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import reference_elbo_rows
from torch import nn

import tabsynth
from tabsynth.errors import PrivacyError
from tabsynth.models import ctgan
from tabsynth.privacy import LinearUse, clip_linear_uses, record_linear


def per_example_grads(module: nn.Module, loss_of_row) -> tuple[list[dict], torch.Tensor]:
    """Reference: one autograd pass per example; returns grads and their total norms."""
    out, norms = [], []
    for i in range(loss_of_row.n):
        module.zero_grad(set_to_none=True)
        loss_of_row(i).backward()
        g = {k: p.grad.detach().clone() for k, p in module.named_parameters()}
        out.append(g)
        norms.append(torch.cat([v.flatten() for v in g.values()]).norm())
    module.zero_grad(set_to_none=True)
    return out, torch.stack(norms)


def clipped_sum(grads: list[dict], norms: torch.Tensor, C: float) -> dict:
    factor = (C / (norms + 1e-6)).clamp(max=1.0)
    return {k: sum(f * g[k] for f, g in zip(factor, grads, strict=True)) for k in grads[0]}


class Row:
    def __init__(self, n, fn):
        self.n, self.fn = n, fn

    def __call__(self, i):
        return self.fn(i)


def mlp() -> nn.Sequential:
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.Tanh(), nn.Linear(3, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net


@pytest.mark.parametrize("C", [1e3, 0.3])  # clipping inactive / active for every example
def test_one_use_per_layer_matches_per_example_clipping(C):
    net = mlp()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(9, 5, generator=gen) * 3
    grads, norms = per_example_grads(net, Row(9, lambda i: net(x[i : i + 1]).pow(2).sum()))
    with record_linear(net) as tape:
        rows = net(x).pow(2).sum(1)
    got = clip_linear_uses(tape.uses(rows), C, module=net)
    torch.testing.assert_close(got, norms, rtol=1e-5, atol=1e-5)
    ref = clipped_sum(grads, norms, C)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, ref[k], rtol=1e-5, atol=1e-6)
    if C < 1:
        assert (norms > C).all()


def test_several_uses_of_a_layer_per_example_are_one_gradient():
    """Row i of a 'real' and a 'fake' batch belong to example i: one clipped gradient each."""
    net = mlp()
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)

    def loss(i):
        return net(fake[i : i + 1]).sum() - net(real[i : i + 1]).sum()

    grads, norms = per_example_grads(net, Row(6, loss))
    b = len(real)
    with record_linear(net) as tape:
        out = net(torch.cat([real, fake], 0)).squeeze(1)
    flat = tape.uses(torch.cat([-out[:b], out[b:]]))
    # the tape has one call per layer over 2b rows: split each into its real and fake halves
    uses = []
    for u in flat:
        uses.append(LinearUse(u.layer, u.inputs[:b], u.grad_out[:b]))
        uses.append(LinearUse(u.layer, u.inputs[b:], u.grad_out[b:]))
    C = 0.5
    got = clip_linear_uses(uses, C, module=net)
    torch.testing.assert_close(got, norms, rtol=1e-5, atol=1e-5)
    ref = clipped_sum(grads, norms, C)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, ref[k], rtol=1e-5, atol=1e-6)


def test_a_parameter_outside_linear_layers_is_refused():
    net = mlp()
    net.register_parameter("free", nn.Parameter(torch.ones(2)))
    with record_linear(net) as tape:
        rows = net(torch.ones(3, 5)).sum(1)
    with pytest.raises(PrivacyError, match="'free' is not in a recorded Linear layer"):
        clip_linear_uses(tape.uses(rows), 1.0, module=net)


def test_hooks_are_removed_after_recording():
    net = mlp()
    with record_linear(net) as tape:
        net(torch.ones(2, 5))
    assert len(tape.calls) == 3
    net(torch.ones(2, 5))
    assert len(tape.calls) == 3


def test_tvae_clipped_gradients_equal_clipped_per_example_elbo_gradients():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], 40),
            "b": rng.normal(size=40),
            "c": rng.integers(0, 9, 40),
        }
    )
    model = tabsynth.TVAE(
        embedding_dim=4,
        compress_dims=(8,),
        decompress_dims=(8,),
        epochs=1,
        batch_size=20,
        verbose=False,
        random_state=0,
    ).fit(df)
    vae = model.vae_
    x = torch.as_tensor(model.transformer_.transform(df), dtype=torch.float32)[:, model._perm]
    x = x[:10].contiguous()
    noise = torch.randn(10, 4, generator=torch.Generator().manual_seed(3))

    def loss(i):
        return reference_elbo_rows(model, x[i : i + 1], noise[i : i + 1]).sum()

    grads, norms = per_example_grads(vae, Row(10, loss))
    C = float(norms.median())  # about half the examples get clipped
    got = model._clipped_grads(x, noise, C)
    torch.testing.assert_close(got, norms, rtol=1e-4, atol=1e-5)
    ref = clipped_sum(grads, norms, C)
    for k, p in vae.named_parameters():
        torch.testing.assert_close(p.grad, ref[k], rtol=1e-4, atol=1e-5)
    # an empty Poisson batch gives zero gradients (then only noise is added)
    model._clipped_grads(x[:0], noise[:0], C)
    assert all(float(p.grad.abs().sum()) == 0 for p in vae.parameters())


@pytest.mark.parametrize("C", [1e4, 0.5])
def test_ctgan_critic_with_gradient_penalty_matches_per_example_autograd(C):
    """The closed-form per-example gradient of -D(real) + D(fake) + lam * GP (second-order
    term included) equals a per-example double-backward loop, clipped the same way."""
    from tabsynth.models import _nn

    gen = torch.Generator().manual_seed(4)
    D = ctgan._nets().Discriminator(6, (9, 7), 1, lambda: None)
    _nn.reset_parameters(D, gen)
    D.eval()
    real, fake = torch.randn(8, 6, generator=gen), torch.randn(8, 6, generator=gen)
    alpha = torch.rand(8, 1, generator=gen)
    lam = 10.0

    def loss(i):
        x_hat = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
        wgan = D(fake[i : i + 1]).sum() - D(real[i : i + 1]).sum()
        return wgan + lam * (g.norm() - 1) ** 2

    grads, norms = per_example_grads(D, Row(8, loss))
    got = ctgan.critic_clipped_grads(D, real, fake, alpha, lam, C)
    torch.testing.assert_close(got, norms, rtol=1e-4, atol=1e-5)
    ref = clipped_sum(grads, norms, C)
    for k, p in D.named_parameters():
        torch.testing.assert_close(p.grad, ref[k], rtol=1e-4, atol=1e-5)


def test_ctgan_critic_closed_form_refuses_packs_and_active_dropout():
    x = torch.zeros(4, 3)
    packed = ctgan._nets().Discriminator(3, (4,), 2, lambda: None).eval()
    with pytest.raises(PrivacyError, match="pac must be 1"):
        ctgan.critic_clipped_grads(packed, x, x, x[:, :1], 10.0, 1.0)
    dropout = ctgan._nets().Discriminator(3, (4,), 1, lambda: torch.Generator()).train()
    with pytest.raises(PrivacyError, match="eval mode"):
        ctgan.critic_clipped_grads(dropout, x, x, x[:, :1], 10.0, 1.0)


def test_ctgan_critic_closed_form_with_packs_and_dropout_matches_autograd():
    """Non-DP training sums the same terms: with pac=2 and dropout, the closed-form gradient of
    the batch loss equals autograd's double backward with the same dropout masks."""
    from tabsynth.models import _nn
    from tabsynth.privacy import write_linear_grads

    gen = torch.Generator().manual_seed(5)
    drop_gen = torch.Generator().manual_seed(6)
    D = ctgan._nets().Discriminator(3, (8, 5), 2, lambda: drop_gen)
    _nn.reset_parameters(D, gen)
    D.train()
    n = 6  # packs of 2 rows of 3 features
    real, fake = torch.randn(n, 6, generator=gen), torch.randn(n, 6, generator=gen)
    alpha = torch.rand(n, 1, generator=gen)
    lam = 10.0
    replay = drop_gen.get_state()
    terms = D.wgan_gp_terms(real, fake, alpha, lam)
    write_linear_grads(terms.uses, 1.0 / n)
    got = {k: p.grad.clone() for k, p in D.named_parameters()}

    # reference: the same masks (drawn in the same order), autograd with create_graph
    drop_gen.set_state(replay)
    linears = [m for m in D.seq if isinstance(m, nn.Linear)]
    masks = [
        (torch.rand(3 * n, m.out_features, generator=drop_gen) < 0.5) * 2.0 for m in linears[:-1]
    ]

    def critic(x, rows):
        for layer, mask in zip(linears[:-1], masks, strict=True):
            x = torch.nn.functional.leaky_relu(layer(x), 0.2) * mask[rows]
        return linears[-1](x).squeeze(1)

    D.zero_grad(set_to_none=True)
    interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(interp, slice(2 * n, 3 * n)).sum(), interp, create_graph=True)
    penalty = (g.norm(dim=1) - 1) ** 2
    loss = (
        critic(fake, slice(n, 2 * n)).mean()
        - critic(real, slice(0, n)).mean()
        + lam * penalty.mean()
    )
    loss.backward()
    torch.testing.assert_close(terms.penalty, penalty.detach(), rtol=1e-5, atol=1e-6)
    for k, p in D.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-4, atol=1e-6)
