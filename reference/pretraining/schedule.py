"""Linear warm-up + cosine decay with a floor, as a LambdaLR, and gradient accumulation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


def lr_at(
    step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    if step < warmup_steps:
        # Linear from 0: step 0 is 0, step warmup_steps - 1 is just below max_lr.
        return max_lr * (step / max(1, warmup_steps))
    # Not clamped: past total_steps the cosine rises again, as in transformers.
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    # The floor rescales the cosine into [min_lr_ratio, 1]; it does not clip it.
    return max_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    def multiplier(step: int) -> float:
        # LambdaLR multiplies each group's initial lr by this: a factor, not a learning rate.
        return lr_at(step, 1.0, warmup_steps, total_steps, min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def accumulated_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    total = sum(len(x) for x, _ in micro_batches)
    optimizer.zero_grad()
    combined = 0.0
    for x, y in micro_batches:
        # loss_fn is a mean over this micro-batch: weigh it by its share of all examples so the
        # summed gradients are those of the mean over the whole batch.
        weight = len(x) / total
        loss = loss_fn(model(x), y) * weight
        loss.backward()
        combined += loss.item()
    optimizer.step()
    return combined
