"""NF4 (4-bit NormalFloat, QLoRA): block-wise absmax, nearest code, packing, dequantisation.

The same format as bitsandbytes' `quantize_4bit(w, blocksize, quant_type="nf4")`.
"""

from __future__ import annotations

import torch

# bitsandbytes' table (QLoRA, appendix E): quantiles of N(0, 1) scaled to [-1, 1], with an exact 0
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # fmt: skip
ZERO_CODE = 7  # the index of 0.0: the padding code of an odd-length tensor


def nf4_code_book() -> torch.Tensor:
    return torch.tensor(NF4_CODE, dtype=torch.float32)


def nearest_nf4(y: torch.Tensor) -> torch.Tensor:
    code = nf4_code_book()
    midpoints = (code[:-1] + code[1:]) / 2  # float32, as bitsandbytes computes them
    # the number of midpoints strictly below y: a value exactly at a midpoint takes the lower code
    return torch.bucketize(y.float().clamp(-1.0, 1.0), midpoints).to(torch.uint8)


def quantize_nf4(w: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x = w.float().reshape(-1)
    n = x.numel()
    blocks = -(-n // blocksize)
    padded = torch.zeros(blocks * blocksize)
    padded[:n] = x
    padded = padded.view(blocks, blocksize)
    absmax = padded.abs().amax(dim=1)
    # multiply by the float32 reciprocal (as bitsandbytes does); an all-zero block stays 0
    y = (padded * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp(-1.0, 1.0).reshape(-1)[:n]
    codes = nearest_nf4(y)
    if n % 2:
        codes = torch.cat([codes, torch.tensor([ZERO_CODE], dtype=torch.uint8)])
    packed = (codes[0::2] << 4) | codes[1::2]  # the first element of each pair in the high nibble
    return packed, absmax


def dequantize_nf4(
    packed: torch.Tensor, absmax: torch.Tensor, shape: tuple[int, ...], blocksize: int = 64
) -> torch.Tensor:
    n = 1
    for size in shape:
        n *= size
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).reshape(-1)[:n].long()
    scale = absmax.float().repeat_interleave(blocksize)[:n]
    return (nf4_code_book()[codes] * scale).reshape(shape)
