"""LoRA: a low-rank adapter around a frozen nn.Linear.

LoRA (Hu et al., 2021) fine-tunes a big linear layer W (out, in) without touching it: W stays
frozen and the layer learns a low-rank update B @ A of rank r, with A (r, in) and B (out, r):

    y = base(x) + dropout(x) @ A.T @ B.T * scaling,        scaling = alpha / r

Only A and B are trained: r * (in + out) numbers instead of in * out. Implement it exactly
as the `peft` library's `peft.tuners.lora.Linear` does (the checks compare with it, holding
the same A and B):

- `self.base` is the given nn.Linear itself (not a copy), frozen: every parameter of it
  (weight, and bias if any) has `requires_grad = False` after the constructor. Its weight
  and bias are not changed.
- `self.lora_A`: an `nn.Parameter` of shape (r, in_features), the base's dtype (float32),
  initialised like peft: `nn.init.kaiming_uniform_(A, a=math.sqrt(5))`, that is uniform on
  [-1/sqrt(in_features), 1/sqrt(in_features)] (drawn from torch's global generator).
- `self.lora_B`: an `nn.Parameter` of shape (out_features, r), all zeros. So at
  initialisation B @ A = 0 and the layer's output equals `base(x)` exactly.
- `self.scaling = alpha / r` (a Python float): alpha / r, not r / alpha, not alpha /
  sqrt(r).
- `self.dropout = nn.Dropout(dropout)`, applied once to the INPUT of the adapter path (the
  base path gets x undropped; the output is never dropped). It acts only in training mode
  (`module.train()`, the default) and is the identity after `module.eval()`. In training
  mode the checks seed torch's global generator right before a forward and expect the mask
  that peft's `nn.Dropout` draws then: draw it with one `nn.Dropout` (or
  `F.dropout(x, p, self.training)`) call on x, and draw nothing else from the generator in
  forward.
- The state dict holds exactly `base.weight`, `base.bias` (when the base has a bias),
  `lora_A` and `lora_B`: the checks load A and B with `load_state_dict` (strict).
- `forward(x)`: x of shape (..., in_features), float32, any number of leading axes
  (a batch, a batch and a sequence, or none: a single vector (in_features,)); returns
  (..., out_features). Gradients flow to A, B and x; none to the base.
"""

from __future__ import annotations

import math  # noqa: F401

import torch
from torch import nn


class LoRALinear(nn.Module):
    """`base(x) + dropout(x) @ lora_A.T @ lora_B.T * (alpha / r)`, with `base` frozen."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        """Wrap `base` (an nn.Linear(in_features, out_features), with or without bias).

        r: the rank, 1 <= r. alpha: the LoRA alpha, scaling = alpha / r.
        dropout: the probability of the adapter's input dropout (0.0: none).
        Sets `self.base`, `self.lora_A` (r, in), `self.lora_B` (out, r) zeros, `self.scaling`,
        `self.dropout`, as the module docstring says.
        """
        super().__init__()
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in_features) -> base(x) + dropout(x) @ A.T @ B.T * scaling, (..., out_features)."""
        raise NotImplementedError
