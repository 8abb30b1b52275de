"""Rotary position embeddings (RoPE), in the two layouts real models use.

RoPE encodes the position m of a query or key vector by rotating pairs of its coordinates
by angles m * theta_i, so that the dot product of a rotated query (position m) and a rotated
key (position n) depends only on the offset m - n.

Conventions (all functions):
- `head_dim` (written D) is even; there are D/2 frequencies, i = 0, 1, ..., D/2 - 1:
      inv_freq[i] = 1 / base ** (2 * i / D)       (inv_freq[0] = 1, the fastest rotation)
  computed in float32 exactly as `1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float32) / D))`.
- `positions` is a 1-D int64 tensor of shape (L,): the absolute position of each of the L
  tokens, counted from 0 (the first token of a sequence is at position 0, where the rotation
  is the identity). Positions need not be sorted or start at 0.
- The angle of token t and frequency i is positions[t] * inv_freq[i], computed in float32
  (convert positions to float32, then multiply), so large positions carry float32 rounding.
- `x` is a float32 tensor of shape (B, H, L, D): batch, heads, sequence, head dimension. The
  result has the same shape and dtype as `x`. Nothing is modified in place.

Two layouts: which coordinates form a rotated pair.
- HALF-SPLIT (Llama, GPT-NeoX, Hugging Face `apply_rotary_pos_emb`): coordinate j is paired
  with coordinate j + D/2, for j < D/2, and that pair rotates with frequency inv_freq[j].
  The cos/sin tables are therefore the D/2 angles written twice, end to end:
      emb = cat([angles, angles], dim=-1)       # (L, D): column j and j + D/2 hold the same angle
      cos = emb.cos(), sin = emb.sin()
  and with rotate_half(x) = cat([-x2, x1], dim=-1), where x1 = x[..., :D/2], x2 = x[..., D/2:],
      rope(x) = x * cos + rotate_half(x) * sin
  i.e. out[j] = x[j] cos - x[j + D/2] sin and out[j + D/2] = x[j + D/2] cos + x[j] sin.
- INTERLEAVED (GPT-J, the original RoFormer paper): adjacent coordinates (0, 1), (2, 3), ...
  form the pairs; pair i = (2i, 2i+1) rotates with frequency inv_freq[i]:
      out[2i]   = x[2i] * cos(a_i) - x[2i+1] * sin(a_i)
      out[2i+1] = x[2i] * sin(a_i) + x[2i+1] * cos(a_i)
  which is the complex product (x[2i] + 1j * x[2i+1]) * exp(1j * a_i), a_i = position * inv_freq[i].

Use only basic tensor operations; do not call transformers' rotary helpers.
"""

from __future__ import annotations

import torch  # noqa: F401


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """The inverse frequencies: float32 tensor of shape (head_dim // 2,).

    inv_freq[i] = 1 / base ** (2 * i / head_dim) for i = 0, ..., head_dim // 2 - 1,
    computed in float32 as `1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))`.
    """
    raise NotImplementedError


def rope_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The HALF-SPLIT cos and sin tables for `positions` (1-D int64, shape (L,)).

    angles = positions.float()[:, None] * rope_frequencies(head_dim, base)[None, :]   # (L, D/2)
    emb = cat([angles, angles], dim=-1)                                              # (L, D)
    Returns the tuple (emb.cos(), emb.sin()), each float32 of shape (L, head_dim). Column j
    and column j + head_dim/2 hold the same angle (NOT repeat_interleave: not j and j+1).
    These are the tables Hugging Face's `LlamaRotaryEmbedding` returns (for one sequence).
    """
    raise NotImplementedError


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """cat([-x2, x1], dim=-1) with x1 = x[..., :D/2] and x2 = x[..., D/2:] (D = x.shape[-1]).

    Any shape (..., D) with D even; same shape and dtype as `x`.
    """
    raise NotImplementedError


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x` (B, H, L, D) in the HALF-SPLIT layout: x * cos + rotate_half(x) * sin.

    `cos` and `sin` have shape (L, D) (as returned by `rope_cos_sin`) and broadcast over the
    batch and head axes; row t is used for token t of every batch element and head. Returns
    a tensor of the shape and dtype of `x`.
    """
    raise NotImplementedError


def apply_rope_interleaved(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate `x` (B, H, L, D) in the INTERLEAVED (GPT-J / RoFormer) layout.

    Token t is at position positions[t] (1-D int64, shape (L,)). With angles
    a = positions.float()[:, None] * rope_frequencies(D, base)[None, :]   (float32, (L, D/2)),
    pair i = (x[..., 2i], x[..., 2i+1]) becomes
        (x[..., 2i] * cos(a_i) - x[..., 2i+1] * sin(a_i),  x[..., 2i] * sin(a_i) + x[..., 2i+1] * cos(a_i)),
    and the results stay at coordinates 2i and 2i+1. Same shape and dtype as `x`.
    """
    raise NotImplementedError
