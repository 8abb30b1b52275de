"""An encoder-decoder transformer with torch.nn.Transformer's parameter names and computation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _causal_mask(n: int, device: torch.device) -> torch.Tensor:
    """(n, n) bool, True above the diagonal: query t may not attend to keys u > t."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(diagonal=1)


class _Attention(nn.Module):
    """nn.MultiheadAttention's parameters (in_proj_weight/in_proj_bias, out_proj) and math."""

    def __init__(self, d_model: int, nhead: int) -> None:
        super().__init__()
        if d_model % nhead != 0:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = d_model // nhead
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, E) -> (B, H, N, d): feature h*d + j is feature j of head h."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.nhead, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        source: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Queries from `query` (B, L, E) attend to keys/values from `source` (B, S, E)."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3, dim=0)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3, dim=0)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(source, w_k, b_k))
        v = self._split_heads(F.linear(source, w_v, b_v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, L, S)
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(attn_mask, float("-inf"))  # True = not allowed
            else:
                scores = scores + attn_mask  # additive: 0 or -inf
        if key_padding_mask is not None:
            # (B, S) -> (B, 1, 1, S): padded keys are hidden from every head and query.
            scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        b, length, _ = query.shape
        out = (weights @ v).transpose(1, 2).reshape(b, length, self.d_model)
        return self.out_proj(out)


class _EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = _Attention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        # Post-norm: each sub-layer's residual sum is normalised (norm_first=False).
        x = self.norm1(x + self.self_attn(x, x, key_padding_mask=padding_mask))
        x = self.norm2(x + self.linear2(F.relu(self.linear1(x))))
        return x


class _DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = _Attention(d_model, nhead)
        self.multihead_attn = _Attention(d_model, nhead)  # cross-attention, nn.Transformer's name
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-5)
        self.norm3 = nn.LayerNorm(d_model, eps=1e-5)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None,
        memory_padding: torch.Tensor | None,
        tgt_padding: torch.Tensor | None,
    ) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, x, attn_mask=tgt_mask, key_padding_mask=tgt_padding))
        # Cross-attention: queries from the decoder stream, keys and values from the encoder.
        x = self.norm2(x + self.multihead_attn(x, memory, key_padding_mask=memory_padding))
        x = self.norm3(x + self.linear2(F.relu(self.linear1(x))))
        return x


class _Stack(nn.Module):
    """Holds `layers` and the final `norm`, so the state_dict keys read encoder.layers.0..."""

    def __init__(self, layers: list[nn.Module], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(d_model, eps=1e-5)


class Seq2SeqTransformer(nn.Module):
    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_encoder_layers: int,
        num_decoder_layers: int,
        dim_feedforward: int,
    ) -> None:
        super().__init__()
        self.encoder = _Stack(
            [_EncoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_encoder_layers)], d_model
        )
        self.decoder = _Stack(
            [_DecoderLayer(d_model, nhead, dim_feedforward) for _ in range(num_decoder_layers)], d_model
        )

    def encode(self, src: torch.Tensor, src_key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = src
        for layer in self.encoder.layers:
            x = layer(x, src_key_padding_mask)
        return self.encoder.norm(x)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        tgt_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = tgt
        for layer in self.decoder.layers:
            x = layer(x, memory, tgt_mask, memory_key_padding_mask, tgt_key_padding_mask)
        return self.decoder.norm(x)

    def forward(
        self,
        src: torch.Tensor,
        tgt: torch.Tensor,
        src_key_padding_mask: torch.Tensor | None = None,
        tgt_key_padding_mask: torch.Tensor | None = None,
        causal: bool = True,
    ) -> torch.Tensor:
        memory = self.encode(src, src_key_padding_mask)
        tgt_mask = _causal_mask(tgt.shape[1], tgt.device) if causal else None
        return self.decode(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_key_padding_mask=src_key_padding_mask,  # padded source positions stay hidden
            tgt_key_padding_mask=tgt_key_padding_mask,
        )
