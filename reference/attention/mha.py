"""Multi-head attention with fused or separate q/k/v projections (nn.MultiheadAttention's math)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, fused: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.fused = fused
        if fused:
            self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        else:
            self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
            self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _project(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.fused:
            return self.q_proj(query), self.k_proj(key), self.v_proj(value)
        # Row blocks of in_proj: [0, E) query, [E, 2E) key, [2E, 3E) value. Slicing the weight
        # (rather than projecting `query` once and chunking) also handles cross-attention.
        w_q, w_k, w_v = self.in_proj.weight.chunk(3, dim=0)
        bias = self.in_proj.bias
        b_q, b_k, b_v = (None, None, None) if bias is None else bias.chunk(3, dim=0)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, E) -> (B, H, N, d): feature h*d + j is feature j of head h."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, length, _ = query.shape
        q, k, v = (self._split_heads(t) for t in self._project(query, key, value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, L, S)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(attn_mask, float("-inf"))  # True = not allowed
            else:
                scores = scores + attn_mask
        if key_padding_mask is not None:
            # (B, S) -> (B, 1, 1, S): the same keys are hidden from every head and query.
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, length, self.embed_dim)
        out = self.out_proj(out)
        return out, (weights.mean(dim=1) if need_weights else None)
