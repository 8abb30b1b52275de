"""Grouped-query attention (GQA, and MQA as its one-kv-head case) as in Llama.

Half-split RoPE on queries and keys, keys and values shared by groups of query heads,
causal softmax attention with an optional additive mask. Same parameters and outputs as
transformers' LlamaAttention (eager, no biases).
"""

from __future__ import annotations

import torch
from torch import nn


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, L, D) -> (B, H_kv * n_rep, L, D); output head h is input head h // n_rep."""
    return x.repeat_interleave(n_rep, dim=1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) where x1, x2 are the first and second halves of the last axis."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope_cos_sin(
    position_ids: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (B, L, head_dim), in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = position_ids[..., None].to(torch.float32) * inv_freq  # (B, L, head_dim / 2)
    # half-split layout: frequency i rotates the pair (i, i + head_dim / 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, L, D) by the angles whose cos/sin are (B, L, D); broadcast over heads."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


class GroupedQueryAttention(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int | None = None,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads != 0:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.num_kv_groups = num_heads // num_kv_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_heads
        self.rope_theta = rope_theta
        self.scaling = self.head_dim**-0.5
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, seq, _ = hidden_states.shape
        if position_ids is None:
            position_ids = torch.arange(seq, device=hidden_states.device).expand(batch, seq)

        # (B, L, heads * D) -> (B, heads, L, D): head h owns features h*D .. (h+1)*D - 1
        q = self.q_proj(hidden_states).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(batch, seq, -1, self.head_dim).transpose(1, 2)

        cos, sin = _rope_cos_sin(position_ids, self.head_dim, self.rope_theta)
        q = _apply_rope(q, cos, sin)
        k = _apply_rope(k, cos, sin)

        k = repeat_kv(k, self.num_kv_groups)
        v = repeat_kv(v, self.num_kv_groups)

        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scaling  # (B, H, L, L)
        if attention_mask is not None:
            scores = scores + attention_mask
        future = torch.ones(seq, seq, dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
        probs = scores.softmax(dim=-1)

        # back to (B, L, H, D) before merging heads, so each token keeps its own features
        out = torch.matmul(probs, v).transpose(1, 2).reshape(batch, seq, -1)
        return self.o_proj(out)
