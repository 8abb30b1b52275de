"""Symmetric absmax int8 quantisation, per tensor and per row, and dequantisation."""

from __future__ import annotations

import torch

QMAX = 127


def _codes(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # an all-zero row has scale 0: divide by 1 there instead, so its codes are 0, not NaN
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(x / safe).clamp(-QMAX, QMAX).to(torch.int8)


def quantize_per_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.float()
    scale = x.abs().amax() / QMAX
    return _codes(x, scale), scale


def quantize_per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.float()
    scale = x.abs().amax(dim=-1, keepdim=True) / QMAX
    return _codes(x, scale), scale


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes.float() * scale
