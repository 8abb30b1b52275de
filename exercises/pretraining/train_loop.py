"""Pretrain a tiny GPT-2 on the synthetic language, down to (nearly) its entropy floor.

This is the whole pretraining loop: AdamW with weight decay on the matrices only, a linear
warm-up + cosine learning-rate schedule, gradient clipping, one update per batch. The text is
the grader's synthetic language, whose entropy rate H (nats per token) is known exactly:
no model can have a validation loss below H, and a well-trained one gets close to it.

How you are judged: the judge never trusts the numbers you report. It loads the weights you
RETURN into its own `GPT2LMHeadModel` and measures their validation loss on held-out text
itself; the full run must end within 0.15 nats of H. Short runs are replayed step for step
against the judge's own loop, so your losses and your weights after 1, 8 or 20 steps must be
what this docstring's recipe gives (to float32 round-off).

You may use transformers' GPT-2 (`GPT2LMHeadModel`, `GPT2Config`) and anything in torch:
the exercise is the loop, not the model. You may also reuse your own schedule
(`from exercises.pretraining.schedule import lr_at`): `lr_at(step, 1.0, ...)` is the
multiplier below.
"""

from __future__ import annotations

import math  # noqa: F401
from typing import Any

import torch
import torch.nn.functional as F  # noqa: F401


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
    """Train `GPT2LMHeadModel(GPT2Config(**config))` from `init_state`, one step per batch.

    Inputs:
    - `config`: GPT2Config keyword arguments (dropout is 0, attention is eager).
    - `init_state`: the model's initial state dict: build the model, then
      `model.load_state_dict(init_state)`. Do not re-initialise or re-seed anything: the run
      is fully determined by the inputs (no dropout, no random draws).
    - `batches`: int64 tensor [num_steps, batch_size, context_length + 1] of token ids.
      Step s uses batches[s] only: inputs x = batches[s][:, :-1] and next-token targets
      y = batches[s][:, 1:], both [batch_size, context_length].
    - The schedule is that of a `total_steps`-step run, even when fewer batches are given
      (the judge replays the first steps of a longer run). More batches than total_steps is a
      ValueError.

    Each step s = 0, 1, ..., num_steps - 1, in this order:
    1. loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)) with
       logits = model(input_ids=x).logits: the mean over all batch_size * context_length
       targets (no padding, nothing ignored);
    2. zero the gradients, loss.backward();
    3. torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip): the global L2 norm;
    4. one torch.optim.AdamW step at lr = max_lr * multiplier(s), with betas, eps=1e-8 and
       two parameter groups: parameters with dim >= 2 (embeddings, projection matrices) get
       `weight_decay`; parameters with dim < 2 (biases, LayerNorm weights) get 0.0.
       `model.parameters()` lists the tied lm_head / token-embedding matrix once.
    The multiplier is the linear warm-up + cosine decay of pretraining.schedule:
        s < warmup_steps:  s / max(1, warmup_steps)                          (step 0: lr 0)
        otherwise:         min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + cos(pi * p)),
                           p = (s - warmup_steps) / max(1, total_steps - warmup_steps)
    A LambdaLR with this multiplier, stepped AFTER optimizer.step(), gives exactly that.

    Returns (state, losses):
    - state: the trained model's state dict, {name: tensor} with every key of
      `model.state_dict()` (detached copies);
    - losses: num_steps Python floats, losses[s] = step s's loss.item(), the loss of the
      weights BEFORE update s on batch s (what a training log shows).
    """
    raise NotImplementedError
