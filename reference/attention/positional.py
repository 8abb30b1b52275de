"""Absolute position encodings: the sinusoidal table of "Attention Is All You Need" and a
learned position embedding."""

from __future__ import annotations

import torch
from torch import nn


def sinusoidal_encoding(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    pos = torch.arange(num_positions, dtype=torch.float64)
    col = torch.arange(dim, dtype=torch.float64)
    pair = col // 2  # columns 2i and 2i+1 share the frequency index i
    # Angles in float64: at position 10000 a float32 angle is already off by ~5e-4.
    angles = pos[:, None] / base ** (2 * pair / dim)
    pe = torch.empty(num_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles[:, 0::2])  # even columns: sin
    pe[:, 1::2] = torch.cos(angles[:, 1::2])  # odd columns: cos
    return pe.to(torch.float32)


def add_sinusoidal(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    length, dim = x.shape[1], x.shape[2]
    pe = sinusoidal_encoding(offset + length, dim, base)[offset:]
    return x + pe.to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.max_positions = max_positions
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(max_positions, dim))
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        length = x.shape[1]
        if offset < 0 or offset + length > self.max_positions:
            raise ValueError(
                f"positions {offset}..{offset + length - 1} are outside the table of "
                f"{self.max_positions} learned positions (0..{self.max_positions - 1})"
            )
        return x + self.weight[offset : offset + length]
