"""Injecting LoRA adapters into a model by module name, as peft's `get_peft_model` does.

`peft.get_peft_model(model, LoraConfig(target_modules=["q_proj", "v_proj"], r=8, ...))`
walks the model, wraps every nn.Linear whose name matches a target in a LoRA layer, and
freezes everything else: only the adapters train. Implement the same on a plain
torch.nn.Module (the checks use tiny Hugging Face LlamaForCausalLM and GPT2LMHeadModel
models built from configs, and compare with `get_peft_model` on the same model).

`LoRALinear(base, r, alpha)` is the layer of the exercise peft.lora_linear without dropout
(write it again here: this file must stand alone):
- `self.base` the given nn.Linear, frozen (requires_grad False on its weight and bias);
- `self.lora_A` an nn.Parameter (r, in_features), `nn.init.kaiming_uniform_(A, a=math.sqrt(5))`;
- `self.lora_B` an nn.Parameter (out_features, r), zeros;
- `self.scaling = alpha / r`;
- forward(x) = base(x) + x @ lora_A.T @ lora_B.T * scaling;
- its state dict holds exactly `base.weight`, `base.bias` (if the base has one), `lora_A`
  and `lora_B`.

`apply_lora(model, target_modules, r, alpha)`:
- Which modules: every module of `model.named_modules()` whose full dotted name (relative to
  `model`, e.g. "model.layers.0.self_attn.q_proj") matches a target of `target_modules` (a
  list of strings). A name matches a target `t` when the name equals `t` or ends with
  "." + t: peft's rule for a list of target names. So "q_proj" matches
  "model.layers.0.self_attn.q_proj", "self_attn.q_proj" matches it too, and
  "0.self_attn.q_proj" matches layer 0 only (not layer 10). A target matches whole
  components only: "proj" does not match "q_proj", and "head" does not match "lm_head".
  A target that matches nothing is fine as long as some target matches; if no module at all
  matches, raise ValueError (as peft does). The checks only name nn.Linear modules; raise
  ValueError for a match that is not an nn.Linear.
- Each matching nn.Linear is replaced, in its parent module, by `LoRALinear(that_linear, r,
  alpha)` under the same attribute name: afterwards "model.layers.0.self_attn.q_proj" is the
  LoRALinear and "model.layers.0.self_attn.q_proj.base" the original nn.Linear (with its
  weights, not a copy). Decide the matches before replacing anything (the new `.base`
  children must not be matched and wrapped again).
- Freezing: afterwards every parameter of the model has requires_grad False except the
  adapters' lora_A and lora_B (requires_grad True): embeddings, norms, the output head, the
  Linear layers that are not targets and the bases of the targets are all frozen, as peft
  does with its default bias="none".
- The model is changed in place and returned (the same object). The adapters are created
  with torch's global generator (A random, B zeros), so at first the model computes exactly
  what it did before.

`count_trainable(model)`: the number of scalar parameters with requires_grad True, a Python
int, each parameter tensor counted once even when two modules share it (tied input and
output embeddings, as GPT-2 has): `model.parameters()` yields a shared tensor once. It is
what peft's `model.get_nb_trainable_parameters()[0]` reports (and print_trainable_parameters
prints) after get_peft_model.
"""

from __future__ import annotations

import math  # noqa: F401

import torch
from torch import nn

__all__ = ["LoRALinear", "apply_lora", "count_trainable"]


class LoRALinear(nn.Module):
    """`base(x) + x @ lora_A.T @ lora_B.T * (alpha / r)`, with `base` frozen."""

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def apply_lora(model: nn.Module, target_modules: list[str], r: int, alpha: float) -> nn.Module:
    """Replace every nn.Linear whose name matches a target (equal, or ending in "." + target)
    by LoRALinear(linear, r, alpha), freeze all but the adapters, return the same model."""
    raise NotImplementedError


def count_trainable(model: nn.Module) -> int:
    """The number of scalar parameters with requires_grad True (a shared tensor counted once)."""
    raise NotImplementedError
