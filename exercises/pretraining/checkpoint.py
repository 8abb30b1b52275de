"""Checkpoints: stop a training run and resume it later, bit for bit.

Long pretraining runs are stopped and restarted all the time (preempted jobs, crashes,
maintenance). A good checkpoint makes the restart invisible: 10 steps in one go and
5 steps + save + (a new process, new objects) + load + 5 steps must give exactly the same
numbers, not just close ones. That only works if the checkpoint holds EVERY piece of state
the next step depends on:

- the model's weights: `model.state_dict()`;
- the optimizer's state: `optimizer.state_dict()` (AdamW keeps, per parameter, the moments
  exp_avg and exp_avg_sq and a step count; the param groups' current lr lives there too);
- the learning-rate scheduler's state: `scheduler.state_dict()` (where it is in the
  schedule: last_epoch);
- the data order: the state of the `torch.Generator` that draws the batches,
  `generator.get_state()` (its seed is not its state: the state moves on with every draw);
- the global torch CPU RNG state, `torch.get_rng_state()`: dropout draws its masks from it;
- the step: how many optimizer updates have been done.

(A real run also saves the CUDA RNG states, numpy's and Python's `random` if it uses them;
the training loop that judges this exercise uses only the two above.)

How it is judged: a loop builds a small model with dropout (in train mode), AdamW, a
torch.optim.lr_scheduler.LinearLR and a torch.Generator for the batches, and trains; after
s updates it calls `save_checkpoint(path, model, optimizer, scheduler, generator, s)`.
Then it builds FRESH objects of the same kinds and hyperparameters, but from other seeds
(other initial weights, another generator seed, the global RNG reseeded), calls
`load_checkpoint` on a copy of the file, and trains on from the step it returned. The
losses, the final weights and the final optimizer state must be bitwise equal
(torch.equal) to those of the uninterrupted run; so must the loaded state be to the state
the uninterrupted run had at step s.

One step of that loop, for reference (the scheduler steps once per update):

    for step in range(start, total_steps):
        x, y = <batch drawn with torch.randint(..., generator=generator)>
        loss = F.cross_entropy(model(x) ..., y ...)    # dropout uses the global RNG
        optimizer.zero_grad(); loss.backward(); optimizer.step(); scheduler.step()
"""

from __future__ import annotations

import torch


def save_checkpoint(
    path: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    step: int,
) -> None:
    """Write everything a bitwise-identical resume needs into ONE file, at `path`.

    `step` (a Python int) is the number of optimizer updates done so far, which is also the
    number of the next step to run; 0 means before any update.

    The file must hold the model's, the optimizer's and the scheduler's state_dict(), the
    generator's state (`generator.get_state()`), the global torch CPU RNG state
    (`torch.get_rng_state()`) and `step`, e.g. as one dict saved with `torch.save`.

    - It must load with `torch.load(path, weights_only=True)`: store only tensors and plain
      Python values (dicts, lists, tuples, ints, floats, str, bool, None), never a whole
      module, optimizer or generator object (those are pickled as objects and the
      weights-only loader refuses them). The judge loads it that way.
    - Write exactly one file, at `path` (its directory exists); nothing else in that directory.
    - Saving must not change the training: draw no random numbers, change no state.
    """
    raise NotImplementedError


def load_checkpoint(
    path: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> int:
    """Restore, in place, what `save_checkpoint` wrote to `path`; return the saved step.

    The objects are NEW ones, not those that were saved: built the same way (same
    architecture, same optimizer and scheduler types and hyperparameters) but with other
    initial weights, another generator seed and another global RNG state, maybe in another
    process; and `path` may be a copy of the file under another name. Restore into them:
    the model's weights, the optimizer's state (moments, step counts, param groups' lr), the
    scheduler's state, the generator's state and the global torch CPU RNG state, all exactly
    as they were when the checkpoint was saved. Leave the model's train/eval mode as it is
    (the loop goes on training).

    Read the file with `torch.load(path, weights_only=True)`. Return the saved `step` as a
    Python int: training goes on with that step (`for step in range(returned, total)`).
    """
    raise NotImplementedError
