"""Rotary position embeddings: half-split (Llama / GPT-NeoX) and interleaved (GPT-J) layouts."""

from __future__ import annotations

import torch


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    # float32 throughout, as Hugging Face does, so the tables match it bit for bit
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
    return 1.0 / (base**exponents)


def _angles(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """(L, head_dim/2) float32: the angle of each token's position at each frequency."""
    pos = positions.to(torch.float32)
    return pos[:, None] * rope_frequencies(head_dim, base)[None, :]


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    angles = _angles(positions, head_dim, base)
    # half-split layout: columns j and j + D/2 share an angle
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1 = x[..., :half]
    x2 = x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # (L, D) tables broadcast over the leading (B, H) axes
    return x * cos + rotate_half(x) * sin


def apply_rope_interleaved(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    angles = _angles(positions, x.shape[-1], base)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    out_even = even * cos - odd * sin
    out_odd = even * sin + odd * cos
    # put each rotated pair back at coordinates (2i, 2i+1)
    return torch.stack((out_even, out_odd), dim=-1).flatten(-2)
