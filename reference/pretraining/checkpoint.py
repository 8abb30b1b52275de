"""Checkpoints that resume training bit for bit: every piece of state in one weights-only file."""

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
    # state_dicts and RNG states are tensors and plain Python values only, so the file loads
    # with weights_only=True; a pickled module or optimizer would not.
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),  # AdamW's moments and step counts, and each group's lr
            "scheduler": scheduler.state_dict(),  # where the schedule is (last_epoch)
            "generator": generator.get_state(),  # which batches come next
            "rng": torch.get_rng_state(),  # the global RNG: dropout's masks
            "step": step,
        },
        path,
    )


def load_checkpoint(
    path: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> int:
    checkpoint = torch.load(path, weights_only=True)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    generator.set_state(checkpoint["generator"])
    torch.set_rng_state(checkpoint["rng"])
    return checkpoint["step"]
