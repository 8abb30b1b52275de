"""The causal-LM loss (shifted next-token cross-entropy) as Hugging Face's ForCausalLMLoss computes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def shift_labels(
    input_ids: torch.Tensor,
    pad_token_id: int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    # out[:, t] is the token after position t; nothing follows the last position
    shifted = torch.full_like(input_ids, ignore_index)
    shifted[:, :-1] = input_ids[:, 1:]
    if pad_token_id is not None:
        # mask by the TARGET token: a padding token is never something to predict
        shifted[shifted == pad_token_id] = ignore_index
    return shifted


def _token_losses(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-target losses (B, T-1) in float32 (0 where ignored) and the mask of counted targets."""
    logits = logits.float()  # bfloat16 log-softmax would round every loss to ~3 digits
    pred = logits[:, :-1, :]
    target = labels[:, 1:]
    batch, steps = target.shape
    losses = F.cross_entropy(
        pred.reshape(-1, pred.size(-1)), target.reshape(-1), ignore_index=ignore_index, reduction="none"
    ).reshape(batch, steps)
    valid = target != ignore_index
    return losses, valid


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    losses, valid = _token_losses(logits, labels, ignore_index)
    # one denominator for the whole batch; 0 / 0 = NaN when nothing is counted, as HF returns
    return losses.sum() / valid.sum()


def causal_lm_loss_per_sequence(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = -100,
) -> torch.Tensor:
    losses, valid = _token_losses(logits, labels, ignore_index)
    return losses.sum(dim=1) / valid.sum(dim=1)
