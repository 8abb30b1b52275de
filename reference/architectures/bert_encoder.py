"""One BERT encoder layer: bidirectional self-attention and a GELU MLP, each in a post-norm
residual sublayer, with the same parameter names as transformers' `BertLayer`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class _SelfAttentionProjections(nn.Module):
    """`attention.self`: the query, key and value projections (with biases)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)


class _DenseLayerNorm(nn.Module):
    """`attention.output` and `output`: a projection back to hidden_size and a LayerNorm."""

    def __init__(self, in_features: int, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)


class _Attention(nn.Module):
    """`attention`: holds `self` (projections) and `output` (dense + LayerNorm)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttentionProjections(hidden_size)
        self.output = _DenseLayerNorm(hidden_size, hidden_size, eps)


class _Intermediate(nn.Module):
    """`intermediate`: the MLP's expansion hidden_size -> intermediate_size."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)


class BertLayer(nn.Module):
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.attention = _Attention(hidden_size, layer_norm_eps)
        self.intermediate = _Intermediate(hidden_size, intermediate_size)
        self.output = _DenseLayerNorm(intermediate_size, hidden_size, layer_norm_eps)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.reshape(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, d)

    def _self_attention(
        self, x: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        proj = self.attention.self
        q = self._split_heads(proj.query(x))
        k = self._split_heads(proj.key(x))
        v = self._split_heads(proj.value(x))
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, T)
        if attention_mask is not None:
            # 1 = real token, 0 = padding -> 0 for real keys, the most negative float for padding
            # keys, broadcast over heads and queries: padding keys get exactly zero weight.
            keep = attention_mask[:, None, None, :].to(scores.dtype)
            scores = scores + (1.0 - keep) * torch.finfo(scores.dtype).min
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2)  # (B, T, nh, d)
        return out.reshape(x.shape)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = hidden_states
        attn_out = self.attention.output
        # post-norm: LayerNorm(residual + sublayer(residual)), the input itself is not normalised
        h = attn_out.LayerNorm(x + attn_out.dense(self._self_attention(x, attention_mask)))
        ff = self.output.dense(F.gelu(self.intermediate.dense(h)))
        return self.output.LayerNorm(h + ff)
