"""Merging a LoRA adapter into its base weight (and taking it out again), for nn.Linear and
GPT-2's Conv1D, and peft's merge_and_unload for a whole model."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LoRALayer", "delta_weight", "merge", "unmerge", "merge_and_unload"]


class LoRALayer(nn.Module):
    def __init__(self, base: nn.Module, r: int, alpha: float, fan_in_fan_out: bool = False) -> None:
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.fan_in_fan_out = fan_in_fan_out
        if fan_in_fan_out:
            in_features, out_features = base.weight.shape
        else:
            out_features, in_features = base.weight.shape
        self.scaling = alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if not self.merged:  # once merged, the base weight holds the update already
            out = out + x @ self.lora_A.T @ self.lora_B.T * self.scaling
        return out


def delta_weight(layer: LoRALayer) -> torch.Tensor:
    delta = (layer.lora_B @ layer.lora_A) * layer.scaling  # (out, in), nn.Linear's layout
    return delta.T if layer.fan_in_fan_out else delta  # Conv1D stores its weight as (in, out)


@torch.no_grad()
def merge(layer: LoRALayer) -> None:
    if layer.merged:  # merging twice would add the update twice
        return
    layer.base.weight += delta_weight(layer)
    layer.merged = True


@torch.no_grad()
def unmerge(layer: LoRALayer) -> None:
    if not layer.merged:
        return
    layer.base.weight -= delta_weight(layer)
    layer.merged = False


def merge_and_unload(model: nn.Module) -> nn.Module:
    names = [name for name, module in model.named_modules() if isinstance(module, LoRALayer)]
    for name in names:
        layer = model.get_submodule(name)
        merge(layer)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.base)
    return model
