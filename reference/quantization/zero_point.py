"""Asymmetric (affine) group-wise quantisation to unsigned b-bit codes, and dequantisation."""

from __future__ import annotations

import torch


def _groups(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """(..., n) -> (..., n // group_size, group_size): consecutive runs of the last axis."""
    n = x.shape[-1]
    if group_size < 1 or n % group_size != 0:
        raise ValueError(f"the last axis ({n}) must be a multiple of group_size ({group_size})")
    return x.reshape(*x.shape[:-1], n // group_size, group_size)


def quantize_affine(x: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be 1 .. 8, got {bits}")
    qmax = 2**bits - 1
    g = _groups(x.float(), group_size)
    # the range always holds 0, so that 0 has an exact code (the zero point)
    lo = g.amin(dim=-1).clamp(max=0.0)
    hi = g.amax(dim=-1).clamp(min=0.0)
    scale = (hi - lo) / qmax
    scale = torch.where(hi > lo, scale, torch.ones_like(scale))  # an all-zero group
    zero_point = torch.round(-lo / scale).clamp(0, qmax)
    codes = (torch.round(g / scale.unsqueeze(-1)) + zero_point.unsqueeze(-1)).clamp(0, qmax)
    return codes.reshape(x.shape).to(torch.uint8), scale, zero_point.to(torch.uint8)


def dequantize_affine(
    codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int
) -> torch.Tensor:
    g = _groups(codes.float(), group_size)
    out = (g - zero_point.float().unsqueeze(-1)) * scale.unsqueeze(-1)
    return out.reshape(codes.shape)
