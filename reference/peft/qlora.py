"""QLoRA: a LoRA adapter on a frozen base weight stored in 4-bit NormalFloat (NF4)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["dequantize_nf4", "QLoRALinear"]

# bitsandbytes' NF4 code book: quantiles of N(0, 1) scaled to [-1, 1], with an exact 0 (index 7)
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)


def dequantize_nf4(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    shape: tuple[int, ...],
    blocksize: int = 64,
) -> torch.Tensor:
    n = math.prod(shape)
    flat = packed.reshape(-1).to(torch.int64)
    # two codes per byte, the FIRST element in the HIGH nibble
    codes = torch.stack([flat >> 4, flat & 0xF], dim=1).reshape(-1)[:n]
    values = torch.tensor(NF4_CODE, dtype=torch.float32)[codes]
    # one float32 absmax per block of `blocksize` consecutive elements of the flattened weight
    scales = absmax.to(torch.float32).repeat_interleave(blocksize)[:n]
    return (values * scales).reshape(shape)


class QLoRALinear(nn.Module):
    def __init__(
        self,
        packed: torch.Tensor,
        absmax: torch.Tensor,
        shape: tuple[int, int],
        blocksize: int,
        bias: torch.Tensor | None,
        r: int,
        alpha: float,
    ) -> None:
        super().__init__()
        out_features, in_features = shape
        self.shape = (out_features, in_features)
        self.blocksize = blocksize
        self.scaling = alpha / r
        # the quantised base is state, not a parameter: buffers get no gradient and no optimiser
        self.register_buffer("packed", packed.clone())
        self.register_buffer("absmax", absmax.clone())
        self.register_buffer("bias", None if bias is None else bias.clone())
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = dequantize_nf4(self.packed, self.absmax, self.shape, self.blocksize)
        y = x @ weight.T
        if self.bias is not None:
            y = y + self.bias
        return y + ((x @ self.lora_A.T) @ self.lora_B.T) * self.scaling
