"""Incremental decoding with a KV cache: the cache, attention over it, and greedy decoding of a Hugging Face model."""

from __future__ import annotations

import math
from typing import Any

import torch


class KVCache:
    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx in self.keys:
            # the sequence axis of (B, H, T, D) is 2: the new positions follow the cached ones
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], keys], dim=2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], values], dim=2)
        else:
            self.keys[layer_idx] = keys.clone()
            self.values[layer_idx] = values.clone()
        return self.keys[layer_idx], self.values[layer_idx]

    def seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[layer_idx].shape[2] if layer_idx in self.keys else 0


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    t_q, t_k = q.shape[-2], k.shape[-2]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    # query i is the token at position t_k - t_q + i: it sees keys 0 .. t_k - t_q + i
    query_pos = torch.arange(t_q).unsqueeze(1) + (t_k - t_q)
    key_pos = torch.arange(t_k).unsqueeze(0)
    future = key_pos > query_pos
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@torch.no_grad()
def generate_with_cache(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.long()
    # as generate does: a token's position counts the real tokens before it (left padding skipped)
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    sequences = input_ids
    step_input = input_ids
    cache = None
    all_logits = []
    for step in range(max_new_tokens):
        out = model(input_ids=step_input, attention_mask=mask, position_ids=position_ids, cache=cache,
                    use_cache=True)
        cache = out.cache
        logits = out.logits[:, -1, :].float()
        next_token = logits.argmax(dim=-1, keepdim=True)
        all_logits.append(logits)
        sequences = torch.cat([sequences, next_token], dim=1)
        if step == max_new_tokens - 1:
            break
        # the next call feeds the new token alone: the cache holds everything before it
        step_input = next_token
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    return sequences, torch.stack(all_logits, dim=1)
