"""A reward model's two pieces: the Bradley-Terry pairwise loss, and pooling a scalar head's
per-token scores at each sequence's last real token."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: float | torch.Tensor | None = None,
) -> torch.Tensor:
    difference = chosen_rewards.float() - rejected_rewards.float()
    if margin is not None:
        difference = difference - (margin.float() if isinstance(margin, torch.Tensor) else margin)
    # logsigmoid is stable for any difference; log(sigmoid(d)) is log(0) = -inf below about -104
    return -F.logsigmoid(difference).mean()


def pool_last_token(
    scores: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    input_ids: torch.Tensor | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    batch, length = scores.shape[:2]
    positions = torch.arange(length, device=scores.device)
    if attention_mask is not None:
        real = attention_mask != 0
    elif input_ids is not None and pad_token_id is not None:
        real = input_ids != pad_token_id  # transformers' rule, for when no mask is given
    else:
        real = torch.ones(batch, length, dtype=torch.bool, device=scores.device)
    # the largest real position of each row: works for left and right padding alike
    last = (positions * real).argmax(dim=-1)
    return scores[torch.arange(batch, device=scores.device), last]
