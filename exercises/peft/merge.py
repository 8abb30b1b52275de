"""Merging a LoRA adapter into its base weight, and back out, as peft's merge / unmerge /
merge_and_unload do.

After fine-tuning, a LoRA layer computes base(x) + x @ A.T @ B.T * scaling: two extra
matmuls per call. Since that is linear in x, the update can be folded into the base weight
once: W' = W + delta, and then the layer is an ordinary Linear again, as fast as before and
savable as a plain model. peft's `merge_and_unload()` does that for every adapter;
`merge()` / `unmerge()` fold one adapter in and take it out again (to switch adapters).

`LoRALayer` is given (below, complete: you need not change it). It wraps either
- an `nn.Linear`, whose weight is (out_features, in_features) and computes x @ W.T + b
  (fan_in_fan_out=False), or
- a `transformers.pytorch_utils.Conv1D` (GPT-2's c_attn, c_proj, c_fc), whose weight is
  stored the other way round, (in_features, out_features), and computes x @ W + b
  (fan_in_fan_out=True, as peft's LoraConfig calls it).
Either way lora_A is (r, in_features), lora_B is (out_features, r), scaling = alpha / r,
and `layer.merged` says whether the update is in the base weight now (the forward then
skips the adapter path).

Implement:
- `delta_weight(layer)`: the update in the layout of the base weight, float32:
  `lora_B @ lora_A * scaling`, shape (out, in), for an nn.Linear base, and its transpose,
  (in, out), for a Conv1D base (layer.fan_in_fan_out True). peft's `get_delta_weight`.
  A tensor computed from the parameters; it must not change them.
- `merge(layer)`: add delta_weight(layer) to `layer.base.weight` in place (the same
  Parameter object keeps its identity; use torch.no_grad() or `.data`) and set
  `layer.merged = True`. Idempotent: merging a layer that is already merged changes
  nothing (it must not add the update a second time). The bias is not changed.
- `unmerge(layer)`: the inverse, subtract delta_weight(layer) in place and set
  `layer.merged = False`; unmerging a layer that is not merged changes nothing. After
  merge then unmerge the base weight equals the original within float32 rounding.
- `merge_and_unload(model)`: merge every LoRALayer of `model` (found with
  `model.named_modules()`; those already merged are not merged again), replace each, in
  its parent module under the same attribute name, by its base module (the same nn.Linear
  or Conv1D object, now holding the merged weight), and return the same model. Afterwards
  the model has exactly the modules and state-dict names it had before the adapters were
  put in, and computes what the adapted model computed.

The checks wrap layers of tiny Hugging Face Llama (nn.Linear: the attention and MLP
projections, the output head) and GPT-2 (Conv1D: c_attn, c_proj, c_fc) models in
LoRALayer with random A and B (built with the LoRALayer of your file), run
sequences of merge / unmerge, and compare the base weights, the logits and the result of
merge_and_unload with peft's (`get_peft_model`, then the LoRA layers' merge() and
unmerge(), then `merge_and_unload()`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LoRALayer", "delta_weight", "merge", "unmerge", "merge_and_unload"]


class LoRALayer(nn.Module):
    """Given: base(x) + x @ lora_A.T @ lora_B.T * scaling while not merged, base(x) once merged."""

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
    """lora_B @ lora_A * scaling in the base weight's layout: (out, in), or (in, out) when
    layer.fan_in_fan_out (a Conv1D base)."""
    raise NotImplementedError


def merge(layer: LoRALayer) -> None:
    """Add delta_weight(layer) to layer.base.weight in place and set layer.merged = True;
    nothing if it is merged already."""
    raise NotImplementedError


def unmerge(layer: LoRALayer) -> None:
    """Subtract delta_weight(layer) from layer.base.weight in place and set layer.merged =
    False; nothing if it is not merged."""
    raise NotImplementedError


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every LoRALayer of `model` and put its base module back in its place; return
    the same model."""
    raise NotImplementedError
