"""Per-token log-probabilities, masked per-sequence sums and means, and entropies, from logits."""

from __future__ import annotations

import torch


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    # float32 whatever the input dtype; log_softmax shifts by the max, so nothing overflows
    return logits.float().log_softmax(dim=-1)


def _scored(response_mask: torch.Tensor) -> torch.Tensor:
    """(B, T-1) bool: True at t when the token t + 1, which the logits at t predict, is a response token."""
    return response_mask[:, 1:] != 0


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    logp = _log_probs(logits[:, :-1])
    return logp.gather(dim=-1, index=input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    per_token = token_logprobs(logits, input_ids)
    scored = _scored(response_mask)
    total = per_token.masked_fill(~scored, 0.0).sum(dim=-1)
    if not average:
        return total
    # a row with no response token: 0 / 1 = 0, and no NaN in the gradient either
    return total / scored.sum(dim=-1).clamp(min=1)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = _log_probs(logits)
    return -(logp.exp() * logp).sum(dim=-1)


def masked_entropy(logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    entropy = token_entropy(logits[:, :-1])
    scored = _scored(response_mask)
    return entropy.masked_fill(~scored, 0.0).sum(dim=-1) / scored.sum(dim=-1).clamp(min=1)
