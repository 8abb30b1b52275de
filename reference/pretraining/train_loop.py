"""Pretraining a tiny GPT-2 on the synthetic language: AdamW, warm-up + cosine, clipping."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

# The exercise's API; the classes and functions below it are this solution's own helpers.
__all__ = ["train"]


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(
    config: dict[str, Any],
    init_state: dict[str, torch.Tensor],
    batches: torch.Tensor,
    max_lr: float,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.1,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    grad_clip: float = 1.0,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    if len(batches) > total_steps:
        raise ValueError(f"{len(batches)} batches is more than total_steps={total_steps}: one batch per step")
    model = GPT2LMHeadModel(GPT2Config(**config))
    model.load_state_dict(init_state)
    model.train()

    # Decay the matrices (embeddings, projections); never biases or LayerNorm gains.
    params = list(model.parameters())  # the tied lm_head / wte weight appears once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=max_lr, betas=tuple(betas), eps=1e-8,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, warmup_steps, total_steps, min_lr_ratio)
    )

    losses = []
    for batch in batches:
        x, y = batch[:, :-1], batch[:, 1:]
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()   # uses the lr of this step
        scheduler.step()   # then moves to the next step's lr
        losses.append(loss.item())  # the loss of the weights BEFORE this update
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, losses
