"""LayerNorm over the last dimension with an analytic (autograd-free) backward pass."""

from __future__ import annotations

import torch


def layernorm_forward(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, tuple]:
    mean = x.mean(dim=-1, keepdim=True)
    xc = x - mean
    # Two-pass variance from the centred values: no cancellation when |mean| >> std.
    var = (xc * xc).mean(dim=-1, keepdim=True)
    rstd = 1.0 / torch.sqrt(var + eps)
    xhat = xc * rstd
    y = xhat * weight + bias
    return y, (xhat, rstd, weight)


def layernorm_backward(
    grad_y: torch.Tensor, cache: tuple
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    xhat, rstd, weight = cache
    d = xhat.shape[-1]
    # weight and bias are shared by every row: their gradients sum over all leading dims.
    grad_weight = (grad_y * xhat).reshape(-1, d).sum(dim=0)
    grad_bias = grad_y.reshape(-1, d).sum(dim=0)
    # Gradient w.r.t. xhat, then through xhat = (x - mean) * rstd, where mean and rstd
    # depend on the whole row: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
    g = grad_y * weight
    g_mean = g.mean(dim=-1, keepdim=True)
    gx_mean = (g * xhat).mean(dim=-1, keepdim=True)
    grad_x = rstd * (g - g_mean - xhat * gx_mean)
    return grad_x, grad_weight, grad_bias
