"""Cross-entropy from logits (class dimension last) and its analytic gradient."""

from __future__ import annotations

import torch

REDUCTIONS = ("mean", "sum", "none")


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities along the last dimension, shifted by the maximum so exp() cannot overflow."""
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def _valid_and_safe(targets: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which positions count, and targets with ignored ones replaced by class 0 so they can index."""
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    return valid, safe


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    _check_reduction(reduction)
    valid, safe = _valid_and_safe(targets, ignore_index)
    log_probs = _log_softmax(logits)
    picked = log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    losses = torch.where(valid, -picked, torch.zeros_like(picked))
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    # 0 / 0 = NaN when every position is ignored, as torch returns
    return losses.sum() / valid.sum()


def cross_entropy_grad(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    _check_reduction(reduction)
    valid, safe = _valid_and_safe(targets, ignore_index)
    probs = _log_softmax(logits).exp()
    num_classes = logits.shape[-1]
    one_hot = (torch.arange(num_classes, device=logits.device) == safe.unsqueeze(-1)).to(logits.dtype)
    grad = (probs - one_hot) * valid.unsqueeze(-1).to(logits.dtype)
    if reduction == "mean":
        # each counted position weighs 1/count; clamp so all-ignored gives zeros, as autograd does
        grad = grad / valid.sum().clamp_min(1)
    return grad
