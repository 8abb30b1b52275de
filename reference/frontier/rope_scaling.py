"""RoPE context extension: linear position interpolation, dynamic NTK and YaRN."""

from __future__ import annotations

import math

import torch


def _default_inv_freq(head_dim: int, base: float) -> torch.Tensor:
    # float32 throughout, as Hugging Face does (and attention.rope's rope_frequencies)
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def linear_inv_freq(head_dim: int, base: float, factor: float) -> torch.Tensor:
    # dividing every frequency by the factor is dividing every position by it
    return _default_inv_freq(head_dim, base) / factor


def dynamic_ntk_inv_freq(
    head_dim: int, base: float, factor: float, max_position_embeddings: int, seq_len: int
) -> torch.Tensor:
    if seq_len <= max_position_embeddings:
        return _default_inv_freq(head_dim, base)
    scale = factor * seq_len / max_position_embeddings - (factor - 1)
    new_base = base * scale ** (head_dim / (head_dim - 2))
    return _default_inv_freq(head_dim, new_base)


def _correction_dim(num_rotations: float, head_dim: int, base: float, original_max_position_embeddings: int) -> float:
    """The (fractional) pair index whose wavelength fits `num_rotations` times in the original context."""
    return head_dim * math.log(original_max_position_embeddings / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_inv_freq(
    head_dim: int,
    base: float,
    factor: float,
    original_max_position_embeddings: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
    truncate: bool = True,
) -> tuple[torch.Tensor, float]:
    low = _correction_dim(beta_fast, head_dim, base, original_max_position_embeddings)
    high = _correction_dim(beta_slow, head_dim, base, original_max_position_embeddings)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # a step instead of a division by zero
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation = _default_inv_freq(head_dim, base)
    interpolation = extrapolation / factor
    # ramp 0: fast pairs keep their frequency; ramp 1: slow pairs are interpolated
    inv_freq = interpolation * ramp + extrapolation * (1 - ramp)
    attention_factor = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return inv_freq, attention_factor


def rope_cos_sin(
    inv_freq: torch.Tensor, positions: torch.Tensor, attention_factor: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos() * attention_factor, emb.sin() * attention_factor
