"""Asymmetric (affine) group-wise quantisation: a scale and a zero point per group.

Symmetric absmax codes waste half their range when the values are not centred on 0 (after a
ReLU, say). Affine quantisation maps the group's range [lo, hi] onto all the unsigned codes
0 .. 2**bits - 1, and a zero point, the code that stands for 0.0:

    x ~ (code - zero_point) * scale

Groups: the LAST axis of x (..., n) is cut into consecutive runs of `group_size` elements
(x.reshape(..., n // group_size, group_size)); each run is one group with its own scale and
zero point. n must be a multiple of group_size, else ValueError.

The formula, operation by operation, all in float32 (codes are compared EXACTLY):
    x = x.float()                                   (float16, bfloat16, float64 alike)
    qmax = 2**bits - 1                              (bits in 1 .. 8; else ValueError)
    lo = min(min over the group, 0.0)               (the range is widened to hold 0, as
    hi = max(max over the group, 0.0)                PyTorch's MinMaxObserver does, so that
                                                     0.0 has an exact code)
    scale = (hi - lo) / qmax                        (2**bits - 1 steps, not 2**bits)
    if hi == lo (an all-zero group): scale = 1.0    (its zero point and codes are then 0)
    zero_point = torch.round(-lo / scale), clamped to [0, qmax]
    codes = clamp(torch.round(x / scale) + zero_point, 0, qmax)
torch.round rounds halves to even; the zero point is ROUNDED (not floored, not truncated).
Divide by the float32 scale (do not multiply by its reciprocal).

Dequantise: (codes.float() - zero_point.float()) * scale, group by group, float32.
Within a group the error |dequantised - x| is at most scale / 2 (plus float32 rounding).

Dtypes: codes uint8 (a 4-bit code is stored one per uint8, 0 .. 15), zero points uint8,
scales float32. Inputs are never modified in place.
"""

from __future__ import annotations

import torch


def quantize_affine(x: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group-wise affine quantisation of `x` (..., n).

    Returns (codes, scale, zero_point): codes uint8 (..., n) in 0 .. 2**bits - 1; scale float32
    (..., n // group_size); zero_point uint8 (..., n // group_size). ValueError when n is not
    a multiple of group_size or bits is outside 1 .. 8.
    """
    raise NotImplementedError


def dequantize_affine(
    codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, group_size: int
) -> torch.Tensor:
    """(codes - zero_point) * scale group by group: float32 of the codes' shape (..., n)."""
    raise NotImplementedError
