"""Symmetric absmax int8 quantisation: per tensor and per row.

The simplest way to store float weights in 8 bits: pick a scale so that the largest
magnitude maps to 127, divide, round to the nearest integer, and keep the int8 codes with
the scale. Dequantising multiplies back: x ~ codes * scale, with an error of at most half
a step (scale / 2) per element.

Conventions (every one is checked; the codes are compared EXACTLY, so follow the formula
operation by operation):
- Compute in float32: start with `x = x.float()` (float16, bfloat16 and float64 inputs
  alike).
- absmax is max |x| over the quantised group: the whole tensor (`quantize_per_tensor`) or
  each row, i.e. the LAST axis (`quantize_per_row`; every leading axis is a batch of rows).
- scale = absmax / 127, a float32 division (127, not 128 and not 127.5: the codes are
  symmetric, -127 .. 127, and -128 is never used).
- codes = torch.round(x / scale).clamp(-127, 127), as int8. Divide x by the float32
  scale (do not multiply by 127 / absmax: that rounds differently in rare elements).
  torch.round rounds halves to even: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2.
- An all-zero group (absmax == 0): its scale is 0.0 and its codes are all 0 (never NaN);
  dequantising gives 0.
- Dequantise: codes.float() * scale (float32, broadcast), of the codes' shape.
- Inputs are never modified in place.
"""

from __future__ import annotations

import torch


def quantize_per_tensor(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale for the whole tensor.

    `x` float, any shape (at least one element). Returns (codes, scale): codes int8 of x's
    shape, scale a float32 0-dimensional tensor, absmax(x) / 127.
    """
    raise NotImplementedError


def quantize_per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One scale per row (the last axis).

    `x` float (..., n). Returns (codes, scale): codes int8 (..., n), scale float32 (..., 1)
    (keepdim, so that codes * scale broadcasts), each row's absmax / 127.
    """
    raise NotImplementedError


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """codes.float() * scale: float32 of the codes' shape (scale 0-dimensional or (..., 1))."""
    raise NotImplementedError
