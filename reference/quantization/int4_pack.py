"""Signed int4 codes with group-wise absmax scales, packed two to a byte."""

from __future__ import annotations

import torch

QMAX = 7


def quantize_int4(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = w.shape[-1]
    if group_size < 1 or n % group_size != 0:
        raise ValueError(f"the last axis ({n}) must be a multiple of group_size ({group_size})")
    g = w.float().reshape(*w.shape[:-1], n // group_size, group_size)
    scale = g.abs().amax(dim=-1) / QMAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: codes 0
    q = torch.round(g / safe.unsqueeze(-1)).clamp(-QMAX, QMAX)
    return q.reshape(w.shape).to(torch.int8), scale


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    if q.shape[-1] % 2 != 0:
        raise ValueError(f"the last axis ({q.shape[-1]}) must have an even length")
    if ((q < -8) | (q > 7)).any():
        raise ValueError("int4 codes must lie in -8 .. 7")
    nibbles = q.to(torch.int16) & 0xF  # two's complement: -1 -> 0b1111, -8 -> 0b1000
    return ((nibbles[..., 0::2] << 4) | nibbles[..., 1::2]).to(torch.uint8)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    p = packed.to(torch.int16)
    nibbles = torch.stack([(p >> 4) & 0xF, p & 0xF], dim=-1).reshape(*packed.shape[:-1], -1)
    return torch.where(nibbles >= 8, nibbles - 16, nibbles).to(torch.int8)  # sign-extend bit 3


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, group_size: int) -> torch.Tensor:
    q = unpack_int4(packed).float()
    g = q.reshape(*q.shape[:-1], -1, group_size)
    return (g * scale.unsqueeze(-1)).reshape(q.shape)
