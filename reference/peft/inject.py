"""Inject LoRA adapters into a model's nn.Linear layers by name, as peft's get_peft_model does."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LoRALinear", "apply_lora", "count_trainable"]


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.lora_A.T @ self.lora_B.T * self.scaling


def _is_target(name: str, target_modules: list[str]) -> bool:
    # peft's rule: the whole name, or its last dotted components (never a part of a component)
    return any(name == target or name.endswith("." + target) for target in target_modules)


def apply_lora(model: nn.Module, target_modules: list[str], r: int, alpha: float) -> nn.Module:
    targets = [name for name, _ in model.named_modules() if _is_target(name, target_modules)]
    if not targets:
        raise ValueError(f"no module of the model matches the target modules {list(target_modules)}")
    model.requires_grad_(False)  # everything is frozen; the adapters made below are trainable
    for name in targets:
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{name} is a {type(module).__name__}, not an nn.Linear")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, LoRALinear(module, r, alpha))
    return model


def count_trainable(model: nn.Module) -> int:
    # model.parameters() yields a tensor shared by two modules (tied embeddings) once
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
