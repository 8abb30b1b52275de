"""Scaled dot-product attention with boolean/additive masks and a top-left causal mask."""

from __future__ import annotations

import math

import torch


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    L, S = q.size(-2), k.size(-2)
    if scale is None:
        scale = 1.0 / math.sqrt(q.size(-1))
    scores = q @ k.transpose(-2, -1) * scale

    if is_causal:
        # query i keeps keys 0..i: lower triangle anchored at the top-left corner
        keep = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            # True = takes part; torch.where broadcasts both ways, unlike masked_fill
            scores = torch.where(attn_mask, scores, float("-inf"))
        else:
            scores = scores + attn_mask

    # A row with every key masked out would be softmax(all -inf) = 0/0 = NaN; torch returns
    # zeros instead. Softmax a harmless row of zeros there (so no NaN reaches the gradient)
    # and zero its weights afterwards.
    fully_masked = scores.isneginf().all(dim=-1, keepdim=True)
    scores = scores.masked_fill(fully_masked, 0.0)
    weights = torch.softmax(scores, dim=-1)
    weights = weights.masked_fill(fully_masked, 0.0)
    return weights @ v
