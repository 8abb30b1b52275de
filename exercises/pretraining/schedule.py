"""The learning-rate schedule of LLM pretraining, and gradient accumulation.

Pretraining runs almost always use a linear warm-up followed by a cosine decay, often down
to a floor of a few percent of the peak learning rate instead of 0. This is exactly
transformers' `get_cosine_schedule_with_warmup` (num_cycles=0.5) and, with a floor,
`get_cosine_with_min_lr_schedule_with_warmup(..., min_lr_rate=min_lr_ratio)`; the exercise
is judged against those two, step for step.

Steps are counted from 0: "step s" is the (s+1)-th optimizer update, and the learning rate
"at step s" is the one that update uses. With a scheduler, a training loop is

    for step in range(total_steps):
        ... backward ...
        optimizer.step()        # uses the lr at `step`
        scheduler.step()        # moves every param group to the lr at `step + 1`

Gradient accumulation: when a batch does not fit in memory, split it into micro-batches,
run forward + backward on one micro-batch at a time so the gradients add up in `.grad`,
and update once. Done right, the update is the same as one step on the whole batch.

`make_scheduler` must return a torch.optim.lr_scheduler.LambdaLR. transformers' schedule
functions (get_cosine_schedule_with_warmup, get_cosine_with_min_lr_schedule_with_warmup,
get_scheduler and their helpers) are off limits: write the schedule yourself.
"""

from __future__ import annotations

import math  # noqa: F401
from collections.abc import Callable, Sequence

import torch


def lr_at(
    step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """The learning rate at step `step` (an int >= 0), as a Python float.

    With 0 <= warmup_steps <= total_steps and 0 <= min_lr_ratio <= 1:

    - Warm-up, for step < warmup_steps: linear from 0,
          lr = max_lr * step / warmup_steps
      so step 0 gives 0.0 and step warmup_steps - 1 gives max_lr * (warmup_steps - 1) / warmup_steps.
      The warm-up starts from 0 even when min_lr_ratio > 0.
    - Decay, for step >= warmup_steps: a half cosine from max_lr down to min_lr_ratio * max_lr,
          progress = (step - warmup_steps) / (total_steps - warmup_steps)
          cosine   = 0.5 * (1 + cos(pi * progress))                      (1 at progress 0, 0 at 1)
          lr       = max_lr * (min_lr_ratio + (1 - min_lr_ratio) * cosine)
      so step == warmup_steps gives max_lr and step == total_steps gives min_lr_ratio * max_lr.
      The floor RESCALES the cosine into [min_lr_ratio, 1]; it is not a clamp.
    - Both denominators are taken as at least 1 (max(1, ...)), as transformers does, so nothing
      divides by zero: with warmup_steps == 0 there is no warm-up (step 0 gives max_lr); with
      warmup_steps == total_steps the decay divides by 1.
    - Steps past total_steps are NOT clamped: the same formula goes on, progress exceeds 1 and
      the cosine rises again (back to max_lr at step total_steps + (total_steps - warmup_steps)),
      exactly what transformers' schedule does. Training loops stop at total_steps.

    Compute in Python floats (math.cos, math.pi); results are compared to 1e-9 relative.
    """
    raise NotImplementedError


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `torch.optim.lr_scheduler.LambdaLR` on `optimizer` that follows `lr_at`'s schedule.

    The peak is each param group's own learning rate when the scheduler is created (its
    "initial_lr"): after `scheduler.step()` has been called s times, group g's lr is
    lr_at(s, max_lr=g's initial lr, warmup_steps, total_steps, min_lr_ratio). Groups with
    different learning rates keep their ratio. Right after construction (s = 0) every group
    is already at its step-0 lr (0.0 when warmup_steps > 0). Pass only the optimizer and the
    function to LambdaLR (keep last_epoch at its default): a fresh schedule.
    """
    raise NotImplementedError


def accumulated_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """One optimizer update from several micro-batches, equal to one step on the whole batch.

    - `micro_batches`: a non-empty list of (x, y) pairs; x has n_i examples along dim 0
      (len(x) == n_i), and the n_i may all differ. Let N = n_1 + ... + n_k.
    - `loss_fn(model(x), y)` returns a scalar tensor: the MEAN loss over that micro-batch's
      n_i examples (like F.cross_entropy or F.mse_loss with reduction="mean").
    - The model is deterministic (no dropout, no batch norm), so a micro-batch's outputs do
      not depend on how the batch was split.

    The update must equal `optimizer.step()` after backpropagating the mean loss over all N
    examples of the concatenated batch. So:

    1. zero the gradients first (`optimizer.zero_grad()`): gradients left over from before
       the call must not leak into this update;
    2. for each micro-batch, one at a time, backpropagate its loss weighted by its share of
       the examples: (loss_fn(model(x), y) * n_i / N).backward(). Gradients add up in
       `.grad`; the weights make their sum the gradient of the mean over all N examples
       (dividing by the number of micro-batches k is only right when all n_i are equal);
    3. call `optimizer.step()` once, after the last micro-batch.

    Call the model as `model(x)` on one micro-batch at a time and never on the concatenated
    batch: the point is that only one micro-batch's activations are alive at a time (the judge
    checks that the model's last call saw a single micro-batch). Do not zero the gradients
    after the step: afterwards every parameter's `.grad` holds the gradient the update used.

    Returns the combined loss as a Python float: the sum over micro-batches of
    loss_i * n_i / N, i.e. the mean loss over all N examples (the whole batch's loss).

    The judge's models and data are float64, and float64 inputs are computed in float64:
    weight each loss by the Python float n_i / N, not a float32 tensor (its rounding, up to
    6e-8 relative, is far above the 1e-9 relative tolerance of the parameters, gradients and
    loss).
    """
    raise NotImplementedError
