"""Sampling the next token: repetition penalty, temperature, top-k and top-p, as transformers'
logits processors compute them, and a draw from a given generator."""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    # gather/scatter: a token that occurs several times is penalised once
    score = torch.gather(logits, 1, input_ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return logits.scatter(1, input_ids, score)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits / temperature


def top_k_filter(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
    # the k-th largest logit of each row; every token below it goes, ties with it stay
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    probs = sorted_logits.softmax(dim=-1)
    cumulative = probs.cumsum(dim=-1)
    # ascending order: a token goes when it and every smaller one hold at most 1 - top_p,
    # i.e. when the tokens above it already hold top_p or more
    remove_sorted = cumulative <= 1 - top_p
    remove_sorted[..., -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, NEG_INF)


def process_logits(
    logits: torch.Tensor,
    input_ids: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    # generate's order: penalty on the raw logits, then temperature, then the two filters
    scores = logits
    if repetition_penalty != 1.0:
        scores = apply_repetition_penalty(scores, input_ids, repetition_penalty)
    if temperature != 1.0:
        scores = apply_temperature(scores, temperature)
    if top_k is not None and top_k != 0:
        scores = top_k_filter(scores, top_k, min_tokens_to_keep)
    if top_p is not None and top_p < 1.0:
        scores = top_p_filter(scores, top_p, min_tokens_to_keep)
    return scores


def sample_next_token(
    logits: torch.Tensor,
    generator: torch.Generator,
    input_ids: torch.Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    scores = process_logits(logits, input_ids, temperature, top_k, top_p, repetition_penalty, min_tokens_to_keep)
    probs = torch.softmax(scores.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
